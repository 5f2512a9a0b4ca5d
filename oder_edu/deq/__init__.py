"""Deep equilibrium models: fixed-point solvers, the DEQ layer, RED-DEQ and ODER, and the
library behind ``oder-edu train deq`` (build, save/load, one training step, evaluation)."""

from .layer import DEQ, unrolled
from .model import ModelConfig, build, load_model, save
from .red_deq import REDDEQ
from .solvers import NonContractiveError, SolverTrace, anderson, forward_iteration, nesterov
from .training import ContractionPenalty, evaluate, held_out, jacobian_norm, plain_solve, train_step, weakest_direction

__all__ = ["DEQ", "unrolled", "REDDEQ", "ModelConfig", "build", "save", "load_model", "anderson",
           "forward_iteration", "nesterov", "NonContractiveError", "SolverTrace", "train_step", "evaluate",
           "held_out", "jacobian_norm", "plain_solve", "weakest_direction", "ContractionPenalty"]
