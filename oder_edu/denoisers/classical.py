"""Denoisers that need no training, ``[N, C, H, W] -> [N, C, H, W]`` at a strength (a float or an ``[N]``
tensor): Gaussian smoothing, and TV denoising (the prox of ``lam * TV``, FISTA-TV's prior step)."""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .. import checks


def check_image(x, name: str = "denoiser") -> None:
    """Raise a clear TypeError/ValueError unless ``x`` is a finite real ``[N, C, H, W]`` batch."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} expects a torch.Tensor image [N, C, H, W], got {type(x).__name__}")
    if x.is_complex() or not x.is_floating_point():
        raise TypeError(f"{name} expects a real floating-point image, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"{name} expects images of shape [N, C, H, W] with N >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: the image contains NaN or Inf")


def as_strength(x: torch.Tensor, value, what: str = "sigma") -> torch.Tensor:
    """A strength >= 0 (a number, broadcast, or an ``[N]`` tensor) as an ``[N]`` tensor like ``x``."""
    n = x.shape[0]
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or torch.is_tensor(value)):
        raise TypeError(f"{what} must be a float or a tensor of shape [{n}], got {type(value).__name__}")
    value = torch.as_tensor(value)
    if value.is_complex():
        raise TypeError(f"{what} must be real, got dtype {value.dtype}")
    if value.ndim == 0:
        value = value.expand(n)
    elif value.shape != (n,):
        raise ValueError(f"{what} must be a float or a tensor of shape [{n}] (one per image), got shape {tuple(value.shape)}")
    value = value.to(device=x.device, dtype=x.dtype)
    if not torch.isfinite(value).all():
        raise ValueError(f"{what} must be finite, got {value.tolist()}")
    if (value < 0).any():
        raise ValueError(f"{what} must be >= 0, got {value.tolist()}")
    return value


GAUSSIAN_STD_SCALE = 2.5  # kernel std in pixels = 2.5 sqrt(sigma): 0.56 px at 0.05, 1.1 px at 0.2


def gaussian_denoise(x: torch.Tensor, sigma, std=None) -> torch.Tensor:
    """Gaussian smoothing (reflecting borders, separable kernel cut at 4 std) with std ``std`` pixels (a float
    or ``[N]``), else ``GAUSSIAN_STD_SCALE * sqrt(sigma)`` for noise level sigma on [0, 1] images (within 0.5 dB
    of the best std on ``validation_phantoms`` at sigma = 0.05, 0.1, 0.2: tests/test_denoisers.py); std 0: ``x``."""
    check_image(x, "gaussian_denoise")
    std = GAUSSIAN_STD_SCALE * as_strength(x, sigma).sqrt() if std is None else as_strength(x, std, "std")
    n, c, h, w = x.shape
    radius = max(1, math.ceil(4 * float(std.max())))
    if radius >= min(h, w):
        raise ValueError(f"gaussian_denoise: kernel radius {radius} px needs images larger than {h}x{w}")
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    # One 1-D kernel per image; std = 0 gives a unit impulse (identity).
    k = torch.exp(-0.5 * (t[None, :] / std.clamp(min=1e-12)[:, None]) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # [N, 2r+1]
    # Images become channels of one grouped convolution, so each gets its own kernel.
    z = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    weight = k.repeat_interleave(c, dim=0)[:, None]  # [N*C, 1, 2r+1]
    z = F.conv2d(z, weight[:, :, None, :], groups=n * c)  # along W
    z = F.conv2d(z, weight[:, :, :, None], groups=n * c)  # along H
    return z.reshape(n, c, h, w)


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences, 0 past the last row/column (Neumann): ``[N, C, H, W] -> [N, C, 2 (v, h), H, W]``."""
    dv = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    dh = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    return torch.stack([dv, dh], dim=2)


def gradient_adjoint(p: torch.Tensor) -> torch.Tensor:
    """The adjoint of ``gradient`` (minus the discrete divergence): ``[N, C, 2, H, W] -> [N, C, H, W]``."""
    pv, ph = p[:, :, 0], p[:, :, 1]
    pv = torch.cat([pv[..., :-1, :], torch.zeros_like(pv[..., :1, :])], dim=-2)
    ph = torch.cat([ph[..., :, :-1], torch.zeros_like(ph[..., :, :1])], dim=-1)
    return -(pv - F.pad(pv[..., :-1, :], (0, 0, 1, 0))) - (ph - F.pad(ph[..., :, :-1], (1, 0, 0, 0)))


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV per image ``[N]``: the sum over pixels and channels of sqrt(dv^2 + dh^2) (``gradient``)."""
    return gradient(x).square().sum(dim=2).sqrt().sum(dim=(1, 2, 3))


def tv_denoise(v: torch.Tensor, lam, num_iter: int = 100) -> torch.Tensor:
    """The prox of isotropic TV, ``argmin_x 1/2 ||x - v||^2 + lam TV(x)`` per image (scikit-image's
    ``denoise_tv_chambolle(v, weight=lam)`` on each 2-D channel), by ``num_iter`` steps of FISTA, error O(1/k^2),
    on Chambolle's dual (JMIV 2004): min over |p_ij| <= 1 of 1/2 ||v - lam grad^T p||^2, (8 lam^2)-smooth, with
    ``x = v - lam grad^T p`` (A. Beck and M. Teboulle, "Fast gradient-based algorithms for constrained total
    variation image denoising and deblurring problems", IEEE TIP 2009)."""
    check_image(v, "tv_denoise")
    num_iter = checks.integer("num_iter", num_iter, 0)
    lam = as_strength(v, lam, "lam")[:, None, None, None]
    active = lam > 0  # lam = 0: the prox is the identity
    step = 1.0 / (8.0 * torch.where(active, lam, torch.ones_like(lam)))
    p = torch.zeros(*v.shape[:2], 2, *v.shape[2:], device=v.device, dtype=v.dtype)
    q, t = p, 1.0
    for _ in range(num_iter):
        x = v - lam * gradient_adjoint(q)
        p_next = q + step[..., None] * gradient(x)  # a gradient step, then the projection onto |p_ij| <= 1
        p_next = p_next / p_next.square().sum(dim=2, keepdim=True).sqrt().clamp(min=1.0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        q = p_next + ((t - 1) / t_next) * (p_next - p)
        p, t = p_next, t_next
    return torch.where(active, v - lam * gradient_adjoint(p), v)


def tv_objective(x: torch.Tensor, v: torch.Tensor, lam) -> torch.Tensor:
    """``1/2 ||x - v||^2 + lam TV(x)`` per image ``[N]``: what ``tv_denoise`` minimizes."""
    lam = as_strength(v, lam, "lam")
    return 0.5 * (x - v).square().sum(dim=(1, 2, 3)) + lam * total_variation(x)
