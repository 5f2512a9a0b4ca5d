"""A small noise-level-conditional DnCNN, and a certified bound on its Lipschitz constant.

DnCNN (K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian denoiser: residual
learning of deep CNN for image denoising", IEEE TIP 2017) predicts the noise, i.e. the RED
residual; as in FFDNet (K. Zhang, W. Zuo, L. Zhang, IEEE TIP 2018) the noise level σ is an extra
constant input channel, so one network covers a range of σ:

    R(x, σ) = conv_L(relu(... relu(conv_1([x; σ 1])) ...)),   D(x, σ) = x − R(x, σ).

No batch normalization (it would break the Lipschitz bound and couple the images of a batch);
zero padding, so the network works for any H, W.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import nn

from .. import checks
from .classical import as_strength, check_image


def operator_norm_bound(weight: torch.Tensor, grid: int = 16) -> torch.Tensor:
    """An upper bound on the operator norm of a zero-padded 3x3 convolution with ``weight``
    ``[out, in, 3, 3]`` on images of any size (differentiable in ``weight``).

    A zero-padded convolution is a restriction of the convolution on l2(Z^2), whose norm is the
    supremum over frequencies w of the largest singular value of the [out, in] matrix
    K(w) = sum_d W_d exp(-i w.d) (H. Sedghi, V. Gupta, P. Long, "The singular values of
    convolutional layers", ICLR 2019): here its maximum over a ``grid`` x ``grid`` frequency grid
    (by FFT; K(-w) = conj K(w) for real weights, so half the grid has every value) divided by
    cos(π/grid)², since along each frequency axis Re(exp(i t) uᴴK(w)v) = a + b cos(w_1 − φ) for a
    3x3 kernel, and a grid point within π/grid of its peak sees at least cos(π/grid) of it.
    """
    spectrum = torch.fft.rfft2(weight, s=(grid, grid)).permute(2, 3, 0, 1)
    return torch.linalg.svdvals(spectrum).amax() / math.cos(math.pi / grid) ** 2


class DnCNN(nn.Module):
    """Noise-level-conditional DnCNN ``D(x, sigma)``, ``[N, C, H, W] -> [N, C, H, W]``: ``depth`` 3x3
    convolutions of ``width`` channels with ReLUs in between, on ``channels + 1`` input channels
    (the image and the constant map σ). ``sigma`` is a float or an ``[N]`` tensor, >= 0; the
    shipped weights were trained for σ in ``sigma_range``, and a σ far outside it (``far_outside``)
    gets a ``UserWarning`` once per network: the output is then an extrapolation."""

    def __init__(self, channels: int = 1, depth: int = 7, width: int = 32,
                 sigma_range: tuple[float, float] = (0.0, 0.2)):
        super().__init__()
        self.channels = c = checks.integer("channels", channels, 1)
        self.depth = checks.integer("depth", depth, 2)
        self.width = w = checks.integer("width", width, 1)
        if isinstance(sigma_range, (str, bytes)) or not hasattr(sigma_range, "__len__"):
            raise TypeError(f"sigma_range must be a pair (low, high) of noise levels, got {sigma_range!r}")
        if len(sigma_range) != 2:
            raise ValueError(f"sigma_range must be a pair (low, high), got {len(sigma_range)} values")
        self.sigma_range = tuple(checks.number(f"sigma_range[{i}]", s, minimum=0) for i, s in enumerate(sigma_range))
        if self.sigma_range[0] > self.sigma_range[1]:
            raise ValueError(f"sigma_range must be a pair (low, high) with 0 <= low <= high, got {self.sigma_range}")
        checks.memory(f"DnCNN(channels={c}, depth={self.depth}, width={w})",  # 3x3 float32 weights
                      4.0 * 10 * ((c + 1) * w + (self.depth - 2) * w * w + w * c))
        self._warned_sigma = False
        sizes = [c + 1] + [w] * (self.depth - 1) + [c]
        layers = []
        for c_in, c_out in zip(sizes[:-1], sizes[1:]):  # 3x3: operator_norm_bound relies on it
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers[:-1])

    def config(self) -> dict:
        """The constructor arguments, stored beside the weights so a checkpoint rebuilds its net."""
        return {"architecture": "dncnn", "channels": self.channels, "depth": self.depth, "width": self.width,
                "sigma_range": list(self.sigma_range)}

    def residual(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The RED residual R(x, σ) = N([x; σ 1]) = x − D(x, σ), predicted directly: ``[N, C, H, W]``."""
        check_image(x, "DnCNN")
        if x.shape[1] != self.channels:
            raise ValueError(f"DnCNN expects images [N, {self.channels}, H, W], got {tuple(x.shape)}")
        weight = next(self.parameters())
        if x.device != weight.device or x.dtype != weight.dtype:
            raise ValueError(f"DnCNN weights are {weight.dtype} on {weight.device} but the image is {x.dtype} on "
                             f"{x.device}; move one of them (e.g. D.to(x.device, x.dtype))")
        strength = as_strength(x, sigma)
        if not self._warned_sigma:
            self._warn_far_outside(sigma)
        sigma = strength[:, None, None, None].expand(-1, 1, *x.shape[2:])
        return self.body(torch.cat([x, sigma], dim=1))

    def far_outside(self, sigma: float) -> bool:
        """True when σ lies far outside the trained ``sigma_range`` (low, high): above 2·high or
        below low/2, where the network was never asked to denoise."""
        low, high = self.sigma_range
        return sigma > 2 * high or sigma < low / 2

    def _warn_far_outside(self, sigma) -> None:
        """The warning of ``far_outside``, once per network. Cheap: a number is compared as it is and
        a CPU tensor read; a tensor on another device is skipped (reading it would wait for it)."""
        if isinstance(sigma, numbers.Real):
            values = [float(sigma)]
        elif torch.is_tensor(sigma) and sigma.device.type == "cpu":
            values = [float(v) for v in sigma.detach().reshape(-1).tolist()]
        else:
            return
        far = [v for v in values if self.far_outside(v)]
        if far:
            self._warned_sigma = True
            warnings.warn(f"DnCNN was trained for sigma in [{self.sigma_range[0]:g}, {self.sigma_range[1]:g}] "
                          f"(sigma_range) but is called with sigma = {far[0]:g}, far outside it: its output is an "
                          f"extrapolation (warned once per network)", UserWarning, stacklevel=3)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The denoised image D(x, σ) = x − R(x, σ): ``[N, C, H, W] -> [N, C, H, W]``."""
        return x - self.residual(x, sigma)

    @torch.no_grad()
    def lipschitz_bound(self, grid: int = 32) -> float:
        """A certified upper bound on the Lipschitz constant of x -> R(x, σ) for every σ and H, W:
        ReLU is 1-Lipschitz and σ's channel does not depend on x, so Lip(R) <= prod_l ||conv_l||
        (the first layer restricted to its image channels), each norm bounded by
        ``operator_norm_bound`` (PyTorch's ``spectral_norm`` normalizes the reshaped kernel
        instead, which bounds a 3x3 layer only up to a factor 3).

        Capping every norm at 1 would certify Lip(R) <= 1 (the "RealSN" idea of Ryu, Liu, Wang,
        Chen, Wang, Yin, ICML 2019), but such a 5-layer network denoised worse than TV at every σ
        here, so the shipped denoisers are not capped and the bound is loose (notebook 02 sets it
        beside a local estimate)."""
        grid = checks.integer("grid", grid, 4)
        weights = [m.weight.double() for m in self.body if isinstance(m, nn.Conv2d)]
        weights[0] = weights[0][:, : self.channels]
        return math.prod(operator_norm_bound(weight, grid).item() for weight in weights)

    def extra_repr(self) -> str:
        return f"sigma_range={self.sigma_range}, parameters={sum(p.numel() for p in self.parameters())}"
