"""Multi-coil Cartesian MRI: y_c = M . F(S_c x) for receive coils c = 1..C (blocks = coils).

The parallel-imaging (SENSE) model of Pruessmann, Weiger, Scheidegger, Boesiger,
"SENSE: sensitivity encoding for fast MRI", Magn. Reson. Med. 42(5), 1999: coil c sees the
image weighted by its complex sensitivity S_c, and k-space is sampled on a Cartesian grid
with some phase-encode lines skipped (mask M). ODER (Liu et al., NeurIPS 2022) treats each
coil as one block of the measurement.

Conventions
-----------
- Images ``x`` are real ``[N, 1, H, W]``; the image centre is pixel ``(H//2, W//2)``.
- k-space is centred (DC at index ``(H//2, W//2)``):
  ``F z = fftshift(fft2(ifftshift(z), norm="ortho"))``, a unitary map, so F^H = F^{-1}.
- Readout runs along the rows (dim -2, fully sampled); phase-encode lines are columns
  (dim -1). ``mask`` is ``[H, W]`` with whole columns equal to 0 or 1.
- Measurements are complex ``[N, b, H, W]`` (complex64 for float32 images, complex128 for
  float64); unsampled entries are zero.
- Since x is real, A is a real-linear map R^n -> C^m and its adjoint for the real inner
  product Re<., .> is ``A^T y = Re(sum_c conj(S_c) . F^H(M . y_c))``. This is what
  gradients of g(x) = 1/2 ||Ax - y||^2 over real images need, so RED/DEQ stay exact.
"""

from __future__ import annotations

import math

import torch

from .. import checks
from .base import BlockOperator


def _check_size(image_size) -> int:
    return checks.integer("image_size", image_size, 2)


def birdcage_maps(image_size: int, num_coils: int, radius: float = 1.5) -> torch.Tensor:
    """Simulated birdcage coil sensitivities, complex128 ``[num_coils, H, W]`` (H = W = image_size).

    Coil c is a small loop at ``q_c = radius * (cos t_c, sin t_c)``, ``t_c = 2 pi c / C``, in
    coordinates where the image fills the square [-1, 1]^2. Its receive field is modelled by
    a magnitude falling off as 1/|p - q_c| (near-field of a loop) and a phase that turns
    with the direction of p - q_c, measured from the coil's own azimuth t_c, so every coil
    is the previous one rotated by 2 pi / C (the birdcage symmetry):

        s_c(p) = exp(i (arg(p - q_c) - t_c)) / |p - q_c|,
        S_c(p) = s_c(p) / sqrt(sum_k |s_k(p)|^2).

    The field of view is the whole image grid; the normalization gives unit
    root-sum-of-squares there, sum_c |S_c|^2 = 1, so with a full mask A^T A = I.
    ``radius`` must exceed sqrt(2) so that every coil sits outside the field of view.
    """
    n = _check_size(image_size)
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
    phase = torch.atan2(dy, dx) - azimuth[:, None, None]
    s = torch.polar(1.0 / torch.hypot(dx, dy), phase)
    return s / s.abs().square().sum(0).sqrt()


def cartesian_mask(
    image_size: int,
    acceleration: float,
    kind: str = "random",
    center_fraction: float = 0.08,
    seed: int = 0,
) -> torch.Tensor:
    """A Cartesian undersampling mask, float64 ``[H, W]`` of 0/1 with whole columns sampled.

    ``round(W * center_fraction)`` (at least 1) columns around DC (index W//2) are always
    sampled: the low frequencies carry most of the energy and calibrate parallel imaging.
    The total number of sampled columns is ``round(W / acceleration)``; the rest are chosen
    among the outer columns either uniformly at random (``kind="random"``, seeded by
    ``seed``) or evenly spaced (``kind="equispaced"``), the two mask families of fastMRI
    (Zbontar et al., arXiv:1811.08839), here with an exact line count so that the
    acceleration is met to within rounding. ``acceleration=1`` gives the full mask.
    """
    n = _check_size(image_size)
    checks.memory(f"a {n} x {n} mask", 8.0 * n * n)
    acceleration = checks.number("acceleration", acceleration, minimum=1)
    center_fraction = checks.ratio("center_fraction", center_fraction)
    checks.choice("mask kind", kind, ("random", "equispaced"))
    seed = checks.integer("seed", seed)
    total = max(1, round(n / acceleration))
    num_center = max(1, round(n * center_fraction))
    if num_center > total:
        raise ValueError(
            f"center_fraction={center_fraction} asks for {num_center} centre lines but acceleration="
            f"{acceleration} allows only {total} of {n}; lower center_fraction or acceleration"
        )
    start = n // 2 - num_center // 2
    sampled = torch.zeros(n, dtype=torch.bool)
    sampled[start : start + num_center] = True
    outer = torch.nonzero(~sampled).flatten()
    extra = total - num_center
    if kind == "random":
        gen = torch.Generator().manual_seed(int(seed))
        chosen = outer[torch.randperm(outer.numel(), generator=gen)[:extra]]
    else:
        # evenly spaced positions among the outer columns (the centre block is a gap)
        chosen = outer[((torch.arange(extra) + 0.5) * outer.numel() / max(extra, 1)).long()]
    sampled[chosen] = True
    return sampled.to(torch.float64).expand(n, n).clone()


class MultiCoilMRI(BlockOperator):
    """Undersampled multi-coil Cartesian MRI, ``A_c x = M . F(S_c x)``; blocks = coils.

    ``[N, 1, H, W]`` real -> ``[N, b, H, W]`` complex k-space (see the module docstring for
    the FFT conventions). The adjoint is the real-linear one,
    ``A^T y = Re(sum_{c in blocks} conj(S_c) . F^H(M . y_c))`` (SENSE model, Pruessmann et
    al. 1999; blocks = coils as in ODER, Liu et al. 2022).

    ``mask`` is ``"random"``, ``"equispaced"`` (see :func:`cartesian_mask`) or a 0/1 tensor
    ``[H, W]`` (then ``acceleration``, ``center_fraction`` and ``seed`` are unused);
    ``maps`` is None (birdcage maps, :func:`birdcage_maps`) or a complex tensor
    ``[num_coils, H, W]`` of sensitivities. Attributes: ``maps``, ``mask`` and the achieved
    ``acceleration`` = H W / (number of sampled entries).
    """

    complex_measurements = True

    def __init__(
        self,
        image_size: int = 128,
        num_coils: int = 8,
        acceleration: float = 4,
        mask="random",
        center_fraction: float = 0.08,
        seed: int = 0,
        maps: torch.Tensor | None = None,
    ):
        n = _check_size(image_size)
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
        self.maps = maps.detach().to(torch.complex128)
        self.mask = mask.detach().to(torch.float64)
        self.num_blocks = num_coils
        self.image_shape = (1, n, n)
        self.block_shape = (n, n)
        self.acceleration = n * n / max(self.mask.sum().item(), 1.0)  # achieved, not requested
        # The centred FFT fftshift(fft2(ifftshift(z))) equals P_out . fft2(P_in . z) by the shift
        # theorem (a = n // 2): P_in[j] = exp(2 pi i a j / n), P_out[k] = exp(2 pi i a (k - a) / n).
        # Folding P_in into the maps and P_out into the mask saves four copies per call.
        j = torch.arange(n, dtype=torch.float64)
        a = n // 2
        # reduce a*j mod n before scaling by 2 pi / n, so the angles stay small and accurate
        ramp_in = torch.polar(torch.ones(n, dtype=torch.float64), 2 * math.pi * (a * j % n) / n)
        ramp_out = torch.polar(torch.ones(n, dtype=torch.float64), 2 * math.pi * (a * (j - a) % n) / n)
        self._encoding = self.maps * (ramp_in[:, None] * ramp_in[None, :])  # S_c . P_in, [C, H, W]
        self._sampling = self.mask * (ramp_out[:, None] * ramp_out[None, :])  # M . P_out, [H, W]
        self._encoding_conj = self._encoding.conj_physical()  # stored conjugated: a lazily
        self._sampling_conj = self._sampling.conj_physical()  # conjugated operand is several times slower
        first = self.maps.flatten()[0]
        self._single_constant_coil = bool(num_coils == 1 and (self.maps - first).abs().max() < 1e-12
                                          and abs(first.abs().item() - 1.0) < 1e-12)

    def _forward(self, x, blocks):
        S = self._rows("_encoding", x, blocks)  # [b, H, W]
        # [N, 1, H, W] * [b, H, W] -> [N, b, H, W] complex coil images, then centred k-space
        return torch.fft.fft2(x * S, norm="ortho") * self._buffer("_sampling", x)

    def _adjoint(self, y, blocks):
        S = self._rows("_encoding_conj", y, blocks)
        # F^H (M^H y_c) with the shifts folded in
        coil_images = torch.fft.ifft2(y * self._buffer("_sampling_conj", y), norm="ortho")
        return (coil_images * S).sum(1, keepdim=True).real

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        """Exact for one coil with a constant unit-modulus sensitivity: for real x,
        AᵀA x = Re(Fᴴ M F x) = Fᴴ M_s F x with M_s(k) = (M(k) + M(−k))/2, because the spectrum of
        a real image is conjugate-symmetric; so x = Re Fᴴ[F b / (M_s + shift)]. Conjugate
        gradient otherwise."""
        if not self._single_constant_coil:
            return super().solve_normal(b, shift, x_init, num_iter)
        M = self._buffer("mask", b)
        n, m = M.shape
        flip = lambda k, device: (2 * (k // 2) - torch.arange(k, device=device)) % k  # noqa: E731  k -> -k, centred
        M_s = 0.5 * (M + M[flip(n, b.device)][:, flip(m, b.device)])
        d = (-2, -1)  # the centred unitary FFT of the module docstring
        Fb = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(b, dim=d), norm="ortho"), dim=d)
        return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(Fb / (M_s + shift), dim=d), norm="ortho"),
                                  dim=d).real
