"""``oder-edu bench priors``: hand-crafted, learned and end-to-end learned priors on real slices.

Ground truths are the real images of ``data/`` (``images.real_image``), never trained on:

- CT: the 128² CT slice, 90 angles, 40 dB -- simulated on the reconstruction's own grid (the
  "inverse crime") and, to avoid it, on a 2x finer grid (``problems.simulate_finer``);
- MRI: the 64² MR slice, 8 coils, 4x Cartesian undersampling, 40 dB;
- IDT: the quantitative phase image of a cell at 64², background removed, 64 LEDs, 40 dB;
- and each app at the shipped DEQ/ODER checkpoints' own setting (``problems.SETTINGS``).

Methods: the start image x0; TV (FISTA), PnP-ADMM and RED with the shipped DnCNN, each at the
best of a three-point sweep of its parameter on the slice itself (an oracle choice, which
favours these baselines); and, at the checkpoints' setting, full RED-DEQ and ODER (all blocks,
and online at its ratio), which have no parameter to tune.
"""

from __future__ import annotations

import time
import warnings

import torch

from .. import checks
from ..cli import command_line
from .results import DEFAULT_OUT, check_out, write_results

TV_LAM = (0.3, 1.0, 3.0)  # × σ_y-free units: λ of ½||Ax − y||² + λ TV(x), scaled by L_g / 1000
PNP_SIGMA = (0.01, 0.02, 0.04)
RED_SIGMA_TAU = ((0.02, 0.01), (0.02, 0.03), (0.05, 0.03))  # (σ, τ / L_g)


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=100, help="iterations of TV, PnP-ADMM and RED")
    parser.add_argument("--online-iters", type=int, default=200, help="online iterations of the ODER checkpoint")
    parser.add_argument("--device", default=None, help="default: oder_edu.device.default_device()")


def best(run, grid) -> tuple[dict, torch.Tensor]:
    """The best PSNR of ``run(parameter) -> (x, psnr)`` over ``grid``: ``(record, x)``."""
    results = [(run(p), p) for p in grid]
    (x, value), parameter = max(results, key=lambda r: r[0][1])
    return {"parameter": str(parameter), "psnr": round(value, 2)}, x


def baselines(A, y, truth, x0, D, iterations: int) -> list[dict]:
    """x0, TV, PnP-ADMM and RED at their best parameter (module docstring)."""
    from ..algorithms import fista_tv, pnp_admm, red
    from ..metrics import psnr, ssim

    L = A.norm() ** 2
    score = lambda x: psnr(x.clamp(0, 1), truth).item()  # noqa: E731

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
    rows = [{"method": "x0", "parameter": "", "psnr": round(score(x0), 2), "ssim": round(ssim(x0.clamp(0, 1), truth).item(), 4)}]
    for name, (run, grid) in methods.items():
        start = time.perf_counter()
        record, x = best(lambda p: (lambda x: (x, score(x)))(run(p)), grid)
        rows.append({"method": name, **record, "ssim": round(ssim(x.clamp(0, 1), truth).item(), 4),
                     "seconds": round(time.perf_counter() - start, 1)})
    return rows


def checkpoint_rows(app: str, truth: torch.Tensor, online_iters: int, device) -> tuple[list[dict], object]:
    """The shipped full DEQ and ODER checkpoints of ``app`` on ``truth`` at their setting."""
    from .. import checkpoints
    from ..deq import load_model
    from ..metrics import psnr, ssim
    from ..problems import make_problem

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
                     "psnr": round(psnr(x, problem.x_true).item(), 2), "ssim": round(ssim(x, problem.x_true).item(), 4)})
    return rows, problem


def main(args) -> int:
    from ..denoisers import load_denoiser
    from ..device import as_device
    from ..images import real_image
    from ..problems import SETTINGS, make_problem

    out = check_out(args.out)
    device = as_device(args.device)
    iterations = checks.integer("--iterations", args.iterations, 2)
    D = load_denoiser("dncnn", device=device)
    records = []

    def add(problem_label, rows):
        for row in rows:
            records.append({"problem": problem_label, **row})
            print(f"{problem_label}: {row['method']} {row['psnr']} dB", flush=True)

    ct = real_image("ct").to(device)
    for finer, label in ((False, "same grid"), (True, "finer grid")):
        p = make_problem("ct", 128, 90, snr_db=40.0, truth=ct, device=device, finer_grid=finer)
        add(f"CT slice 128², 90 angles, 40 dB, {label}", baselines(p.A, p.y, p.x_true, p.x0, D, iterations))
    mr = make_problem("mri", 64, 8, snr_db=40.0, truth=real_image("mr").to(device), device=device)
    add("MR slice 64², 8 coils, 4x, 40 dB", baselines(mr.A, mr.y, mr.x_true, mr.x0, D, iterations))
    cell = make_problem("idt", 64, 64, snr_db=40.0, truth=real_image("cell", 64).to(device), device=device)
    add("cell phase 64², 64 LEDs, 40 dB", baselines(cell.A, cell.y, cell.x_true, cell.x0, D, iterations))
    for app, name in (("ct", "ct"), ("mri", "mr"), ("idt", "cell")):
        s = SETTINGS[app]
        rows, problem = checkpoint_rows(app, real_image(name, s.image_size).to(device), args.online_iters, device)
        if problem is None:
            continue
        label = f"{app.upper()} real image at the checkpoints' setting ({s.image_size}², B = {s.num_blocks}, {s.snr_db:g} dB)"
        add(label, baselines(problem.A, problem.y, problem.x_true, problem.x0, D, iterations) + rows)
    caption = ("Real images of data/ (never trained on). TV, PnP-ADMM and RED: the best of a three-point sweep on the "
               "image itself (TV λ·1000/L_g in {0.3, 1, 3}; PnP-ADMM σ in {0.01, 0.02, 0.04}, γ = 100/L_g; RED (σ, τ/L_g) "
               "in {(0.02, 0.01), (0.02, 0.03), (0.05, 0.03)}, Nesterov); "
               f"{iterations} iterations ({iterations // 2} for ADMM). DEQ and ODER: the shipped checkpoints, untuned.")
    write_results("priors", records, out, caption, command_line(args), ship=True)
    return 0
