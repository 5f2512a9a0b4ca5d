"""``oder-edu bench oder``: ODER against full RED-DEQ and unrolled RED, measured the way users run them.

Every record has a ``part`` (``--parts``, default all) and an ``app``:

- ``step``: the training step exactly as ``oder-edu train deq`` runs it -- each shipped checkpoint's
  solver, tolerances, stopping rule, batch size and contraction penalty (``deq.train_step``), the same
  batches for every method, step 1's one-time set-up excluded: median seconds, peak tensor memory, block
  evaluations and iterations; ODER (variance-reduced) at each of ``--ratios`` and ODER online at 1/4.
- ``map``: a labelled per-iteration cost -- one application of the full map and of a minibatch map at
  each ratio -- from which the cost model F + P·b/B and its floor 1/(1 + P/F) are fitted.
- ``test``: one reconstruction of a held-out test image: PSNR against seconds and block evaluations at
  budgets 1, 2, 4, ... maps (each a complete timed call, tol 0), and the default call (``model(x0, g)``).
- ``training``: the shipped training logs: validation PSNR against the sum of step seconds and against
  block evaluations, and for each method the seconds and blocks it took to reach P = full DEQ's final
  validation PSNR − 0.3 dB (``time_to_P``; the runs being compared trained side by side on one thread each).
- ``accuracy``: the shipped checkpoints on the test split: PSNR, SSIM, the contraction constant of the
  map each iterates, plain convergence, and equilibria -- full DEQ at 4x its budget (the maps its default
  call took) with tol 0 against its default solve, ODER over 3 seeds of S at 1x and 4x its budget.
"""

from __future__ import annotations

import csv
import statistics
import time
from fractions import Fraction

import torch

from .. import checkpoints, checks
from ..deq import NonContractiveError, evaluate, held_out, load_model, train_step
from ..device import as_device
from ..images import training_images
from ..metrics import psnr
from ..physics import LeastSquares, make_sampler
from ..problems import initial_image, make_operator, simulate
from ..train.deq import TrainConfig, training_mix
from .results import add_bench_arguments, check_out, write_results

PARTS = ("step", "map", "test", "training", "accuracy")
CHECKPOINTS = {"full": "deq_{}_full", "oder": "oder_{}", "oder-online": "oder_{}", "unrolled": "unrolled_{}"}
P_MARGIN = 0.3  # dB below full DEQ's final validation PSNR: the accuracy the time-to-accuracy race is to
# Part map's samples each run maps for about this long: one MRI map takes milliseconds, and a median of three
# single calls moved by 0.1 of a full map between two runs of the bench (2026-12-05).
MAP_SAMPLE_SECONDS = 0.25
# Steps and map samples per case: a step's time follows its batch's iteration counts, and CT's ODER/full ratio
# read 0.88 and then 0.59 as the median of 3 steps in two runs of the bench (2026-12-05, 2026-12-06).
REPEAT = 9


def add_arguments(parser) -> None:
    add_bench_arguments(parser, device=True)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--apps", default="ct,mri,idt", help="comma-separated apps (default: %(default)s)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts (default: %(default)s)")
    parser.add_argument("--ratios", default="1/2,1/4,1/8", help="ODER ratios b/B (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="timed steps or maps per case (median)")
    parser.add_argument("--test-images", type=int, default=8, help="held-out test images per checkpoint")
    parser.add_argument("--image-size", type=int, default=None,
                        help="part map only: image size of another setting (default: each checkpoint's own)")
    parser.add_argument("--num-blocks", type=int, default=None,
                        help="part map only: blocks B of another setting (default: each checkpoint's own)")


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"1/2,1/4"`` -> ``(0.5, 0.25)``; each ratio must lie in (0, 1)."""
    ratios = []
    for item in text.split(","):
        try:
            ratio = float(Fraction(item.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"--ratios takes fractions like 1/4 or 0.25, got {item.strip()!r}") from None
        if not 0 < ratio < 1:
            raise ValueError(f"--ratios must lie in (0, 1) (b/B = 1 is the full DEQ row), got {item.strip()}")
        ratios.append(ratio)
    return tuple(ratios)


def shipped(variant: str, app: str, device, ratio: float | None = None):
    """The shipped checkpoint a variant runs (None if absent), set up as the variant runs it: ``"oder"`` at
    ``ratio`` (default its own), ``"oder-online"`` the same weights without snapshots (the paper's online
    iteration)."""
    name = CHECKPOINTS[variant].format(app)
    if name not in checkpoints.read_manifest():
        return None
    model = load_model(name, device)
    if variant.startswith("oder") and ratio is not None:
        model.batch_ratio = ratio
    if variant == "oder-online":
        model.snapshot_every = None
    return model


def _operator(app: str, model, image_size=None, num_blocks=None):
    """The operator of ``app`` at the model's setting (or at ``image_size``, ``num_blocks`` where given)."""
    return make_operator(app, image_size or model.config.image_size, num_blocks or model.config.num_blocks)


def _problem(A, app: str, model, batch: int, generator, device):
    """``(g, x, x0)`` of ``batch`` training images of ``app`` measured by ``A`` at the model's SNR."""
    x = training_images(batch, A.image_shape[-1], generator, training_mix(app)).to(device)
    y = simulate(A, x, model.config.snr_db, generator)
    return LeastSquares(A, y), x, initial_image(A, y)


def _setting(model) -> dict:
    """The setting a record was measured at (the training explorer matches records on it)."""
    return {"image_size": model.config.image_size, "num_blocks": model.config.num_blocks}


def _median(values):
    """The median of the known values (a skipped step's blocks and iterations are None), or None."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def step_rows(app: str, ratios, repeat: int, device) -> list[dict]:
    """Part ``step`` (module docstring). Steps of all variants alternate batch by batch, so that a drift in
    the machine's load touches them alike; a step whose solve stops short of its tolerance (training skips
    its batch) still counts its seconds. One operator serves every batch, as in training: its norms (the
    steps' constants) are computed once, in the untimed first step."""
    variants = [("unrolled", 1.0), ("full", 1.0), *[("oder", r) for r in ratios], ("oder-online", 0.25)]
    cases = []
    for variant, ratio in variants:
        model = shipped(variant, app, device, None if variant in ("full", "unrolled") else ratio)
        if model is None:
            continue
        train = TrainConfig(**checkpoints.read_manifest()[CHECKPOINTS[variant].format(app)]["training"])
        penalty = None if variant == "unrolled" else train.penalty()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.0)  # the step as trained, the weights unchanged
        cases.append((variant, ratio, model.train(), optimizer, penalty, train.batch_size, []))
    if not cases:
        return []
    generator = torch.Generator().manual_seed(0)
    batch = max(case[5] for case in cases)
    A = _operator(app, cases[0][2])
    problems = [_problem(A, app, cases[0][2], batch, generator, device) for _ in range(repeat + 1)]
    rows = []
    for k, (g, x, x0) in enumerate(problems):
        for variant, ratio, model, optimizer, penalty, size, timed in cases:
            data = LeastSquares(A, g.y[:size])
            step = lambda measure: train_step(model, optimizer, x[:size], x0[:size], data,  # noqa: E731
                                              torch.Generator().manual_seed(k), measure, penalty)
            if k == 0:  # the one-time set-up (step sizes' block norms, caches), then the memory
                _attempt(step, False)
                timed.append(("memory", _attempt(step, True)))
            else:
                timed.append(("time", _attempt(step, False)))
    for variant, ratio, model, _, _, size, timed in cases:
        memory = [r for kind, r in timed if kind == "memory"][0]
        steps = [r for kind, r in timed if kind == "time"]
        B = model.config.num_blocks
        rows.append({"part": "step", "app": app, **_setting(model), "variant": variant, "method": variant,
                     "ratio": ratio, "b": B if ratio == 1 else make_sampler(model.sampler, B, ratio).batch_size,
                     "snapshot_every": model.snapshot_every if ratio < 1 else None, "batch": size,
                     "train_step_ms": round(_median([r["seconds"] for r in steps]) * 1e3, 1),
                     "train_peak_mib": round(memory["peak_mib"], 2),
                     "train_step_blocks": _median([r["blocks"] for r in steps]),
                     "forward_iters": _median([r["forward_iters"] for r in steps]),
                     "backward_iters": _median([r["backward_iters"] for r in steps]),
                     "skipped": sum(r["skipped"] for r in steps)})
    full = next((r for r in rows if r["variant"] == "full"), None)
    for r in rows:
        if full is not None and r["variant"] != "unrolled":
            r["time_vs_full"] = round(r["train_step_ms"] / full["train_step_ms"], 3)
            r["memory_vs_full"] = round(r["train_peak_mib"] / full["train_peak_mib"], 3)
    return rows


def _attempt(step, measure: bool) -> dict:
    """``step(measure)``'s row, or for a step that raised NonContractiveError (skipped by training) its
    seconds up to the raise, its blocks unknown, and ``skipped`` = 1."""
    start = time.perf_counter()
    try:
        return {**step(measure), "skipped": 0}
    except NonContractiveError:
        return {"seconds": time.perf_counter() - start, "peak_mib": float("nan"), "blocks": None,
                "forward_iters": None, "backward_iters": 0, "skipped": 1}


def map_rows(app: str, ratios, repeat: int, device, image_size=None, num_blocks=None) -> list[dict]:
    """Part ``map``: the seconds of one application of the full map and of a minibatch map at each ratio
    (the shipped full model, one image, no autograd; the median of ``repeat`` samples, each the mean over as
    many maps as fill ``MAP_SAMPLE_SECONDS``), and the least-squares fit time(r) = F + P·r; at the model's
    setting or at ``image_size`` and ``num_blocks`` (its convolutional prior runs at any size)."""
    model = shipped("full", app, device)
    if model is None:
        return []
    A = _operator(app, model, image_size, num_blocks)
    g, x, x0 = _problem(A, app, model, 1, torch.Generator().manual_seed(0), device)
    generator, rows = torch.Generator().manual_seed(1), []
    for ratio in (1.0, *ratios):
        sampler = model.block_sampler(g, ratio)
        T = model.red_map(g, None if sampler is None else sampler.batch_size)
        with torch.no_grad():
            start = time.perf_counter()
            T(x0, None if sampler is None else sampler(generator))  # untimed: a first call's set-up
            calls = max(1, round(MAP_SAMPLE_SECONDS / (time.perf_counter() - start)))
            seconds = []
            for _ in range(repeat):
                draws = [None if sampler is None else sampler(generator) for _ in range(calls)]
                start = time.perf_counter()
                for blocks in draws:
                    T(x0, blocks)
                seconds.append((time.perf_counter() - start) / calls)
        rows.append({"part": "map", "app": app, "image_size": A.image_shape[-1], "num_blocks": A.num_blocks,
                     "ratio": ratio, "map_ms": round(_median(seconds) * 1e3, 2), "maps_per_sample": calls})
    slope, intercept = statistics.linear_regression([r["ratio"] for r in rows], [r["map_ms"] for r in rows])
    for r in rows:
        r.update(fixed_ms=round(intercept, 2), per_ratio_ms=round(slope, 2),
                 floor=round(intercept / (intercept + slope), 3) if intercept + slope > 0 else None,
                 predicted_vs_full=round((intercept + slope * r["ratio"]) / (intercept + slope), 3),
                 vs_full=round(r["map_ms"] / rows[0]["map_ms"], 3))
    return rows


def test_rows(app: str, device) -> list[dict]:
    """Part ``test``: one held-out test image reconstructed by each variant at budgets 1, 2, 4, ... maps up to
    4x its default (tol 0), and by its default call; PSNR, seconds and block evaluations of each call."""
    rows = []
    for variant in ("full", "oder", "oder-online"):
        model = shipped(variant, app, device)
        if model is None:
            continue
        c = model.config
        A = make_operator(app, c.image_size, c.num_blocks)
        truth = held_out(app, 1, c.image_size).to(device)
        y = simulate(A, truth, c.snr_db, torch.Generator().manual_seed(1))
        x0 = initial_image(A, y)

        def call(**options):
            g = LeastSquares(A, y)
            start = time.perf_counter()
            with torch.no_grad():
                x = model(x0, g, generator=torch.Generator().manual_seed(2), **options)
            return {"seconds": round(time.perf_counter() - start, 4), "blocks": g.evaluations,
                    "iterations": model.forward_trace.iterations, "psnr": round(psnr(x.clamp(0, 1), truth).item(), 3)}

        call()  # the one-time set-up (step sizes' block norms) is not part of a reconstruction
        default = call()
        budget = 1
        while budget <= 4 * max(default["iterations"], 1):
            rows.append({"part": "test", "app": app, "variant": variant, "budget": budget,
                         **call(max_iter=budget, tol=0.0)})
            budget *= 2
        rows.append({"part": "test", "app": app, "variant": variant, "budget": "default", **default})
    return rows


def training_rows(app: str) -> list[dict]:
    """Part ``training``: the validation rows of every shipped training log of ``app`` (step, summed step
    seconds, blocks, validation PSNR), then one ``time_to_P`` row per method."""
    manifest, rows = checkpoints.read_manifest(), []
    curves = {}
    for variant in ("full", "oder", "unrolled"):  # oder-online is the oder checkpoint tested without snapshots
        entry = manifest.get(CHECKPOINTS[variant].format(app))
        if entry is None or "log" not in entry:
            continue
        with open(checkpoints.weights_dir() / entry["log"], newline="") as f:
            points = [(int(r["step"]), float(r["train_seconds"]), int(float(r["train_blocks"])), float(r["val_psnr"]))
                      for r in csv.DictReader(f) if r.get("val_psnr")]
        curves[variant] = points
        rows += [{"part": "training", "app": app, "variant": variant, "step": s, "train_seconds": round(t, 1),
                  "train_blocks": b, "val_psnr": round(v, 3)} for s, t, b, v in points]
    if "full" in curves and curves["full"]:
        target = curves["full"][-1][3] - P_MARGIN
        reach = {v: next(((t, b) for _, t, b, p in points if p >= target), (None, None)) for v, points in curves.items()}
        full_time, full_blocks = reach["full"]
        for variant, (t, b) in reach.items():
            rows.append({"part": "time_to_P", "app": app, "variant": variant, "P": round(target, 3),
                         "seconds_to_P": None if t is None else round(t, 1), "blocks_to_P": b,
                         "seconds_vs_full": None if t is None or not full_time else round(t / full_time, 3),
                         "blocks_vs_full": None if b is None or not full_blocks else round(b / full_blocks, 3),
                         "final_val_psnr": round(curves[variant][-1][3], 3)})
    return rows


def accuracy_rows(app: str, n_images: int, device) -> list[dict]:
    """Part ``accuracy`` (module docstring) for every shipped variant of ``app``."""
    rows = []
    for variant in ("full", "oder", "oder-online", "unrolled"):
        model = shipped(variant, app, device)
        if model is None:
            continue
        c = model.config
        A = make_operator(app, c.image_size, c.num_blocks)
        images = held_out(app, n_images, c.image_size).to(device)
        score = lambda **call: evaluate(model, A, images, c.snr_db, **call)  # noqa: E731
        tested = score(properties=variant != "unrolled")
        row = {"part": "accuracy", "app": app, **_setting(model), "variant": variant, "method": variant,
               "ratio": model.batch_ratio if variant.startswith("oder") else 1.0,
               "checkpoint": CHECKPOINTS[variant].format(app),
               "test_psnr": round(tested["psnr"], 2), "test_ssim": round(tested["ssim"], 4),
               "x0_psnr": round(tested["x0_psnr"], 2), "iterations": round(tested["iters"], 1),
               "blocks_per_image": round(tested["blocks"]), "seconds_per_image": round(tested["seconds"], 3)}
        if variant != "unrolled":
            budget = max(int(round(tested["iters"])), 1)
            row.update(test_contraction=round(tested["contraction"], 4), plain_converged=tested["plain_converged"])
            if variant == "full":
                row["psnr_4x_budget_tol0"] = round(score(max_iter=4 * budget, tol=0.0)["psnr"], 2)
            else:
                moves = [abs(score(seed=s, max_iter=4 * budget, tol=0.0)["psnr"] - score(seed=s)["psnr"])
                         for s in (1, 2, 3)]
                row.update(psnr_move_1x_4x=round(sum(moves) / len(moves), 3),
                           test_psnr_all_blocks=round(score(batch_ratio=1.0)["psnr"], 2),
                           test_psnr_one_S=round(score(resample="call", snapshot_every=None)["psnr"], 2))
        rows.append(row)
    return rows


def main(args) -> int:
    check_out(args.out)
    if args.threads is not None:
        torch.set_num_threads(checks.integer("--threads", args.threads, 1))
    device = as_device(args.device)
    apps = [checks.choice("--apps", a.strip(), ("ct", "mri", "idt")) for a in args.apps.split(",") if a.strip()]
    parts = [checks.choice("--parts", p.strip(), PARTS) for p in args.parts.split(",") if p.strip()]
    repeat = checks.integer("--repeat", args.repeat, 1)
    n_images = checks.integer("--test-images", args.test_images, 1)
    ratios = parse_ratios(args.ratios)
    setting = {key: None if getattr(args, key) is None else checks.integer(f"--{key.replace('_', '-')}", getattr(args, key), 1)
               for key in ("image_size", "num_blocks")}
    if any(setting.values()) and parts != ["map"]:
        raise ValueError("--image-size and --num-blocks set another setting for part map only (the other parts run "
                         "the shipped checkpoints at their own): add --parts map")
    measure = {"step": lambda app: step_rows(app, ratios, repeat, device),
               "map": lambda app: map_rows(app, ratios, repeat, device, **setting), "test": lambda app: test_rows(app, device),
               "training": training_rows, "accuracy": lambda app: accuracy_rows(app, n_images, device)}
    records, start = [], time.perf_counter()
    for app in apps:
        for part in parts:
            rows = measure[part](app)
            print(f"{app} {part}: {len(rows)} records ({time.perf_counter() - start:.0f} s)", flush=True)
            records += rows
    caption = (f"ODER against full RED-DEQ and unrolled RED on {device} with {torch.get_num_threads()} torch "
               f"thread(s): parts {', '.join(parts)} (benchmarks/README.md); training steps with the shipped "
               f"checkpoints' settings, median of {repeat}; test scores on {n_images} held-out images. "
               f"Whole run {time.perf_counter() - start:.0f} s.")
    sections = [(part, [r for r in records if r["part"] == part]) for part in (*parts, "time_to_P")]
    write_results("oder", records, args, caption, ship=True, sections=[s for s in sections if s[1]])
    return 0
