"""One-block operators for notebook 01: identity (denoising) and circular blur."""

from __future__ import annotations

import torch

from .. import checks
from .base import BlockOperator


class _OneBlock(BlockOperator):
    """One block whose measurement is an image: ``[N, C, H, W] -> [N, 1, C, H, W]``; ||A_1|| = ||A||."""

    def __init__(self, image_size: int = 128, channels: int = 1):
        n = checks.integer("image_size", image_size, 1)
        c = checks.integer("channels", channels, 1)
        checks.memory(f"an image of {c} x {n} x {n} pixels", 32.0 * c * n * n)
        super().__init__(1, (c, n, n), (c, n, n))

    def block_norms(self) -> torch.Tensor:
        return torch.tensor([self.norm()], dtype=torch.float64)


class Denoising(_OneBlock):
    """A = I: y = [x] + e."""

    def _forward(self, x, blocks):
        return x.unsqueeze(1).clone()  # a new tensor, as every _forward returns (``BlockOperator``)

    def _adjoint(self, y, blocks):
        return y[:, 0]

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        return b / (1.0 + shift)  # AᵀA = I

    def norm(self, num_iter: int = 100, tol: float = 1e-6) -> float:
        return 1.0


def gaussian_kernel(size: int = 9, std: float = 2.0) -> torch.Tensor:
    """A normalized ``[size, size]`` Gaussian blur kernel (float64)."""
    size = checks.integer("size", size, 1)
    std = checks.number("std", std, positive=True)
    checks.memory(f"a {size} x {size} kernel", 24.0 * size * size)
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k[:, None] * k[None, :]
    return k / k.sum()


class Blur(_OneBlock):
    """Circular convolution with ``kernel`` (``[k, k]``, centred), per channel by FFT:
    A x = F^{-1}(K . F x), A^T y = F^{-1}(conj(K) . F y) (correlation), and AᵀA = F^{-1}|K|²F is
    diagonal in the Fourier basis, so ``solve_normal`` is exact."""

    def __init__(self, kernel: torch.Tensor, image_size: int = 128, channels: int = 1):
        super().__init__(image_size, channels)
        n = self.image_shape[-1]
        given = type(kernel).__name__
        try:
            kernel = torch.as_tensor(kernel)
        except (TypeError, ValueError, RuntimeError):
            kernel = None
        if kernel is None or kernel.is_complex() or kernel.dtype == torch.bool:
            got = given if kernel is None else f"dtype {kernel.dtype}"
            raise TypeError(f"kernel must be a real 2-D tensor (or array) of weights, got {got}")
        kernel = kernel.to(torch.float64)
        if kernel.ndim != 2 or kernel.shape[0] > n or kernel.shape[1] > n:
            raise ValueError(f"kernel must be a 2-D tensor no larger than {n}x{n}, got {tuple(kernel.shape)}")
        self.kernel = checks.finite("kernel", kernel)
        kh, kw = kernel.shape
        padded = torch.zeros(n, n, dtype=torch.float64)
        padded[:kh, :kw] = kernel
        padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        self.transfer = torch.fft.rfft2(padded)  # K, complex [H, W//2+1]

    def _forward(self, x, blocks):
        return torch.fft.irfft2(torch.fft.rfft2(x) * self._buffer("transfer", x), s=x.shape[-2:]).unsqueeze(1)

    def _adjoint(self, y, blocks):
        return torch.fft.irfft2(torch.fft.rfft2(y[:, 0]) * self._buffer("transfer", y, conj=True), s=y.shape[-2:])

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        K = self._buffer("transfer", b)
        return torch.fft.irfft2(torch.fft.rfft2(b) / (K.abs().square() + shift), s=b.shape[-2:])

    def norm(self, num_iter: int = 100, tol: float = 1e-6) -> float:
        return self.transfer.abs().max().item()
