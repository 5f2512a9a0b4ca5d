"""The deep equilibrium layer: output z* = f(z*, *args), differentiated implicitly.

Forward (Bai, Kolter, Koltun, NeurIPS 2019): solve z* = f(z*) with a fixed-point solver
under ``torch.no_grad()`` -- no graph is stored for the iterations, so memory does not
grow with their number -- then apply f once more *with* autograd, z = f(z*), to attach
the parameters.

Backward, three choices (``backward=``):

- ``"implicit"``: by the implicit function theorem the gradient of a loss l(z*) with
  respect to the parameters is  v^T (I - J)^{-1} df/dtheta  with J = df/dz at z* and
  v = dl/dz*. A tensor hook on z replaces the incoming v by the solution g of the
  fixed point  g = J^T g + v,  solved with the chosen solver using vector-Jacobian
  products J^T g (the Deep Implicit Layers tutorial, Kolter, Duvenaud, Johnson 2020);
  autograd then carries g through the attached application to the parameters.
- ``"jfb"``: Jacobian-free backprop (Fung, Heaton, Li, McKenzie, Osher, Yin, AAAI 2022):
  take g = v, i.e. drop (I - J)^{-1}; a descent direction when f is contractive, and
  no backward solve at all.
- ``"unrolled"``: the baseline -- run ``unroll_iter`` plain iterations *with* autograd and
  backpropagate through all of them (memory grows with the number of iterations).
"""

from __future__ import annotations

import torch
from torch import nn

from .solvers import SolverTrace, anderson

BACKWARDS = ("implicit", "jfb", "unrolled")


def unrolled(f, z0: torch.Tensor, num_iter: int):
    """K = ``num_iter`` iterations z_{k+1} = f(z_k) kept on the autograd tape.

    Returns ``(z_K, trace)``; the trace records residuals but never stops early, so the
    computation graph (and its memory) is exactly K applications of f."""
    if int(num_iter) < 1:
        raise ValueError(f"num_iter must be >= 1, got {num_iter}")
    trace = SolverTrace()
    z = z0
    for _ in range(int(num_iter)):
        fz = f(z)
        with torch.no_grad():
            diff = (fz - z).flatten(1).norm(dim=1) / (fz.flatten(1).norm(dim=1) + 1e-12)
            trace.residuals.append(diff.max().item())
        trace.iterations += 1
        z = fz
    return z, trace


class DEQ(nn.Module):
    """Deep equilibrium layer around a map ``f(z, *args)`` (an ``nn.Module`` or a function).

    ``DEQ(f, solver=anderson, backward="implicit")(z0, *args)`` returns the fixed point
    ``[N, ...]`` (same shape as ``z0``) of z -> f(z, *args); gradients reach f's parameters
    and any ``args`` that require grad. The solver settings of the last call are in
    ``forward_trace`` and ``backward_trace`` (a :class:`SolverTrace` each, or None).

    Parameters: ``solver`` / ``backward_solver`` (default: the same) take
    ``(f, z0, max_iter, tol)``; ``max_iter``, ``tol`` for the forward solve and
    ``backward_max_iter``, ``backward_tol`` (defaults: the same) for the backward one;
    ``unroll_iter`` (default ``max_iter``) for ``backward="unrolled"``.

    When autograd is off (``torch.no_grad()``, evaluation) only the solve runs.
    """

    def __init__(self, f, solver=anderson, backward: str = "implicit", max_iter: int = 50,
                 tol: float = 1e-4, backward_solver=None, backward_max_iter: int | None = None,
                 backward_tol: float | None = None, unroll_iter: int | None = None):
        super().__init__()
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        if backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
        if not callable(solver) or (backward_solver is not None and not callable(backward_solver)):
            raise TypeError("solver and backward_solver must be callables (f, z0, max_iter, tol) -> (z, trace)")
        self.f = f
        self.solver, self.backward_solver = solver, backward_solver or solver
        self.backward = backward
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.backward_max_iter = int(backward_max_iter or max_iter)
        self.backward_tol = float(tol if backward_tol is None else backward_tol)
        self.unroll_iter = int(unroll_iter or max_iter)
        self.forward_trace: SolverTrace | None = None
        self.backward_trace: SolverTrace | None = None

    def forward(self, z0: torch.Tensor, *args) -> torch.Tensor:
        def f(z):
            return self.f(z, *args)

        self.backward_trace = None
        if self.backward == "unrolled":
            z, self.forward_trace = unrolled(f, z0, self.unroll_iter)
            return z
        with torch.no_grad():
            z_star, self.forward_trace = self.solver(f, z0.detach(), max_iter=self.max_iter, tol=self.tol)
        if not torch.is_grad_enabled():
            return z_star
        if self.backward == "jfb":
            return f(z_star)
        # One attached application; its graph serves both the VJPs J^T g of the backward
        # solve (gradients w.r.t. z_in) and the final pass to the parameters. The hook sits
        # on an alias of z: the VJPs start at z itself, so they do not re-enter the hook,
        # and the hook's closure (which holds z) is not reachable from z (no reference cycle).
        z_in = z_star.detach().requires_grad_()
        z = f(z_in)
        if not z.requires_grad:
            return z
        out = z.view_as(z)
        out.register_hook(self._implicit_hook(z, z_in))
        return out

    def _implicit_hook(self, z: torch.Tensor, z_in: torch.Tensor):
        def hook(v: torch.Tensor) -> torch.Tensor:
            if v is None:  # an undefined (all-zero) incoming gradient
                return v

            def vjp_map(g):
                (jtg,) = torch.autograd.grad(z, z_in, g, retain_graph=True)
                return jtg + v

            g, self.backward_trace = self.backward_solver(
                vjp_map, v, max_iter=self.backward_max_iter, tol=self.backward_tol
            )
            return g

        return hook

    def extra_repr(self) -> str:
        name = getattr(self.solver, "__name__", type(self.solver).__name__)
        return f"solver={name}, backward={self.backward!r}, max_iter={self.max_iter}, tol={self.tol}"
