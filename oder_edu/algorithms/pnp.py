"""Plug-and-Play priors: a denoiser D(·, σ) in place of a proximal operator.

- PnP proximal gradient (PnP-ISTA / PnP-FISTA; Kamilov, Mansour, Wohlberg, IEEE SPL 2017;
  review: Kamilov, Bouman, Buzzard, Wohlberg, IEEE Signal Process. Mag. 2023):
  x⁺ = D(s − γ∇g(s), σ), with an optional online minibatch gradient (Sun, Wohlberg,
  Kamilov, IEEE TCI 2019).
- PnP-ADMM (Venkatakrishnan, Bouman, Wohlberg, GlobalSIP 2013; Chan, Wang, Elgendy,
  IEEE TCI 2017): alternate the data prox, the denoiser and a dual update.

Convergence, in the form the course uses: for γ < 2/L the gradient step x − γ∇g(x) is
nonexpansive, so if D is a contraction with constant ν < 1 the PnP-PGD map is a contraction
with constant ν and the iterates converge to its unique fixed point (Banach). A trained CNN
denoiser is in general not even nonexpansive; then nothing is guaranteed, and notebook 02
measures what happens.
"""

from __future__ import annotations

import torch

from .. import checks
from .iterate import fixed_point_updates, iterate
from ..physics import online_sampler
from .red import advice, denoise
from .step import batch_size_of, block_draws, setup, step_size


def pnp_pgd(A, y: torch.Tensor, D, *, sigma: float, gamma: float | None = None, accelerate: bool = False,
            batch_ratio: float = 1.0, sampler="uniform", x0: torch.Tensor | None = None, max_iter: int = 100,
            tol: float = 0.0, generator: torch.Generator | None = None):
    """Stream PnP proximal-gradient iterates x_{k+1} = D(s_k − γ∇g(s_k), σ).

    ``accelerate=False``: PnP-ISTA (s_k = x_k); ``True``: PnP-FISTA (Nesterov extrapolation).
    ``gamma`` defaults to 1/L (``step_size(A, batch_size=b)``: L_g, or the minibatch constant L_b
    online). ``batch_ratio`` < 1 uses the online B/b-scaled minibatch gradient over
    blocks drawn by ``sampler`` from ``generator`` (``state.blocks``). ``x0`` defaults to zeros.
    No objective (a denoiser is in general no proximal operator of any function).
    """
    g, x0 = setup(A, y, x0)
    sigma = checks.number("sigma", sigma, minimum=0)
    checks.function("D", D, "D(x, sigma) -> denoised x")
    accelerate = checks.flag("accelerate", accelerate)
    sampler = online_sampler(sampler, A.num_blocks, batch_ratio)
    safe = step_size(A, batch_size=batch_size_of(sampler, A)).value
    gamma = safe if gamma is None else checks.number("gamma", gamma, positive=True)
    draw = block_draws(sampler, generator)

    def step(s):
        blocks = draw()
        return denoise(D, s - gamma * g.grad(s, blocks), sigma), {"blocks": blocks}

    return iterate(fixed_point_updates(step, x0, accelerate), x0, max_iter=max_iter, tol=tol,
                   setting=f"γ = {gamma:.4g}", advice=lambda: advice(safe, gamma, "1/L"))


def pnp_admm(A, y: torch.Tensor, D, *, sigma: float, gamma: float | None = None, cg_iter: int = 20,
             x0: torch.Tensor | None = None, max_iter: int = 100, tol: float = 0.0):
    """Stream PnP-ADMM (Chan, Wang, Elgendy, IEEE TCI 2017, with ρ = 1/γ):

        x_{k+1} = prox_{γg}(z_k − u_k)         (``LeastSquares.prox``: exact or conjugate gradient)
        z_{k+1} = D(x_{k+1} + u_k, σ)
        u_{k+1} = u_k + x_{k+1} − z_{k+1}

    The state's ``x`` is z_k, the denoised iterate. ``gamma`` (the data prox's step, 1/ρ)
    defaults to 1/L_g, the scale of the other solvers' steps; any γ > 0 is a valid ADMM
    penalty, and a larger γ trusts the data more: on ill-conditioned problems such as
    sparse-view CT, γ ≈ 100/L_g works far better (``oder-edu demo`` uses it). ``x0`` (default
    zeros) starts z; u starts at 0. ``cg_iter``: conjugate-gradient iterations of the data
    step where the operator has no closed form, warm-started at the previous x.
    """
    g, x0 = setup(A, y, x0)
    sigma = checks.number("sigma", sigma, minimum=0)
    checks.function("D", D, "D(x, sigma) -> denoised x")
    gamma = step_size(A).value if gamma is None else checks.number("gamma", gamma, positive=True)
    cg_iter = checks.integer("cg_iter", cg_iter, 1)

    def updates():
        x, z, u = x0, x0, torch.zeros_like(x0)
        while True:
            x = g.prox(z - u, gamma, x_init=x, cg_iter=cg_iter)
            z_next = denoise(D, x + u, sigma)
            u = u + x - z_next
            yield z_next, z, {}
            z = z_next

    return iterate(updates(), x0, max_iter=max_iter, tol=tol, setting=f"γ = {gamma:.4g} (ρ = 1/γ), σ = {sigma:.4g}",
                   advice=lambda: f"try a smaller σ, or γ ≤ {step_size(A).value:.4g} = 1/L_g")
