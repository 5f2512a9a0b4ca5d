"""``oder-edu bench oder``: ODER vs full RED-DEQ vs unrolled RED per app: training-step cost, the
cost model F + P·b/B and the shipped checkpoints' held-out scores (see benchmarks/README.md)."""

from __future__ import annotations

import functools
import statistics
import time
from fractions import Fraction

import torch

from .. import checkpoints, checks
from ..deq import ModelConfig, build, evaluate, held_out, load_model, train_step
from ..device import as_device
from ..images import training_images
from ..physics import LeastSquares
from ..problems import initial_image, make_operator, simulate
from .results import add_bench_arguments, check_out, write_results


def add_arguments(parser) -> None:
    add_bench_arguments(parser, device=True)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--apps", default="ct,mri,idt", help="comma-separated apps (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=10, help="forward and backward iterations of a timed step")
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per case (median)")
    parser.add_argument("--test-images", type=int, default=8, help="held-out images per checkpoint")
    parser.add_argument("--online-iterations", type=int, default=200, help="plain online iterations at test time")
    parser.add_argument("--ratios", default="1/2,1/4,1/8", help="ODER ratios b/B (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=None, help="override every app's image size (cost only)")
    parser.add_argument("--num-blocks", type=int, default=None, help="override every app's B (cost only)")


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


def step_cost_rows(app: str, size, blocks, iters: int, repeat: int, device, ratios) -> list[dict]:
    """One row per (method, ratio) with ``train_step_ms`` and ``train_peak_mib`` on one image of ``app``:
    a warm-up step, one step for the memory, then the timed steps round-robin."""
    A = make_operator(app, size, blocks)
    pretrained = "dncnn_small" if "dncnn_small" in checkpoints.read_manifest() else None
    generator = torch.Generator().manual_seed(0)
    x = training_images(1, A.image_shape[-1], generator, {"random_cells": 1.0} if app == "idt" else None).to(device)
    y = simulate(A, x, 40.0, generator)
    x0, g = initial_image(A, y), LeastSquares(A, y)
    runs = {}
    for method, ratio in [("unrolled", 1.0), ("full", 1.0)] + [("oder", r) for r in ratios]:
        config = ModelConfig(app=app, image_size=A.image_shape[-1], num_blocks=A.num_blocks, method=method,
                             batch_ratio=ratio, pretrained=pretrained, max_iter=iters, tol=0.0, backward_max_iter=iters,
                             backward_tol=0.0, unroll_iter=iters)
        torch.manual_seed(0)
        model = build(config, A).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)  # tiny: the weights barely move
        step = functools.partial(train_step, model, optimizer, x, x0, g, generator)
        step(measure_memory=False)
        runs[(method, ratio)] = (step, step(measure_memory=True)["peak_mib"], [])
    for _ in range(repeat):
        for step, _, timed_steps in runs.values():
            timed_steps.append(step(measure_memory=False))
    return [{"app": app, "image_size": A.image_shape[-1], "num_blocks": A.num_blocks, "method": method,
             "ratio": ratio, "b": round(ratio * A.num_blocks),
             "train_step_ms": round(statistics.median(r["seconds"] for r in timed_steps) * 1e3, 1),
             "train_peak_mib": round(peak, 2)} for (method, ratio), (_, peak, timed_steps) in runs.items()]


def split_cost(rows: list[dict], key: str) -> tuple[float, float] | None:
    """Least-squares fit ``cost(r) = F + P·r`` over the full and ODER rows: ``(F, P)``, or None
    with fewer than two ratios."""
    points = [(r["ratio"], r[key]) for r in rows if r["method"] in ("full", "oder")]
    if len({ratio for ratio, _ in points}) < 2:
        return None
    P, F = statistics.linear_regression(*zip(*points))
    return F, P


def add_cost_model(rows: list[dict]) -> None:
    """Add to each full/ODER row the measured ratios to full DEQ, the fitted F and P of time and
    memory, the floor 1/(1 + P/F) and the ratio the fit predicts at the row's b/B."""
    full = next(r for r in rows if r["method"] == "full")
    for key, short in (("train_step_ms", "time"), ("train_peak_mib", "memory")):
        fit = split_cost(rows, key)
        for r in rows:
            if r["method"] == "unrolled":
                continue
            r[f"{short}_vs_full"] = round(r[key] / full[key], 3)
            if fit:
                F, P = fit
                r[f"{short}_fixed"], r[f"{short}_per_ratio"] = round(F, 2), round(P, 2)
                r[f"{short}_floor"] = round(F / (F + P), 3) if F + P > 0 else None
                r[f"{short}_predicted"] = round((F + P * r["ratio"]) / (F + P), 3) if F + P > 0 else None


def accuracy(app: str, method: str, ratio: float, n_images: int, online_iters: int, device) -> dict:
    """Held-out scores of the shipped checkpoint for (app, method); empty without one."""
    name = {"full": f"deq_{app}_full", "oder": f"oder_{app}", "unrolled": f"unrolled_{app}"}[method]
    if name not in checkpoints.read_manifest():
        return {}
    model = load_model(name, device)
    c = model.config
    if method == "oder" and ratio != c.batch_ratio:
        return {}
    A = make_operator(c.app, c.image_size, c.num_blocks)
    images = held_out(app, n_images, c.image_size).to(device)
    score = functools.partial(evaluate, model, A, images, c.snr_db)
    tested = score(properties=method != "unrolled")
    record = {"test_checkpoint": name, "test_psnr": round(tested["psnr"], 2), "test_ssim": round(tested["ssim"], 4),
              "test_forward_iters": round(tested["iters"], 1)}
    if method != "unrolled":
        record.update(test_contraction=round(tested["contraction"], 4), test_plain_converged=tested["plain_converged"])
    if method == "oder":
        record.update(test_psnr_all_blocks=round(score(batch_ratio=1.0)["psnr"], 2),
                      test_psnr_online=round(score(resample="iteration", max_iter=online_iters)["psnr"], 2),
                      test_psnr_one_S=round(score(resample="call")["psnr"], 2))
    return record


def main(args) -> int:
    check_out(args.out)
    if args.threads is not None:
        torch.set_num_threads(checks.integer("--threads", args.threads, 1))
    device = as_device(args.device, "--device")
    apps = [checks.choice("--apps", a.strip(), ("ct", "mri", "idt")) for a in args.apps.split(",") if a.strip()]
    for name in ("iterations", "repeat", "test_images", "online_iterations"):
        checks.integer(f"--{name.replace('_', '-')}", getattr(args, name), 1)
    ratios = parse_ratios(args.ratios)
    custom = args.image_size is not None or args.num_blocks is not None
    records, start = [], time.perf_counter()
    for app in apps:
        rows = step_cost_rows(app, args.image_size, args.num_blocks, args.iterations, args.repeat, device, ratios)
        add_cost_model(rows)
        for row in rows:
            if not custom:  # checkpoints are scored at their own setting only
                row.update(accuracy(app, row["method"], row["ratio"], args.test_images, args.online_iterations,
                                    device))
            print(f"{app} {row['method']} {Fraction(row['ratio']).limit_denominator(512)}: "
                  f"{row['train_step_ms']:.0f} ms, {row['train_peak_mib']:.1f} MiB, PSNR {row.get('test_psnr')}", flush=True)
        records += rows
    caption = (f"One training step on one image with {args.iterations} forward and backward iterations for every "
               f"method (unrolled: K = {args.iterations}), on {device}; median of {args.repeat} steps; peak tensor "
               f"memory of one more step. Checkpoint scores on {args.test_images} held-out images; test_psnr_online: "
               f"{args.online_iterations} iterations; the cost model: benchmarks/README.md. Whole run "
               f"{time.perf_counter() - start:.0f} s.")
    write_results("oder", records, args, caption, ship=not custom)
    return 0
