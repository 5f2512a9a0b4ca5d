"""The one factory of imaging problems: ``make_problem(app)`` -> operator, truth, y, x0, g.

Every application has one table of documented defaults (``SETTINGS``), used by training, the
benches, the widgets, the demo and the notebooks; anything they change is an explicit argument.
The defaults are the settings the shipped RED-DEQ and ODER models are trained and measured at,
chosen so that the measurement blocks are the larger part of an iteration's cost (ODER's
case, Liu et al., NeurIPS 2022) at sizes a 2-core CPU trains in minutes:

| app | operator | blocks B | size | SNR | why these numbers |
|---|---|---|---|---|---|
| ``denoise`` | identity | 1 | 128² | 20 dB | notebook 01's first model |
| ``blur`` | 9x9 Gaussian, std 2 | 1 | 128² | 40 dB | notebook 01 |
| ``ct`` | parallel beam, 0.5° steps | 360 angles | 128² | 40 dB | a full rotation's views at a clinical angular step (ODER's CT uses 90 of 512²) |
| ``mri`` | 4x Cartesian, birdcage maps | 32 coils | 64² | 40 dB | 32-channel receive arrays are common for the head |
| ``idt`` | brightfield LEDs on 8 rings | 256 LEDs | 64² | 40 dB | LED-array microscopes carry hundreds of LEDs (e.g. 32x32 matrices) |

Ground truths are images in [0, 1] (so PSNR has data range 1); noise is white Gaussian at an
input SNR per measurement (``physics.add_noise_snr``, as in ODER's experiments); the start
image is filtered back-projection for CT and Aᵀy/L_g otherwise. CT's detector covers the whole
square image (no inscribed-circle assumption), so real slices with content in the corners
are measured completely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import checks, phantoms
from .device import as_device
from .physics import (Blur, Denoising, IntensityDiffractionTomography, LeastSquares, MultiCoilMRI, ParallelBeamCT,
                      add_noise_snr, fbp, gaussian_kernel)
from .physics.base import BlockOperator


@dataclass(frozen=True)
class Setting:
    """The documented defaults of one application (module docstring)."""

    label: str
    block_name: str
    image_size: int
    num_blocks: int
    snr_db: float
    sampler: str = "stratified"  # how online methods draw blocks: spread over angles, coils, LEDs
    truth: str = "shepp_logan"
    # RED with the shipped DnCNN: σ and τ/L_g chosen by `oder-edu bench widgets --sweep` over
    # σ in {0.01, 0.02, 0.05} and τ/L_g in {0.01, 0.03, 0.1, 0.3} (widgets.runner.red_sweep; the
    # record is in benchmarks/results/widgets.json, and notebook 02 reruns the sweep for IDT).
    red_sigma: float = 0.02
    red_tau_over_L: float = 0.03


SETTINGS = {
    "denoise": Setting("denoising", "image", 128, 1, 20.0),
    "blur": Setting("deblurring", "image", 128, 1, 40.0),
    "ct": Setting("CT (parallel beam)", "angles", 128, 360, 40.0, red_sigma=0.05, red_tau_over_L=0.03),
    "mri": Setting("multi-coil MRI", "coils", 64, 32, 40.0, red_sigma=0.01, red_tau_over_L=0.3),
    "idt": Setting("IDT (LED array)", "LEDs", 64, 256, 40.0, truth="cells", red_sigma=0.02, red_tau_over_L=0.1),
}
APPS = tuple(SETTINGS)
OPERATORS = {"denoise": Denoising, "blur": Blur, "ct": ParallelBeamCT, "mri": MultiCoilMRI,
             "idt": IntensityDiffractionTomography}  # the class make_operator builds for each app
TRUTHS = ("shepp_logan", "cells", "ct", "mr", "cell")


@dataclass
class Problem:
    """One inverse problem y = A x_true + e.

    ``A``: a ``BlockOperator`` with B = ``A.num_blocks`` blocks; ``x_true``, ``x0`` (the start
    image): ``[N, C, H, W]``; ``y``: ``[N, B, *block_shape]``; ``g``: the data term
    ``LeastSquares(A, y)``; ``setting``: the application's defaults it was built from.
    """

    app: str
    A: object
    x_true: torch.Tensor
    y: torch.Tensor
    x0: torch.Tensor
    g: LeastSquares
    snr_db: float
    setting: Setting

    @property
    def label(self) -> str:
        return self.setting.label

    @property
    def block_name(self) -> str:
        return self.setting.block_name


def make_operator(app: str, image_size: int | None = None, num_blocks: int | None = None):
    """The operator of ``app`` at ``image_size``² with ``num_blocks`` blocks (defaults: ``SETTINGS``)."""
    setting = SETTINGS[checks.choice("app", app, APPS)]
    n = setting.image_size if image_size is None else checks.integer("image_size", image_size, 8)
    B = setting.num_blocks if num_blocks is None else checks.integer("num_blocks", num_blocks, 1)
    if app in ("denoise", "blur") and B != 1:
        raise ValueError(f"{app} has a single block, got num_blocks={B}")
    if app == "denoise":
        return Denoising(n)
    if app == "blur":
        return Blur(gaussian_kernel(9, 2.0), n)
    if app == "ct":
        return ParallelBeamCT(n, num_angles=B, num_detectors=2 * math.ceil(n / math.sqrt(2)) + 2)
    if app == "mri":
        return MultiCoilMRI(n, num_coils=B, acceleration=4)
    return IntensityDiffractionTomography(n, num_leds=B, num_rings=max(1, min(8, B // 16)))


def truth_images(name: str, n: int, image_size: int, seed: int = 0) -> torch.Tensor:
    """``n`` ground truths ``[n, 1, H, W]``: a phantom (``"shepp_logan"``; ``"cells"``, drawn with
    ``seed``) or a real image of ``data/`` (``"ct"``, ``"mr"``, ``"cell"``, ``images.real_image``)."""
    checks.choice("truth", name, TRUTHS)
    n, image_size = checks.integer("n", n, 1), checks.integer("image_size", image_size, 1)
    checks.memory(f"{n} truth images of {image_size} x {image_size}", 16.0 * n * image_size**2)
    if name == "shepp_logan":
        return phantoms.shepp_logan(image_size).expand(n, -1, -1, -1).clone()
    if name == "cells":
        return phantoms.random_cells(n, image_size, torch.Generator().manual_seed(seed))
    from .images import real_image

    return real_image(name, image_size).expand(n, -1, -1, -1).clone()


def simulate(A, x: torch.Tensor, snr_db: float, generator: torch.Generator | None = None,
             finer_grid: bool = False) -> torch.Tensor:
    """Noisy measurements ``y = A x + e`` at input SNR ``snr_db`` (noise drawn where ``generator`` lives);
    with ``finer_grid`` (CT), A x is simulated on a 2x finer grid (``simulate_finer``)."""
    with torch.no_grad():
        return add_noise_snr(simulate_finer(A, x) if finer_grid else A.forward(x), snr_db, generator)


def initial_image(A, y: torch.Tensor) -> torch.Tensor:
    """x0 ``[N, C, H, W]``: filtered back-projection for CT, Aᵀy / L_g otherwise."""
    with torch.no_grad():
        if isinstance(A, ParallelBeamCT):
            return fbp(A, y)
        return A.adjoint(y) / A.norm() ** 2


def simulate_finer(A: ParallelBeamCT, x: torch.Tensor) -> torch.Tensor:
    """The noiseless sinogram of ``x`` ``[N, 1, n, n]`` measured on a 2x finer grid than ``A``'s:
    the image read as a bilinear function at the positions of half-size pixels, projected with
    half-width pixels and detector bins, and the fine bins integrated over each of ``A``'s bins.
    Reconstructing with ``A`` then does not share the simulation's discretization: no "inverse
    crime" (Kaipio & Somersalo, *Statistical and Computational Inverse Problems*, Springer 2005).
    """
    n = A.image_size
    fine = ParallelBeamCT(2 * n, angles=A.angles, num_detectors=2 * A.num_detectors + 8)
    # fine pixel j sits at A's pixel index j / 2 (both grids are centred on pixel size // 2)
    u = torch.arange(2 * n, dtype=x.dtype, device=x.device) / (n - 1) - 1
    grid = torch.stack(torch.meshgrid(u, u, indexing="xy"), dim=-1)[None].expand(x.shape[0], -1, -1, -1)
    with torch.no_grad():
        x_fine = torch.nn.functional.grid_sample(x, grid, mode="bilinear", align_corners=True)
        y_fine = fine.forward(x_fine) / 4  # a fine pixel has a quarter of a coarse pixel's area
    # fine bin k' integrates [t' − 1/4, t' + 1/4] with t' = (k' − d_f // 2)/2 in A's pixel units, and A's bin
    # k collects [t_k − 1/2, t_k + 1/2], t_k = k − d // 2: read them off the cumulative integral.
    d, d_fine = A.num_detectors, fine.num_detectors
    cumulative = torch.nn.functional.pad(y_fine.cumsum(-1), (1, 0))
    edges = 2 * (torch.arange(d + 1, dtype=x.dtype, device=x.device) - d // 2) - 0.5 + d_fine // 2  # in fine bins
    position = edges.clamp(0, d_fine)
    low = position.floor().long().clamp(max=d_fine - 1)
    c = cumulative[..., low] + (position - low) * (cumulative[..., low + 1] - cumulative[..., low])
    return c[..., 1:] - c[..., :-1]


def make_problem(app: str, image_size: int | None = None, num_blocks: int | None = None, *,
                 snr_db: float | None = None, truth=None, seed: int = 0, device=None, A=None,
                 finer_grid: bool = False) -> Problem:
    """Build problem ``app`` ('denoise', 'blur', 'ct', 'mri' or 'idt'; module docstring).

    ``truth``: a name for ``truth_images`` (default: the setting's) or an image tensor
    ``[N, C, H, W]``; ``seed`` draws the noise (and random truths); ``A``: an operator to reuse
    instead of building one (of ``app``'s class, ``OPERATORS``, and image shape); ``finer_grid`` (CT): simulate
    the sinogram on a 2x finer grid (``simulate_finer``) instead of with ``A`` itself.
    Everything lands on ``device`` (default ``default_device()``).
    """
    setting = SETTINGS[checks.choice("app", app, APPS)]
    A = make_operator(app, image_size, num_blocks) if A is None else A
    if not isinstance(A, BlockOperator):
        raise TypeError(f"A must be a BlockOperator (an operator to reuse) or None, got {type(A).__name__}")
    if not isinstance(A, OPERATORS[app]):
        raise TypeError(f"A must be a {OPERATORS[app].__name__} for app={app!r} (what make_operator({app!r}) "
                        f"builds), got a {type(A).__name__}")
    snr_db = setting.snr_db if snr_db is None else checks.number("snr_db", snr_db)
    seed = checks.integer("seed", seed)
    device = as_device(device)
    if truth is None or isinstance(truth, str):
        x_true = truth_images(truth or setting.truth, 1, A.image_shape[-1], seed)
    else:
        x_true = checks.finite("truth", checks.image_batch("truth", truth))
    A.check_image(x_true)
    x_true = x_true.to(device)
    if finer_grid and not isinstance(A, ParallelBeamCT):
        raise ValueError(f"finer_grid simulates CT sinograms; {app} has no finer-grid simulation")
    y = simulate(A, x_true, snr_db, torch.Generator().manual_seed(seed), finer_grid)
    return Problem(app, A, x_true, y, initial_image(A, y), LeastSquares(A, y), snr_db, setting)
