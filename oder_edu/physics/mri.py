"""Multi-coil Cartesian MRI: y_c = M . F(S_c x) for receive coils c = 1..C (blocks = coils).

The SENSE model of Pruessmann, Weiger, Scheidegger, Boesiger, "SENSE: sensitivity encoding for
fast MRI", Magn. Reson. Med. 42(5), 1999: coil c sees the image weighted by its complex
sensitivity S_c, and k-space is sampled on a Cartesian grid with some phase-encode lines skipped
(mask M). ODER (Liu et al., NeurIPS 2022) treats each coil as one block.

Conventions: images ``x`` are real ``[N, 1, H, W]`` with centre pixel ``(H//2, W//2)``; k-space
is centred, ``F z = fftshift(fft2(ifftshift(z), norm="ortho"))`` (unitary, F^H = F^{-1});
readout runs along the rows (dim -2), phase-encode lines are columns, so ``mask`` ``[H, W]`` has
whole columns of 0 or 1; measurements are complex ``[N, b, H, W]`` (complex64 for float32
images), zero where unsampled. A is real-linear R^n -> C^m, and its exact adjoint for the real
inner product Re<., .>, ``A^T y = Re(sum_c conj(S_c) . F^H(M . y_c))``, is what gradients of
g(x) = 1/2 ||Ax - y||^2 over real images need.
"""

from __future__ import annotations

import math

import torch

from .. import checks
from .base import BlockOperator


def birdcage_maps(image_size: int, num_coils: int, radius: float = 1.5) -> torch.Tensor:
    """Simulated birdcage coil sensitivities, complex128 ``[num_coils, H, W]`` (H = W = image_size).

    Coil c is a small loop at ``q_c = radius * (cos t_c, sin t_c)``, ``t_c = 2 pi c / C``, in
    coordinates where the image fills [-1, 1]^2 (``radius`` > sqrt(2): outside the field of view);
    its magnitude falls off as 1/|p - q_c| (near field of a loop) and its phase turns with the
    direction of p - q_c from the coil's azimuth, so each coil is the previous one rotated:

        s_c(p) = exp(i (arg(p - q_c) - t_c)) / |p - q_c|,
        S_c(p) = s_c(p) / sqrt(sum_k |s_k(p)|^2),

    unit root-sum-of-squares on the whole grid, so with a full mask A^T A = I.
    """
    n = checks.integer("image_size", image_size, 2)
    num_coils = checks.integer("num_coils", num_coils, 1)
    checks.memory(f"{num_coils} coil maps of {n} x {n}", 64.0 * num_coils * n * n)
    radius = checks.number("radius", radius)
    if not radius > math.sqrt(2):
        raise ValueError(f"coil radius must exceed sqrt(2) (coils outside the image), got {radius}")
    t = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / (n / 2)  # pixel centres in (-1, 1)
    py, px = torch.meshgrid(t, t, indexing="ij")
    azimuth = 2 * math.pi * torch.arange(num_coils, dtype=torch.float64) / num_coils
    dx = px - radius * torch.cos(azimuth)[:, None, None]
    dy = py - radius * torch.sin(azimuth)[:, None, None]
    s = torch.polar(1.0 / torch.hypot(dx, dy), torch.atan2(dy, dx) - azimuth[:, None, None])
    return s / s.abs().square().sum(0).sqrt()


def cartesian_mask(image_size: int, acceleration: float, kind: str = "random", center_fraction: float = 0.08,
                   seed: int = 0) -> torch.Tensor:
    """A Cartesian undersampling mask, float64 ``[H, W]`` of 0/1 with whole columns sampled:
    ``round(W * center_fraction)`` (at least 1) columns around DC (index W//2), and in all
    ``round(W / acceleration)`` columns, the others among the outer ones uniformly at random
    (``kind="random"``, seeded) or evenly spaced (``"equispaced"``): the two fastMRI mask families
    (Zbontar et al., arXiv:1811.08839) with an exact line count. ``acceleration=1``: full mask."""
    n = checks.integer("image_size", image_size, 2)
    checks.memory(f"a {n} x {n} mask", 8.0 * n * n)
    acceleration = checks.number("acceleration", acceleration, minimum=1)
    center_fraction = checks.ratio("center_fraction", center_fraction)
    checks.choice("mask kind", kind, ("random", "equispaced"))
    seed = checks.integer("seed", seed)
    total = max(1, round(n / acceleration))
    num_center = max(1, round(n * center_fraction))
    if num_center > total:
        raise ValueError(f"center_fraction={center_fraction} asks for {num_center} centre lines but acceleration="
                         f"{acceleration} allows only {total} of {n}; lower center_fraction or acceleration")
    start = n // 2 - num_center // 2
    sampled = torch.zeros(n, dtype=torch.bool)
    sampled[start : start + num_center] = True
    outer = torch.nonzero(~sampled).flatten()
    extra = total - num_center
    if kind == "random":
        chosen = outer[torch.randperm(outer.numel(), generator=torch.Generator().manual_seed(seed))[:extra]]
    else:  # evenly spaced among the outer columns (the centre block is a gap)
        chosen = outer[((torch.arange(extra) + 0.5) * outer.numel() / max(extra, 1)).long()]
    sampled[chosen] = True
    return sampled.to(torch.float64).expand(n, n).clone()


class MultiCoilMRI(BlockOperator):
    """Undersampled multi-coil Cartesian MRI, ``A_c x = M . F(S_c x)``: real ``[N, 1, H, W]`` ->
    complex k-space ``[N, b, H, W]``, blocks = coils (module docstring).

    ``mask``: ``"random"``, ``"equispaced"`` (:func:`cartesian_mask`, with ``acceleration``,
    ``center_fraction``, ``seed``) or a 0/1 tensor ``[H, W]``; ``maps``: None (:func:`birdcage_maps`)
    or complex sensitivities ``[num_coils, H, W]``. The attribute ``acceleration`` is the achieved
    H W / (number of sampled entries).
    """

    complex_measurements = True

    def __init__(self, image_size: int = 128, num_coils: int = 8, acceleration: float = 4, mask="random",
                 center_fraction: float = 0.08, seed: int = 0, maps: torch.Tensor | None = None):
        n = checks.integer("image_size", image_size, 2)
        num_coils = checks.integer("num_coils", num_coils, 1)
        # maps and their encoding (complex128), and a call's coil images (complex64, three of them)
        checks.memory(f"MultiCoilMRI({n}, num_coils={num_coils})", (32.0 + 24.0) * num_coils * n * n)
        if maps is None:
            maps = birdcage_maps(n, num_coils)
        elif not torch.is_tensor(maps) or tuple(maps.shape) != (num_coils, n, n):
            got = tuple(maps.shape) if torch.is_tensor(maps) else type(maps).__name__
            raise ValueError(f"maps must be a tensor of shape [{num_coils}, {n}, {n}], got {got}")
        if isinstance(mask, str):
            mask = cartesian_mask(n, acceleration, mask, center_fraction, seed)
        elif not torch.is_tensor(mask) or tuple(mask.shape) != (n, n):
            got = tuple(mask.shape) if torch.is_tensor(mask) else repr(mask)
            raise ValueError(f"mask must be 'random', 'equispaced' or a [{n}, {n}] tensor, got {got}")
        elif not ((mask == 0) | (mask == 1)).all():
            raise ValueError("a mask tensor must contain only 0 and 1")
        elif not mask.any():
            raise ValueError("the mask samples no k-space entry (all zeros): nothing would be measured")
        if not torch.isfinite(torch.view_as_real(maps.to(torch.complex128))).all():
            raise ValueError("maps contain NaN or Inf")
        super().__init__(num_coils, (1, n, n), (n, n))
        self.maps, self.mask = maps.detach().to(torch.complex128), mask.detach().to(torch.float64)
        self.acceleration = n * n / self.mask.sum().item()  # achieved, not requested
        # Shift theorem (a = n // 2): fftshift(fft2(ifftshift(z))) = P_out . fft2(P_in . z) with
        # P_in[j] = exp(2 pi i a j / n) and P_out[k] = exp(2 pi i a (k - a) / n), folded into the maps and
        # the mask (four copies fewer per call); a*j is reduced mod n before scaling, to keep the angles accurate.
        j, a = torch.arange(n, dtype=torch.float64), n // 2
        ramp_in = torch.polar(torch.ones(n, dtype=torch.float64), 2 * math.pi * (a * j % n) / n)
        ramp_out = torch.polar(torch.ones(n, dtype=torch.float64), 2 * math.pi * (a * (j - a) % n) / n)
        self._encoding = self.maps * (ramp_in[:, None] * ramp_in[None, :])  # S_c . P_in, [C, H, W]
        self._sampling = self.mask * (ramp_out[:, None] * ramp_out[None, :])  # M . P_out, [H, W]
        first = self.maps.flatten()[0]
        self._single_constant_coil = bool(num_coils == 1 and (self.maps - first).abs().max() < 1e-12
                                          and abs(first.abs().item() - 1.0) < 1e-12)

    def _forward(self, x, blocks):
        # [N, 1, H, W] * [b, H, W] -> [N, b, H, W] coil images, then centred k-space
        return torch.fft.fft2(x * self._rows("_encoding", x, blocks), norm="ortho") * self._buffer("_sampling", x)

    def _adjoint(self, y, blocks):
        coil_images = torch.fft.ifft2(y * self._buffer("_sampling", y, conj=True), norm="ortho")  # F^H M^H y_c
        return (coil_images * self._rows("_encoding", y, blocks, conj=True)).sum(1, keepdim=True).real

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        """Exact for one coil with a constant unit-modulus sensitivity: for real x, AᵀA x = Re(Fᴴ M F x)
        = Fᴴ M_s F x with M_s(k) = (M(k) + M(−k))/2 (a real image's spectrum is conjugate-symmetric),
        so x = Re Fᴴ[F b / (M_s + shift)]. Conjugate gradient otherwise."""
        if not self._single_constant_coil:
            return super().solve_normal(b, shift, x_init, num_iter)
        M = self._buffer("mask", b)
        M_s = 0.5 * (M + M.flip(0, 1).roll((1 - M.shape[0] % 2, 1 - M.shape[1] % 2), (0, 1)))  # M(-k), centred grid
        d = (-2, -1)  # the centred unitary FFT of the module docstring
        Fb = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(b, dim=d), norm="ortho"), dim=d)
        return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(Fb / (M_s + shift), dim=d), norm="ortho"),
                                  dim=d).real
