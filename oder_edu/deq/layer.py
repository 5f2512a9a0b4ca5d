"""The deep equilibrium layer: output z* = f(z*, *args), differentiated implicitly.

Forward (Bai, Kolter, Koltun, NeurIPS 2019): solve z* = f(z*) with a fixed-point solver under
``torch.no_grad()`` -- no graph is stored for the iterations, so memory does not grow with
their number -- then apply f once more *with* autograd, z = f(z*), to attach the parameters.

Backward, three choices (``backward=``):

- ``"implicit"``: by the implicit function theorem the gradient of a loss l(z*) with respect
  to the parameters is v^T (I - J)^{-1} df/dθ with J = df/dz at z* and v = dl/dz*. A tensor
  hook on z replaces the incoming v by the solution u of the fixed point u = J^T u + v, solved
  with the chosen solver using vector-Jacobian products J^T u (the Deep Implicit Layers
  tutorial, Kolter, Duvenaud, Johnson 2020); autograd then carries u through the attached
  application to the parameters.
- ``"jfb"``: Jacobian-free backprop (Fung, Heaton, Li, McKenzie, Osher, Yin, AAAI 2022):
  u = v, i.e. drop (I - J)^{-1}; a descent direction when f is contractive; no backward solve.
- ``"unrolled"``: the baseline -- ``unroll_iter`` plain iterations *with* autograd, all kept
  for backpropagation (memory grows with the number of iterations).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import checks
from ..algorithms.iterate import SolverTrace, apply
from .solvers import anderson, start

BACKWARDS = ("implicit", "jfb", "unrolled")


def unrolled(f, z0: torch.Tensor, num_iter: int):
    """K = ``num_iter`` iterations z_{k+1} = f(z_k) kept on the autograd tape.

    Returns ``(z_K, trace)``; the trace records residuals but never stops early, so the
    computation graph (and its memory) is exactly K applications of f."""
    num_iter = checks.integer("num_iter", num_iter, 1)
    trace, z = SolverTrace(), start(f, z0)
    for _ in range(num_iter):
        fz = apply(f, z)
        with torch.no_grad():
            diff = (fz - z).flatten(1).norm(dim=1) / fz.flatten(1).norm(dim=1)
            trace.residuals.append(diff.nan_to_num(0.0).max().item())
        z = fz
    trace.iterations = num_iter
    return z, trace


def attach_implicit(out: torch.Tensor, vjp, solver, max_iter: int, tol: float, on_solved) -> torch.Tensor:
    """Return an alias of ``out`` whose incoming gradient v is replaced, in backward, by the
    solution u of u = vjp(u) + v (``solver(f, v, max_iter=..., tol=...)``); ``on_solved(trace)``
    receives the backward solve's trace.

    The hook sits on an alias: the VJPs start at ``out`` itself, so they do not re-enter the
    hook, and the hook's closure is not reachable from the alias (no reference cycle).
    """
    def hook(v: torch.Tensor | None) -> torch.Tensor | None:
        if v is None:  # an undefined (all-zero) incoming gradient: nothing to solve
            return None
        u, trace = solver(lambda u: vjp(u) + v, v, max_iter=max_iter, tol=tol)
        on_solved(trace)
        return u

    alias = out.view_as(out)
    alias.register_hook(hook)
    return alias


def set_iterations(module, max_iter, tol, backward_max_iter=None, backward_tol=None, unroll_iter=None) -> None:
    """Validated iteration counts and tolerances on ``module``; the backward and unrolled ones
    default to the forward's. Also clears the traces of the last call."""
    module.max_iter = checks.integer("max_iter", max_iter, 1)
    module.tol = checks.number("tol", tol, minimum=0)
    module.backward_max_iter = module.max_iter if backward_max_iter is None else checks.integer(
        "backward_max_iter", backward_max_iter, 1)
    module.backward_tol = module.tol if backward_tol is None else checks.number("backward_tol", backward_tol, minimum=0)
    module.unroll_iter = module.max_iter if unroll_iter is None else checks.integer("unroll_iter", unroll_iter, 1)
    module.forward_trace = module.backward_trace = None


def equilibrium(module, f, z0: torch.Tensor, solver, attach, backward_solver=None, max_iter: int | None = None,
                tol: float | None = None):
    """The one forward/backward skeleton of every deep equilibrium model here: z* = f(z*) from ``z0``.

    ``module`` holds ``backward`` ("implicit", "jfb" or "unrolled") and the iteration counts of
    ``set_iterations``, and receives ``forward_trace`` / ``backward_trace``. Unrolled: K = ``unroll_iter``
    steps on the tape. Otherwise ``solver`` finds z* without autograd (``max_iter``, ``tol`` override the
    module's); evaluation stops there; JFB applies f once more with autograd; implicit calls
    ``attach(z*) -> (z, vjp)``, one application z of f at z* on the tape and the product
    u -> Jᵀu at z*, and puts the backward solve u = Jᵀu + v (``backward_solver``, default ``solver``) on z.
    """
    module.backward_trace = None
    if module.backward == "unrolled":
        z, module.forward_trace = unrolled(f, z0, module.unroll_iter)
        return z
    with torch.no_grad():
        z_star, module.forward_trace = solver(f, z0.detach(), max_iter=max_iter or module.max_iter,
                                              tol=module.tol if tol is None else tol)
    if not torch.is_grad_enabled():
        return z_star
    if module.backward == "jfb":
        return f(z_star)
    z, vjp = attach(z_star)
    if not z.requires_grad:
        return z
    return attach_implicit(z, vjp, backward_solver or solver, module.backward_max_iter, module.backward_tol,
                           lambda trace: setattr(module, "backward_trace", trace))


def autograd_attach(f):
    """``attach`` for a generic map: one application z = f(z_in) at z_in = z* (detached, requiring grad),
    whose graph serves both the VJPs Jᵀu of the backward solve and the final pass to the parameters."""
    def attach(z_star):
        z_in = z_star.detach().requires_grad_()
        z = f(z_in)
        return z, lambda u: torch.autograd.grad(z, z_in, u, retain_graph=True)[0]

    return attach


class DEQ(nn.Module):
    """Deep equilibrium layer around a map ``f(z, *args)`` (an ``nn.Module`` or a function).

    ``DEQ(f, solver=anderson, backward="implicit")(z0, *args)`` returns the fixed point
    ``[N, ...]`` (same shape as ``z0``) of z -> f(z, *args); gradients reach f's parameters and
    any ``args`` that require grad. The last call's solves are in ``forward_trace`` and
    ``backward_trace`` (a ``SolverTrace`` each, or None).

    ``solver`` / ``backward_solver`` (default: the same) take ``(f, z0, max_iter, tol)``;
    ``max_iter``, ``tol`` set the forward solve, ``backward_max_iter``, ``backward_tol``
    (defaults: the same) the backward one, ``unroll_iter`` (default ``max_iter``) the unrolled
    baseline. When autograd is off (``torch.no_grad()``, evaluation) only the solve runs.
    """

    def __init__(self, f, solver=anderson, backward: str = "implicit", max_iter: int = 50, tol: float = 1e-4,
                 backward_solver=None, backward_max_iter: int | None = None, backward_tol: float | None = None,
                 unroll_iter: int | None = None):
        super().__init__()
        self.f = checks.function("f", f, "f(z, *args) -> tensor of z's shape")
        self.backward = checks.choice("backward", backward, BACKWARDS)
        self.solver = checks.function("solver", solver, "(f, z0, max_iter, tol) -> (z, trace)")
        self.backward_solver = solver if backward_solver is None else checks.function(
            "backward_solver", backward_solver, "(f, z0, max_iter, tol) -> (z, trace)")
        set_iterations(self, max_iter, tol, backward_max_iter, backward_tol, unroll_iter)

    def forward(self, z0: torch.Tensor, *args) -> torch.Tensor:
        def f(z):
            return self.f(z, *args)

        z0 = start(f, z0)  # a tensor, finite: any solver (and the unrolled baseline) may start from it
        return equilibrium(self, f, z0, self.solver, autograd_attach(f), self.backward_solver)

    def extra_repr(self) -> str:
        name = getattr(self.solver, "__name__", type(self.solver).__name__)
        return f"solver={name}, backward={self.backward!r}, max_iter={self.max_iter}, tol={self.tol}"
