"""Ready-to-use denoisers ``D(x, sigma) -> [N, C, H, W]``: ``load_denoiser("unet")`` and ``"dncnn"``, the
shipped networks with their sha256 checked; ``"tv"``, the prox of lam TV with lam = TV_LAM_PER_SIGMA * sigma;
``"gaussian"``, Gaussian smoothing with std = 2.5 sqrt(sigma) pixels; ``"bm3d"``, BM3D (Dabov, Foi, Katkovnik,
Egiazarian, IEEE TIP 2007) through the optional ``bm3d`` package (``pip install oder-edu[bm3d]``; free for
non-commercial use only, so never a dependency of the course)."""

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


CLASSICAL = ("tv", "gaussian", "bm3d")


class ClassicalDenoiser(torch.nn.Module):
    """A training-free denoiser behind the DnCNN interface ``D(x, sigma)`` and ``D.residual``:
    ``kind="tv"``, ``tv_denoise(x, TV_LAM_PER_SIGMA * sigma)``; ``"gaussian"``, ``gaussian_denoise(x, sigma)``;
    ``"bm3d"``, the ``bm3d`` package's BM3D at noise level σ, image by image on the CPU (float64)."""

    def __init__(self, kind: str, num_iter: int = 100):
        super().__init__()
        checks.choice("kind", kind, CLASSICAL)
        if kind == "bm3d":
            try:
                import bm3d  # noqa: F401
            except ImportError:
                raise ImportError("the BM3D denoiser needs the optional package bm3d (free for non-commercial use "
                                  "only): pip install 'oder-edu[bm3d]'") from None
        self.kind, self.num_iter = kind, checks.integer("num_iter", num_iter, 0)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if self.kind == "gaussian":
            return gaussian_denoise(x, sigma)
        check_image(x, f"{self.kind.upper()} denoiser")
        sigma = as_strength(x, sigma)
        if self.kind == "tv":
            return tv_denoise(x, TV_LAM_PER_SIGMA * sigma, self.num_iter)
        import bm3d

        out = [torch.from_numpy(bm3d.bm3d(channel.double().cpu().numpy(), float(s))) if s > 0 else channel.double().cpu()
               for image, s in zip(x, sigma.tolist()) for channel in image]
        return torch.stack(out).reshape(x.shape).to(x)

    def residual(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """R(x, sigma) = x - D(x, sigma)."""
        return x - self(x, sigma)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def load_denoiser(name: str = "dncnn", device=None) -> torch.nn.Module:
    """A denoiser ``D(x, sigma)`` in eval mode on ``device`` (default ``default_device()``): ``"tv"``,
    ``"gaussian"`` or ``"bm3d"`` (a ``ClassicalDenoiser``), or weights loaded by ``checkpoints.load_state``
    (which checks the sha256): a name in ``oder_edu/weights/MANIFEST.json`` (``"unet"``, ``"dncnn"``,
    ``"dncnn_small"``) or a path to a ``.pt`` file."""
    device = as_device(device)
    if name in CLASSICAL:
        return ClassicalDenoiser(name).to(device).eval()
    state = checkpoints.load_state(name, kind="denoiser")
    model = from_config(state["config"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
