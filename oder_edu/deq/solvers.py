"""Fixed-point solvers for z = f(z): plain iteration, Anderson acceleration, Nesterov.

Every solver has the signature ``solver(f, z0, max_iter, tol, ...) -> (z, trace)``:

- ``f`` maps a tensor ``[N, ...]`` to a tensor of the same shape (batched: sample n of the
  output depends only on sample n of the input);
- ``z`` is the last iterate, ``trace`` a :class:`SolverTrace` with the relative residual
  ``max_n ||f(z)_n - z_n|| / ||f(z)_n||`` of every iteration, the number of iterations
  used and whether ``tol`` was reached.

The same solvers serve the forward pass of a deep equilibrium model (the image fixed
point x* = T(x*)) and its backward pass (the gradient fixed point g = J^T g + v), as in
Bai, Kolter, Koltun, "Deep Equilibrium Models", NeurIPS 2019, and the Deep Implicit
Layers tutorial (Kolter, Duvenaud, Johnson, NeurIPS 2020).

A map that is not contractive makes the *absolute* residual ||f(z) - z|| grow (the relative
one can stay flat when z itself blows up). Each solver watches for that and raises
:class:`NonContractiveError` instead of returning garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


class NonContractiveError(ValueError):
    """The fixed-point residual grew: the map is not a contraction (step size too large?)."""


@dataclass
class SolverTrace:
    """What a solver did: ``residuals[k]`` is the relative residual at iteration k."""

    residuals: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False

    def __repr__(self) -> str:
        last = f"{self.residuals[-1]:.2e}" if self.residuals else "n/a"
        return f"SolverTrace(iterations={self.iterations}, converged={self.converged}, residual={last})"


class _Monitor:
    """Residual bookkeeping shared by the solvers: convergence and divergence tests."""

    def __init__(self, max_iter: int, tol: float, divergence_factor: float):
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        if not divergence_factor > 1:
            raise ValueError(f"divergence_factor must be > 1, got {divergence_factor}")
        self.tol, self.factor = float(tol), float(divergence_factor)
        self.trace = SolverTrace()
        self.smallest = math.inf
        self.absolute = math.inf  # ||f(z) - z|| of the last iteration (max over the batch)

    def update(self, fz: torch.Tensor, z: torch.Tensor) -> bool:
        """Record the residual of one iteration; True when converged."""
        diff = (fz - z).flatten(1).norm(dim=1)
        absolute = diff.max().item()
        relative = (diff / (fz.flatten(1).norm(dim=1) + 1e-12)).max().item()
        trace = self.trace
        trace.residuals.append(relative)
        trace.iterations += 1
        if not math.isfinite(absolute) or absolute > self.factor * self.smallest:
            raise NonContractiveError(
                f"fixed-point residual grew from {self.smallest:.3g} to {absolute:.3g} within "
                f"{trace.iterations} iterations: the map is not contractive. Reduce the step "
                f"size (for RED, gamma < 1 / (L_g + tau * L_R))."
            )
        self.smallest = min(self.smallest, absolute)
        self.absolute = absolute
        trace.converged = relative <= self.tol
        return trace.converged


def _check_input(f, z0) -> None:
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not torch.is_tensor(z0) or not z0.is_floating_point() or z0.ndim < 1 or z0.shape[0] < 1:
        raise TypeError(f"z0 must be a floating-point tensor [N, ...], got {z0!r:.80}")


def _apply(f, z: torch.Tensor) -> torch.Tensor:
    fz = f(z)
    if not torch.is_tensor(fz) or fz.shape != z.shape:
        got = tuple(fz.shape) if torch.is_tensor(fz) else type(fz).__name__
        raise ValueError(f"f must return a tensor of the input's shape {tuple(z.shape)}, got {got}")
    return fz


def forward_iteration(f, z0, max_iter: int = 50, tol: float = 1e-4, divergence_factor: float = 1e3):
    """Picard iteration z_{k+1} = f(z_k); converges linearly for a contraction (Banach)."""
    _check_input(f, z0)
    monitor = _Monitor(max_iter, tol, divergence_factor)
    z = z0
    for _ in range(int(max_iter)):
        fz = _apply(f, z)
        done = monitor.update(fz, z)
        z = fz
        if done:
            break
    return z, monitor.trace


def anderson(f, z0, max_iter: int = 50, tol: float = 1e-4, m: int = 5, lam: float = 1e-4,
             beta: float = 1.0, divergence_factor: float = 1e3):
    """Anderson acceleration (Anderson 1965; Walker and Ni, SIAM J. Numer. Anal. 2011).

    Keep the last ``m`` iterates X_i and values F_i = f(X_i), residuals G_i = F_i - X_i.
    Per sample, find the affine weights that make the mixed residual smallest,

        alpha = argmin ||sum_i alpha_i G_i||^2  s.t.  sum_i alpha_i = 1
              = H^{-1} 1 / (1^T H^{-1} 1),   H = G G^T + lam * mean(diag(G G^T)) I,

    (one batched ``torch.linalg.solve_ex``), then step to
    z = beta * sum_i alpha_i F_i + (1 - beta) * sum_i alpha_i X_i.
    The ridge ``lam`` is relative to the scale of H, so it stays meaningful near convergence
    in float32. With m = 1 this is plain (beta-damped) iteration. Anderson is a root-finder
    for f(z) - z (on an affine map it matches GMRES), so it can converge even where f is
    not a contraction; the divergence check still catches a residual that blows up.
    """
    _check_input(f, z0)
    if int(m) < 1 or not lam >= 0 or not 0 < beta <= 1:
        raise ValueError(f"expected m >= 1, lam >= 0, 0 < beta <= 1; got m={m}, lam={lam}, beta={beta}")
    monitor = _Monitor(max_iter, tol, divergence_factor)
    shape, n = z0.shape, z0.shape[0]
    xs, fs = [], []  # histories of flattened [N, d] iterates and values
    z = z0.reshape(n, -1)
    for _ in range(int(max_iter)):
        fz = _apply(f, z.reshape(shape)).reshape(n, -1)
        if monitor.update(fz, z):
            z = fz
            break
        xs, fs = (xs + [z])[-int(m):], (fs + [fz])[-int(m):]
        X, F = torch.stack(xs, 1), torch.stack(fs, 1)  # [N, k, d]
        G = F - X
        H = G @ G.transpose(1, 2)  # [N, k, k]
        k = H.shape[-1]
        eye = torch.eye(k, dtype=H.dtype, device=H.device)
        scale = H.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
        H = H + (lam * scale + torch.finfo(H.dtype).tiny) * eye
        # linalg.solve_ex is linalg.solve without its error check, which on this CPU costs
        # ~7 ms per call; H is regularized SPD, and a failed solve gives NaN, which the
        # monitor reports.
        w = torch.linalg.solve_ex(H, torch.ones(n, k, 1, dtype=H.dtype, device=H.device))[0]
        alpha = w / w.sum(1, keepdim=True)  # [N, k, 1]
        z = beta * (alpha.transpose(1, 2) @ F)[:, 0] + (1 - beta) * (alpha.transpose(1, 2) @ X)[:, 0]
    return z.reshape(shape), monitor.trace


def nesterov(f, z0, max_iter: int = 50, tol: float = 1e-4, divergence_factor: float = 1e3):
    """Nesterov-accelerated fixed-point iteration (the accelerated RED / FISTA momentum):

        z_k = f(s_{k-1}),  t_k = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2,
        s_k = z_k + ((t_{k-1} - 1) / t_k) (z_k - z_{k-1}),

    (Beck and Teboulle, SIAM J. Imaging Sci. 2009; used for RED by Reehorst and Schniter,
    IEEE TCI 2019, and as the test-time solver of the ODER reference code). When f is a
    gradient step x - gamma * grad h(x) on a convex h this is accelerated gradient descent.
    For other maps momentum can overshoot, so the momentum restarts (t = 1) whenever the
    residual grows (adaptive restart, O'Donoghue and Candes, Found. Comput. Math. 2015).
    The residual is that of the extrapolated point, ||f(s) - s|| / ||f(s)||.
    """
    _check_input(f, z0)
    monitor = _Monitor(max_iter, tol, divergence_factor)
    z_prev, s, t = z0, z0, 1.0
    previous = math.inf
    for _ in range(int(max_iter)):
        z = _apply(f, s)
        if monitor.update(z, s):
            break
        if monitor.absolute > previous:
            t = 1.0  # restart: the next extrapolation weight (t - 1) / t_next is 0
        previous = monitor.absolute
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        s = z + ((t - 1) / t_next) * (z - z_prev)
        z_prev, t = z, t_next
    return z, monitor.trace


SOLVERS = {"forward_iteration": forward_iteration, "anderson": anderson, "nesterov": nesterov}
