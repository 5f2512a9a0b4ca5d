"""Regularization by Denoising (RED), with the full or an online minibatch gradient.

RED (Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017) iterates the gradient method

    x⁺ = T(x) = x − γ (∇g(x) + τ R(x)),    R(x) = x − D(x, σ),

whose fixed points satisfy ∇g(x*) + τR(x*) = 0. Online RED replaces ∇g by the unbiased
minibatch estimate (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over b of the B measurement blocks
(Wu et al., "SIMBA", IEEE J. Sel. Topics Signal Process. 2020): the cost of an iteration
then scales with b, the idea ODER (Liu et al., NeurIPS 2022) carries over to training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from .. import checks
from ..physics import LeastSquares, online_sampler
from .iterate import apply, fixed_point_updates, iterate
from .step import VarianceReduced, batch_size_of, block_draws, setup, step_size


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


def red_update(x: torch.Tensor, grad: torch.Tensor, residual: torch.Tensor, gamma, tau) -> torch.Tensor:
    """The RED update T(x) = x − γ(∇g(x) + τR(x)) (Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017),
    given ``grad`` = ∇g(x) (full or minibatch) and ``residual`` = R(x), all ``[N, C, H, W]``.

    T is linear in (x, ∇g, R), so the same expression gives its linearization: J v = v − γ(H v + τ J_R v)
    with H the data term's Hessian (``LeastSquares.normal``) and J_R v the denoiser residual's JVP (J_R ᵀu
    for the VJP: H is symmetric). γ, τ may be floats or tensors (a DEQ learns τ): nothing is validated."""
    return x - gamma * (grad + tau * residual)


@dataclass(frozen=True)
class REDMap:
    """The RED map T_S(x) = x − γ(∇_S g(x) + τR(x)) of data term ``g`` and residual ``R`` (``x -> R(x)``),
    with ∇_S g the full gradient (S = None) or its unbiased minibatch estimate, and its linearization.
    Every RED iteration in the package -- the ``red`` solver, ``deq.REDDEQ``'s forward and backward
    passes, the contraction measurements -- applies these two methods."""

    g: LeastSquares
    R: Callable[[torch.Tensor], torch.Tensor]
    gamma: float | torch.Tensor
    tau: float | torch.Tensor

    def __call__(self, x: torch.Tensor, blocks=None) -> torch.Tensor:
        """T_S(x), ``[N, C, H, W]``."""
        return self.step(x, self.g.grad(x, blocks))

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The map with any estimate ``grad`` of ∇g(x) (e.g. ``step.VarianceReduced``)."""
        return red_update(x, grad, self.R(x), self.gamma, self.tau)

    def linear(self, v: torch.Tensor, JR_v: torch.Tensor, blocks=None, Hv: torch.Tensor | None = None) -> torch.Tensor:
        """J_S v = v − γ((B/b) A_SᵀA_S v + τ J_R v) given ``JR_v`` = J_R v at the point of
        linearization (or ``Hv``, another estimate of AᵀA v, in place of the minibatch one); given J_Rᵀu
        instead, it is J_Sᵀu (the data part is symmetric)."""
        return red_update(v, self.g.normal(v, blocks) if Hv is None else Hv, JR_v, self.gamma, self.tau)

    def detached(self) -> "REDMap":
        """The same map with γ and τ as constants (no gradient flows to a learned τ)."""
        constant = lambda t: t.detach() if torch.is_tensor(t) else t  # noqa: E731
        return replace(self, gamma=constant(self.gamma), tau=constant(self.tau))


def advice(safe: float, gamma: float, what: str) -> str:
    """A step to try after a divergence at ``gamma``: the default bound ``safe`` if γ exceeded
    it, else half of γ (the bound assumes a firmly nonexpansive denoiser; this one is not)."""
    if gamma > safe * (1 + 1e-9):
        return f"try γ ≤ {safe:.4g} = {what}"
    return (f"γ was within {what} = {safe:.4g}, which assumes a firmly nonexpansive denoiser; this one "
            f"is not: try γ = {gamma / 2:.4g}, a smaller τ or a larger σ")


def red(A, y: torch.Tensor, D, *, sigma: float, tau: float, gamma: float | None = None, batch_ratio: float = 1.0,
        sampler="uniform", snapshot_every: int | None = None, accelerate: bool = False, lipschitz_R: float = 1.0,
        x0: torch.Tensor | None = None, max_iter: int = 100, tol: float = 0.0,
        generator: torch.Generator | None = None):
    """Stream the RED iterates x_{k+1} = T(s_k) for ``y = A x + e``: one ``State`` per iteration
    (``state.blocks`` = the blocks S of that iteration when online).

    - ``D(x, sigma)``: any denoiser ``[N, C, H, W] -> [N, C, H, W]``; σ its strength.
    - ``tau``: the prior weight τ ≥ 0; ``gamma``: the step, default
      ``step_size(A, tau, lipschitz_R, b)`` = 1/(L + τ·L_R) with L = L_g, or the minibatch
      constant L_b when b < B (``algorithms.step``).
    - ``batch_ratio`` b/B in (0, 1]: 1 uses the full gradient; below 1, online RED with blocks
      drawn each iteration by ``sampler`` ('uniform', 'stratified', 'cyclic' or a callable)
      from ``generator``, and the B/b-scaled gradient of ``LeastSquares.grad``.
    - ``snapshot_every`` m (online only): the variance-reduced gradient instead (``step.VarianceReduced``:
      a full gradient every m iterations, minibatch corrections in between), whose iterates converge to
      the full-batch fixed point; ``state.blocks`` is then None on the snapshot iterations.
    - ``accelerate``: Nesterov/FISTA momentum with adaptive restart (the test-time solver of the
      ODER reference code uses Nesterov); otherwise s_k = x_k.
    - ``x0``: start image, default zeros. Stops at ``max_iter`` or when the residual < ``tol``.
    """
    g, x0 = setup(A, y, x0)
    sigma = checks.number("sigma", sigma, minimum=0)
    tau = checks.number("tau", tau, minimum=0)
    checks.function("D", D, "D(x, sigma) -> denoised x")
    accelerate = checks.flag("accelerate", accelerate)
    sampler = online_sampler(sampler, A.num_blocks, batch_ratio)
    safe = step_size(A, tau, lipschitz_R, batch_size_of(sampler, A)).value
    gamma = safe if gamma is None else checks.number("gamma", gamma, positive=True)
    T, draw = REDMap(g, lambda x: denoiser_residual(D, x, sigma), gamma, tau), block_draws(sampler, generator)
    snapshot_every = None if snapshot_every is None or sampler is None else checks.integer(
        "snapshot_every", snapshot_every, 1)
    reduced = snapshot_every and VarianceReduced(g.grad, g, draw, snapshot_every, sampler.batch_size)

    def step(s):
        if reduced:
            return T.step(s, reduced(s)), {"blocks": reduced.blocks}
        blocks = draw()
        return T(s, blocks), {"blocks": blocks}

    bound = "1/(L + τ·L_R)" + ("" if sampler is None else " with the minibatch constant L_b")
    return iterate(fixed_point_updates(step, x0, accelerate), x0, max_iter=max_iter, tol=tol,
                   setting=f"γ = {gamma:.4g}, τ = {tau:.4g}", advice=lambda: advice(safe, gamma, bound))
