"""2-D intensity diffraction tomography (IDT) of a thin weak scatterer; blocks = LEDs.

Model (first Born approximation plus linearized intensity), following R. Ling, W. Tahir,
H.-Y. Lin, H. Lee, L. Tian, "High-throughput intensity diffraction tomography with a
computational microscope", Biomed. Opt. Express 9(5), 2018 (one slice of their slice-wise
model), the thin-sample IDT model used with ODER (Liu, Xu, Gan, Shoushtari, Kamilov,
NeurIPS 2022) and with SIMBA (Wu, Sun, Matlock, Liu, Tian, Kamilov, "SIMBA: scalable
inversion in optical tomography using deep denoising priors", IEEE JSTSP 14(6), 2020).

Derivation (written out so that the code can be checked line by line). Frequencies are in
cycles per micrometre. A slab of thickness dz at the focal plane has permittivity contrast
de = e - e_m = de_re + i de_im and scattering potential V = k0^2 de, k0 = 2 pi / lambda.
LED l sends the plane wave exp(i 2 pi (nu_l . r + eta(nu_l) z)), with transverse frequency
nu_l = NA_l / lambda and eta(nu) = sqrt((n_m / lambda)^2 - |nu|^2). With the Weyl expansion
of the Green's function, G^(nu, z) = i exp(i 2 pi eta |z|) / (4 pi eta), the first-Born
scattered field imaged at focus through the pupil P (a disc of radius NA_obj / lambda) is

    u_s^(nu) = P(nu) * i dz / (4 pi eta(nu)) * V^(nu - nu_l).

For brightfield LEDs (|NA_l| <= NA_obj, so P(nu_l) = 1) the normalized intensity, dropping
|u_s|^2 (weak object), is I_l / I_0 = 1 + 2 Re(conj(u_in) u_s). Its spectrum is
K(u) V^(u) + conj(K(-u) V^(-u)) with K(u) = i k0^2 dz P(nu_l + u) / (4 pi eta(nu_l + u)),
which splits into one transfer function per part of de (the form of Ling et al.'s
slice-wise phase and absorption transfer functions, at zero defocus):

    I^_l(u) = H_re,l(u) de^_re(u) + H_im,l(u) de^_im(u),
    H_re,l(u) = (i k0^2 dz / 4 pi) [P(nu_l + u) / eta(nu_l + u) - P(nu_l - u) / eta(nu_l - u)],
    H_im,l(u) = -(k0^2 dz / 4 pi) [P(nu_l + u) / eta(nu_l + u) + P(nu_l - u) / eta(nu_l - u)].

(The sign convention nu_l versus -nu_l only mirrors the LED index.) Consequences checked by
the tests: H_re is odd in u and purely imaginary, H_im is even and real, so both map real
images to real intensities; mirroring an LED (nu_l -> -nu_l) flips the sign of H_re and
keeps H_im (the principle of differential phase contrast); a uniform absorbing sheet gives
I/I_0 - 1 = -k0 dz de_im / (n_m cos theta_l), the linearized Beer-Lambert law along the
oblique path; an on-axis LED sees no in-focus phase.

Discretization: u runs over the DFT grid of the image (``fftfreq(n, pixel_size)``). The
Nyquist row/column (even n) has no mirror on the grid, so we use the Hermitian part
H_h(k) = (H(k) + conj(H(-k mod n))) / 2, which makes ``A x = irfft2(H_h . rfft2(x))``
exactly the real part of ``ifft2(H . fft2(x))``, a real-linear map with the exact adjoint
``A^T y = irfft2(conj(H_h) . rfft2(y))``.

Shapes: image ``[N, 1, H, W]`` (de_re only: a phase object, so a 1-channel denoiser applies) or, with
``absorption=True``, ``[N, 2, H, W]`` (channel 0 = de_re, 1 = de_im); measurements are real
``[N, b, H, W]``, the background-subtracted normalized intensities I_l / I_0 - 1.
"""

from __future__ import annotations

import math

import torch

from .. import checks
from .base import BlockOperator


def ring_leds(num_leds: int, illumination_na: float, num_rings: int = 4) -> torch.Tensor:
    """LED illumination NAs on concentric rings, float64 ``[num_leds, 2]`` as (NA_x, NA_y).

    Ring k (k = 1..R) has radius ``illumination_na * k / R`` and a number of LEDs
    proportional to its radius (so LEDs are roughly evenly spread over the illumination
    disc, like the ring arrays of IDT). Each ring holds an even number of LEDs at evenly
    spaced angles, so every LED has a mirror partner at -NA_l; an odd total adds one unpaired
    LED on the outer ring, half-way between two others. Alternate rings are rotated by half
    a step to spread the angles.
    """
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
    """Thin-sample IDT under L brightfield LEDs: ``y_l = F^{-1}(H_re,l . F de_re [+ H_im,l . F de_im])``.

    See the module docstring for the model (Ling et al., Biomed. Opt. Express 2018; the 2-D
    setting of ODER, Liu et al. NeurIPS 2022), the transfer functions and the conventions.

    Parameters (lengths in micrometres):
        image_size: H = W, pixels.
        num_leds: L, the number of blocks; LEDs on ``num_rings`` rings (:func:`ring_leds`).
        wavelength: lambda in vacuum, default 0.532 (green LED).
        objective_na: NA_obj, default 0.65; must be below ``medium_index``.
        illumination_na: NA of the outer LED ring, default 0.6 (<= objective_na: brightfield).
        pixel_size: object-space pixel, default 0.2, so the intensity band
            (objective_na + illumination_na) / wavelength fits under the Nyquist frequency.
        medium_index: n_m, default 1.33 (water).
        thickness: slab thickness dz, default 1.0.
        absorption: False -> image is de_re only ``[N, 1, H, W]``; True -> ``[N, 2, H, W]``.
        led_na: optional ``[L, 2]`` tensor of LED illumination NAs (NA_x, NA_y) replacing the
            rings; every LED must satisfy |NA_l| <= objective_na.

    Measurements: real ``[N, b, H, W]``, one normalized background-subtracted intensity per LED.
    """

    def __init__(
        self,
        image_size: int = 128,
        num_leds: int = 64,
        wavelength: float = 0.532,
        objective_na: float = 0.65,
        illumination_na: float = 0.6,
        pixel_size: float = 0.2,
        medium_index: float = 1.33,
        thickness: float = 1.0,
        absorption: bool = False,
        num_rings: int = 4,
        led_na: torch.Tensor | None = None,
    ):
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
                raise ValueError(
                    f"illumination_na must lie in (0, objective_na={objective_na}] (brightfield LEDs), "
                    f"got {illumination_na}"
                )
            led_na = ring_leds(num_leds, illumination_na, num_rings)
        else:
            if not torch.isfinite(led_na).all():
                raise ValueError("led_na contains NaN or Inf")
            largest = led_na.norm(dim=1).max().item()
            if largest > objective_na * (1 + 1e-12):
                raise ValueError(
                    f"every LED must be brightfield (|NA_l| <= objective_na={objective_na}); "
                    f"got an LED at illumination NA {largest:.4g}"
                )
        self.led_na = led_na
        self.num_blocks = led_na.shape[0]
        self.image_shape = (2 if absorption else 1, image_size, image_size)
        self.block_shape = (image_size, image_size)
        self.wavelength, self.objective_na, self.pixel_size = wavelength, objective_na, pixel_size
        self.medium_index, self.thickness, self.absorption = medium_index, thickness, absorption

        H_re, H_im = self.transfer_functions()
        H = torch.stack((H_re, H_im) if absorption else (H_re,), dim=1)  # [L, C, H, W]
        # Hermitian part (see module docstring); then keep the rfft half-plane.
        H_mirror = torch.roll(torch.flip(H, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
        self.transfer = (0.5 * (H + H_mirror.conj()))[..., : image_size // 2 + 1]
        self.transfer_conj = self.transfer.conj_physical()  # a lazily conjugated operand is slower

    def transfer_functions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(H_re, H_im), complex128 ``[L, H, W]`` on the unshifted DFT grid (module docstring)."""
        n = self.image_shape[-1]
        freq = torch.fft.fftfreq(n, d=self.pixel_size, dtype=torch.float64)
        uy, ux = torch.meshgrid(freq, freq, indexing="ij")
        nu = self.led_na / self.wavelength  # [L, 2] (x, y)
        k0 = 2 * math.pi / self.wavelength

        def pupil_over_eta(sign):
            # P(nu_l + sign * u) / eta(nu_l + sign * u); zero outside the pupil, where eta is real
            fx = nu[:, 0, None, None] + sign * ux
            fy = nu[:, 1, None, None] + sign * uy
            rho2 = fx.square() + fy.square()
            inside = rho2 <= (self.objective_na / self.wavelength) ** 2
            eta = torch.sqrt((self.medium_index / self.wavelength) ** 2 - torch.where(inside, rho2, 0.0))
            return inside / eta

        plus, minus = pupil_over_eta(+1), pupil_over_eta(-1)
        scale = k0**2 * self.thickness / (4 * math.pi)
        H_re = 1j * scale * (plus - minus)
        H_im = (-scale * (plus + minus)).to(torch.complex128)
        return H_re, H_im

    def norm(self, num_iter: int = 100, tol: float = 1e-6) -> float:
        """Exact: AᵀA is diagonal in frequency (a C x C matrix Σ_l H_lᴴ H_l per frequency), so
        ||A||² is the largest eigenvalue over all frequencies."""
        return self._normal_spectrum().amax().item() ** 0.5

    def block_norms(self) -> torch.Tensor:
        """Exact: ||A_l||² = max over frequencies of Σ_c |H_{l,c}|²."""
        return self.transfer.abs().square().sum(1).flatten(1).amax(1).sqrt()

    def _normal_spectrum(self) -> torch.Tensor:
        """Eigenvalues of Σ_l H_lᴴ H_l per frequency, ``[H, W//2+1, C]``."""
        H = self.transfer.permute(2, 3, 0, 1)  # [H, W//2+1, L, C]
        return torch.linalg.eigvalsh(H.mH @ H)

    def solve_normal(self, b, shift, x_init=None, num_iter=20):
        """Exact: (AᵀA + shift·I)^{-1} is a C x C solve per frequency."""
        H = self._buffer("transfer", b).permute(2, 3, 0, 1)  # [H, W//2+1, L, C]
        eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
        system = H.mH @ H + shift * eye  # [H, W//2+1, C, C]
        B = torch.fft.rfft2(b).permute(2, 3, 1, 0)  # [H, W//2+1, C, N]
        X = torch.linalg.solve(system, B).permute(3, 2, 0, 1)
        return torch.fft.irfft2(X, s=b.shape[-2:])

    def _forward(self, x, blocks):
        X = torch.fft.rfft2(x)  # [N, C, H, W//2+1]
        # y_l = sum_c H_{l,c} X_c, one channel's transfer functions at a time: a loop over the (one
        # or two) channels is faster than broadcasting over C, and a block subset then copies one
        # channel's rows of the table at a time, never more than the full call allocates.
        Y = sum(self._channel(x, blocks, c) * X[:, c, None] for c in range(X.shape[1]))  # [N, b, H, W//2+1]
        return torch.fft.irfft2(Y, s=x.shape[-2:])

    def _channel(self, like: torch.Tensor, blocks, c: int, conj: bool = False) -> torch.Tensor:
        """H_{l,c} (or its conjugate) for l in blocks, ``[b, H, W//2+1]``."""
        table = self._buffer("transfer_conj" if conj else "transfer", like)[:, c]
        return table if blocks is None else table.index_select(0, blocks.to(table.device))

    def _adjoint(self, y, blocks):
        Y = torch.fft.rfft2(y)  # [N, b, H, W//2+1]
        X = torch.stack([(self._channel(y, blocks, c, conj=True) * Y).sum(1) for c in range(self.image_shape[0])], dim=1)
        return torch.fft.irfft2(X, s=y.shape[-2:])
