"""Deep equilibrium models: fixed-point solvers, the DEQ layer, RED-DEQ and ODER."""

from .layer import DEQ, unrolled
from .solvers import NonContractiveError, SolverTrace, anderson, forward_iteration, nesterov
from .red_deq import REDDEQ, REDMap, make_prior, spectral_normalize
