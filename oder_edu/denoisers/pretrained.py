"""Ready-to-use denoisers ``D(x, sigma) -> [N, C, H, W]``: ``load_denoiser("unet")`` and ``"dncnn"``, the
shipped networks with their sha256 checked; ``"tv"``, the prox of lam TV with lam = TV_LAM_PER_SIGMA * sigma;
``"gaussian"``, Gaussian smoothing with std = 2.5 sqrt(sigma) pixels."""

from __future__ import annotations

import torch

from .. import checkpoints, checks
from ..device import as_device
from .classical import as_strength, check_image, gaussian_denoise, tv_denoise
from .dncnn import DnCNN
from .unet import UNet

ARCHITECTURES = {"dncnn": DnCNN, "unet": UNet}


def from_config(config: dict) -> torch.nn.Module:
    """A fresh network of the architecture a weight file's ``config`` names (``"architecture"``, default
    ``"dncnn"``: files written before the U-Net existed), built with the rest of it."""
    config = dict(config)
    architecture = checks.choice("architecture", config.pop("architecture", "dncnn"), tuple(ARCHITECTURES))
    return ARCHITECTURES[architecture](**config)

# TV's weight lam per unit of sigma (noise std of images in [0, 1]): on validation_phantoms the best
# lam is 0.85 to 1.1 sigma for sigma in [0.05, 0.2] (`oder-edu train denoiser` records it at 0.1).
TV_LAM_PER_SIGMA = 1.0


class ClassicalDenoiser(torch.nn.Module):
    """A training-free denoiser behind the DnCNN interface ``D(x, sigma)`` and ``D.residual``:
    ``kind="tv"``, ``tv_denoise(x, TV_LAM_PER_SIGMA * sigma)``; ``"gaussian"``, ``gaussian_denoise(x, sigma)``."""

    def __init__(self, kind: str, num_iter: int = 100):
        super().__init__()
        if kind not in ("tv", "gaussian"):
            raise ValueError(f"kind must be 'tv' or 'gaussian', got {kind!r}")
        self.kind, self.num_iter = kind, checks.integer("num_iter", num_iter, 0)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if self.kind == "gaussian":
            return gaussian_denoise(x, sigma)
        check_image(x, "TV denoiser")
        return tv_denoise(x, TV_LAM_PER_SIGMA * as_strength(x, sigma), self.num_iter)

    def residual(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """R(x, sigma) = x - D(x, sigma)."""
        return x - self(x, sigma)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def load_denoiser(name: str = "dncnn", device=None) -> torch.nn.Module:
    """A denoiser ``D(x, sigma)`` in eval mode on ``device`` (default ``default_device()``): ``"tv"``
    or ``"gaussian"`` (a ``ClassicalDenoiser``), or weights loaded by ``checkpoints.load_state``
    (which checks the sha256): a name in ``oder_edu/weights/MANIFEST.json`` (``"dncnn"``,
    ``"dncnn_small"``) or a path to a ``.pt`` file."""
    device = as_device(device)
    if name in ("tv", "gaussian"):
        return ClassicalDenoiser(name).to(device).eval()
    state = checkpoints.load_state(name, kind="denoiser")
    model = from_config(state["config"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
