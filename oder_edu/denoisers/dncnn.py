"""A small noise-level-conditional DnCNN.

DnCNN (K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian denoiser:
residual learning of deep CNN for image denoising", IEEE TIP 2017) predicts the noise,
i.e. the residual R(x) = x - D(x). Following FFDNet (K. Zhang, W. Zuo, L. Zhang, IEEE TIP
2018), the noise level sigma enters as an extra constant input channel, so one network
denoises a continuous range of strengths; sigma is the "denoiser strength" of RED/PnP.

    R(x, sigma) = conv_L(relu(... relu(conv_1([x; sigma 1])) ...)),   D(x, sigma) = x - R(x, sigma)

No batch normalization (it would break the Lipschitz bound below and couple the images of
a batch); zero padding, so the network works for any H, W.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .classical import as_strength, check_image


class DnCNN(nn.Module):
    """Noise-level-conditional DnCNN: ``D(x, sigma) -> [N, C, H, W]`` for ``x`` ``[N, C, H, W]``.

    ``depth`` 3x3 convolutions of ``width`` channels with ReLUs in between; the input has
    ``channels + 1`` channels (the image and the constant map sigma), the output ``channels``
    (the residual). ``sigma`` is a float or an ``[N]`` tensor, >= 0 and finite; the shipped
    weights were trained for sigma in ``sigma_range`` (beyond it the network extrapolates).

    ``spectral_norm=True`` wraps every convolution in
    ``torch.nn.utils.parametrizations.spectral_norm`` (T. Miyato et al., ICLR 2018), which
    divides each kernel, reshaped to an ``[out, in * 9]`` matrix M, by an estimate of
    ``||M||_2`` (one power-iteration step per training-mode call), so ``||M||_2 ~ 1``. That
    bounds each layer as an operator on images by about 3 (each pixel enters 9 patches), a
    loose bound; ``lipschitz_bound()`` computes a tight one (within 1 % per layer) from the
    weights actually in use, whether or not they are normalized.
    """

    def __init__(self, channels: int = 1, depth: int = 7, width: int = 32, spectral_norm: bool = False,
                 sigma_range: tuple[float, float] = (0.0, 0.2)):
        super().__init__()
        if channels < 1 or depth < 2 or width < 1:
            raise ValueError(f"need channels >= 1, depth >= 2, width >= 1; got {channels}, {depth}, {width}")
        self.channels, self.depth, self.width = int(channels), int(depth), int(width)
        self.spectral_norm = bool(spectral_norm)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        sizes = [channels + 1] + [width] * (depth - 1) + [channels]
        layers = []
        for i, (c_in, c_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)  # 3x3: lipschitz_bound relies on it
            if spectral_norm:
                conv = nn.utils.parametrizations.spectral_norm(conv)
            layers.append(conv)
            if i < depth - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def config(self) -> dict:
        """The constructor arguments, stored beside the weights so a checkpoint rebuilds its net."""
        return {"channels": self.channels, "depth": self.depth, "width": self.width,
                "spectral_norm": self.spectral_norm, "sigma_range": list(self.sigma_range)}

    def _check(self, x: torch.Tensor) -> None:
        check_image(x, "DnCNN")
        if x.shape[1] != self.channels:
            raise ValueError(f"DnCNN expects images [N, {self.channels}, H, W], got {tuple(x.shape)}")
        weight = next(self.parameters())  # not .weight: with spectral_norm that runs a power step
        if x.device != weight.device or x.dtype != weight.dtype:
            raise ValueError(
                f"DnCNN weights are {weight.dtype} on {weight.device} but the image is {x.dtype} on "
                f"{x.device}; move one of them (e.g. D.to(x.device, x.dtype))"
            )

    def residual(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The RED residual R(x, sigma) = x - D(x, sigma), predicted directly: ``[N, C, H, W]``."""
        self._check(x)
        sigma = as_strength(x, sigma)
        n, _, h, w = x.shape
        noise_map = sigma[:, None, None, None].expand(n, 1, h, w)
        return self.body(torch.cat([x, noise_map], dim=1))

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The denoised image D(x, sigma) = x - R(x, sigma): ``[N, C, H, W] -> [N, C, H, W]``."""
        return x - self.residual(x, sigma)

    @torch.no_grad()
    def lipschitz_bound(self, grid: int = 32) -> float:
        """An upper bound on the Lipschitz constant of x -> R(x, sigma), for every sigma and H, W.

        ReLU is 1-Lipschitz and sigma's input map does not depend on x, so
        Lip(R) <= prod_l ||conv_l|| (the first layer restricted to its image channels).
        A zero-padded convolution is a restriction of the convolution on l2(Z^2), whose norm
        is the supremum over frequencies w of the largest singular value of the [out, in]
        matrix K(w) = sum_d W_d exp(-i w.d) (H. Sedghi, V. Gupta, P. Long, "The singular
        values of convolutional layers", ICLR 2019). We take the maximum over a
        ``grid`` x ``grid`` frequency grid (by FFT) and divide by cos(pi / grid)^2: for a 3x3
        kernel, Re(exp(i t) u^H K(w) v) is a trigonometric polynomial of degree 1 in each
        frequency, a + b cos(w_1 - phi) along w_1, and a grid point within pi / grid of its
        peak sees at least cos(pi / grid) of its supremum; once per frequency axis.
        """
        if grid < 4:
            raise ValueError(f"grid must be >= 4, got {grid}")
        bound = 1.0
        for i, layer in enumerate(m for m in self.body if isinstance(m, nn.Conv2d)):
            weight = layer.weight.double()  # the (spectrally normalized) weight in use
            if i == 0:
                weight = weight[:, : self.channels]
            # Real weights: K(-w) = conj K(w), so half of the grid (rfft2) has every singular value.
            spectrum = torch.fft.rfft2(weight, s=(grid, grid)).permute(2, 3, 0, 1)
            # complex64 SVDs are ~7x faster than complex128 here; 1e-4 covers their rounding.
            largest = torch.linalg.svdvals(spectrum.to(torch.complex64)).amax().item() * (1 + 1e-4)
            bound *= largest / math.cos(math.pi / grid) ** 2
        return bound

    def extra_repr(self) -> str:
        return f"sigma_range={self.sigma_range}, parameters={sum(p.numel() for p in self.parameters())}"
