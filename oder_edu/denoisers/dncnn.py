"""A small noise-level-conditional DnCNN, and a certified bound on its Lipschitz constant.

DnCNN (K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian denoiser: residual
learning of deep CNN for image denoising", IEEE TIP 2017) predicts the noise, i.e. the RED
residual, with a stack of 3x3 convolutions and ReLUs:

    R(x, σ) = N([x; σ 1]) = conv_L(relu(... relu(conv_1([x; σ 1])) ...)),   D(x, σ) = x − R(x, σ).

Following FFDNet (K. Zhang, W. Zuo, L. Zhang, IEEE TIP 2018) the noise level σ enters as an
extra constant input channel, so one network denoises a continuous range of strengths.

``lipschitz_bound()`` certifies a Lipschitz constant of R from the weights: the product of the
convolutions' operator norms on images (``operator_norm_bound``; PyTorch's ``spectral_norm``
normalizes the reshaped kernel instead, which bounds a 3x3 layer only up to a factor 3). Capping
every layer at norm 1 would certify L_R = 1 (the "RealSN" idea of Ryu, Liu, Wang, Chen, Wang,
Yin, ICML 2019); measured here, such a 5-layer network denoised worse than TV at every σ, so the
shipped denoisers are not capped, and the bound is loose: notebook 02 sets it beside a local
estimate.

No batch normalization (it would break the bound and couple the images of a batch); zero
padding, so the network works for any H, W.
"""

from __future__ import annotations

import math

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
    convolutional layers", ICLR 2019). We take the maximum over a ``grid`` x ``grid`` frequency
    grid (by FFT; real weights give K(-w) = conj K(w), so half the grid has every value) and
    divide by cos(π/grid)²: for a 3x3 kernel, Re(exp(i t) uᴴK(w)v) is a trigonometric polynomial
    of degree 1 in each frequency, a + b cos(w_1 − φ) along w_1, and a grid point within π/grid
    of its peak sees at least cos(π/grid) of its supremum; once per frequency axis.
    """
    spectrum = torch.fft.rfft2(weight, s=(grid, grid)).permute(2, 3, 0, 1)
    return torch.linalg.svdvals(spectrum).amax() / math.cos(math.pi / grid) ** 2


class DnCNN(nn.Module):
    """Noise-level-conditional DnCNN: ``D(x, sigma) -> [N, C, H, W]`` for ``x`` ``[N, C, H, W]``.

    ``depth`` 3x3 convolutions of ``width`` channels with ReLUs in between; the input has
    ``channels + 1`` channels (the image and the constant map σ). ``sigma`` is a float or an
    ``[N]`` tensor, >= 0 and finite; the shipped weights were trained for σ in ``sigma_range``.
    ``lipschitz_bound()`` computes a certified bound on Lip_x(R) from the weights.
    """

    def __init__(self, channels: int = 1, depth: int = 7, width: int = 32,
                 sigma_range: tuple[float, float] = (0.0, 0.2)):
        super().__init__()
        self.channels = checks.integer("channels", channels, 1)
        self.depth = checks.integer("depth", depth, 2)
        self.width = checks.integer("width", width, 1)
        if isinstance(sigma_range, (str, bytes)) or not hasattr(sigma_range, "__len__"):
            raise TypeError(f"sigma_range must be a pair (low, high) of noise levels, got {sigma_range!r}")
        if len(sigma_range) != 2:
            raise ValueError(f"sigma_range must be a pair (low, high), got {len(sigma_range)} values")
        self.sigma_range = (checks.number("sigma_range[0]", sigma_range[0], minimum=0),
                            checks.number("sigma_range[1]", sigma_range[1], minimum=0))
        if self.sigma_range[0] > self.sigma_range[1]:
            raise ValueError(f"sigma_range must be a pair (low, high) with 0 <= low <= high, got {self.sigma_range}")
        c, w = self.channels, self.width  # 3x3 weights in float32, before any is allocated
        checks.memory(f"DnCNN(channels={c}, depth={self.depth}, width={w})",
                      4.0 * 10 * ((c + 1) * w + (self.depth - 2) * w * w + w * c))
        sizes = [self.channels + 1] + [self.width] * (self.depth - 1) + [self.channels]
        layers = []
        for i, (c_in, c_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))  # 3x3: operator_norm_bound relies on it
            if i < self.depth - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def config(self) -> dict:
        """The constructor arguments, stored beside the weights so a checkpoint rebuilds its net."""
        return {"channels": self.channels, "depth": self.depth, "width": self.width,
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
        sigma = as_strength(x, sigma)
        n, _, h, w = x.shape
        return self.body(torch.cat([x, sigma[:, None, None, None].expand(n, 1, h, w)], dim=1))

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The denoised image D(x, σ) = x − R(x, σ): ``[N, C, H, W] -> [N, C, H, W]``."""
        return x - self.residual(x, sigma)

    @torch.no_grad()
    def lipschitz_bound(self, grid: int = 32) -> float:
        """A certified upper bound on the Lipschitz constant of x -> R(x, σ) for every σ and
        H, W: ReLU is 1-Lipschitz and σ's channel does not depend on x, so
        Lip(R) <= prod_l ||conv_l|| (the first layer restricted to its image channels), each
        norm bounded by ``operator_norm_bound``."""
        grid = checks.integer("grid", grid, 4)
        bound = 1.0
        for i, layer in enumerate(m for m in self.body if isinstance(m, nn.Conv2d)):
            weight = layer.weight.double()
            if i == 0:
                weight = weight[:, : self.channels]
            bound *= operator_norm_bound(weight, grid).item()
        return bound

    def extra_repr(self) -> str:
        return f"sigma_range={self.sigma_range}, parameters={sum(p.numel() for p in self.parameters())}"
