"""Image quality: PSNR (batched, in torch) and SSIM (scikit-image's implementation)."""

from __future__ import annotations

import numpy as np
import torch


def _check_pair(x: torch.Tensor, ref: torch.Tensor) -> None:
    if not (torch.is_tensor(x) and torch.is_tensor(ref)):
        raise TypeError(f"expected two tensors, got {type(x).__name__} and {type(ref).__name__}")
    if x.shape != ref.shape:
        raise ValueError(f"shape mismatch: image {tuple(x.shape)} vs reference {tuple(ref.shape)}")
    if x.ndim < 2:
        raise ValueError(f"expected images [..., H, W], got shape {tuple(x.shape)}")


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, PSNR = 10 log10(data_range^2 / MSE), one value per image:
    ``[N, ...] -> [N]`` (the MSE taken over all but the first dim), or 0-d for one ``[H, W]`` image."""
    _check_pair(x, ref)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    diff = (x.detach() - ref.detach()).double()
    dims = tuple(range(1, x.ndim)) if x.ndim > 2 else (0, 1)
    return 10 * torch.log10(data_range**2 / diff.square().mean(dim=dims))


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al., IEEE TIP 2004) by ``skimage.metrics.structural_similarity``,
    one value per image: ``[N, ...] -> [N]`` (channels averaged), or 0-d for one ``[H, W]`` image."""
    from skimage.metrics import structural_similarity

    _check_pair(x, ref)
    shape = (x.shape[0] if x.ndim > 2 else 1, -1, *x.shape[-2:])  # [N, channels, H, W]
    a = x.detach().double().cpu().numpy().reshape(shape)
    b = ref.detach().double().cpu().numpy().reshape(shape)
    values = torch.tensor([
        np.mean([structural_similarity(ai, bi, data_range=data_range) for ai, bi in zip(an, bn)])
        for an, bn in zip(a, b)
    ])
    return values if x.ndim > 2 else values[0]
