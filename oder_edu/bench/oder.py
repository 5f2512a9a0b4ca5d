"""``oder-edu bench oder``: ODER against full RED-DEQ and unrolled RED, measured.

Two measurements per (app, method, ratio), written as one record each:

- **Cost of one training step** (forward solve, backward, Adam update) in a
  measurement-dominated setting -- CT 256^2 with 180 angles, IDT 128^2 with 64 LEDs -- on
  one image, with a fixed number of forward and backward iterations for every method (so
  the columns compare the cost per iteration; the unrolled baseline backpropagates
  through that many iterations). ``train_step_ms`` is the median wall time without the
  memory counter; ``train_peak_mib`` the peak tensor memory of a separate, identical step
  (``PeakTensorMemory``: CPU tensor storages or the CUDA allocator; tensors that exist
  before the step -- weights, Adam state, operator tables -- are not counted).
- **Accuracy** of the shipped checkpoints on held-out phantoms (``validation_phantoms``,
  a seed never used for training) at the size they were trained at: mean PSNR / SSIM.
  A ratio without a checkpoint of its own is evaluated with the ODER-1/4 checkpoint run at
  that ratio; the caption and the ``test_checkpoint`` column say which weights were used.
"""

from __future__ import annotations

import functools
import shlex
import statistics
import sys
import time

import torch

from .. import checkpoints
from ..physics import LeastSquares
from . import DEFAULT_OUT, write_results

COST_SETTINGS = {"ct": (256, 180), "idt": (128, 64)}  # (image_size, num_blocks)
RATIOS = (0.5, 0.25, 0.125)
CHECKPOINT = {"full": "deq_{app}_full", "oder": "oder_{app}_q", "unrolled": "unrolled_{app}"}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--apps", default="ct,idt", help="comma-separated apps (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=10,
                        help="forward and backward iterations of a timed step (unrolled: K)")
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per case (median)")
    parser.add_argument("--test-images", type=int, default=8, help="held-out phantoms per case")
    parser.add_argument("--cost-size", type=int, default=None, help="override the image size of the cost runs")
    parser.add_argument("--device", default=None, help="default: oder_edu.device.default_device()")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def cases():
    """(method, ratio) in table order."""
    return [("unrolled", 1.0), ("full", 1.0)] + [("oder", r) for r in RATIOS]


def step_costs(app: str, image_size: int, num_blocks: int, iters: int, repeat: int, device: torch.device,
               prior) -> dict:
    """``{(method, ratio): cost record}``: step time and peak tensor memory of every case.

    All cases share one image and its measurements. After a warm-up step each (Adam
    allocates its state, caches fill) and one step under ``PeakTensorMemory``, the timed
    steps run round-robin, ``repeat`` rounds, so that a change of load on a shared machine
    affects every case alike; the median is reported.
    """
    from ..deq import REDDEQ
    from ..train.deq import initial_image, make_operator, simulate, train_step, training_batch

    A = make_operator(app, image_size, num_blocks)
    generator = torch.Generator().manual_seed(0)
    x = training_batch(app, 1, image_size, generator)
    y = simulate(A, x, 50.0, generator)
    x, y = x.to(device), y.to(device)
    x0, g = initial_image(app, A, y), LeastSquares(A, y)
    L = A.norm() ** 2
    runs = {}
    for method, ratio in cases():
        denoiser, scale = prior()
        model = REDDEQ(denoiser, 0.05, gamma=1 / (1.1 * L), tau=0.1 * L * scale, batch_ratio=ratio,
                       backward="unrolled" if method == "unrolled" else "implicit", max_iter=iters, tol=0.0,
                       backward_max_iter=iters, backward_tol=0.0, unroll_iter=iters).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)  # tiny: the weights barely move
        step = functools.partial(train_step, model, optimizer, x, x0, g, generator)
        step(measure_memory=False)
        runs[(method, ratio)] = (step, step(measure_memory=True)["peak_mib"], [])
    for _ in range(repeat):
        for step, _, rows in runs.values():
            rows.append(step(measure_memory=False))
    return {
        key: {
            "train_step_ms": round(statistics.median(r["seconds"] for r in rows) * 1e3, 1),
            "train_peak_mib": round(peak, 2),
            "forward_iters": rows[-1]["forward_iters"],
            "backward_iters": rows[-1]["backward_iters"],
        }
        for key, (_, peak, rows) in runs.items()
    }


def accuracy(app: str, method: str, ratio: float, n_images: int, device: torch.device) -> dict:
    """Held-out PSNR / SSIM of the shipped checkpoint for (app, method[, ratio]).

    ODER rows are tested the way they were trained -- one block set S of b = ratio * B
    blocks per reconstruction -- and, on the row of the checkpoint's own ratio, also with
    all B blocks (``test_psnr_all_blocks``), which separates what minibatch *training*
    costs from what minibatch *testing* costs, and online (``test_psnr_online``: a fresh S
    at every iteration, the authors' test code, with the checkpoint's own solver).
    """
    from ..phantoms import VALIDATION_SEED, validation_phantoms
    from ..train.deq import evaluate, load_model, make_operator

    name = CHECKPOINT[method].format(app=app)
    if name not in checkpoints.read_manifest():
        return {"test_checkpoint": None, "test_psnr": None, "test_ssim": None}
    model = load_model(name, device)
    c = model.config
    A = make_operator(c["app"], c["image_size"], c["num_blocks"])
    images = validation_phantoms(n_images, c["image_size"]).to(device)

    def scores(batch_ratio, resample=None):
        return evaluate(model, A, images, c["snr_db"], app, seed=VALIDATION_SEED + 1, batch_ratio=batch_ratio,
                        resample=resample)

    tested = scores(ratio if method == "oder" else None)
    record = {
        "test_checkpoint": name if method != "oder" or ratio == c["batch_ratio"] else f"{name} at b/B={ratio:g}",
        "test_image_size": c["image_size"], "test_num_blocks": c["num_blocks"],
        "test_psnr": round(tested["psnr"], 2), "test_ssim": round(tested["ssim"], 4),
        "test_forward_iters": round(tested["iters"], 1),
    }
    if method == "oder":  # properties of the checkpoint: shown on its own row only
        own = ratio == c["batch_ratio"]
        record["test_psnr_all_blocks"] = round(scores(1.0)["psnr"], 2) if own else None
        record["test_psnr_online"] = round(scores(ratio, "iteration")["psnr"], 2) if own else None
    return record


def main(args) -> int:
    from ..deq import make_prior
    from ..device import default_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    for app in apps:
        if app not in COST_SETTINGS:
            raise ValueError(f"--apps must name apps among {sorted(COST_SETTINGS)}, got {app!r}")
    if args.iters < 1 or args.repeat < 1 or args.test_images < 1:
        raise ValueError("--iters, --repeat and --test-images must be >= 1")
    shipped = "dncnn" in checkpoints.read_manifest()

    def prior():  # the shipped DnCNN, spectral-normalized: the R_theta every checkpoint starts from
        torch.manual_seed(0)
        return make_prior("dncnn" if shipped else None)

    records = []
    start = time.perf_counter()
    for app in apps:
        size, blocks = COST_SETTINGS[app]
        size = args.cost_size or size
        costs = step_costs(app, size, blocks, args.iters, args.repeat, device, prior)
        for method, ratio in cases():
            record = {"app": app, "image_size": size, "num_blocks": blocks, "method": method, "ratio": ratio}
            record.update(costs[(method, ratio)])
            record.update(accuracy(app, method, ratio, args.test_images, device))
            records.append(record)
            print(f"{app} {method} {ratio:g}: {record['train_step_ms']:.0f} ms, {record['train_peak_mib']:.1f} MiB, "
                  f"PSNR {record['test_psnr']}", flush=True)
    seconds = time.perf_counter() - start
    command = "oder-edu " + shlex.join(sys.argv[1:]) if sys.argv[1:3] == ["bench", "oder"] else ""
    write_results("oder", records, args.out, caption(records, args, seconds, shipped, device), command)
    return 0


def _ratio_line(records: list[dict], app: str) -> str:
    by = {(r["method"], r["ratio"]): r for r in records if r["app"] == app}
    full, quarter = by.get(("full", 1.0)), by.get(("oder", 0.25))
    if not (full and quarter):
        return ""
    memory = quarter["train_peak_mib"] / full["train_peak_mib"]
    speed = quarter["train_step_ms"] / full["train_step_ms"]
    line = (f"{app.upper()}: ODER at b/B = 1/4 vs full DEQ: peak memory {memory:.2f}x (target <= 0.4), "
            f"step time {speed:.2f}x (target <= 0.45)")
    if full["test_psnr"] is not None and quarter["test_psnr"] is not None:
        gap = full["test_psnr"] - quarter["test_psnr"]
        gap_all = full["test_psnr"] - quarter["test_psnr_all_blocks"]
        line += (f", test PSNR {gap:.2f} dB below full when tested with b/B = 1/4 as trained, "
                 f"{gap_all:.2f} dB below when the same checkpoint is tested with all blocks (target <= 0.5)")
    return line + "."


def _explanations(records: list[dict]) -> list[str]:
    """Why a target is missed, for the misses that this run shows."""
    by = {(r["app"], r["method"], r["ratio"]): r for r in records}
    notes = []
    ct_full, ct_quarter = by.get(("ct", "full", 1.0)), by.get(("ct", "oder", 0.25))
    if ct_full and ct_quarter and ct_quarter["train_peak_mib"] > 0.4 * ct_full["train_peak_mib"]:
        notes.append(
            "Why CT memory misses: ParallelBeamCT stores per-angle interpolation tables; with all angles "
            "(full DEQ) a step uses them in place, which the counter does not see (they exist before the "
            "step), while a subset of angles gathers copies of its rows (index_select), which autograd "
            "keeps for the backward pass. ODER's CT step therefore allocates tables that the full step "
            "does not. A projector that computes its weights per chunk on the fly would avoid it."
        )
    idt_full, idt_quarter = by.get(("idt", "full", 1.0)), by.get(("idt", "oder", 0.25))
    if idt_full and idt_quarter and idt_quarter["train_peak_mib"] > 0.4 * idt_full["train_peak_mib"]:
        notes.append(
            "Why IDT memory misses: what autograd keeps of R_theta's activations for the backward pass "
            "does not depend on b, and at 128^2 with 64 LEDs it is comparable to the operator's share, so "
            "the step's peak falls by less than 4x."
        )
    if ct_quarter and ct_full and ct_quarter.get("test_psnr") is not None and (
            ct_full["test_psnr"] - ct_quarter["test_psnr"] > 0.5):
        notes.append(
            "Why CT test PSNR at b/B = 1/4 misses: tested as trained, each reconstruction uses one block set "
            "S, i.e. a quarter of the angles (a sparse-view problem); the ODER checkpoint itself loses far "
            "less when it sees all angles (test_psnr_all_blocks). Drawing a fresh S at every iteration "
            "(test_psnr_online) makes the map random, so the Anderson solve does not settle; plain or "
            "Nesterov iteration, the usual online solvers, diverge with the trained gamma (see REDDEQ)."
        )
    if any(r["train_step_ms"] > 0.45 * by[(r["app"], "full", 1.0)]["train_step_ms"]
           for r in records if r["method"] == "oder" and r["ratio"] == 0.25 and (r["app"], "full", 1.0) in by):
        notes.append(
            "Why step time misses: one application of R_theta (the DnCNN, 7 layers x 32 channels) costs as "
            "much as, or more than, all measurement blocks of these operators on this CPU, so cutting the "
            "operator work by 4x cuts the step by much less. The ratio approaches b/B only when the "
            "operator dominates (more blocks, larger images, a costlier projector, a lighter network)."
        )
    if any(r["test_psnr"] is None for r in records):
        notes.append(
            "No IDT checkpoint is shipped: IDT does not measure the mean (zero-frequency) phase, so the "
            "RED fixed point is not unique along that direction, and our short CPU training of an IDT "
            "RED-DEQ diverged; IDT rows report cost only."
        )
    return notes


def caption(records: list[dict], args, seconds: float, shipped: bool, device) -> str:
    lines = [
        f"One training step (forward solve, implicit backward or backprop through K = {args.iters} unrolled "
        f"iterations, Adam update) on one image, with {args.iters} forward and {args.iters} backward iterations "
        f"for every method, on {device}; train_step_ms is the median of {args.repeat} steps, train_peak_mib the "
        f"peak tensor memory of one more step (PeakTensorMemory; weights, Adam state and operator tables "
        f"allocated before the step are not counted). R_theta is the "
        f"{'shipped DnCNN, spectral-normalized' if shipped else 'untrained spectral-normalized DnCNN (no shipped dncnn)'}. "
        f"test_psnr / test_ssim: mean over {args.test_images} held-out validation_phantoms at the checkpoint's "
        f"own size (test_image_size, test_num_blocks), noise and block draws seeded; oder rows at ratios other "
        f"than 1/4 use the ODER-1/4 checkpoint run at that ratio (test_checkpoint says so); an empty test_psnr "
        f"means no checkpoint is shipped for that method.",
    ]
    lines += [line for app in ("ct", "idt") if (line := _ratio_line(records, app))]
    lines += _explanations(records)
    lines.append(f"Whole run: {seconds:.0f} s.")
    return "\n\n".join(lines)
