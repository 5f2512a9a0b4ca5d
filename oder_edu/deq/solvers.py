"""Fixed-point solvers for z = f(z): plain iteration, Anderson acceleration, Nesterov.

Every solver has the signature ``solver(f, z0, max_iter, tol, ...) -> (z, trace)``: ``f`` maps
a tensor ``[N, ...]`` to one of the same shape (batched: sample n of the output depends only
on sample n of the input), ``z`` is the last iterate and ``trace`` a ``SolverTrace`` (the
residual of every iteration, their number, whether ``tol`` was met). Each is a generator of
updates run by ``algorithms.iterate.solve``: the same residual, divergence rule and momentum
as every solver of ``algorithms``, and a ``NonContractiveError`` when the iterates diverge.

The same solvers serve the forward pass of a deep equilibrium model (the image fixed point
x* = T(x*)) and its backward pass (the adjoint fixed point u = Jᵀu + v), as in Bai, Kolter,
Koltun, "Deep Equilibrium Models", NeurIPS 2019, and the Deep Implicit Layers tutorial
(Kolter, Duvenaud, Johnson, NeurIPS 2020).
"""

from __future__ import annotations

import torch

from .. import checks
from ..algorithms.iterate import NonContractiveError, SolverTrace, apply, fixed_point_updates, solve, stream

__all__ = ["forward_iteration", "averaged_iteration", "anderson", "nesterov", "SOLVERS", "NonContractiveError", "SolverTrace"]


def start(f, z0) -> torch.Tensor:
    """``z0`` checked as a solver's start: a finite floating-point tensor ``[N, ...]``, N >= 1 (and ``f`` callable)."""
    checks.function("f", f, "z -> tensor of z's shape")
    if not torch.is_tensor(z0) or not z0.is_floating_point() or z0.ndim < 1 or z0.shape[0] < 1:
        raise TypeError(f"z0 must be a floating-point tensor [N, ...] with N >= 1, got {z0!r:.80}")
    return checks.finite("z0", z0)


def forward_iteration(f, z0, max_iter: int = 50, tol: float = 1e-4):
    """Picard iteration z_{k+1} = f(z_k); converges linearly for a contraction (Banach)."""
    z0 = start(f, z0)
    return solve(fixed_point_updates(lambda z: (apply(f, z), {}), z0), z0, max_iter, tol)


def averaged_iteration(f, z0, max_iter: int = 50, tol: float = 1e-4):
    """Plain iteration z_{k+1} = f(z_k) that returns the average of the iterates of the second half of the
    run (k > max_iter/2; tail averaging, after Polyak & Juditsky, SIAM J. Control Optim. 1992): the stopping
    rule of a stochastic map such as online ODER's (a fresh minibatch at every application), whose last
    iterate hovers in a noise ball around the fixed point while the average's noise shrinks with the budget.
    Stops early only if a residual falls below ``tol``; the trace is that of the iterates."""
    z0 = start(f, z0)
    max_iter = checks.integer("max_iter", max_iter, 1)
    trace, total, kept, state = SolverTrace(), None, 0, None
    for state in stream(fixed_point_updates(lambda z: (apply(f, z), {}), z0), z0, max_iter, tol,
                        lambda: "the map is not contractive: reduce the step size"):
        if state.diverged:
            raise NonContractiveError(state.message)
        trace.residuals.append(state.residual)
        if state.iteration > max_iter // 2:
            total, kept = (state.x.clone() if total is None else total + state.x), kept + 1
    trace.iterations, trace.converged = len(trace.residuals), state.residual < tol
    return (state.x if total is None else total / kept), trace


def nesterov(f, z0, max_iter: int = 50, tol: float = 1e-4):
    """Nesterov-accelerated fixed-point iteration with adaptive restart (the accelerated RED of
    Reehorst & Schniter, IEEE TCI 2019, and the test-time solver of the ODER reference code):
    z_k = f(s_{k-1}) and s_k extrapolates z_k, z_{k-1} (``algorithms.iterate``). When f is a
    gradient step on a convex function this is accelerated gradient descent."""
    z0 = start(f, z0)
    return solve(fixed_point_updates(lambda z: (apply(f, z), {}), z0, accelerate=True), z0, max_iter, tol)


def anderson(f, z0, max_iter: int = 50, tol: float = 1e-4, m: int = 5, lam: float = 1e-4, beta: float = 1.0,
             weights=None):
    """Anderson acceleration (Anderson 1965; Walker and Ni, SIAM J. Numer. Anal. 2011).

    Keep the last ``m`` iterates X_i and values F_i = f(X_i), residuals G_i = F_i - X_i. Per
    sample, find the affine weights that make the mixed residual smallest,

        alpha = argmin ||sum_i alpha_i G_i||^2  s.t.  sum_i alpha_i = 1
              = H^{-1} 1 / (1^T H^{-1} 1),   H = G G^T + lam * mean(diag(G G^T)) I,

    then step to z = beta * sum_i alpha_i F_i + (1 - beta) * sum_i alpha_i X_i. The ridge
    ``lam`` is relative to the scale of H, so it stays meaningful near convergence in float32.
    With m = 1 this is plain (beta-damped) iteration. Anderson is a root-finder for
    f(z) - z (on an affine map it matches GMRES), so it can converge where f is not a
    contraction: a model that needs it to converge is not the contraction the theory covers.

    ``weights(G) -> alpha`` (G ``[k, d]``, alpha ``[k]``), if given, computes the weights of each sample instead of
    the closed form (notebook 03 runs a student's ``anderson_weights`` so); the ridge reaches it as k extra columns
    of G, sqrt(lam · scale)·I, since those add lam · scale · I to G Gᵀ.
    """
    z0 = start(f, z0)
    m = checks.integer("m", m, 1)
    lam = checks.number("lam", lam, minimum=0)
    beta = checks.number("beta", beta, positive=True, maximum=1)
    if weights is not None:
        checks.function("weights", weights, "G [k, d] -> alpha [k]")
    return solve(_anderson_updates(f, z0, m, lam, beta, weights), z0, max_iter, tol)


def mixing_weights(G: torch.Tensor, lam: float = 0.0) -> torch.Tensor:
    """Anderson's weights ``[N, k]`` for residuals ``G`` ``[N, k, d]``: argmin ||Σ_i α_i G_i|| s.t. Σ_i α_i = 1,
    α = H⁻¹1 / (1ᵀH⁻¹1) with H = G Gᵀ + (lam · mean(diag(G Gᵀ)) + tiny) I."""
    H = G @ G.transpose(1, 2)  # [N, k, k]
    n, k = H.shape[0], H.shape[-1]
    scale = H.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
    H = H + (lam * scale + torch.finfo(H.dtype).tiny) * torch.eye(k, dtype=H.dtype, device=H.device)
    # solve_ex skips linalg.solve's error check (~7 ms a call on this CPU): H is regularized
    # SPD, and a failed solve gives NaN, which the divergence rule reports.
    w = torch.linalg.solve_ex(H, torch.ones(n, k, 1, dtype=H.dtype, device=H.device))[0][..., 0]
    return w / w.sum(1, keepdim=True)


def _given_weights(weights, G: torch.Tensor, lam: float) -> torch.Tensor:
    """``[N, k]``: ``weights`` applied to each sample's residuals ``[k, d]``, the ridge appended as columns."""
    k = G.shape[1]
    scale = G.square().sum(-1).mean(-1)  # mean(diag(G Gᵀ)) per sample
    alphas = []
    for G_n, s in zip(G, scale):
        ridge = (lam * s + torch.finfo(G.dtype).tiny).sqrt() * torch.eye(k, dtype=G.dtype, device=G.device)
        alpha = torch.as_tensor(weights(torch.cat([G_n, ridge], dim=1)), dtype=G.dtype, device=G.device)
        if alpha.shape != (k,):
            raise ValueError(f"weights(G) must return a tensor of shape [{k}] for G [{k}, d], got {tuple(alpha.shape)}")
        alphas.append(alpha)
    return torch.stack(alphas)


def _anderson_updates(f, z0, m, lam, beta, weights=None):
    shape, n = z0.shape, z0.shape[0]
    xs, fs = [], []  # the last m iterates and values, flattened [N, d]
    z = z0
    while True:
        fz = apply(f, z)
        yield fz, z, {}
        xs, fs = (xs + [z.reshape(n, -1)])[-m:], (fs + [fz.reshape(n, -1)])[-m:]
        X, F = torch.stack(xs, 1), torch.stack(fs, 1)  # [N, k, d]
        G = F - X
        alpha = (mixing_weights(G, lam) if weights is None else _given_weights(weights, G, lam))[:, None]  # [N, 1, k]
        z = (beta * (alpha @ F)[:, 0] + (1 - beta) * (alpha @ X)[:, 0]).reshape(shape)


SOLVERS = {"forward_iteration": forward_iteration, "averaged_iteration": averaged_iteration, "anderson": anderson,
           "nesterov": nesterov}
