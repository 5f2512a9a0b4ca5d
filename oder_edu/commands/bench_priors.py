"""``oder-edu bench priors``: which prior wins on real images, under a fair protocol.

**Protocol.** Every method's strength is chosen on a *tuning* image -- data/'s ``ct_tuning`` and
``mr_tuning`` slices; for denoising, crops of the validation picture -- from a grid that is widened until
the chosen value lies inside it (at most four times) and refined once around it (``tune``), then run once,
untouched, on the *test* image -- data/'s ``ct`` and ``mr`` slices, the test pictures. Every method of a
problem gets the same operator, noise, start image and iteration count; every row names its setting
(``parameters``: the chosen point, which notebook 05 reuses) and says whether its grid bracketed the optimum.
The shipped DEQ/ODER models are run as trained (untuned), and once more with their strength τ scaled by a
factor tuned the same way (``deq_methods``): a prior's weight learned on the training images need not suit
another kind of image.

**Parts** (``--parts``): ``denoise`` -- σ = 0.05 and 0.1 on 8 crops of the test pictures: the U-Net,
the DnCNN, BM3D (given σ) and TV; ``reconstruct`` -- the CT slice (128², 90 angles, 40 dB, simulated on
a 2x finer grid: no inverse crime) and the MR slice (64², 8 coils, 4x, 40 dB): TV, PnP-ADMM and RED with
each learned denoiser, PnP-ADMM with BM3D; ``checkpoints`` -- the shipped RED-DEQ and ODER models on
data/'s images at their own settings, beside TV, PnP-ADMM and RED with the U-Net, tuned the same way. BM3D
rows need the optional ``bm3d`` package (``pip install 'oder-edu[bm3d]'``; free for non-commercial use only)
and are skipped, with a note, without it.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings

import torch

from .. import checkpoints, checks
from ..algorithms import fista_tv, pnp_admm, red
from ..deq import load_model
from ..denoisers import load_denoiser, tv_denoise
from ..device import as_device
from ..images import natural_crops, real_image
from ..metrics import psnr, ssim
from ..phantoms import VALIDATION_SEED
from ..problems import SETTINGS, make_problem
from .results import add_bench_arguments, check_out, write_results

PARTS = ("denoise", "reconstruct", "checkpoints")
LEARNED = ("unet", "dncnn")
DENOISE_SIGMAS = (0.05, 0.1)
# starting grids; ``tune`` widens a grid whose best value is at an edge
TV_LAM_OVER_L = [1e-4, 3e-4, 1e-3, 3e-3]  # λ of ½||Ax − y||² + λ TV(x), in units of L_g
PNP_SIGMA = [0.005, 0.01, 0.02, 0.04]
RED_SIGMA, RED_TAU_OVER_L = [0.01, 0.02, 0.05], [0.01, 0.03, 0.1]
DEQ_TAU_FACTOR = [0.25, 0.5, 1.0, 2.0]  # the shipped model's τ times this factor
TV_DENOISE_LAM_OVER_SIGMA = [0.5, 0.8, 1.2]


def add_arguments(parser) -> None:
    add_bench_arguments(parser, device=True)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=100, help="iterations of TV and RED (PnP-ADMM: half)")


def scores(x, truth) -> dict:
    """PSNR (dB) and SSIM of ``x`` clipped to [0, 1]."""
    x = x.clamp(0, 1)
    return {"psnr": round(psnr(x, truth).mean().item(), 2), "ssim": round(ssim(x, truth).mean().item(), 4)}


def tune(score, grids: list[list[float]], widen: float = 2.5, limit: int = 4):
    """Maximize ``score(point)`` over the product of ``grids`` (one list of positive values per parameter, spaced
    by factors): widen a grid by a factor ``widen`` beyond its edge while the best point sits on that edge (at most
    ``limit`` times), then refine once around the best point, one parameter at a time, at the geometric midpoints
    between it and its neighbours (a factor-2 grid is coarse where the score is steep). Returns ``(best point,
    {point: score}, bracketed)``."""
    grids, values = [sorted(g) for g in grids], {}
    for _ in range(limit + 1):
        for point in itertools.product(*grids):
            if point not in values:
                values[point] = score(point)
        best = max((p for p in values if all(v in g for v, g in zip(p, grids))), key=values.get)
        edges = [(i, v) for i, v in enumerate(best) if len(grids[i]) > 1 and v in (grids[i][0], grids[i][-1])]
        if not edges:
            break
        for i, v in edges:
            grids[i] = sorted(grids[i] + [v / widen if v == grids[i][0] else v * widen])
    else:
        return best, values, False
    for i, grid in enumerate(grids):
        if len(grid) > 1:
            j = grid.index(best[i])
            for neighbour in (grid[j - 1], grid[j + 1]):
                point = (*best[:i], math.sqrt(best[i] * neighbour), *best[i + 1:])
                values[point] = score(point)
    return max(values, key=values.get), values, True


def _final(stream):
    state = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for state in stream:
            pass
    return state.x


def methods(problem, denoisers: dict, iterations: int) -> dict:
    """``{name: (run(point) -> image, grids, label(point))}`` of the problem's methods."""
    A, y, x0 = problem.A, problem.y, problem.x0
    L = A.norm() ** 2
    found = {"TV (FISTA)": (lambda p: _final(fista_tv(A, y, lam=p[0] * L, x0=x0, max_iter=iterations)),
                            [TV_LAM_OVER_L], lambda p: f"λ = {p[0]:.3g}·L_g")}
    for name, D in denoisers.items():
        found[f"PnP-ADMM ({name})"] = (
            lambda p, D=D: _final(pnp_admm(A, y, D, sigma=p[0], gamma=100 / L, cg_iter=5, x0=x0,
                                           max_iter=iterations // 2)),
            [PNP_SIGMA], lambda p: f"σ = {p[0]:.3g}, γ = 100/L_g")
        if name in LEARNED:
            found[f"RED ({name})"] = (
                lambda p, D=D: _final(red(A, y, D, sigma=p[0], tau=p[1] * L, accelerate=True, x0=x0,
                                          max_iter=iterations)),
                [RED_SIGMA, RED_TAU_OVER_L], lambda p: f"σ = {p[0]:.3g}, τ = {p[1]:.3g}·L_g")
    return found


def deq_methods(problem, models: dict) -> dict:
    """``methods``' form for the shipped DEQ/ODER ``models`` (``{row name: (checkpoint name, model)}``): each
    with its τ times a factor (the point), solved by its default call (the test procedure)."""
    def run(model, factor):
        center = model.tau_center.clone()
        model.tau_center.mul_(factor)
        try:
            with torch.no_grad():
                return model(problem.x0, problem.g, generator=torch.Generator().manual_seed(1))
        finally:
            model.tau_center.copy_(center)

    return {f"{method}, τ tuned": (lambda p, model=model: run(model, p[0]), [DEQ_TAU_FACTOR],
                                   lambda p, name=name: f"{name}, τ × {p[0]:.3g}")
            for method, (name, model) in models.items()}


def compare(label: str, tuning, test, denoisers: dict, iterations: int) -> list[dict]:
    """Each method tuned on the problem ``tuning`` and run once on ``test`` (module docstring)."""
    rows = [{"problem": label, "method": "x0", "setting": "", **scores(test.x0, test.x_true)}]
    return rows + tuned_rows(label, tuning, test, methods(tuning, denoisers, iterations),
                             methods(test, denoisers, iterations))


def tuned_rows(label: str, tuning, test, tuned: dict, testing: dict) -> list[dict]:
    """One row per method of ``tuned`` (``methods``' form on ``tuning``): its point chosen on ``tuning`` by
    ``tune``, then ``testing``'s run of it on ``test``."""
    rows = []
    for name, (run, grids, describe) in tuned.items():
        start = time.perf_counter()
        best, values, bracketed = tune(lambda p, run=run: psnr(run(p).clamp(0, 1), tuning.x_true).item(),
                                       [list(g) for g in grids])
        x = testing[name][0](best)
        rows.append({"problem": label, "method": name, "setting": describe(best), "parameters": list(best),
                     **scores(x, test.x_true), "tuning_psnr": round(values[best], 2), "grid_points": len(values),
                     "bracketed": bracketed, "seconds": round(time.perf_counter() - start, 1)})
        print(f"{label}: {name} ({describe(best)}) {rows[-1]['psnr']} dB", flush=True)
    return rows


def denoise_rows(denoisers: dict) -> list[dict]:
    """Part ``denoise``: 8 crops of the test pictures at each σ; TV's weight tuned on crops of the validation
    picture; BM3D and the networks given σ (their input, not tuned)."""
    test = natural_crops(8, 128, torch.Generator().manual_seed(VALIDATION_SEED), split="test")
    tuning = natural_crops(8, 128, torch.Generator().manual_seed(VALIDATION_SEED), split="validation")
    rows = []
    for sigma in DENOISE_SIGMAS:
        noise = lambda clean: sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))  # noqa: E731
        noisy_test, noisy_tuning = test + noise(test), tuning + noise(tuning)
        rows.append({"problem": f"denoising 8 test crops, σ = {sigma:g}", "method": "noisy", "setting": "",
                     **scores(noisy_test, test)})
        best, values, bracketed = tune(lambda p: psnr(tv_denoise(noisy_tuning, p[0] * sigma, 200).clamp(0, 1),
                                                      tuning).mean().item(), [list(TV_DENOISE_LAM_OVER_SIGMA)])
        rows.append({"problem": f"denoising 8 test crops, σ = {sigma:g}", "method": "TV",
                     "setting": f"λ = {best[0]:.3g}·σ", "parameters": list(best),
                     **scores(tv_denoise(noisy_test, best[0] * sigma, 200), test),
                     "tuning_psnr": round(values[best], 2), "bracketed": bracketed})
        for name, D in denoisers.items():
            with torch.no_grad():
                x = D(noisy_test, sigma)
            rows.append({"problem": f"denoising 8 test crops, σ = {sigma:g}", "method": name,
                         "setting": f"σ = {sigma:g} (given)", **scores(x, test)})
    return rows


def checkpoint_rows(denoisers: dict, iterations: int, device) -> list[dict]:
    """Part ``checkpoints``: each app's shipped full RED-DEQ and ODER on data/'s image of that app at the
    checkpoints' setting -- as trained, and with τ scaled by a factor tuned on the tuning image -- beside TV,
    PnP-ADMM and RED with the U-Net tuned the same way."""
    manifest, rows = checkpoints.read_manifest(), []
    for app, test_name, tuning_name in (("ct", "ct", "ct_tuning"), ("mri", "mr", "mr_tuning"), ("idt", "cell", None)):
        s = SETTINGS[app]
        if f"deq_{app}_full" not in manifest:
            continue
        truth = lambda name: real_image(name, s.image_size).to(device)  # noqa: E731
        test = make_problem(app, snr_db=s.snr_db, truth=truth(test_name), device=device)
        # the cell has no second image: tuned on a phantom of cells (a training-like image, not the test one)
        tuning = make_problem(app, snr_db=s.snr_db, truth=truth(tuning_name) if tuning_name else "cells", seed=1,
                              device=device)
        label = f"{app.upper()} real image at the checkpoints' setting ({s.image_size}², B = {s.num_blocks})"
        rows += compare(label, tuning, test, {"unet": denoisers["unet"]}, iterations)
        names = (("full RED-DEQ", f"deq_{app}_full"), ("ODER", f"oder_{app}"))
        models = {method: (name, load_model(name, device)) for method, name in names if name in manifest}
        for method, (name, model) in models.items():
            with torch.no_grad():
                x = model(test.x0, test.g, generator=torch.Generator().manual_seed(1))
            rows.append({"problem": label, "method": method, "setting": f"{name} (untuned)", **scores(x, test.x_true)})
        rows += tuned_rows(label, tuning, test, deq_methods(tuning, models), deq_methods(test, models))
    return rows


def main(args) -> int:
    check_out(args.out)
    device = as_device(args.device, "--device")
    iterations = checks.integer("--iterations", args.iterations, 2)
    parts = [checks.choice("--parts", p.strip(), PARTS) for p in args.parts.split(",") if p.strip()]
    denoisers = {name: load_denoiser(name, device=device) for name in LEARNED}
    try:
        denoisers["BM3D"] = load_denoiser("bm3d", device=device)
        bm3d_note = "BM3D: the bm3d package (Dabov et al., IEEE TIP 2007; free for non-commercial use)."
    except ImportError:
        bm3d_note = "BM3D rows skipped: the optional bm3d package is not installed (pip install 'oder-edu[bm3d]')."
    records, start = [], time.perf_counter()
    if "denoise" in parts:
        records += denoise_rows(denoisers)
    if "reconstruct" in parts:
        ct = lambda name, seed: make_problem("ct", 128, 90, snr_db=40.0, truth=real_image(name).to(device),  # noqa: E731
                                             seed=seed, device=device, finer_grid=True)
        mr = lambda name, seed: make_problem("mri", 64, 8, snr_db=40.0, truth=real_image(name).to(device),  # noqa: E731
                                             seed=seed, device=device)
        records += compare("CT slice 128², 90 angles, 40 dB, finer grid", ct("ct_tuning", 1), ct("ct", 0), denoisers,
                           iterations)
        records += compare("MR slice 64², 8 coils, 4x, 40 dB", mr("mr_tuning", 1), mr("mr", 0), denoisers, iterations)
    if "checkpoints" in parts:
        records += checkpoint_rows(denoisers, iterations, device)
    caption = (f"Fair protocol (module docstring of oder_edu/commands/bench_priors.py): each method tuned on a tuning "
               f"image, run once on the test image; {iterations} iterations of TV and RED, {iterations // 2} of "
               f"PnP-ADMM; the DEQ/ODER checkpoints as trained and with τ scaled by a tuned factor. {bm3d_note} "
               f"Whole run {time.perf_counter() - start:.0f} s.")
    write_results("priors", records, args, caption, ship=True,
                  sections=[(problem, [r for r in records if r["problem"] == problem])
                            for problem in dict.fromkeys(r["problem"] for r in records)])
    return 0
