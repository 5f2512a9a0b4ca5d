"""``oder-edu bench widgets``: the reconstruction explorer's responsiveness, driven headless; with
``--sweep`` also the RED sweep behind its default σ and τ (see benchmarks/README.md)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import torch

from .. import checks
from ..algorithms import red
from ..problems import make_problem
from ..timing import median_ms, timed
from ..widgets import ReconstructionExplorer
from ..widgets.runner import choose_red_setting, red_sweep
from .results import add_bench_arguments, check_out, thread_counts, write_results


def add_arguments(parser) -> None:
    add_bench_arguments(parser, threads=True)
    parser.add_argument("--image-size", type=int, default=128, help="CT image size n (n x n), default 128")
    parser.add_argument("--num-blocks", type=int, default=180, help="B: CT projection angles, default 180")
    parser.add_argument("--ratio", type=float, default=0.25, help="minibatch ratio b/B, default 0.25")
    parser.add_argument("--iterations", type=int, default=60, help="iterations per timed run, default 60")
    parser.add_argument("--changes", type=int, default=12, help="control changes timed, default 12")
    parser.add_argument("--denoiser", default="dncnn", help="dncnn (shipped), tv or gaussian; default dncnn")
    parser.add_argument("--sweep", action="store_true", help="also sweep RED's σ and τ for each problem")
    parser.add_argument("--seed", type=int, default=0, help="seed of the change times, default 0")


async def _first_frames(ex, changes: int, rng: random.Random) -> tuple[float, list[float]]:
    """Run-press → first frame, and control change → first frame with the new value (ms)."""
    pressed = time.perf_counter()
    task = ex.start(100_000)
    while not any(i > 0 for i, _ in ex.frames):
        await asyncio.sleep(0)
    run_to_frame = (next(t for i, t in ex.frames if i > 0) - pressed) * 1e3
    safe, start = ex.gamma.value, ex.batch_ratio.value
    options = [value for _, value in ex.batch_ratio.options]
    here = options.index(start)
    neighbour = options[here + 1] if here + 1 < len(options) else options[here - 1]
    latencies = []
    for k in range(changes):
        await asyncio.sleep(rng.uniform(0.15, 0.35))  # a random phase relative to the redraws
        if k % 3 == 0:
            ex.sigma.value = round(ex.sigma.value + (0.005 if k % 2 else -0.005), 3)
        elif k % 3 == 1:
            ex.gamma.value = safe * (0.9 if ex.gamma.value >= safe else 1.0)
        else:  # toggle between the stated b/B and the next one
            ex.batch_ratio.value = neighbour if ex.batch_ratio.value == start else start
        changed, first_new = time.perf_counter(), len(ex.history) + 1
        while not (ex.frames and ex.frames[-1][0] >= first_new):
            await asyncio.sleep(0)
        latencies.append((ex.frames[-1][1] - changed) * 1e3)
    ex.stop()
    await task
    return run_to_frame, latencies


def _live_rate(ex, iterations: int) -> float:
    history, seconds = timed(asyncio.run, ex.run(iterations))
    return len(history) / seconds


def _solver_rate(ex, args) -> tuple[float, float]:
    """Bare ``red`` iterations per second on the explorer's problem, and process CPU ms per iteration."""
    p, s = make_problem("ct", args.image_size, args.num_blocks), ex.settings()
    stream = red(p.A, p.y, ex.D, sigma=s.sigma, tau=s.tau, gamma=s.gamma, batch_ratio=s.batch_ratio, x0=p.x0,
                 max_iter=args.iterations, sampler=p.setting.sampler, generator=torch.Generator().manual_seed(0))
    start, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in stream)
    return count / (time.perf_counter() - start), (time.process_time() - cpu) / count * 1e3


def measure(ex, args) -> dict:
    """One record: responsiveness and speed of ``ex`` with the current torch thread count."""
    ex.reference.value = False
    ex.run_sync(3)  # warm-up: first calls pay for lazy initialisation (dispatch mode, caches)
    controls = (ex.gamma.value, ex.sigma.value, ex.batch_ratio.value)
    run_to_frame, latencies = asyncio.run(_first_frames(ex, args.changes, random.Random(args.seed)))
    ex.gamma.value, ex.sigma.value, ex.batch_ratio.value = controls  # the rates are for the stated b/B
    rate = _live_rate(ex, args.iterations)
    solver_rate, solver_cpu_ms = _solver_rate(ex, args)
    ex.reference.value = True
    rate_with_reference = _live_rate(ex, max(10, args.iterations // 2))
    x, history = torch.rand(1, 1, args.image_size, args.image_size), ex.history
    render = median_ms(lambda: ex.figure.update(x, [r.iteration for r in history], [r.psnr for r in history],
                                                [r.reference_psnr for r in history]), repeat=7, warmup=1)
    return {"case": f"RED, CT {args.image_size}², {args.num_blocks} angles, b/B = {ex.batch_ratio.label}",
            "denoiser": args.denoiser, "device": str(ex.device), "threads": torch.get_num_threads(),
            "first_frame_ms": statistics.median(latencies), "first_frame_ms_max": max(latencies),
            "run_to_first_frame_ms": run_to_frame, "iters_per_s": rate,
            "iters_per_s_with_reference": rate_with_reference, "solver_iters_per_s": solver_rate,
            "solver_cpu_ms_per_iter": solver_cpu_ms, "frame_render_ms": render, "changes": len(latencies)}


def main(args) -> int:
    check_out(args.out)
    checks.integer("--image-size", args.image_size, 16)
    checks.integer("--num-blocks", args.num_blocks, 1)
    checks.ratio("--ratio", args.ratio)
    for name in ("iterations", "changes"):
        checks.integer(f"--{name}", getattr(args, name), 1)
    counts, default_threads = thread_counts(args.threads), torch.get_num_threads()
    ex = ReconstructionExplorer("ct", "red", args.image_size, denoiser=args.denoiser,
                                num_blocks={"ct": args.num_blocks}, reference=False, band=0)
    ex.batch_ratio.value = min((value for _, value in ex.batch_ratio.options), key=lambda r: abs(r - args.ratio))
    records = []
    for threads in counts:
        torch.set_num_threads(threads)
        records.append(measure(ex, args))
    torch.set_num_threads(default_threads)
    D = ex.D
    ex.close()
    if args.sweep:
        for app in ("ct", "mri", "idt"):
            rows = red_sweep(make_problem(app), D)
            chosen = choose_red_setting(rows)
            records += [{"case": f"RED sweep, {app}", **r, "chosen": r is chosen} for r in rows]
            print(f"{app}: σ = {chosen['sigma']}, τ/L_g = {chosen['tau_over_L']}: {chosen['final_psnr']} dB", flush=True)

    caption = (f"Reconstruction explorer, driven headless through its asyncio loop. first_frame_ms: median over "
               f"{args.changes} changes of σ, γ, b/B (max beside it), 0.1 s redraw throttle included; iters_per_s: "
               f"live run without the full-batch reference and the seed band; one record per torch thread count.")
    write_results("widgets", records, args, caption, ship=args.sweep)
    return 0
