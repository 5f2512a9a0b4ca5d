"""Classical reconstructions of y = A x + e: gradient descent on g, Tikhonov, FISTA-TV.

All minimize an explicit objective, so each state carries it (summed over the batch), and
g(x) = ½||Ax − y||² is the data term of ``physics.LeastSquares``.
"""

from __future__ import annotations

import torch

from ..denoisers import total_variation, tv_denoise
from .red import denoise
from .state import iterate, momentum, setup
from .step import check_number, step_size


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image inner products <a_n, b_n>, shape ``[N, 1, 1, 1]`` (broadcasts over images)."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(apply, b: torch.Tensor, x0: torch.Tensor):
    """Iterates of conjugate gradient for ``apply(x) = b``, ``apply`` symmetric positive
    (semi)definite (Hestenes & Stiefel, J. Res. Natl. Bur. Stand. 1952).

    ``b``, ``x0``: ``[N, C, H, W]``; each image's system is solved on its own (per-image
    step lengths α and β). Yields x_1, x_2, ... forever; once an image's residual is exactly
    zero its iterate stops moving instead of dividing by zero.
    """
    x = x0
    r = b - apply(x)
    p = r
    rr = _dot(r, r)
    while True:
        Ap = apply(p)
        pAp = _dot(p, Ap)
        alpha = torch.where(pAp > 0, rr / pAp.clamp_min(torch.finfo(pAp.dtype).tiny), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_next = _dot(r, r)
        beta = torch.where(rr > 0, rr_next / rr.clamp_min(torch.finfo(rr.dtype).tiny), 0.0)
        p = r + beta * p
        rr = rr_next
        yield x


def gradient_descent(A, y: torch.Tensor, *, gamma: float | None = None, x0=None, max_iter: int = 100, tol: float = 0.0):
    """Landweber iteration / gradient descent on g: x⁺ = x − γ Aᵀ(Ax − y).

    ``gamma`` defaults to 1/L_g = 1/||A||² (``step_size(A)``), which decreases g monotonically
    (any γ < 2/L_g converges). ``x0`` defaults to zeros. Yields ``State`` with
    ``objective`` = g(x_k). On an ill-posed A it fits the noise as k grows: the iteration
    count is the regularizer (semi-convergence).
    """
    g, x0 = setup(A, y, x0)
    gamma = step_size(A).value if gamma is None else check_number("gamma", gamma, positive=True)
    return iterate(
        momentum(lambda s: (s - gamma * g.grad(s), None), x0, accelerate=False),
        x0,
        max_iter=max_iter,
        tol=tol,
        setting=f"γ = {gamma:.4g}",
        advice=lambda: f"try γ ≤ {step_size(A).value:.4g} = 1/L_g",
        objective=lambda x: g.value(x).sum().item(),
    )


def tikhonov(A, y: torch.Tensor, *, lam: float, x0=None, max_iter: int = 100, tol: float = 0.0):
    """Tikhonov regularization, min_x ½||Ax − y||² + ½λ||x||² (Tikhonov 1963), by conjugate
    gradient on the normal equations (AᵀA + λI) x = Aᵀy, one CG iteration per state.

    CG rather than gradient steps because it converges in far fewer iterations (at most
    n in exact arithmetic) and needs no step size. ``lam`` ≥ 0; ``x0`` defaults to zeros.
    ``objective`` = ½||Ax_k − y||² + ½λ||x_k||².
    """
    g, x0 = setup(A, y, x0)
    lam = check_number("lam", lam)
    normal = lambda x: A.adjoint(A.forward(x)) + lam * x  # noqa: E731
    iterates = ((x, {}) for x in conjugate_gradient(normal, A.adjoint(y), x0))
    return iterate(
        iterates,
        x0,
        max_iter=max_iter,
        tol=tol,
        setting=f"λ = {lam:.4g}",
        advice=lambda: "CG on a symmetric positive system cannot diverge: check that A.adjoint is A's adjoint",
        objective=lambda x: (g.value(x) + 0.5 * lam * x.square().flatten(1).sum(1)).sum().item(),
    )


def fista_tv(
    A,
    y: torch.Tensor,
    *,
    lam: float,
    gamma: float | None = None,
    tv_iter: int = 20,
    accelerate: bool = True,
    x0=None,
    max_iter: int = 100,
    tol: float = 0.0,
):
    """FISTA for min_x ½||Ax − y||² + λ TV(x) (Beck & Teboulle, IEEE TIP 2009):

        x_{k+1} = prox_{γλTV}(s_k − γ ∇g(s_k)),  s_k the FISTA extrapolation of x_k, x_{k−1}

    (ISTA when ``accelerate=False``). The prox of γλ·TV is ``denoisers.tv_denoise`` with
    ``tv_iter`` inner iterations. ``gamma`` defaults to 1/L_g; ``x0`` to zeros.
    ``objective`` = ½||Ax_k − y||² + λ TV(x_k) (isotropic, ``denoisers.total_variation``).
    """
    g, x0 = setup(A, y, x0)
    lam = check_number("lam", lam)
    gamma = step_size(A).value if gamma is None else check_number("gamma", gamma, positive=True)
    if isinstance(tv_iter, bool) or not isinstance(tv_iter, int) or tv_iter < 1:
        raise ValueError(f"tv_iter must be an integer >= 1, got {tv_iter!r}")
    prox = lambda v, strength: tv_denoise(v, strength, tv_iter)  # noqa: E731
    step = lambda s: (denoise(prox, s - gamma * g.grad(s), gamma * lam), None)  # noqa: E731
    return iterate(
        momentum(step, x0, accelerate),
        x0,
        max_iter=max_iter,
        tol=tol,
        setting=f"γ = {gamma:.4g}",
        advice=lambda: f"try γ ≤ {step_size(A).value:.4g} = 1/L_g",
        objective=lambda x: (g.value(x) + lam * total_variation(x)).sum().item(),
    )
