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

from .state import gradient_oracle, iterate, momentum, setup
from .step import check_number, step_size


def _same_shape(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # Broadcasting a wrongly shaped denoiser output would silently corrupt the iteration.
    if not torch.is_tensor(out) or out.shape != x.shape:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"the denoiser must return a tensor of the input shape {tuple(x.shape)}, got {got}")
    return out


def denoise(D, x: torch.Tensor, sigma) -> torch.Tensor:
    """D(x, σ), ``[N, C, H, W] -> [N, C, H, W]``; ValueError if D changes the shape.

    A non-finite ``x`` (a diverging iteration) is returned as it is: the solver's divergence
    guard then ends the run with a step-size hint, instead of the denoiser's input check
    raising in the middle of a widget's loop.
    """
    if not torch.isfinite(x).all():
        return x
    return _same_shape(D(x, sigma), x)


def denoiser_residual(D, x: torch.Tensor, sigma) -> torch.Tensor:
    """R(x) = x − D(x, σ), ``[N, C, H, W]``.

    Uses ``D.residual(x, σ)`` when the denoiser has one (a residual network such as DnCNN
    predicts R directly, which saves computing D(x) only to subtract it again).
    """
    residual = getattr(D, "residual", None)
    if callable(residual):
        return _same_shape(residual(x, sigma), x)
    return x - denoise(D, x, sigma)


def red_step(x: torch.Tensor, grad: torch.Tensor, D, gamma, tau, sigma) -> torch.Tensor:
    """One RED update T(x) = x − γ(∇g(x) + τ(x − D(x, σ))) (Romano et al. 2017).

    ``x``, ``grad`` = ∇g(x) (full or minibatch) are ``[N, C, H, W]``; γ, τ may be floats or
    tensors (a DEQ learns them), so nothing here is validated or detached.
    """
    return x - gamma * (grad + tau * denoiser_residual(D, x, sigma))


def red(
    A,
    y: torch.Tensor,
    D,
    *,
    sigma: float,
    tau: float,
    gamma: float | None = None,
    batch_ratio: float = 1.0,
    sampler="uniform",
    accelerate: bool = False,
    lipschitz_R: float = 1.0,
    x0: torch.Tensor | None = None,
    max_iter: int = 100,
    tol: float = 0.0,
    generator: torch.Generator | None = None,
):
    """Stream the RED iterates x_{k+1} = T(s_k) for ``y = A x + e``: yields one ``State``
    per iteration (``state.blocks`` = the blocks S of that iteration when online).

    - ``D(x, sigma)``: any denoiser ``[N, C, H, W] -> [N, C, H, W]``; σ its strength.
    - ``tau``: the prior weight τ ≥ 0; ``gamma``: the step, default
      ``step_size(A, tau, lipschitz_R).value`` = 1/(L_g + τ·L_R).
    - ``batch_ratio`` b/B in (0, 1]: 1 uses the full gradient; below 1, online RED with
      blocks drawn each iteration by ``sampler`` ('uniform', 'stratified', 'cyclic' or a
      callable) from ``generator``, and the B/b-scaled gradient of ``LeastSquares.grad``
      (same default γ: the estimate is unbiased, so its mean step is the full one).
    - ``accelerate``: Nesterov/FISTA momentum, s_k = x_k + (t_{k−1} − 1)/t_k (x_k − x_{k−1})
      (the test-time solver of the ODER reference code); otherwise s_k = x_k.
    - ``x0``: start image, default zeros. Stops at ``max_iter`` or when the residual < ``tol``.
    """
    g, x0 = setup(A, y, x0)
    sigma = check_number("sigma", sigma)
    tau = check_number("tau", tau)
    check_number("lipschitz_R", lipschitz_R)  # now, not when a divergence message needs it
    if not callable(D):
        raise TypeError(f"D must be a denoiser callable D(x, sigma), got {type(D).__name__}")
    gamma = step_size(A, tau, lipschitz_R).value if gamma is None else check_number("gamma", gamma, positive=True)
    oracle = gradient_oracle(g, batch_ratio, sampler, generator)

    def step(s):
        grad, blocks = oracle(s)
        return red_step(s, grad, D, gamma, tau, sigma), blocks

    return iterate(
        momentum(step, x0, accelerate),
        x0,
        max_iter=max_iter,
        tol=tol,
        setting=f"γ = {gamma:.4g}, τ = {tau:.4g}",
        advice=lambda: f"try γ ≤ {step_size(A, tau, lipschitz_R).value:.4g} = 1/(L_g + τ·L_R)",
    )


