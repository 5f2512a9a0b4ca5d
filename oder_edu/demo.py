"""``oder-edu demo``: one sparse-view CT scan reconstructed five ways, headless.

The setting (``run_demo``'s defaults), chosen so the whole run takes well under a minute
on a 2-core CPU while the methods still differ visibly:

- the Shepp-Logan phantom at 128² (``phantoms.shepp_logan``), values in [0, 1];
- parallel-beam CT with 60 angles spread evenly over 180°, a third of a 180-angle scan;
- white Gaussian noise on the sinogram at 40 dB input SNR (seed 0).

Methods: filtered back-projection (FBP, ramp filter); FISTA-TV (Beck & Teboulle 2009);
PnP-FISTA and RED with Nesterov acceleration, both with the shipped DnCNN; online RED with
b/B = 1/4 of the angles per iteration (stratified: every 4th angle, random phase) — the
test-time iteration of ODER (Liu et al., NeurIPS 2022). The iterative methods start from
the FBP image. Their parameters (λ, σ, τ) were picked by a sweep on held-out random
phantoms (``phantoms.validation_phantoms``), not on the Shepp-Logan phantom shown.

Seconds are wall-clock time of each method alone; memory is the measured peak of tensor
bytes allocated while it runs (``PeakTensorMemory``: the CUDA allocator's peak on a GPU,
a count of live tensor storages on the CPU), in a second, separate run, because counting
storages on the CPU slows every operation down.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .algorithms import fista_tv, pnp_pgd, red
from .device import default_device
from .memory import PeakTensorMemory
from .metrics import psnr, ssim

# Parameters from the sweep described in the module docstring (60 angles, 40 dB, 128²).
TV_LAM = 0.002
PNP_SIGMA = 0.03
RED_SIGMA = 0.05
RED_TAU = 0.5


def _final(stream):
    """The last state of a solver's stream (a diverged stream would say so in its message)."""
    state = None
    for state in stream:
        pass
    if state.diverged:
        raise RuntimeError(state.message)
    return state.x


def run_demo(
    image_size: int = 128,
    num_angles: int = 60,
    snr_db: float = 40.0,
    iterations: int = 100,
    seed: int = 0,
    device=None,
    denoiser=None,
):
    """Reconstruct the Shepp-Logan phantom five ways; return ``(rows, images, truth)``.

    ``rows``: one dict per method with ``method``, ``psnr`` (dB), ``ssim``, ``seconds``,
    ``peak_mib`` (peak tensor memory) and ``iterations``; ``images``: method -> ``[1, 1, H, W]``;
    ``truth``: the phantom ``[1, 1, H, W]``. ``iterations`` is the count of every iterative
    method; ``denoiser`` defaults to the shipped DnCNN (``load_denoiser("dncnn")``).
    """
    from .denoisers import load_denoiser
    from .phantoms import shepp_logan
    from .physics import ParallelBeamCT, add_noise_snr, fbp

    device = torch.device(device) if device is not None else default_device()
    D = load_denoiser("dncnn", device=device) if denoiser is None else denoiser
    truth = shepp_logan(image_size).to(device)
    A = ParallelBeamCT(image_size, num_angles=num_angles)
    y = add_noise_snr(A(truth), snr_db, torch.Generator().manual_seed(seed))
    A.norm()  # power iteration once, outside every method's timing (it is cached on A)

    start = lambda: fbp(A, y)  # noqa: E731
    prior = "DnCNN" if denoiser is None else type(D).__name__
    methods = {
        "FBP": lambda: fbp(A, y),
        "FISTA-TV": lambda: _final(fista_tv(A, y, lam=TV_LAM, x0=start(), max_iter=iterations)),
        f"PnP-FISTA ({prior})": lambda: _final(
            pnp_pgd(A, y, D, sigma=PNP_SIGMA, accelerate=True, x0=start(), max_iter=iterations)),
        f"RED ({prior})": lambda: _final(
            red(A, y, D, sigma=RED_SIGMA, tau=RED_TAU, accelerate=True, x0=start(), max_iter=iterations)),
        "online RED b/B=1/4": lambda: _final(
            red(A, y, D, sigma=RED_SIGMA, tau=RED_TAU, accelerate=True, x0=start(), max_iter=iterations,
                batch_ratio=0.25, sampler="stratified", generator=torch.Generator().manual_seed(seed))),
    }
    rows, images = [], {}
    for name, method in methods.items():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        x = method()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - tic
        with PeakTensorMemory(device) as mem:
            method()
        images[name] = x
        rows.append({
            "method": name,
            "psnr": psnr(x, truth).item(),
            "ssim": ssim(x.clamp(0, 1), truth).item(),
            "seconds": seconds,
            "peak_mib": mem.peak_bytes / 2**20,
            "iterations": 1 if name == "FBP" else iterations,
        })
    return rows, images, truth


def format_table(rows) -> str:
    """The rows as a Markdown table (what the README quotes)."""
    lines = ["| method | PSNR (dB) | SSIM | seconds | peak tensor memory (MiB) | iterations |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['seconds']:.2f} "
                     f"| {r['peak_mib']:.1f} | {r['iterations']} |")
    return "\n".join(lines)


def save_figure(rows, images, truth, path) -> Path:
    """A PNG grid: the phantom and each reconstruction with its PSNR/SSIM (Matplotlib Agg,
    through a bare ``Figure`` so no global backend is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("ground truth", truth, "")] + [
        (r["method"], images[r["method"]], f"{r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}") for r in rows
    ]
    cols = 3
    fig = Figure(figsize=(3.2 * cols, 3.7 * ((len(panels) + cols - 1) // cols)))
    FigureCanvasAgg(fig)
    for i, (title, image, subtitle) in enumerate(panels):
        ax = fig.add_subplot((len(panels) + cols - 1) // cols, cols, i + 1)
        ax.imshow(image[0, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo.png", help="where to write the comparison PNG (default: demo.png)")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (default: 128)")
    parser.add_argument("--angles", type=int, default=60, help="number of projection angles over 180° (default: 60)")
    parser.add_argument("--snr", type=float, default=40.0, help="input SNR of the sinogram in dB (default: 40)")
    parser.add_argument("--iterations", type=int, default=100, help="iterations of each iterative method (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="noise and sampling seed (default: 0)")


def main(args) -> int:
    rows, images, truth = run_demo(args.size, args.angles, args.snr, args.iterations, args.seed)
    print(f"Sparse-view CT: Shepp-Logan {args.size}², {args.angles} angles over 180°, {args.snr:g} dB input SNR, "
          f"seed {args.seed}, device {default_device()}")
    print(format_table(rows))
    path = save_figure(rows, images, truth, args.out)
    print(f"wrote {path}")
    return 0
