"""Measurement noise at a prescribed input SNR, as in ODER's experiments (50 dB on the sinogram)."""

from __future__ import annotations

import torch

from .. import checks


def add_noise_snr(y: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``y + e`` with white Gaussian ``e`` at input SNR ``20 log10(||y_n|| / ||e_n||) = snr_db``.

    Each measurement ``y[n]`` (dim 0; a 1-D ``y`` is one) gets its own noise, drawn from
    ``generator`` (on its device), rescaled so that its SNR is exactly ``snr_db`` (the exact-norm
    scaling of ``addwgn`` in the Kamilov group's reference codes); circular noise for complex ``y``.
    Returns a new tensor like ``y``; no gradient flows through the noise.
    """
    if not torch.is_tensor(y):
        raise TypeError(f"add_noise_snr expects a torch.Tensor, got {type(y).__name__}")
    if not (y.is_floating_point() or y.is_complex()):
        raise TypeError(f"add_noise_snr expects a floating-point or complex tensor, got dtype {y.dtype}")
    if y.ndim < 1 or y.numel() == 0:
        raise ValueError(f"add_noise_snr expects a non-empty tensor with at least one dimension, "
                         f"got shape {tuple(y.shape)}")
    snr_db = checks.number("snr_db", snr_db)
    checks.generator(generator)
    clean = checks.finite("y", y.detach())
    per = clean.reshape(clean.shape[0], -1) if clean.ndim > 1 else clean.reshape(1, -1)
    signal = torch.linalg.vector_norm(per, dim=1)
    if (signal == 0).any():
        raise ValueError("a measurement is all zeros: its SNR is undefined")
    device = generator.device if generator is not None else y.device
    noise = torch.randn(per.shape, generator=generator, dtype=y.dtype, device=device).to(y.device)
    scale = signal / torch.linalg.vector_norm(noise, dim=1) * 10.0 ** (-snr_db / 20.0)
    return y + (noise * scale[:, None]).reshape(y.shape)
