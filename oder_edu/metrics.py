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
    """Peak signal-to-noise ratio in dB, one value per image.

    PSNR = 10 log10(data_range^2 / MSE), the MSE taken over all but the first dim
    (``[N, C, H, W] -> [N]``; a single ``[H, W]`` image gives a 0-d tensor).
    """
    _check_pair(x, ref)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    diff = (x.detach() - ref.detach()).double()
    dims = tuple(range(1, x.ndim)) if x.ndim > 2 else (0, 1)
    mse = diff.square().mean(dim=dims)
    return 10 * torch.log10(data_range**2 / mse)


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al., IEEE TIP 2004) via
    ``skimage.metrics.structural_similarity``, one value per image ``[N]`` (channels
    averaged); a single ``[H, W]`` image gives a 0-d tensor."""
    from skimage.metrics import structural_similarity

    _check_pair(x, ref)
    a = x.detach().double().cpu().numpy()
    b = ref.detach().double().cpu().numpy()
    if a.ndim == 2:
        return torch.tensor(structural_similarity(a, b, data_range=data_range))
    a = a.reshape(a.shape[0], -1, *a.shape[-2:])
    b = b.reshape(b.shape[0], -1, *b.shape[-2:])
    values = [
        np.mean([structural_similarity(ai, bi, data_range=data_range) for ai, bi in zip(an, bn)])
        for an, bn in zip(a, b)
    ]
    return torch.tensor(values)
