"""A small noise-level-conditional U-Net denoiser in the style of DRUNet.

DRUNet (K. Zhang, Y. Li, W. Zuo, L. Zhang, L. Van Gool, R. Timofte, "Plug-and-play image restoration
with deep denoiser prior", IEEE TPAMI 2022) is a U-Net whose levels are residual blocks without
normalization, joined by stride-2 convolutions down and transposed convolutions up, with additive skip
connections and the noise level σ as an extra input channel. This one is far smaller (three levels of
``widths`` = 32, 64, 128 channels, ``blocks`` = 2 residual blocks each, about 1 M parameters instead of
32 M) so that it trains on a CPU, and like ``DnCNN`` it predicts the RED residual:

    R(x, σ) = U([x; σ 1]),   D(x, σ) = x − R(x, σ).

Downsampling twice lets a 3x3 network see a large neighbourhood at a small cost per pixel: the reason
it denoises better than a DnCNN of the same training time (``oder-edu train denoiser --architecture
unet``; the comparison is in MANIFEST.json). Images of any size are padded (reflect) to a multiple of 4
and cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks
from .classical import as_strength, check_image


class ResidualBlock(nn.Sequential):
    """z -> z + conv(relu(conv(z))), ``[N, C, H, W] -> [N, C, H, W]``."""

    def __init__(self, width: int):
        super().__init__(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + super().forward(z)


def level(width: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])


class UNet(nn.Module):
    """Noise-level-conditional U-Net ``D(x, sigma)``, ``[N, C, H, W] -> [N, C, H, W]`` (module docstring);
    ``sigma`` a float or an ``[N]`` tensor >= 0; the shipped weights were trained for σ in ``sigma_range``."""

    def __init__(self, channels: int = 1, widths: tuple[int, ...] = (32, 64, 128), blocks: int = 2,
                 sigma_range: tuple[float, float] = (0.0, 0.2)):
        super().__init__()
        self.channels = checks.integer("channels", channels, 1)
        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or len(widths) < 2:
            raise TypeError(f"widths must be a sequence of at least two channel counts, got {widths!r}")
        self.widths = tuple(checks.integer(f"widths[{i}]", w, 1) for i, w in enumerate(widths))
        self.blocks = checks.integer("blocks", blocks, 1)
        low, high = (checks.number(f"sigma_range[{i}]", s, minimum=0) for i, s in enumerate(sigma_range))
        if low > high:
            raise ValueError(f"sigma_range must be a pair (low, high) with 0 <= low <= high, got {sigma_range}")
        self.sigma_range = (low, high)
        w = self.widths
        self.head = nn.Conv2d(self.channels + 1, w[0], 3, padding=1)
        self.down = nn.ModuleList(level(a, self.blocks).append(nn.Conv2d(a, b, 2, stride=2))
                                  for a, b in zip(w[:-1], w[1:]))
        self.bottom = level(w[-1], self.blocks)
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(w[:-1], w[1:]))
        self.decode = nn.ModuleList(level(a, self.blocks) for a in w[:-1])
        self.tail = nn.Conv2d(w[0], self.channels, 3, padding=1)

    def config(self) -> dict:
        """The constructor arguments, stored beside the weights so a checkpoint rebuilds its net."""
        return {"architecture": "unet", "channels": self.channels, "widths": list(self.widths),
                "blocks": self.blocks, "sigma_range": list(self.sigma_range)}

    def residual(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The RED residual R(x, σ) = x − D(x, σ), predicted directly: ``[N, C, H, W]``."""
        check_image(x, "UNet")
        if x.shape[1] != self.channels:
            raise ValueError(f"UNet expects images [N, {self.channels}, H, W], got {tuple(x.shape)}")
        weight = self.head.weight
        if x.device != weight.device or x.dtype != weight.dtype:
            raise ValueError(f"UNet weights are {weight.dtype} on {weight.device} but the image is {x.dtype} on "
                             f"{x.device}; move one of them (e.g. D.to(x.device, x.dtype))")
        h, w = x.shape[-2:]
        multiple = 2 ** (len(self.widths) - 1)
        pad = (0, -w % multiple, 0, -h % multiple)
        mode = "reflect" if min(h, w) > multiple else "replicate"
        z = F.pad(x, pad, mode=mode) if any(pad) else x
        sigma = as_strength(x, sigma)[:, None, None, None].expand(-1, 1, *z.shape[2:])
        z = self.head(torch.cat([z, sigma], dim=1))
        skips = []
        for down in self.down:
            skips.append(z := down[:-1](z))
            z = down[-1](z)
        z = self.bottom(z)
        for up, decode, skip in zip(reversed(self.up), reversed(self.decode), reversed(skips)):
            z = decode(up(z) + skip)
        return self.tail(z)[..., :h, :w]

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The denoised image D(x, σ) = x − R(x, σ): ``[N, C, H, W] -> [N, C, H, W]``."""
        return x - self.residual(x, sigma)

    def extra_repr(self) -> str:
        return f"sigma_range={self.sigma_range}, parameters={sum(p.numel() for p in self.parameters())}"
