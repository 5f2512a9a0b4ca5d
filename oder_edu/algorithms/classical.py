"""Classical reconstructions of y = A x + e: gradient descent on g, Tikhonov, FISTA-TV.

All minimize an explicit objective, so each state carries it (summed over the batch), and
g(x) = ½||Ax − y||² is the data term of ``physics.LeastSquares``.
"""

from __future__ import annotations

from .. import checks
from ..denoisers import total_variation, tv_denoise
from ..physics.base import conjugate_gradient
from .iterate import fixed_point_updates, iterate
from .step import setup, step_size


def _bound(A, momentum: bool) -> str:
    L = 1.0 / step_size(A).value
    if momentum:  # FISTA's guarantee needs γ <= 1/L_g; with momentum a larger step can blow up
        return f"try γ ≤ 1/L_g = {1 / L:.4g}, FISTA's bound"
    return f"gradient descent converges for γ < 2/L_g = {2 / L:.4g}; try γ = 1/L_g = {1 / L:.4g}"


def gradient_descent(A, y, *, gamma: float | None = None, x0=None, max_iter: int = 100, tol: float = 0.0):
    """Landweber iteration / gradient descent on g: x⁺ = x − γ Aᵀ(Ax − y).

    ``gamma`` defaults to 1/L_g = 1/||A||² (``step_size(A)``), which decreases g monotonically
    (any γ < 2/L_g converges). ``x0`` defaults to zeros. Yields ``State`` with
    ``objective`` = g(x_k). On an ill-posed A it fits the noise as k grows: the iteration
    count is the regularizer (semi-convergence).
    """
    g, x0 = setup(A, y, x0)
    gamma = step_size(A).value if gamma is None else checks.number("gamma", gamma, positive=True)
    return iterate(fixed_point_updates(lambda s: (s - gamma * g.grad(s), {}), x0), x0,
                   max_iter=max_iter, tol=tol, setting=f"γ = {gamma:.4g}", advice=lambda: _bound(A, False),
                   objective=lambda x: g.value(x).sum().item())


def tikhonov(A, y, *, lam: float, x0=None, max_iter: int = 100, tol: float = 0.0):
    """Tikhonov regularization, min_x ½||Ax − y||² + ½λ||x||² (Tikhonov 1963), by conjugate
    gradient on the normal equations (AᵀA + λI) x = Aᵀy, one CG iteration per state.

    CG rather than gradient steps because it converges in far fewer iterations (at most
    n in exact arithmetic) and needs no step size. ``lam`` ≥ 0; ``x0`` defaults to zeros.
    ``objective`` = ½||Ax_k − y||² + ½λ||x_k||².
    """
    g, x0 = setup(A, y, x0)
    lam = checks.number("lam", lam, minimum=0)
    normal = lambda x: A.adjoint(A.forward(x)) + lam * x  # noqa: E731

    def updates():
        previous = x0
        for x in conjugate_gradient(normal, A.adjoint(y), x0):
            yield x, previous, {}
            previous = x

    return iterate(updates(), x0, max_iter=max_iter, tol=tol, setting=f"λ = {lam:.4g}",
                   advice=lambda: "CG on a symmetric positive system cannot diverge: check that A.adjoint is A's adjoint",
                   objective=lambda x: (g.value(x) + 0.5 * lam * x.square().flatten(1).sum(1)).sum().item())


def fista_tv(A, y, *, lam: float, gamma: float | None = None, tv_iter: int = 20, accelerate: bool = True,
             x0=None, max_iter: int = 100, tol: float = 0.0):
    """FISTA for min_x ½||Ax − y||² + λ TV(x) (Beck & Teboulle, IEEE TIP 2009):

        x_{k+1} = prox_{γλTV}(s_k − γ ∇g(s_k)),  s_k the FISTA extrapolation of x_k, x_{k−1}

    (ISTA when ``accelerate=False``; momentum restarts when a step points back or reverses the last
    one, ``iterate.fixed_point_updates``). The prox of γλ·TV
    is ``denoisers.tv_denoise`` with ``tv_iter`` inner iterations. ``gamma`` defaults to 1/L_g;
    ``x0`` to zeros. ``objective`` = ½||Ax_k − y||² + λ TV(x_k) (isotropic).
    """
    g, x0 = setup(A, y, x0)
    lam = checks.number("lam", lam, minimum=0)
    gamma = step_size(A).value if gamma is None else checks.number("gamma", gamma, positive=True)
    tv_iter = checks.integer("tv_iter", tv_iter, 1)
    accelerate = checks.flag("accelerate", accelerate)

    def step(s):
        v = s - gamma * g.grad(s)
        return (tv_denoise(v, gamma * lam, tv_iter) if v.isfinite().all() else v), {}

    return iterate(fixed_point_updates(step, x0, accelerate), x0, max_iter=max_iter, tol=tol,
                   setting=f"γ = {gamma:.4g}", advice=lambda: _bound(A, accelerate),
                   objective=lambda x: (g.value(x) + lam * total_variation(x)).sum().item())
