"""2-D intensity diffraction tomography (IDT) of a thin weak scatterer; blocks = LEDs.

Model: first Born approximation plus linearized intensity, one slice of the slice-wise model of
R. Ling, W. Tahir, H.-Y. Lin, H. Lee, L. Tian, "High-throughput intensity diffraction tomography
with a computational microscope", Biomed. Opt. Express 9(5), 2018; the thin-sample model used
with ODER (Liu, Xu, Gan, Shoushtari, Kamilov, NeurIPS 2022) and SIMBA (Wu, Sun, Matlock, Liu,
Tian, Kamilov, IEEE JSTSP 14(6), 2020).

Derivation (frequencies in cycles per micrometre). A slab of thickness dz at the focal plane has
permittivity contrast de = e - e_m = de_re + i de_im and scattering potential V = k0^2 de,
k0 = 2 pi / lambda. LED l sends the plane wave exp(i 2 pi (nu_l . r + eta(nu_l) z)), with
nu_l = NA_l / lambda and eta(nu) = sqrt((n_m / lambda)^2 - |nu|^2). With the Weyl expansion
G^(nu, z) = i exp(i 2 pi eta |z|) / (4 pi eta), the first-Born scattered field imaged at focus
through the pupil P (a disc of radius NA_obj / lambda) is

    u_s^(nu) = P(nu) * i dz / (4 pi eta(nu)) * V^(nu - nu_l).

For brightfield LEDs (|NA_l| <= NA_obj) and a weak object (|u_s|^2 dropped),
I_l / I_0 = 1 + 2 Re(conj(u_in) u_s), whose spectrum K(u) V^(u) + conj(K(-u) V^(-u)), with
K(u) = i k0^2 dz P(nu_l + u) / (4 pi eta(nu_l + u)), splits into Ling et al.'s phase and
absorption transfer functions at zero defocus:

    I^_l(u) = H_re,l(u) de^_re(u) + H_im,l(u) de^_im(u),
    H_re,l(u) = (i k0^2 dz / 4 pi) [P(nu_l + u) / eta(nu_l + u) - P(nu_l - u) / eta(nu_l - u)],
    H_im,l(u) = -(k0^2 dz / 4 pi) [P(nu_l + u) / eta(nu_l + u) + P(nu_l - u) / eta(nu_l - u)].

Checked by the tests: H_re is odd and imaginary, H_im even and real (real images give real
intensities); mirroring an LED flips H_re and keeps H_im (differential phase contrast); a
uniform absorbing sheet gives I/I_0 - 1 = -k0 dz de_im / (n_m cos theta_l) (linearized
Beer-Lambert); an on-axis LED sees no in-focus phase.

Discretization: u runs over the DFT grid, ``fftfreq(n, pixel_size)``. The Nyquist row/column
(even n) has no mirror, so we use the Hermitian part H_h(k) = (H(k) + conj(H(-k mod n))) / 2:
``A x = irfft2(H_h . rfft2(x))`` is exactly Re ``ifft2(H . fft2(x))``, with the exact adjoint
``A^T y = irfft2(conj(H_h) . rfft2(y))``.
"""

from __future__ import annotations

import math

import torch

from .. import checks
from .base import BlockOperator


def ring_leds(num_leds: int, illumination_na: float, num_rings: int = 4) -> torch.Tensor:
    """LED illumination NAs, float64 ``[num_leds, 2]`` as (NA_x, NA_y), on concentric rings of radii
    ``illumination_na * k / R`` with LED counts proportional to the radius. Each ring holds an even
    number of LEDs at evenly spaced angles (every LED has a mirror partner at -NA_l); an odd total
    adds one unpaired LED on the outer ring. Alternate rings are rotated by half a step."""
    num_leds = checks.integer("num_leds", num_leds, 1)
    num_rings = checks.integer("num_rings", num_rings, 1)
    illumination_na = checks.number("illumination_na", illumination_na, positive=True)
    rings = min(num_rings, max(1, num_leds // 2))
    weights = torch.arange(1, rings + 1, dtype=torch.float64)
    share = weights / weights.sum() * (num_leds // 2)
    pairs = share.floor().long()
    # largest remainder: hand the left-over pairs to the rings that lost most in rounding
    leftover = num_leds // 2 - int(pairs.sum())
    pairs[torch.argsort(share - pairs, descending=True)[:leftover]] += 1
    radii, angles = [], []
    for k, count in enumerate((2 * pairs).tolist(), start=1):
        offset = 0.5 * (k % 2 == 0)
        steps = torch.arange(count, dtype=torch.float64) + offset
        if k == rings and num_leds % 2:
            steps = torch.cat((steps, torch.tensor([offset + 0.5], dtype=torch.float64)))
        angles.append(2 * math.pi * steps / max(count, 1))
        radii.append(torch.full_like(steps, illumination_na * k / rings))
    radius, angle = torch.cat(radii), torch.cat(angles)
    return radius[:, None] * torch.stack((torch.cos(angle), torch.sin(angle)), dim=1)


class IntensityDiffractionTomography(BlockOperator):
    """Thin-sample IDT under L brightfield LEDs, ``y_l = F^{-1}(H_re,l . F de_re [+ H_im,l . F de_im])``
    (module docstring). Image ``[N, 1, H, W]`` (de_re: a phase object) or, with ``absorption``,
    ``[N, 2, H, W]`` (de_re, de_im) -> real ``[N, b, H, W]``, the background-subtracted I_l / I_0 - 1.

    Lengths in micrometres: ``wavelength`` lambda in vacuum, ``objective_na`` NA_obj (below
    ``medium_index`` n_m), ``illumination_na`` the outer LED ring's NA (<= NA_obj: brightfield),
    ``pixel_size`` (the default puts the band (NA_obj + illumination_na) / lambda under Nyquist),
    ``thickness`` dz. LEDs: ``num_leds`` on ``num_rings`` rings (:func:`ring_leds`), or ``led_na``
    ``[L, 2]`` of (NA_x, NA_y), every |NA_l| <= NA_obj.
    """

    def __init__(self, image_size: int = 128, num_leds: int = 64, wavelength: float = 0.532,
                 objective_na: float = 0.65, illumination_na: float = 0.6, pixel_size: float = 0.2,
                 medium_index: float = 1.33, thickness: float = 1.0, absorption: bool = False, num_rings: int = 4,
                 led_na: torch.Tensor | None = None):
        image_size = checks.integer("image_size", image_size, 2)
        wavelength, pixel_size, medium_index, thickness, objective_na = (
            checks.number(name, value, positive=True) for name, value in (
                ("wavelength", wavelength), ("pixel_size", pixel_size), ("medium_index", medium_index),
                ("thickness", thickness), ("objective_na", objective_na)))
        illumination_na = checks.number("illumination_na", illumination_na)
        absorption = checks.flag("absorption", absorption)
        if led_na is not None:
            try:
                led_na = torch.as_tensor(led_na)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"led_na must be a real tensor [L, 2] of (NA_x, NA_y), "
                                f"got {type(led_na).__name__}") from None
            if led_na.is_complex() or led_na.dtype == torch.bool:
                raise TypeError(f"led_na must be real (NA_x, NA_y) pairs, got dtype {led_na.dtype}")
            led_na = led_na.to(torch.float64)
            if led_na.ndim != 2 or led_na.shape[1] != 2 or led_na.shape[0] < 1:
                raise ValueError(f"led_na must have shape [L, 2] with L >= 1, got {tuple(led_na.shape)}")
        leds = checks.integer("num_leds", num_leds, 1) if led_na is None else led_na.shape[0]
        # transfer functions (complex128, several temporaries) and a call's per-LED spectra
        checks.memory(f"IntensityDiffractionTomography({image_size}, num_leds={leds})",
                      (64.0 + 24.0) * leds * image_size * image_size * (2 if absorption else 1))
        if objective_na >= medium_index:
            raise ValueError(f"objective_na must be below medium_index={medium_index}, got {objective_na}")
        if led_na is None:
            if not 0 < illumination_na <= objective_na:
                raise ValueError(f"illumination_na must lie in (0, objective_na={objective_na}] (brightfield LEDs), "
                                 f"got {illumination_na}")
            led_na = ring_leds(num_leds, illumination_na, num_rings)
        else:
            if not torch.isfinite(led_na).all():
                raise ValueError("led_na contains NaN or Inf")
            largest = led_na.norm(dim=1).max().item()
            if largest > objective_na * (1 + 1e-12):
                raise ValueError(f"every LED must be brightfield (|NA_l| <= objective_na={objective_na}); "
                                 f"got an LED at illumination NA {largest:.4g}")
        super().__init__(led_na.shape[0], (2 if absorption else 1, image_size, image_size), (image_size, image_size))
        self.led_na, self.wavelength, self.objective_na, self.pixel_size = led_na, wavelength, objective_na, pixel_size
        self.medium_index, self.thickness, self.absorption = medium_index, thickness, absorption
        H_re, H_im = self.transfer_functions()
        H = torch.stack((H_re, H_im) if absorption else (H_re,), dim=1)  # [L, C, H, W]
        # the Hermitian part (module docstring), on the rfft half-plane
        H_mirror = torch.roll(torch.flip(H, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
        self.transfer = (0.5 * (H + H_mirror.conj()))[..., : image_size // 2 + 1]

    def transfer_functions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(H_re, H_im), complex128 ``[L, H, W]`` on the unshifted DFT grid (module docstring)."""
        freq = torch.fft.fftfreq(self.image_shape[-1], d=self.pixel_size, dtype=torch.float64)
        uy, ux = torch.meshgrid(freq, freq, indexing="ij")
        nu = self.led_na / self.wavelength  # [L, 2] (x, y)

        def pupil_over_eta(sign):
            # P(nu_l + sign * u) / eta(nu_l + sign * u); zero outside the pupil, where eta is real
            fx = nu[:, 0, None, None] + sign * ux
            fy = nu[:, 1, None, None] + sign * uy
            rho2 = fx.square() + fy.square()
            inside = rho2 <= (self.objective_na / self.wavelength) ** 2
            eta = torch.sqrt((self.medium_index / self.wavelength) ** 2 - torch.where(inside, rho2, 0.0))
            return inside / eta

        plus, minus = pupil_over_eta(+1), pupil_over_eta(-1)
        scale = (2 * math.pi / self.wavelength) ** 2 * self.thickness / (4 * math.pi)  # k0^2 dz / (4 pi)
        return 1j * scale * (plus - minus), (-scale * (plus + minus)).to(torch.complex128)

    def norm(self, num_iter: int = 100, tol: float = 1e-6) -> float:
        """Exact: AᵀA is diagonal in frequency (the C x C matrix Σ_l H_lᴴ H_l per frequency), so
        ||A||² is its largest eigenvalue over all frequencies."""
        H = self.transfer.permute(2, 3, 0, 1)  # [H, W//2+1, L, C]
        return torch.linalg.eigvalsh(H.mH @ H).amax().item() ** 0.5

    def block_norms(self) -> torch.Tensor:
        """Exact: ||A_l||² = max over frequencies of Σ_c |H_{l,c}|²."""
        return self.transfer.abs().square().sum(1).flatten(1).amax(1).sqrt()

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        """Exact: (AᵀA + shift·I)^{-1} is a C x C solve per frequency."""
        H = self._buffer("transfer", b).permute(2, 3, 0, 1)  # [H, W//2+1, L, C]
        system = H.mH @ H + shift * torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)  # [H, W//2+1, C, C]
        B = torch.fft.rfft2(b).permute(2, 3, 1, 0)  # [H, W//2+1, C, N]
        X = torch.linalg.solve(system, B).permute(3, 2, 0, 1)
        return torch.fft.irfft2(X, s=b.shape[-2:])

    def _forward(self, x, blocks):
        X = torch.fft.rfft2(x)  # [N, C, H, W//2+1]
        # y_l = sum_c H_{l,c} X_c one channel at a time: faster than broadcasting over C, and a
        # subset copies one channel's rows at a time, never more than the full call allocates
        Y = sum(self._rows("transfer", x, blocks, channel=c) * X[:, c, None] for c in range(X.shape[1]))
        return torch.fft.irfft2(Y, s=x.shape[-2:])  # [N, b, H, W]

    def _adjoint(self, y, blocks):
        Y = torch.fft.rfft2(y)  # [N, b, H, W//2+1]
        X = torch.stack([(self._rows("transfer", y, blocks, conj=True, channel=c) * Y).sum(1)
                         for c in range(self.image_shape[0])], dim=1)
        return torch.fft.irfft2(X, s=y.shape[-2:])
