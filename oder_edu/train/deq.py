"""``oder-edu train deq``: train a RED-DEQ (full gradient), ODER (minibatch gradient) or an
unrolled RED network end to end on simulated measurements.

Each Adam step draws fresh images, simulates noisy measurements y = A x + e, starts from
an initial image x0 (filtered back-projection for CT, (1/L) A^T y otherwise), solves the
fixed point x* = T_theta(x*) of :class:`~oder_edu.deq.REDDEQ` and minimizes
mean ||x* - x||^2 over theta (the denoiser) and the RED step gamma and weight tau.

    oder-edu train deq --app ct --method full  --out oder_edu/weights/deq_ct_full.pt
    oder-edu train deq --app ct --method oder --ratio 0.25 --out oder_edu/weights/oder_ct_q.pt
    torchrun --nproc_per_node=2 -m oder_edu.cli train deq ...      (data parallel)

Methods: ``full`` = RED-DEQ with implicit backward (or ``--backward jfb``); ``oder`` = the
same with the minibatch gradient over b = ratio * B blocks in the forward iterations and
the backward (Liu et al., NeurIPS 2022, Algorithm 1); ``unrolled`` = K plain RED steps
backpropagated one by one (the memory-hungry baseline).

Data (nothing downloaded): CT trains on random-ellipse phantoms (``phantoms.random_ellipses``).
IDT trains on fields of cells (``phantoms.random_cells``): a thin sample in a medium is
compact objects on a zero-contrast background, and that background is what lets a prior
recover the mean phase, which IDT does not measure (its transfer functions vanish at zero
frequency; on body-filling ellipse phantoms, whose mean is large, training diverged). MRI trains on
``phantoms.training_images``, a mix of ellipse phantoms, Shepp-Logan variations and crops of
scikit-image's bundled pictures, because anatomy has texture at many scales that pure
ellipses lack. Every app is validated on ``held_out`` images (``phantoms.validation_phantoms``,
a seed never used for training).

Logs: ``LOG_DIR/log.csv`` gets one row per step as it happens (loss, PSNR, seconds, peak
tensor memory, forward and backward iterations, gamma, tau); ``LOG_DIR/log.json`` holds
the run's configuration, every row and the final metrics. ``LOG_DIR/checkpoint.pt``
(model, optimizer, step, data generator) is written every ``--checkpoint-every`` steps and
resumed with ``--resume``. The final weights go to ``--out`` and into the manifest beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import checkpoints
from ..cli import command_line
from ..algorithms.red import red
from ..deq import REDDEQ, make_prior
from ..deq.red_deq import RESAMPLE
from ..deq.solvers import SOLVERS, NonContractiveError
from ..memory import PeakTensorMemory
from ..metrics import psnr, ssim
from ..physics import LeastSquares
from ..physics.samplers import SAMPLERS
from . import ddp

APPS = ("ct", "mri", "idt")
METHODS = ("full", "oder", "unrolled")
# Number of blocks B: CT projection angles (96 = 4 * 24, so that b/B = 1/2, 1/4, 1/8 are exact
# for the stratified sampler), MRI coils, IDT LEDs; and the input SNR in dB of the simulated
# measurements (the ODER paper uses 50 dB on CT sinograms).
DEFAULT_BLOCKS = {"ct": 96, "mri": 8, "idt": 64}
DEFAULT_SNR_DB = {"ct": 50.0, "mri": 40.0, "idt": 40.0}
LOG_COLUMNS = ("step", "loss", "psnr", "seconds", "peak_mib", "forward_iters", "backward_iters",
               "forward_residual", "backward_residual", "gamma", "tau")


# --- the imaging problem of each app ------------------------------------------------------


def make_operator(app: str, image_size: int, num_blocks: int):
    """The blocked operator of ``app``: CT angles, MRI coils (4x undersampled) or IDT LEDs."""
    if app == "ct":
        from ..physics import ParallelBeamCT

        return ParallelBeamCT(image_size, num_angles=num_blocks)
    if app == "mri":
        from ..physics import MultiCoilMRI

        return MultiCoilMRI(image_size, num_coils=num_blocks, acceleration=4)
    if app == "idt":
        from ..physics import IntensityDiffractionTomography

        return IntensityDiffractionTomography(image_size, num_leds=num_blocks)
    raise ValueError(f"app must be one of {APPS}, got {app!r}")


def training_batch(app: str, n: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` fresh training images ``[n, 1, H, W]`` in [0, 1] (see the module docstring)."""
    from ..phantoms import random_cells, random_ellipses, training_images

    if app == "ct":
        return random_ellipses(n, image_size, generator)
    if app == "idt":
        return random_cells(n, image_size, generator)
    return training_images(n, image_size, generator)


def held_out(app: str, n: int, image_size: int) -> torch.Tensor:
    """``n`` validation images of ``app`` ``[n, 1, H, W]``, drawn with ``VALIDATION_SEED``:
    ``validation_phantoms`` (cell fields for IDT, like its training data)."""
    from ..phantoms import validation_phantoms

    return validation_phantoms(n, image_size, cells=app == "idt")


def simulate(A, x: torch.Tensor, snr_db: float, generator: torch.Generator) -> torch.Tensor:
    """Noisy measurements ``y = A x + e`` at input SNR ``snr_db`` (noise drawn on the CPU)."""
    from ..physics import add_noise_snr

    with torch.no_grad():
        return add_noise_snr(A.forward(x), snr_db, generator)


def initial_image(app: str, A, y: torch.Tensor) -> torch.Tensor:
    """x0 ``[N, 1, H, W]``: filtered back-projection for CT, (1/L) A^T y otherwise."""
    with torch.no_grad():
        if app == "ct":
            from ..physics import fbp

            return fbp(A, y)
        return A.adjoint(y) / A.norm() ** 2


# --- model, one step, evaluation ---------------------------------------------------------


def model_config(args: argparse.Namespace, A) -> dict:
    """Everything ``build_model`` needs, stored with the weights."""
    method = args.method
    return {
        "app": args.app, "image_size": args.image_size, "num_blocks": A.num_blocks, "method": method,
        "batch_ratio": args.ratio if method == "oder" else 1.0, "resample": args.resample,
        "sampler": args.sampler, "sigma": args.sigma, "solver": args.solver,
        "backward": "unrolled" if method == "unrolled" else args.backward,
        "max_iter": args.max_iter, "tol": args.tol, "backward_max_iter": args.backward_max_iter,
        "backward_tol": args.backward_tol, "unroll_iter": args.unroll_iter, "snr_db": args.snr,
        "pretrained": args.pretrained, "depth": args.depth, "width": args.width,
    }


def build_model(config: dict, A=None, gamma: float | None = None, tau: float | None = None) -> REDDEQ:
    """A ``REDDEQ`` from ``config``.

    A new model (no ``gamma``/``tau``) starts from ``make_prior(config["pretrained"])``,
    with tau = ``tau_scale`` * L_g and gamma = ``gamma_scale`` / (L_g + tau): with
    ``gamma_scale = 1`` RED's safe step for L_R = 1 (the RED assumption on the denoiser
    residual; Romano et al. 2017), L_g = ||A||^2. Larger steps converge in fewer iterations
    while the map stays contractive; the solvers report it when it does not.
    With ``gamma`` and ``tau`` (a saved model), the denoiser is an untrained spectral-normalized
    ``DnCNN(**config["denoiser"])`` whose weights the caller loads.
    """
    from ..denoisers import DnCNN

    if tau is None:
        pretrained = None if config.get("pretrained") in (None, "none") else config["pretrained"]
        denoiser, scale = make_prior(pretrained, config["depth"], config["width"])
    else:
        denoiser, scale = DnCNN(**{**config["denoiser"], "spectral_norm": True}), 1.0
    if tau is None:
        L = A.norm() ** 2
        tau = config["tau_scale"] * L
        gamma = config.get("gamma_scale", 1.0) / (L + tau)
        tau = tau * scale  # R_theta = R_shipped / scale: keep the same prior weight
    return REDDEQ(
        denoiser, config["sigma"], gamma, tau, batch_ratio=config["batch_ratio"],
        resample=config["resample"], sampler=config["sampler"], solver=SOLVERS[config["solver"]],
        backward=config["backward"], max_iter=config["max_iter"], tol=config["tol"],
        backward_max_iter=config["backward_max_iter"], backward_tol=config["backward_tol"],
        unroll_iter=config["unroll_iter"],
    )


def train_step(net, optimizer, x: torch.Tensor, x0: torch.Tensor, g: LeastSquares,
               generator: torch.Generator, measure_memory: bool = True) -> dict:
    """One Adam step on mean ||x* - x||^2; returns the log row (without ``step``).

    ``net`` is the ``REDDEQ`` or its ``DistributedDataParallel`` wrapper. With
    ``measure_memory``, peak tensor memory is measured around the whole step (forward,
    backward, optimizer update); on the CPU that counter intercepts every tensor operation
    and slows the step down, so its time is then not representative (``peak_mib`` is None
    without it).
    """
    model = getattr(net, "module", net)
    memory = PeakTensorMemory(x.device) if measure_memory else contextlib.nullcontext()
    start = time.perf_counter()
    with memory:
        x_hat = net(x0, g, generator=generator)
        loss = (x_hat - x).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    forward, backward = model.forward_trace, model.backward_trace
    return {
        "loss": loss.item(), "psnr": psnr(x_hat.clamp(0, 1), x).mean().item(), "seconds": seconds,
        "peak_mib": memory.peak_bytes / 2**20 if measure_memory else None, "forward_iters": forward.iterations,
        "backward_iters": 0 if backward is None else backward.iterations,
        "forward_residual": forward.residuals[-1],
        "backward_residual": None if backward is None else backward.residuals[-1], "gamma": model.f.gamma.item(), "tau": model.f.tau.item(),
    }


@torch.no_grad()
def evaluate(model: REDDEQ, A, images: torch.Tensor, snr_db: float, app: str, seed: int,
             batch_size: int = 4, online_iters: int | None = None, **overrides) -> dict:
    """Mean PSNR / SSIM of ``model`` on ``images`` ``[n, 1, H, W]`` (eval mode, no autograd).

    Noise and ODER's blocks come from generators seeded with ``seed``. ``overrides``
    (``batch_ratio``, ``resample``) are passed to the model call; with ``online_iters``,
    the images are instead reconstructed by :func:`online_red` at ``overrides["batch_ratio"]``.
    Also reports x0's PSNR and the mean forward iterations (and, online, the step used).
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    scores = {"psnr": [], "ssim": [], "x0_psnr": [], "iters": [], "gamma": []}
    for batch in images.split(batch_size):
        y = simulate(A, batch, snr_db, generator)
        x0 = initial_image(app, A, y)
        if online_iters:
            x_hat, gamma = online_red(model, A, y, x0, overrides["batch_ratio"], online_iters, generator)
            scores["iters"].append(online_iters)
            scores["gamma"].append(gamma)
        else:
            x_hat = model(x0, LeastSquares(A, y), generator=generator, **overrides)
            scores["iters"].append(model.forward_trace.iterations)
        x_hat = x_hat.clamp(0, 1)
        scores["psnr"] += psnr(x_hat, batch).tolist()
        scores["ssim"] += ssim(x_hat, batch).tolist()
        scores["x0_psnr"] += psnr(x0.clamp(0, 1), batch).tolist()
    model.train(was_training)
    return {key: sum(v) / len(v) for key, v in scores.items() if v}


def online_red(model: REDDEQ, A, y: torch.Tensor, x0: torch.Tensor, batch_ratio: float, iters: int,
               generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """Reconstruct with ``model``'s learned prior by online RED: ``iters`` steps
    x <- x - gamma (grad_S g(x) + tau R_theta(x)), a fresh S of b = batch_ratio * B blocks
    drawn by ``model.sampler`` every step (the authors' test protocol for ODER).

    A stochastic map tolerates a smaller step than the fixed map that Anderson solved in
    training (and Anderson lets the learned gamma leave the contractive range, see
    ``REDDEQ``), so gamma starts at the learned value and is halved after every run that
    diverges. Returns ``(x [N, C, H, W], gamma used)``.
    """
    f = model.f
    gamma = f.gamma.item()
    with nn.utils.parametrize.cached(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the divergence guard's warning: handled here
        for _ in range(30):
            for state in red(A, y, f.denoiser, sigma=f.sigma, tau=f.tau.item(), gamma=gamma,
                             batch_ratio=batch_ratio, sampler=model.sampler, x0=x0, max_iter=iters,
                             generator=generator):
                pass
            if not state.diverged:
                return state.x, gamma
            gamma /= 2
    raise NonContractiveError(f"online RED diverged even with gamma = {gamma:.3g}")


def save_weights(path: Path, model: REDDEQ, config: dict, metrics: dict | None = None) -> None:
    """``{"config", "state_dict", "metrics"}`` (float32, CPU): loadable with ``weights_only``."""
    state = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
    torch.save({"config": config, "state_dict": state, "metrics": metrics or {}}, path)


def load_model(source, device=None) -> REDDEQ:
    """A trained ``REDDEQ`` from a weights file path or a manifest name (sha256-checked).

    The learned gamma and tau come from the saved state; the model is returned in eval mode,
    with the training configuration as ``model.config``, so that
    ``make_operator(c["app"], c["image_size"], c["num_blocks"])`` rebuilds its problem.
    """
    path = Path(str(source))
    if path.suffix == ".pt" and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = checkpoints.load_state(str(source))
    if not isinstance(state, dict) or "config" not in state or "state_dict" not in state:
        raise checkpoints.CheckpointError(f"{source} holds no DEQ config and state_dict")
    config, weights = state["config"], state["state_dict"]
    model = build_model(config, gamma=weights["f.log_gamma"].exp().item(), tau=weights["f.log_tau"].exp().item())
    model.load_state_dict(weights)
    model.config = config  # app, image_size, num_blocks, snr_db, ...: rebuilds its problem
    return model.to(device or "cpu").eval()


# --- the command ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--app", choices=APPS, default="ct", help="CT angles, MRI coils or IDT LEDs as blocks")
    add("--method", choices=METHODS, default="full", help="full DEQ, ODER, or the unrolled baseline")
    add("--ratio", type=float, default=0.25, help="ODER's minibatch ratio b/B in (0, 1]")
    add("--image-size", type=int, default=64)
    add("--num-blocks", type=int, default=None, help=f"B (default per app: {DEFAULT_BLOCKS})")
    add("--snr", type=float, default=None, help=f"input SNR in dB (default per app: {DEFAULT_SNR_DB})")
    add("--steps", type=int, default=300, help="Adam steps")
    add("--batch-size", type=int, default=4, help="images per step (per process under torchrun)")
    add("--lr", type=float, default=1e-4, help="learning rate of the denoiser's weights")
    add("--lr-scalars", type=float, default=1e-2, help="learning rate of log gamma and log tau")
    add("--sigma", type=float, default=0.05, help="denoiser strength sigma fed to R_theta")
    add("--tau-scale", type=float, default=0.02, help="initial tau = TAU_SCALE * ||A||^2")
    add("--gamma-scale", type=float, default=1.0, help="initial gamma = GAMMA_SCALE / (||A||^2 + tau)")
    add("--solver", choices=sorted(SOLVERS), default="anderson", help="forward and backward solver")
    add("--backward", choices=("implicit", "jfb"), default="implicit")
    add("--max-iter", type=int, default=30, help="forward iterations at most")
    add("--tol", type=float, default=1e-3, help="relative residual that stops the forward solve")
    add("--backward-max-iter", type=int, default=30)
    add("--backward-tol", type=float, default=1e-3)
    add("--unroll-iter", type=int, default=10, help="K for --method unrolled")
    add("--resample", choices=RESAMPLE, default="call", help="ODER: one block set per call or per iteration")
    add("--sampler", choices=sorted(SAMPLERS), default="uniform", help="how ODER draws its blocks")
    add("--pretrained", default="dncnn", help="shipped denoiser to start from, or 'none'")
    add("--depth", type=int, default=7, help="DnCNN depth when not pretrained")
    add("--width", type=int, default=32, help="DnCNN width when not pretrained")
    add("--seed", type=int, default=0, help="seeds the data, the block draws and a fresh network")
    add("--val-images", type=int, default=8, help="held-out phantoms for the final metrics")
    add("--out", default=None, help="final weights (default LOG_DIR/model.pt); recorded in the manifest beside it")
    add("--name", default=None, help="manifest key (default: the file name without .pt)")
    add("--log-dir", default=None, help="default runs/deq_APP_METHOD")
    add("--memory-every", type=int, default=1,
        help="measure peak tensor memory every N steps (it slows a CPU step down; 0: never)")
    add("--checkpoint-every", type=int, default=100, help="steps between resumable checkpoints (0: never)")
    add("--resume", default=None, help="continue from a checkpoint.pt written by an earlier run")
    add("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    add("--threads", type=int, default=None, help="CPU threads for torch")
    add("--no-progress", action="store_true", help="hide the tqdm progress bar")


def check_arguments(args: argparse.Namespace) -> None:
    """ValueError for a configuration that cannot train, naming the bad value."""
    if not 0 < args.ratio <= 1:
        raise ValueError(f"--ratio must lie in (0, 1], got {args.ratio}")
    if args.method == "oder" and args.ratio == 1:
        raise ValueError("--method oder needs --ratio below 1 (ratio 1 is --method full)")
    for name in ("steps", "batch_size", "max_iter", "backward_max_iter", "unroll_iter", "image_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("lr", "lr_scalars", "tau_scale", "gamma_scale"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
    if not (math.isfinite(args.sigma) and args.sigma >= 0):
        raise ValueError(f"--sigma must be a finite number >= 0, got {args.sigma}")


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    check_arguments(args)
    args.num_blocks = args.num_blocks or DEFAULT_BLOCKS[args.app]
    args.snr = DEFAULT_SNR_DB[args.app] if args.snr is None else args.snr
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = ddp.device_for(args.device)  # one GPU per process under torchrun
    rank, _ = ddp.setup(args.device)
    log_dir = Path(args.log_dir or f"runs/deq_{args.app}_{args.method}")
    out = Path(args.out) if args.out else log_dir / "model.pt"
    if rank == 0:
        log_dir.mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
    command = command_line(args)
    if ddp.world_size() > 1:
        command = command.replace("oder-edu", "torchrun ... -m oder_edu.cli", 1)
    # The shipped denoiser may be retrained later: record which one this run started from.
    args.pretrained_sha256 = checkpoints.read_manifest().get(args.pretrained, {}).get("sha256")

    A = make_operator(args.app, args.image_size, args.num_blocks)
    config = model_config(args, A)
    torch.manual_seed(args.seed)  # a fresh (not pretrained) network starts the same on every rank
    model = build_model({**config, "tau_scale": args.tau_scale, "gamma_scale": args.gamma_scale}, A).to(device)
    config["denoiser"] = model.f.denoiser.config()
    scalars = [model.f.log_gamma, model.f.log_tau]
    others = [p for p in model.parameters() if all(p is not s for s in scalars)]
    optimizer = torch.optim.Adam([{"params": others, "lr": args.lr},
                                  {"params": scalars, "lr": args.lr_scalars}])
    # Each rank draws different images, noise and blocks; seed + rank keeps runs reproducible.
    generator = torch.Generator().manual_seed(args.seed + 1000 * rank)
    first, rows = 0, []
    if args.resume:
        state = torch.load(args.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generators"][rank])
        first, rows = state["step"], state["rows"]
    # Held-out PSNR of the untrained model (the shipped denoiser inside RED), for comparison.
    before = validate(model, A, args, device) if rank == 0 and not args.resume else None
    net = ddp.wrap(model, device)

    log_file = None
    if rank == 0:
        log_file = open(log_dir / "log.csv", "a" if args.resume else "w", newline="")
        writer = csv.DictWriter(log_file, fieldnames=LOG_COLUMNS)
        if not args.resume:
            writer.writeheader()
    bar = tqdm(range(first, args.steps), desc=f"train deq {args.app} {args.method}",
               disable=args.no_progress or rank != 0, mininterval=2)
    start = time.perf_counter()
    model.train()
    for step in bar:
        x = training_batch(args.app, args.batch_size, args.image_size, generator).to(device)
        y = simulate(A, x, args.snr, generator)
        g = LeastSquares(A, y)
        measure = args.memory_every > 0 and step % args.memory_every == 0
        row = {"step": step + 1,
               **train_step(net, optimizer, x, initial_image(args.app, A, y), g, generator, measure)}
        rows.append(row)
        if rank == 0:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
            log_file.flush()
            bar.set_postfix(loss=f"{row['loss']:.2e}", psnr=f"{row['psnr']:.1f}", fwd=row["forward_iters"],
                            bwd=row["backward_iters"])
        if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
            generators = ddp.gather(generator.get_state())
            if rank == 0:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                            "rows": rows, "generators": generators}, log_dir / "checkpoint.pt")
    seconds = time.perf_counter() - start
    # Every replica's parameter digest and losses: identical digests after different data
    # per process show that the gradient averaging kept the replicas in step.
    replicas = ddp.gather({"digest": ddp.parameter_digest(model), "losses": [r["loss"] for r in rows]})
    if rank == 0:
        log_file.close()
        _finish(args, model, A, config, rows, seconds, replicas, out, log_dir, command, device, before)
    ddp.cleanup()
    return 0


def validate(model: REDDEQ, A, args: argparse.Namespace, device) -> dict:
    """``evaluate`` on ``args.val_images`` ``held_out`` images (fixed seeds)."""
    from ..phantoms import VALIDATION_SEED

    images = held_out(args.app, args.val_images, args.image_size).to(device)
    return evaluate(model, A, images, args.snr, args.app, seed=VALIDATION_SEED + 1)


def _finish(args, model, A, config, rows, seconds, replicas, out, log_dir, command, device, before) -> None:
    """Evaluate on held-out phantoms, save the weights, record them, write log.json."""
    from ..phantoms import VALIDATION_SEED

    scores = validate(model, A, args, device)
    tail = rows[-min(len(rows), 20):]
    metrics = {
        "validation": f"{args.val_images} validation_phantoms{' (cells)' if args.app == 'idt' else ''} of "
                      f"{args.image_size}^2 (seed {VALIDATION_SEED}), "
                      f"noise and blocks seed {VALIDATION_SEED + 1}",
        "val_psnr": round(scores["psnr"], 2), "val_ssim": round(scores["ssim"], 4),
        "val_psnr_before_training": None if before is None else round(before["psnr"], 2),
        "x0_psnr": round(scores["x0_psnr"], 2), "val_forward_iters": round(scores["iters"], 1),
        "final_train_loss": sum(r["loss"] for r in tail) / len(tail),
        "train_step_seconds": round(seconds / max(len(rows), 1), 3),
        "train_peak_mib": max((round(r["peak_mib"], 2) for r in rows if r["peak_mib"] is not None), default=None),
        "gamma": model.f.gamma.item(), "tau": model.f.tau.item(),
    }
    save_weights(out, model, config, metrics)
    extra = {**{k: config[k] for k in ("app", "image_size", "num_blocks", "method", "batch_ratio")},
             "steps": args.steps, "batch_size": args.batch_size, "processes": len(replicas),
             "device": str(device), "torch_threads": torch.get_num_threads(), "log": str(log_dir / "log.csv"),
             "pretrained_sha256": args.pretrained_sha256}
    checkpoints.record(args.name or out.stem, out, command, args.seed, metrics, extra, seconds=seconds)
    summary = {"command": command, "config": config, "metrics": metrics, "seconds": seconds,
               "replicas": replicas, "rows": rows}
    (log_dir / "log.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"saved {out}: held-out PSNR {metrics['val_psnr']:.2f} dB (x0 {metrics['x0_psnr']:.2f} dB), "
          f"SSIM {metrics['val_ssim']:.3f}, {seconds:.0f} s of training")
