"""Blocked linear forward models with exact adjoints, the data term and block samplers."""

from .base import BlockOperator, LeastSquares, as_blocks
from .samplers import CyclicSampler, StratifiedSampler, UniformSampler, batch_size_for, make_sampler
from .simple import Blur, Denoising, gaussian_kernel
