"""Ready-to-use denoisers, all with the call ``D(x, sigma) -> [N, C, H, W]``.

    D = load_denoiser("dncnn")      # the shipped DnCNN, eval mode, weights checked by sha256
    D = load_denoiser("tv")         # the prox of lam TV with lam = TV_LAM_PER_SIGMA * sigma
    D = load_denoiser("gaussian")   # Gaussian smoothing, std = 2.5 sqrt(sigma) pixels
"""

from __future__ import annotations

import torch

from .. import checkpoints, checks
from ..device import as_device
from .classical import as_strength, check_image, gaussian_denoise, tv_denoise
from .dncnn import DnCNN

# How the strength sigma (noise std of images in [0, 1]) becomes TV's weight lam: on
# validation_phantoms the best lam is about sigma (0.85 to 1.1 sigma for sigma in
# [0.05, 0.2]; `oder-edu train denoiser` records the best lam at sigma = 0.1).
TV_LAM_PER_SIGMA = 1.0


class ClassicalDenoiser(torch.nn.Module):
    """A training-free denoiser behind the DnCNN interface ``D(x, sigma)`` and ``D.residual``.

    ``"tv"``: ``D(x, sigma) = tv_denoise(x, TV_LAM_PER_SIGMA * sigma)``;
    ``"gaussian"``: ``D(x, sigma) = gaussian_denoise(x, sigma)``.
    """

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
    """A denoiser ``D(x, sigma)`` by name, in eval mode on ``device`` (default ``default_device()``).

    ``"dncnn"``, ``"dncnn_contractive"`` (or any denoiser recorded in
    ``oder_edu/weights/MANIFEST.json``, or a path to a ``.pt`` file) load their weights through
    ``checkpoints.load_state``, which checks the sha256; ``"tv"`` and ``"gaussian"`` return a
    ``ClassicalDenoiser``.
    """
    device = as_device(device)
    if name in ("tv", "gaussian"):
        return ClassicalDenoiser(name).to(device).eval()
    state = checkpoints.load_state(name, kind="denoiser")
    model = DnCNN(**state["config"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
