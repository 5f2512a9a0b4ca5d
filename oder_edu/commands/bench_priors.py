"""``oder-edu bench priors``: TV, PnP-ADMM and RED (best of a sweep) and the shipped DEQ/ODER
checkpoints on the real images of ``data/``, never trained on (see benchmarks/README.md)."""

from __future__ import annotations

import time
import warnings

import torch

from .. import checkpoints, checks
from ..algorithms import fista_tv, pnp_admm, red
from ..denoisers import load_denoiser
from ..deq import load_model
from ..device import as_device
from ..images import real_image
from ..metrics import psnr, ssim
from ..problems import SETTINGS, make_problem
from .results import add_bench_arguments, check_out, write_results

TV_LAM = (0.3, 1.0, 3.0)  # × σ_y-free units: λ of ½||Ax − y||² + λ TV(x), scaled by L_g / 1000
PNP_SIGMA = (0.01, 0.02, 0.04)
RED_SIGMA_TAU = ((0.02, 0.01), (0.02, 0.03), (0.05, 0.03))  # (σ, τ / L_g)


def add_arguments(parser) -> None:
    add_bench_arguments(parser, device=True)
    parser.add_argument("--iterations", type=int, default=100, help="iterations of TV, PnP-ADMM and RED")
    parser.add_argument("--online-iterations", type=int, default=200, help="online iterations of the ODER checkpoint")


def scores(x, truth) -> dict:
    """PSNR (dB) and SSIM of ``x`` clipped to [0, 1]."""
    x = x.clamp(0, 1)
    return {"psnr": round(psnr(x, truth).item(), 2), "ssim": round(ssim(x, truth).item(), 4)}


def baselines(problem, D, iterations: int) -> list[dict]:
    """x0, then TV, PnP-ADMM and RED each at the parameter of its grid with the best PSNR."""
    A, y, x0, truth = problem.A, problem.y, problem.x0, problem.x_true
    L = A.norm() ** 2

    def last(stream):
        state = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for state in stream:
                pass
        return state.x

    methods = {
        "TV (FISTA)": (lambda lam: last(fista_tv(A, y, lam=lam * L / 1000, x0=x0, max_iter=iterations)), TV_LAM),
        "PnP-ADMM (DnCNN)": (lambda s: last(pnp_admm(A, y, D, sigma=s, gamma=100 / L, cg_iter=5, x0=x0,
                                                     max_iter=iterations // 2)), PNP_SIGMA),
        "RED (DnCNN)": (lambda st: last(red(A, y, D, sigma=st[0], tau=st[1] * L, accelerate=True, x0=x0,
                                            max_iter=iterations)), RED_SIGMA_TAU),
    }
    rows = [{"method": "x0", "parameter": "", **scores(x0, truth)}]
    for name, (run, grid) in methods.items():
        start = time.perf_counter()
        x, parameter = max([(run(p), p) for p in grid], key=lambda r: psnr(r[0].clamp(0, 1), truth).item())
        rows.append({"method": name, "parameter": str(parameter), **scores(x, truth),
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def checkpoint_rows(app: str, truth: torch.Tensor, online_iters: int, device) -> tuple[list[dict], object]:
    """The shipped full DEQ and ODER checkpoints of ``app`` on ``truth`` at their setting."""
    manifest, rows, problem = checkpoints.read_manifest(), [], None
    for label, name, call in (("full RED-DEQ", f"deq_{app}_full", {}),
                              ("ODER, all blocks", f"oder_{app}", {"batch_ratio": 1.0}),
                              ("ODER, online", f"oder_{app}", {"max_iter": online_iters})):
        if name not in manifest:
            continue
        model = load_model(name, device)
        c = model.config
        problem = problem or make_problem(app, c.image_size, c.num_blocks, snr_db=c.snr_db, truth=truth, device=device)
        with torch.no_grad():
            x = model(problem.x0, problem.g, generator=torch.Generator().manual_seed(1), **call).clamp(0, 1)
        ratio = call.get("batch_ratio", c.batch_ratio)
        rows.append({"method": label if ratio == 1 else f"{label} b/B = {ratio:g}", "parameter": name,
                     **scores(x, problem.x_true)})
    return rows, problem


def main(args) -> int:
    check_out(args.out)
    device = as_device(args.device, "--device")
    iterations = checks.integer("--iterations", args.iterations, 2)
    checks.integer("--online-iterations", args.online_iterations, 1)
    D = load_denoiser("dncnn", device=device)
    records = []

    def add(problem_label, rows):
        for row in rows:
            records.append({"problem": problem_label, **row})
            print(f"{problem_label}: {row['method']} {row['psnr']} dB", flush=True)

    for label, app, size, blocks, truth, finer in (  # the real image of each app at 40 dB
            ("CT slice 128², 90 angles, 40 dB, same grid", "ct", 128, 90, real_image("ct"), False),
            ("CT slice 128², 90 angles, 40 dB, finer grid", "ct", 128, 90, real_image("ct"), True),
            ("MR slice 64², 8 coils, 4x, 40 dB", "mri", 64, 8, real_image("mr"), False),
            ("cell phase 64², 64 LEDs, 40 dB", "idt", 64, 64, real_image("cell", 64), False)):
        problem = make_problem(app, size, blocks, snr_db=40.0, truth=truth.to(device), device=device, finer_grid=finer)
        add(label, baselines(problem, D, iterations))
    for app, name in (("ct", "ct"), ("mri", "mr"), ("idt", "cell")):
        s = SETTINGS[app]
        truth = real_image(name, s.image_size).to(device)
        rows, problem = checkpoint_rows(app, truth, args.online_iterations, device)
        if problem is None:
            continue
        label = f"{app.upper()} real image at the checkpoints' setting ({s.image_size}², B = {s.num_blocks}, {s.snr_db:g} dB)"
        add(label, baselines(problem, D, iterations) + rows)
    caption = (f"Real images of data/ (never trained on). TV, PnP-ADMM and RED: the best of a three-point sweep on "
               f"the image itself (grids: benchmarks/README.md), {iterations} iterations ({iterations // 2} for ADMM). "
               f"DEQ and ODER: the shipped checkpoints, untuned.")
    write_results("priors", records, args, caption, ship=True)
    return 0
