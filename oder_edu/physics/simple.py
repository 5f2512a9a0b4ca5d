"""One-block operators for notebook 01: identity (denoising) and circular blur."""

from __future__ import annotations

import torch

from .. import checks
from .base import BlockOperator


def _shape(image_size, channels) -> tuple[int, int, int]:
    n = checks.integer("image_size", image_size, 1)
    c = checks.integer("channels", channels, 1)
    checks.memory(f"an image of {c} x {n} x {n} pixels", 32.0 * c * n * n)
    return (c, n, n)


class Denoising(BlockOperator):
    """A = I with one block: y = [x] + e, measurement shape ``[N, 1, C, H, W]``."""

    def __init__(self, image_size: int = 128, channels: int = 1):
        self.image_shape = _shape(image_size, channels)
        self.block_shape = self.image_shape
        self.num_blocks = 1

    def _forward(self, x, blocks):
        return x.unsqueeze(1)

    def _adjoint(self, y, blocks):
        return y[:, 0]

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        return b / (1.0 + shift)  # AᵀA = I

    def norm(self, num_iter: int = 100, tol: float = 1e-6) -> float:
        return 1.0

    def block_norms(self) -> torch.Tensor:
        return torch.ones(1, dtype=torch.float64)


def gaussian_kernel(size: int = 9, std: float = 2.0) -> torch.Tensor:
    """A normalized ``[size, size]`` Gaussian blur kernel (float64)."""
    size = checks.integer("size", size, 1)
    std = checks.number("std", std, positive=True)
    checks.memory(f"a {size} x {size} kernel", 24.0 * size * size)
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k[:, None] * k[None, :]
    return k / k.sum()


class Blur(BlockOperator):
    """Circular convolution with ``kernel`` (``[k, k]``, centred), applied per channel by FFT.

    A x = F^{-1}(K . F x), A^T y = F^{-1}(conj(K) . F y): the adjoint is correlation, and
    AᵀA = F^{-1}|K|²F is diagonal in the Fourier basis, so ``solve_normal`` is exact.
    One block; measurement shape ``[N, 1, C, H, W]``.
    """

    def __init__(self, kernel: torch.Tensor, image_size: int = 128, channels: int = 1):
        self.image_shape = _shape(image_size, channels)
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
        checks.finite("kernel", kernel)
        self.block_shape = self.image_shape
        self.num_blocks = 1
        self.kernel = kernel
        padded = torch.zeros(n, n, dtype=torch.float64)
        kh, kw = kernel.shape
        padded[:kh, :kw] = kernel
        padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        self.transfer = torch.fft.rfft2(padded)  # K, complex [H, W//2+1]

    def _forward(self, x, blocks):
        K = self._buffer("transfer", x)
        return torch.fft.irfft2(torch.fft.rfft2(x) * K, s=x.shape[-2:]).unsqueeze(1)

    def _adjoint(self, y, blocks):
        K = self._buffer("transfer", y)
        y = y[:, 0]
        return torch.fft.irfft2(torch.fft.rfft2(y) * K.conj(), s=y.shape[-2:])

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        K = self._buffer("transfer", b)
        return torch.fft.irfft2(torch.fft.rfft2(b) / (K.abs().square() + shift), s=b.shape[-2:])

    def norm(self, num_iter: int = 100, tol: float = 1e-6) -> float:
        return self.transfer.abs().max().item()

    def block_norms(self) -> torch.Tensor:
        return torch.tensor([self.norm()], dtype=torch.float64)
