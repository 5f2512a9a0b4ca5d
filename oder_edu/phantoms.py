"""Procedural images (sums of ellipses) for training and testing denoisers: nothing is downloaded.

All are ``[n, 1, H, W]`` float32 in [0, 1] on the CPU; random functions take an explicit
``torch.Generator``, and held-out data (``validation_phantoms``) use their own ``VALIDATION_SEED``.
Real images and the training mix are in ``oder_edu.images``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from . import checks

VALIDATION_SEED = 2022  # held-out data; training runs use other seeds (0 by default)

# The modified Shepp-Logan head phantom (P. Toft, "The Radon transform", PhD thesis, DTU 1996):
# rows are (intensity, a, b, x0, y0, angle in degrees), on [-1, 1]^2 with y pointing up.
MODIFIED_SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def _check(n: int, image_size: int, generator=None) -> None:
    checks.integer("n", n, 1)
    checks.integer("image_size", image_size, 8)
    checks.generator(generator)


def _uniform(shape, low, high, generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def render_ellipses(params: torch.Tensor, image_size: int, supersample: int = 2) -> torch.Tensor:
    """Rasterize sums of ellipses: ``params [n, K, 6] -> [n, 1, H, W]`` (float32, unclipped).

    Each row (rho, a, b, x0, y0, theta) adds rho on the ellipse (x'/a)^2 + (y'/b)^2 <= 1, with
    (x', y') the point rotated by -theta about (x0, y0) (L. A. Shepp and B. F. Logan, "The Fourier
    reconstruction of a head section", IEEE Trans. Nucl. Sci. 21(3), 1974); theta in radians,
    coordinates on [-1, 1]^2 with y up; edges anti-aliased on a ``supersample``-times finer grid.
    """
    if params.ndim != 3 or params.shape[-1] != 6:
        raise ValueError(f"params must be [n, K, 6], got {tuple(params.shape)}")
    m = image_size * supersample
    t = (torch.arange(m, dtype=torch.float64) + 0.5) / m * 2 - 1
    y, x = -t[:, None], t[None, :]  # row 0 is the top of the image (y = +1)
    image = torch.zeros(params.shape[0], m, m, dtype=torch.float64)
    for k in range(params.shape[1]):  # a loop over ellipses keeps memory at one image batch
        rho, a, b, x0, y0, theta = (params[:, k, j, None, None] for j in range(6))
        dx, dy = x - x0, y - y0
        c, s = torch.cos(theta), torch.sin(theta)
        inside = ((dx * c + dy * s) / a) ** 2 + ((-dx * s + dy * c) / b) ** 2 <= 1
        image += rho * inside
    return F.avg_pool2d(image[:, None], supersample).float()


def random_ellipses(n: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random CT-like phantoms ``[n, 1, H, W]`` in [0, 1]: a body ellipse of intensity in
    [0.5, 1] holding 4 to 12 random ellipses of additive intensity in [-0.4, 0.4], small ones
    frequent like the lesions of the Shepp-Logan phantom; the sum is clipped to [0, 1]."""
    _check(n, image_size, generator)
    k_max = 12
    u = functools.partial(_uniform, generator=generator)  # u(shape, low, high)
    body = torch.stack([u(n, 0.5, 1.0), u(n, 0.6, 0.95), u(n, 0.6, 0.95), u(n, -0.05, 0.05), u(n, -0.05, 0.05),
                        u(n, -math.pi, math.pi)], dim=-1)[:, None]
    # Inner ellipses: the radius of the centre is kept inside the body's smaller axis.
    r = torch.sqrt(u((n, k_max), 0, 1)) * 0.55
    phi = u((n, k_max), -math.pi, math.pi)
    axes = 0.02 + 0.35 * u((n, k_max, 2), 0, 1) ** 2
    inner = torch.stack([u((n, k_max), -0.4, 0.4), axes[..., 0], axes[..., 1], r * torch.cos(phi),
                         r * torch.sin(phi), u((n, k_max), -math.pi, math.pi)], dim=-1)
    # A random number of inner ellipses per image: unused ones get zero intensity.
    count = torch.randint(4, k_max + 1, (n, 1), generator=generator)
    inner[..., 0] *= torch.arange(k_max)[None, :] < count
    return render_ellipses(torch.cat([body, inner], dim=1), image_size).clamp(0, 1)


def smooth_fields(n: int, image_size: int, generator: torch.Generator, scale) -> torch.Tensor:
    """``n`` Gaussian random fields ``[n, 1, H, W]`` of zero mean and unit standard deviation: white noise
    smoothed by a Gaussian of ``scale`` pixels (a float, or one per image ``[n]``), through the FFT."""
    noise = torch.randn(n, 1, image_size, image_size, generator=generator, dtype=torch.float64)
    f = torch.fft.fftfreq(image_size, dtype=torch.float64)
    scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1, 1, 1, 1)
    gain = torch.exp(-2 * (math.pi * scale) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = torch.fft.ifft2(torch.fft.fft2(noise) * gain).real
    field = field - field.mean(dim=(2, 3), keepdim=True)
    return (field / field.std(dim=(2, 3), keepdim=True).clamp_min(1e-12)).float()


def textured_phantoms(n: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` phantoms ``[n, 1, H, W]`` in [0, 1] that are not piecewise constant: ``random_ellipses`` shaded
    by a slow field (±10-30 % over about a quarter of the image) and dimmed to 70-95 %, with a fine texture
    inside the body (correlation length 0.7-3 px, amplitude 0.02-0.1): tissue-like structure a denoiser
    must keep."""
    _check(n, image_size, generator)
    base = random_ellipses(n, image_size, generator)
    u = functools.partial(_uniform, generator=generator)  # u(shape, low, high)
    shading = smooth_fields(n, image_size, generator, image_size / 4) * u((n, 1, 1, 1), 0.1, 0.3).float()
    texture = smooth_fields(n, image_size, generator, u(n, 0.7, 3.0)) * u((n, 1, 1, 1), 0.02, 0.1).float()
    gain = u((n, 1, 1, 1), 0.7, 0.95).float()
    return (gain * base * (1 + shading) + texture * (base > 0)).clamp(0, 1)


def random_cells(n: int, image_size: int, generator: torch.Generator, count: int = 14) -> torch.Tensor:
    """``n`` sparse fields ``[n, 1, H, W]`` in [0, 1] of ``count`` cell-like ellipses (intensity
    in [0.4, 1], semi-axes in [0.06, 0.14], centres uniform in the disc of radius 0.75) on an
    empty background: IDT's thin samples. A phase-only IDT measurement loses the image mean (its
    transfer functions vanish at zero frequency); the empty background lets a prior pin it down."""
    _check(n, image_size, generator)
    u = functools.partial(_uniform, (n, count), generator=generator)  # u(low, high)
    radius, angle = u(0, 1).sqrt() * 0.75, u(-math.pi, math.pi)
    params = torch.stack([u(0.4, 1.0), u(0.06, 0.14), u(0.06, 0.14), radius * angle.cos(), radius * angle.sin(),
                          u(-math.pi, math.pi)], dim=-1)  # rows (intensity, a, b, x0, y0, theta)
    return render_ellipses(params, image_size).clamp(0, 1)


def shepp_logan(image_size: int) -> torch.Tensor:
    """scikit-image's Shepp-Logan phantom resized (anti-aliased) to ``[1, 1, H, W]``, in [0, 1]."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    _check(1, image_size)
    image = resize(shepp_logan_phantom(), (image_size, image_size), anti_aliasing=True)
    return torch.from_numpy(image).float().clamp(0, 1)[None, None]


def shepp_logan_variations(n: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` modified Shepp-Logan phantoms ``[n, 1, H, W]`` in [0, 1], perturbed: inner ellipses'
    intensities by up to +-60 %, axes +-25 %, centres +-0.05, angles +-20 degrees; skull and
    brain scaled together; the whole rotated by a random angle and divided by its max."""
    _check(n, image_size, generator)
    base = torch.tensor(MODIFIED_SHEPP_LOGAN, dtype=torch.float64).expand(n, -1, -1).clone()
    k = base.shape[1]
    base[:, 2:, 0] *= _uniform((n, k - 2), 0.4, 1.6, generator)  # skull and brain keep their intensities
    base[:, :2, 1:3] *= _uniform((n, 1, 2), 0.8, 1.05, generator)  # and one scale, so the skull keeps its thickness
    base[:, 2:, 1:3] *= _uniform((n, k - 2, 2), 0.75, 1.25, generator)
    base[:, 2:, 3:5] += _uniform((n, k - 2, 2), -0.05, 0.05, generator)
    base[:, 2:, 5] += _uniform((n, k - 2), -20, 20, generator)
    base[:, :, 5] = torch.deg2rad(base[:, :, 5])
    # Rotate the whole phantom: centres rotate about the origin, angles shift.
    alpha = _uniform((n, 1), -math.pi, math.pi, generator)
    x0, y0 = base[:, :, 3].clone(), base[:, :, 4].clone()
    base[:, :, 3] = x0 * torch.cos(alpha) - y0 * torch.sin(alpha)
    base[:, :, 4] = x0 * torch.sin(alpha) + y0 * torch.cos(alpha)
    base[:, :, 5] += alpha
    images = render_ellipses(base, image_size).clamp(min=0)
    return images / images.amax(dim=(1, 2, 3), keepdim=True)


def validation_phantoms(n: int, image_size: int, seed: int = VALIDATION_SEED, cells: bool = False) -> torch.Tensor:
    """Held-out phantoms ``[n, 1, H, W]`` from a generator seeded with ``seed`` (by default
    ``VALIDATION_SEED``, never used for training): ``n - n // 4`` random ellipses, then
    Shepp-Logan variations; with ``cells``, ``n`` random cell fields (the samples of IDT)."""
    _check(n, image_size)
    generator = torch.Generator().manual_seed(seed)
    if cells:
        return random_cells(n, image_size, generator)
    k = n // 4
    parts = [random_ellipses(n - k, image_size, generator)]
    if k:
        parts.append(shepp_logan_variations(k, image_size, generator))
    return torch.cat(parts)
