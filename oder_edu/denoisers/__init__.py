"""Denoisers ``D(x, sigma) -> [N, C, H, W]`` and their RED residuals ``R = x - D``: ``DnCNN``, a
noise-level-conditional CNN (shipped weights: ``load_denoiser("dncnn")``), and the classical
``gaussian_denoise`` and ``tv_denoise`` (the prox of lam TV), which need no training; ``properties`` measures
what RED's theory asks of a denoiser (Jacobian norm, symmetry, monotonicity, cocoercivity) at given images.
"""

from .classical import gaussian_denoise, gradient, gradient_adjoint, total_variation, tv_denoise, tv_objective
from .dncnn import DnCNN
from .pretrained import ClassicalDenoiser, from_config, load_denoiser
from .properties import cocoercivity, jacobian_asymmetry, local_lipschitz, symmetric_min_eigenvalue
from .unet import UNet

__all__ = ["DnCNN", "UNet", "ClassicalDenoiser", "from_config", "load_denoiser", "gaussian_denoise", "tv_denoise", "tv_objective",
           "total_variation", "gradient", "gradient_adjoint",
           "local_lipschitz", "jacobian_asymmetry", "symmetric_min_eigenvalue", "cocoercivity"]
