"""The small reconstruction problems the explorer offers: y = A x_true + e, blocks = angles,
coils or LEDs.

Each is small enough to iterate live on a laptop CPU. Ground truths are images in [0, 1]
(so PSNR has data range 1 and the shipped denoiser sees its training range), noise is
white Gaussian at a given input SNR, and the prior weight τ is set relative to L_g = ||A||²
so that one number means the same balance between data and prior for every operator.
Noise is ``physics.add_noise_snr``; the SNR is per measurement, as in ODER's experiments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..phantoms import random_cells, shepp_logan
from ..physics import IntensityDiffractionTomography, MultiCoilMRI, ParallelBeamCT, add_noise_snr, fbp

PROBLEMS = ("ct", "mri", "idt")
LABELS = {"ct": "CT (parallel beam)", "mri": "multi-coil MRI", "idt": "IDT (LED array)"}
BLOCK_NAMES = {"ct": "angles", "mri": "coils", "idt": "LEDs"}
DEFAULT_BLOCKS = {"ct": 180, "mri": 8, "idt": 64}


@dataclass
class Problem:
    """One inverse problem y = A x_true + e for the explorer.

    ``A``: a ``BlockOperator`` with B = ``A.num_blocks`` blocks (``block_name``);
    ``x_true``, ``x0`` (the start image): ``[1, C, H, W]``; ``y``: ``[1, B, *block_shape]``;
    ``tau``: the RED prior weight τ; ``sigma``: a denoiser strength that works here.
    """

    name: str
    A: object
    x_true: torch.Tensor
    y: torch.Tensor
    x0: torch.Tensor
    tau: float
    sigma: float
    snr_db: float

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def block_name(self) -> str:
        return BLOCK_NAMES[self.name]


def make_problem(name: str, image_size: int = 64, num_blocks: int | None = None, device=None, seed: int = 0) -> Problem:
    """Build problem ``name`` ('ct', 'mri' or 'idt') at ``image_size``² on ``device``.

    - 'ct': ``ParallelBeamCT`` with ``num_blocks`` angles (default 180), Shepp-Logan
      phantom, 40 dB sinogram SNR, started from filtered back-projection;
    - 'mri': ``MultiCoilMRI`` with ``num_blocks`` coils (default 8), 4x random Cartesian
      undersampling, Shepp-Logan phantom, 30 dB SNR, started from the coil-combined
      zero-filled image Aᵀy;
    - 'idt': ``IntensityDiffractionTomography`` with ``num_blocks`` LEDs (default 64), a
      field of cells (``phantoms.random_cells``), 30 dB SNR, started from zeros.

    τ (as a multiple of L_g) and σ are the best RED setting after 60 iterations of a sweep
    over τ/L_g in {0.01, 0.03, 0.1, 0.3} and σ in {0.01, 0.03, 0.06} with the shipped DnCNN
    at 64² (CT: 0.1 L_g, σ = 0.03; MRI and IDT: 0.3 L_g, σ = 0.03).
    """
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {PROBLEMS}, got {name!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}")
    B = DEFAULT_BLOCKS[name] if num_blocks is None else num_blocks
    if isinstance(B, bool) or not isinstance(B, int) or B < 1:
        raise ValueError(f"num_blocks must be an integer >= 1, got {num_blocks!r}")
    device = torch.device("cpu") if device is None else torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    if name == "ct":
        A = ParallelBeamCT(image_size, num_angles=B)
        x_true, snr_db, tau, sigma = shepp_logan(image_size), 40.0, 0.1, 0.03
    elif name == "mri":
        A = MultiCoilMRI(image_size, num_coils=B, acceleration=4, seed=seed)
        x_true, snr_db, tau, sigma = shepp_logan(image_size), 30.0, 0.3, 0.03
    else:
        A = IntensityDiffractionTomography(image_size, num_leds=B)
        x_true, snr_db, tau, sigma = random_cells(1, image_size, generator), 30.0, 0.3, 0.03
    x_true = x_true.to(device)
    y = add_noise_snr(A.forward(x_true), snr_db, generator)
    if name == "ct":
        x0 = fbp(A, y).clamp(0, 1)
    elif name == "mri":
        x0 = A.adjoint(y)
    else:
        x0 = torch.zeros_like(x_true)
    L = float(A.norm()) ** 2
    return Problem(name, A, x_true, y, x0, tau * L, sigma, snr_db)
