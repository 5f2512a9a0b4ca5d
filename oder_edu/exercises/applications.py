"""Notebook 05 · applications: noise at a given SNR and a CT display window."""

from __future__ import annotations

import math

import torch

from ._grading import RTOL, _check, _diagnose, _draw, _hints, _relative_error, _tensor


# --- add_noise_snr --------------------------------------------------------------------------------------------------
def check_add_noise_snr(add_noise_snr) -> bool:
    """``add_noise_snr(y, snr_db, generator) -> y + e``: white Gaussian noise e = s·n, n standard normal drawn
    from ``generator``, s = ||y|| / sqrt(numel) · 10^(−snr/20).

    Verifies, at 30 and 50 dB on y ``[4, 60, 64]``: a finite output, equal outputs from two equally seeded
    generators, noise added, and the measured SNR 20 log10(||y|| / ||e||) to 0.2 dB. Diagnoses NaN or Inf, noise
    not drawn from ``generator``, y returned unchanged, and amplitudes scaled by 10^(−snr/10) (twice the SNR)."""
    y = _draw(0, 4, 60, 64, law=torch.rand) + 0.5

    def attempt():
        for snr in (30.0, 50.0):
            noisy, again = (_tensor(add_noise_snr(y, snr, torch.Generator().manual_seed(1)), "add_noise_snr", y.shape)
                            for _ in range(2))
            if not (torch.isfinite(noisy).all() and torch.isfinite(again).all()):  # NaN ≠ NaN: before comparing
                return "your output is not finite (it holds NaN or Inf): check how you scale the noise."
            if not torch.equal(noisy, again):
                return "two calls with equally seeded generators differ: draw the noise from `generator`."
            if torch.equal(noisy, y):
                return "you returned y unchanged: add the noise."
            measured = 20 * math.log10(y.norm().item() / (noisy - y).norm().item())
            if abs(measured - 2 * snr) < 0.2:
                return (f"the SNR came out {measured:.1f} dB instead of {snr:g}: amplitudes scale as 10^(−snr/20), "
                        f"not /10.")
            if abs(measured - snr) > 0.2:
                return f"asked for {snr:g} dB, measured {measured:.2f} dB."
    return _check("add_noise_snr", add_noise_snr, attempt)


_hints(
    "add_noise_snr",
    idea="an SNR in decibels compares amplitudes, 20·log10(||y|| / ||e||): scale standard normal noise so that "
         "its root-mean-square is that of y times 10^(−snr/20), and draw it from the generator you were given, so"
         " that the same seed gives the same noise.",
    steps="the root-mean-square of y is y.norm() / sqrt(y.numel()); draw standard normal noise with "
          "torch.randn(y.shape, generator=generator, dtype=y.dtype); multiply it by that RMS and by 10 ** "
          "(-snr_db / 20), and add it to y.",
    solution='''
import torch


def add_noise(y, snr_db, generator):
    s = y.norm() / y.numel() ** 0.5 * 10 ** (-snr_db / 20)
    return y + s * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)''')


# --- window ---------------------------------------------------------------------------------------------------------
def check_window(window) -> bool:
    """``window(hu, center, width) -> [0, 1] image``: a CT display window, mapping Hounsfield units in
    [center − width/2, center + width/2] linearly onto [0, 1] and clipping outside.

    Verifies the image of −1200 to 1200 HU with center 40 and width 400, to 1e-5. Diagnoses values outside
    [0, 1] (no clipping) and a window that starts at its centre."""
    hu = torch.linspace(-1200, 1200, 97, dtype=torch.float64).reshape(1, 1, 1, 97)
    center, width = 40.0, 400.0
    want = ((hu - (center - width / 2)) / width).clamp(0, 1)

    def attempt():
        got = _tensor(window(hu, center, width), "window", hu.shape)
        if _relative_error(got, want) > RTOL and (got.min() < 0 or got.max() > 1):
            return f"values run from {got.min().item():.3g} to {got.max().item():.3g}: clip to [0, 1]."
        return _diagnose(got, want, [(((hu - center) / width).clamp(0, 1),
                                      "the window starts at center − width/2, not at center.")],
                         f"relative error {_relative_error(got, want):.2g} against the linear window.")
    return _check("window", window, attempt)


_hints(
    "window",
    idea="a display window maps the Hounsfield range [center − width/2, center + width/2] linearly onto [0, 1], "
         "and everything outside it to the nearest end.",
    steps="subtract the window's lower edge (center − width/2), divide by width, then clamp to [0, 1].",
    solution='''
def window(hu, center, width):
    return ((hu - (center - width / 2)) / width).clamp(0, 1)''')
