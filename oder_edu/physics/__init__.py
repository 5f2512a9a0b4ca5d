"""Blocked linear forward models with exact adjoints (and the check that they are), the data term and
block samplers."""

from .adjoint import adjoint_error
from .base import BlockOperator, LeastSquares, as_blocks
from .ct import ParallelBeamCT, fbp
from .idt import IntensityDiffractionTomography, ring_leds
from .matrix import MatrixOperator
from .mri import MultiCoilMRI, birdcage_maps, cartesian_mask
from .noise import add_noise_snr
from .samplers import (CustomSampler, CyclicSampler, StratifiedSampler, UniformSampler, batch_size_for, make_sampler,
                       online_sampler)
from .simple import Blur, Denoising, gaussian_kernel
