"""Regularization by Denoising (RED), with the full or an online minibatch gradient.

RED (Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017) iterates the gradient method

    x⁺ = T(x) = x − γ (∇g(x) + τ R(x)),    R(x) = x − D(x, σ),

whose fixed points satisfy ∇g(x*) + τR(x*) = 0. Online RED replaces ∇g by the unbiased
minibatch estimate (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over b of the B measurement blocks
(Wu et al., "SIMBA", IEEE J. Sel. Topics Signal Process. 2020): the cost of an iteration
then scales with b, the idea ODER (Liu et al., NeurIPS 2022) carries over to training.
"""

from __future__ import annotations

import torch

from .. import checks
from .iterate import apply, fixed_point_updates, iterate
from .step import gradient_oracle, setup, step_size


def denoise(D, x: torch.Tensor, sigma) -> torch.Tensor:
    """D(x, σ), ``[N, C, H, W] -> [N, C, H, W]``; ValueError if D changes the shape.

    A non-finite ``x`` (a diverging iteration) is returned as it is: the solver's divergence
    rule then ends the run with advice, instead of the denoiser's input check raising in the
    middle of a widget's loop.
    """
    if not torch.isfinite(x).all():
        return x
    return apply(lambda z: D(z, sigma), x, "the denoiser D(x, σ)")


def denoiser_residual(D, x: torch.Tensor, sigma) -> torch.Tensor:
    """R(x) = x − D(x, σ), ``[N, C, H, W]``.

    Uses ``D.residual(x, σ)`` when the denoiser has one (a residual network such as DnCNN
    predicts R directly, which saves computing D(x) only to subtract it again).
    """
    residual = getattr(D, "residual", None)
    if callable(residual):
        return apply(lambda z: residual(z, sigma), x, "the denoiser's residual R(x, σ)")
    return x - denoise(D, x, sigma)


def red_step(x: torch.Tensor, grad: torch.Tensor, D, gamma, tau, sigma) -> torch.Tensor:
    """One RED update T(x) = x − γ(∇g(x) + τ(x − D(x, σ))) (Romano et al. 2017).

    ``x``, ``grad`` = ∇g(x) (full or minibatch) are ``[N, C, H, W]``; γ, τ may be floats or
    tensors (a DEQ learns τ), so nothing here is validated or detached.
    """
    return x - gamma * (grad + tau * denoiser_residual(D, x, sigma))


def advice(safe: float, gamma: float, what: str) -> str:
    """A step to try after a divergence at ``gamma``: the default bound ``safe`` if γ exceeded
    it, else half of γ (the bound assumes a firmly nonexpansive denoiser; this one is not)."""
    if gamma > safe * (1 + 1e-9):
        return f"try γ ≤ {safe:.4g} = {what}"
    return (f"γ was within {what} = {safe:.4g}, which assumes a firmly nonexpansive denoiser; this one "
            f"is not: try γ = {gamma / 2:.4g}, a smaller τ or a larger σ")


def red(A, y: torch.Tensor, D, *, sigma: float, tau: float, gamma: float | None = None, batch_ratio: float = 1.0,
        sampler="uniform", accelerate: bool = False, lipschitz_R: float = 1.0, x0: torch.Tensor | None = None,
        max_iter: int = 100, tol: float = 0.0, generator: torch.Generator | None = None):
    """Stream the RED iterates x_{k+1} = T(s_k) for ``y = A x + e``: one ``State`` per iteration
    (``state.blocks`` = the blocks S of that iteration when online).

    - ``D(x, sigma)``: any denoiser ``[N, C, H, W] -> [N, C, H, W]``; σ its strength.
    - ``tau``: the prior weight τ ≥ 0; ``gamma``: the step, default
      ``step_size(A, tau, lipschitz_R, batch_ratio)`` = 1/(L + τ·L_R) with L = L_g, or the
      minibatch constant when ``batch_ratio`` < 1 (``algorithms.step``).
    - ``batch_ratio`` b/B in (0, 1]: 1 uses the full gradient; below 1, online RED with blocks
      drawn each iteration by ``sampler`` ('uniform', 'stratified', 'cyclic' or a callable)
      from ``generator``, and the B/b-scaled gradient of ``LeastSquares.grad``.
    - ``accelerate``: Nesterov/FISTA momentum with adaptive restart (the test-time solver of the
      ODER reference code uses Nesterov); otherwise s_k = x_k.
    - ``x0``: start image, default zeros. Stops at ``max_iter`` or when the residual < ``tol``.
    """
    g, x0 = setup(A, y, x0)
    sigma = checks.number("sigma", sigma, minimum=0)
    tau = checks.number("tau", tau, minimum=0)
    checks.function("D", D, "D(x, sigma) -> denoised x")
    accelerate = checks.flag("accelerate", accelerate)
    safe = step_size(A, tau, lipschitz_R, batch_ratio, sampler).value
    gamma = safe if gamma is None else checks.number("gamma", gamma, positive=True)
    oracle = gradient_oracle(g, batch_ratio, sampler, generator)

    def step(s):
        grad, extras = oracle(s)
        return red_step(s, grad, D, gamma, tau, sigma), extras

    bound = "1/(L + τ·L_R)" + ("" if batch_ratio == 1 else " with the minibatch constant L")
    return iterate(fixed_point_updates(step, x0, accelerate), x0, max_iter=max_iter, tol=tol,
                   setting=f"γ = {gamma:.4g}, τ = {tau:.4g}", advice=lambda: advice(safe, gamma, bound))
