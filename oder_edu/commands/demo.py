"""``oder-edu demo``: one sparse-view CT scan reconstructed five ways (FBP, FISTA-TV, PnP-ADMM, RED,
online RED), headless. The setting and the parameter sweep: benchmarks/README.md."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import checks, files
from ..algorithms import fista_tv, pnp_admm, red
from ..denoisers import load_denoiser
from ..device import as_device
from ..memory import PeakTensorMemory
from ..metrics import psnr, ssim
from ..physics import fbp
from ..problems import make_problem
from ..timing import timed
from .results import check_out

# Parameters from a sweep on three perturbed phantoms (60 angles, 40 dB, 128²; benchmarks/README.md).
TV_LAM = 1.0
ADMM_SIGMA, ADMM_GAMMA_TIMES_LG, ADMM_CG_ITER = 0.03, 100.0, 5
RED_SIGMA, RED_TAU = 0.05, 100.0
TV_INNER_ITERATIONS = 10  # the prox weight γλ = λ/L_g is tiny here: 5 to 40 inner steps give the same 36.27 dB
ITERATIONS = {"FISTA-TV": 60, "PnP-ADMM": 20, "RED": 60, "online RED": 60}
MEMORY_ITERATIONS = 3


def _final(stream):
    """The last iterate of a solver's stream; a diverged stream raises with its message."""
    state = None
    for state in stream:
        pass
    if state.diverged:
        raise RuntimeError(state.message)
    return state.x


def run_demo(image_size: int = 128, num_angles: int = 60, snr_db: float = 40.0, iterations: int | None = None,
             seed: int = 0, device=None, denoiser=None):
    """The Shepp-Logan phantom reconstructed five ways: ``(rows, images, truth)``, a row per method (``method``,
    ``psnr`` in dB, ``ssim``, ``seconds``, ``peak_mib``, ``iterations``) and its ``[1, 1, H, W]`` image.
    ``iterations`` overrides every count of ``ITERATIONS``; ``denoiser`` defaults to the shipped DnCNN."""
    device = as_device(device)
    image_size = checks.integer("image_size", image_size, 16)
    num_angles = checks.integer("num_angles", num_angles, 1)
    iterations = None if iterations is None else checks.integer("iterations", iterations, 1)
    problem = make_problem("ct", image_size, num_angles, snr_db=snr_db, seed=seed, device=device)  # checks first
    D = load_denoiser("dncnn", device=device) if denoiser is None else denoiser
    A, y, truth = problem.A, problem.y, problem.x_true
    L_g = A.norm() ** 2  # power iteration once, outside every method's timing (cached on A)

    prior = "DnCNN" if denoiser is None else type(D).__name__
    methods = [  # (name, key in ITERATIONS, k -> final image of k iterations)
        ("FBP", None, lambda k: fbp(A, y)),
        ("FISTA-TV", "FISTA-TV", lambda k: _final(fista_tv(
            A, y, lam=TV_LAM, tv_iter=TV_INNER_ITERATIONS, x0=fbp(A, y), max_iter=k))),
        (f"PnP-ADMM ({prior})", "PnP-ADMM", lambda k: _final(pnp_admm(
            A, y, D, sigma=ADMM_SIGMA, gamma=ADMM_GAMMA_TIMES_LG / L_g, cg_iter=ADMM_CG_ITER,
            x0=fbp(A, y), max_iter=k))),
        (f"RED ({prior})", "RED", lambda k: _final(red(
            A, y, D, sigma=RED_SIGMA, tau=RED_TAU, accelerate=True, x0=fbp(A, y), max_iter=k))),
        ("online RED b/B=1/4", "online RED", lambda k: _final(red(
            A, y, D, sigma=RED_SIGMA, tau=RED_TAU, accelerate=True, x0=fbp(A, y), max_iter=k,
            batch_ratio=0.25, sampler="stratified", generator=torch.Generator().manual_seed(seed)))),
    ]
    rows, images = [], {}
    for name, key, method in methods:
        k = 1 if key is None else (iterations or ITERATIONS[key])
        x, seconds = timed(method, k, device=device)
        with PeakTensorMemory(device) as mem:
            method(min(k, MEMORY_ITERATIONS))
        images[name] = x
        rows.append({"method": name, "psnr": psnr(x, truth).item(), "ssim": ssim(x.clamp(0, 1), truth).item(),
                     "seconds": seconds, "peak_mib": mem.peak_bytes / 2**20, "iterations": k})
    return rows, images, truth


def format_table(rows) -> str:
    """The rows as a Markdown table (what the README quotes)."""
    lines = ["| method | PSNR (dB) | SSIM | seconds | peak tensor memory (MiB) | iterations |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['seconds']:.2f} | {r['peak_mib']:.1f} "
              f"| {r['iterations']} |" for r in rows]
    return "\n".join(lines)


def figure_path(path, name: str = "path") -> Path:
    """``path`` checked as where a PNG figure can go: a non-empty path ending in ``.png`` that is not
    a folder (``name``: the argument, in errors)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path to a .png file, got {type(path).__name__}")
    text = os.fspath(path)
    if not text:
        raise ValueError(f"{name} is empty; expected a path to a .png file, e.g. demo.png")
    if Path(text).is_dir():
        raise ValueError(f"{name} {text} is a folder; expected a path to a .png file, e.g. {Path(text) / 'demo.png'}")
    if Path(text).suffix.lower() != ".png":
        raise ValueError(f"{name} must be a path to a .png file (the figure is a PNG), got {text!r}")
    return Path(text)


def save_figure(rows, images, truth, path) -> Path:
    """A PNG grid of the phantom and each reconstruction with its PSNR/SSIM (a bare Agg ``Figure``: no
    pyplot), written atomically (``oder_edu.files``): a failure leaves an existing ``path`` as it was."""
    path = figure_path(path)
    panels = [("ground truth", truth, "")] + [
        (r["method"], images[r["method"]], f"{r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}") for r in rows]
    cols, grid_rows = 3, (len(panels) + 2) // 3
    fig = Figure(figsize=(3.2 * cols, 3.7 * grid_rows))
    FigureCanvasAgg(fig)
    for i, (title, image, subtitle) in enumerate(panels):
        ax = fig.add_subplot(grid_rows, cols, i + 1)
        ax.imshow(image[0, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=100, format="png")
    return path


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo.png", help="where to write the comparison PNG (default: demo.png)")
    parser.add_argument("--image-size", type=int, default=128, help="image size n, n x n pixels (default: 128)")
    parser.add_argument("--num-blocks", type=int, default=60,
                        help="B: projection angles over 180° (default: 60)")
    parser.add_argument("--snr", type=float, default=40.0, help="input SNR of the sinogram in dB (default: 40)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="iterations of every iterative method (default: 60, and 20 for PnP-ADMM)")
    parser.add_argument("--seed", type=int, default=0, help="noise and sampling seed (default: 0)")


def check_arguments(args) -> Path:
    """Every argument checked, named by its flag, before the run: the figure's path."""
    out = figure_path(args.out, "--out")
    checks.integer("--image-size", args.image_size, 16)
    checks.integer("--num-blocks", args.num_blocks, 1)
    if args.iterations is not None:
        checks.integer("--iterations", args.iterations, 1)
    checks.number("--snr", args.snr)
    check_out(out.parent)  # a folder the figure can be written to
    return out


def main(args) -> int:
    out = check_arguments(args)
    rows, images, truth = run_demo(args.image_size, args.num_blocks, args.snr, args.iterations, args.seed)
    print(f"Sparse-view CT: Shepp-Logan {args.image_size}², {args.num_blocks} angles over 180°, {args.snr:g} dB "
          f"input SNR, seed {args.seed}, device {as_device(None)}")
    print(format_table(rows))
    print(f"wrote {save_figure(rows, images, truth, out)}")
    return 0
