"""A small noise-level-conditional DnCNN with a certified Lipschitz constant.

DnCNN (K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian denoiser: residual
learning of deep CNN for image denoising", IEEE TIP 2017) predicts the noise, i.e. the RED
residual, with a stack of 3x3 convolutions and ReLUs:

    R(x, σ) = N([x; σ 1]) = conv_L(relu(... relu(conv_1([x; σ 1])) ...)),   D(x, σ) = x − R(x, σ).

Following FFDNet (K. Zhang, W. Zuo, L. Zhang, IEEE TIP 2018) the noise level σ enters as an
extra constant input channel, so one network denoises a continuous range of strengths.

With ``lipschitz=ν`` every convolution's operator norm is capped at 1 (the norm of the
convolution on images, ``operator_norm_bound``; PyTorch's ``spectral_norm`` normalizes the
reshaped kernel instead, which bounds a 3x3 layer only by 3) and the output is scaled by ν, so
R is ν-Lipschitz in x -- certified, for every σ and image size (the "RealSN" idea of Ryu, Liu,
Wang, Chen, Wang, Yin, ICML 2019, with the exact operator norm). The shipped denoisers use ν = 1.

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


class _OperatorNormCap(nn.Module):
    """A weight parametrization: W / max(1, ||conv_W||), on the first ``inputs`` input channels
    (the image; σ's constant channel does not depend on x and stays free).

    The bound costs a few ms of SVDs per layer; without autograd the result is reused until the
    weight changes (a solver applies the network hundreds of times with the same weights)."""

    def __init__(self, inputs: int | None = None):
        super().__init__()
        self.inputs = inputs
        self._cache = None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        key = (weight._version, weight.data_ptr(), weight.device, weight.dtype)
        if not torch.is_grad_enabled() and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        k = weight.shape[1] if self.inputs is None else self.inputs
        image = weight[:, :k]
        capped = image / operator_norm_bound(image).clamp(min=1.0)
        capped = capped if k == weight.shape[1] else torch.cat([capped, weight[:, k:]], dim=1)
        if not torch.is_grad_enabled():
            self._cache = (key, capped)
        return capped


class DnCNN(nn.Module):
    """Noise-level-conditional DnCNN: ``D(x, sigma) -> [N, C, H, W]`` for ``x`` ``[N, C, H, W]``.

    ``depth`` 3x3 convolutions of ``width`` channels with ReLUs in between; the input has
    ``channels + 1`` channels (the image and the constant map σ). ``sigma`` is a float or an
    ``[N]`` tensor, >= 0 and finite; the shipped weights were trained for σ in ``sigma_range``.
    ``lipschitz=ν`` caps the network (module docstring); ``lipschitz_bound()`` computes a
    certified bound on Lip_x(R) from the weights in use, capped or not.
    """

    def __init__(self, channels: int = 1, depth: int = 7, width: int = 32,
                 sigma_range: tuple[float, float] = (0.0, 0.2), lipschitz: float | None = None):
        super().__init__()
        self.channels = checks.integer("channels", channels, 1)
        self.depth = checks.integer("depth", depth, 2)
        self.width = checks.integer("width", width, 1)
        self.sigma_range = (checks.number("sigma_range[0]", sigma_range[0], minimum=0),
                            checks.number("sigma_range[1]", sigma_range[1], minimum=0))
        self.lipschitz = None if lipschitz is None else checks.number("lipschitz", lipschitz, positive=True)
        sizes = [self.channels + 1] + [self.width] * (self.depth - 1) + [self.channels]
        layers = []
        for i, (c_in, c_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)  # 3x3: operator_norm_bound relies on it
            if self.lipschitz is not None:
                nn.utils.parametrize.register_parametrization(
                    conv, "weight", _OperatorNormCap(self.channels if i == 0 else None))
            layers.append(conv)
            if i < self.depth - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def config(self) -> dict:
        """The constructor arguments, stored beside the weights so a checkpoint rebuilds its net."""
        return {"channels": self.channels, "depth": self.depth, "width": self.width,
                "sigma_range": list(self.sigma_range), "lipschitz": self.lipschitz}

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
        out = self.body(torch.cat([x, sigma[:, None, None, None].expand(n, 1, h, w)], dim=1))
        return out if self.lipschitz is None else self.lipschitz * out

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The denoised image D(x, σ) = x − R(x, σ): ``[N, C, H, W] -> [N, C, H, W]``."""
        return x - self.residual(x, sigma)

    @torch.no_grad()
    def lipschitz_bound(self, grid: int = 32) -> float:
        """A certified upper bound on the Lipschitz constant of x -> R(x, σ) for every σ and
        H, W: ReLU is 1-Lipschitz and σ's channel does not depend on x, so
        Lip(R) <= ν · prod_l ||conv_l|| (the first layer restricted to its image channels), each
        norm bounded by ``operator_norm_bound``."""
        grid = checks.integer("grid", grid, 4)
        bound = 1.0 if self.lipschitz is None else self.lipschitz
        for i, layer in enumerate(m for m in self.body if isinstance(m, nn.Conv2d)):
            weight = layer.weight.double()  # the (capped) weight in use
            if i == 0:
                weight = weight[:, : self.channels]
            bound *= operator_norm_bound(weight, grid).item()
        return bound

    def extra_repr(self) -> str:
        form = "unconstrained" if self.lipschitz is None else f"{self.lipschitz}-Lipschitz residual"
        return f"{form}, sigma_range={self.sigma_range}, parameters={sum(p.numel() for p in self.parameters())}"
