"""Classical, PnP and RED solvers, each a generator of per-iteration ``State``s.

    for state in red(A, y, D, sigma=0.05, tau=0.5, batch_ratio=0.25, max_iter=100):
        state.iteration, state.x, state.residual, state.seconds

The caller decides when to stop and what to show; nothing here prints or plots. Every stream
ends at ``max_iter``, when the residual drops below ``tol``, or -- with a warning and a final
``diverged=True`` state whose message names a step to try -- when the iterates blow up
(``iterate``: the one residual, divergence rule and momentum, shared with ``deq``).
"""

from .classical import fista_tv, gradient_descent, tikhonov
from .iterate import NonContractiveError, SolverTrace, State
from .pnp import pnp_admm, pnp_pgd
from .red import REDMap, denoise, denoiser_residual, red, red_update
from .step import StepSize, step_size

__all__ = [
    "State", "SolverTrace", "NonContractiveError", "StepSize", "step_size",
    "gradient_descent", "tikhonov", "fista_tv", "pnp_pgd", "pnp_admm",
    "red", "red_update", "REDMap", "denoise", "denoiser_residual",
]
