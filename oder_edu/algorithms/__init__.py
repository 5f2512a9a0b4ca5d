"""Classical, PnP and RED solvers, each a generator of per-iteration ``State``s.

    for state in red(A, y, D, sigma=0.05, tau=0.5, batch_ratio=0.25, max_iter=100):
        state.iteration, state.x, state.residual, state.seconds

The caller decides when to stop and what to show; nothing here prints or plots. Every
stream ends at ``max_iter``, when the residual drops below ``tol``, or — with a warning and a
final ``diverged=True`` state naming the safe step size — when the iterates blow up.
"""

from .classical import conjugate_gradient, fista_tv, gradient_descent, tikhonov
from .pnp import data_prox, pnp_admm, pnp_pgd
from .red import denoise, denoiser_residual, red, red_step
from .state import State
from .step import StepSize, step_size

__all__ = [
    "State", "StepSize", "step_size",
    "gradient_descent", "tikhonov", "fista_tv", "conjugate_gradient",
    "pnp_pgd", "pnp_admm", "data_prox",
    "red", "red_step", "denoise", "denoiser_residual",
]
