"""Training a RED-DEQ, ODER or unrolled RED model end to end (the loop behind
``oder-edu train deq``, without the command line).

Each Adam step draws fresh images (``images.training_images`` with the app's mix), simulates
y = A x + e at the problem's SNR, starts from x0 (``problems.initial_image``), and takes
``deq.train_step``: solve the fixed point, backpropagate (implicitly), update θ and τ. Full
and ODER models also pay a ``deq.ContractionPenalty`` when their measured contraction constant
at the training fixed points exceeds ``TrainConfig.contraction`` (the course teaches these maps
as contractions; the penalty pushes toward one at training points, and ``summary`` measures what
it achieved on held-out images). A batch whose forward solve diverges, or (full batch) stops
short of its tolerance, is skipped and counted (``skipped_steps``); after ``MAX_SKIPPED`` in a
row, or at once under DDP, the training stops with advice.
Under ``torchrun`` every process trains a replica on its own images and
``DistributedDataParallel`` averages the gradients (``train.ddp``).

Logs in ``log_dir``: ``log.csv`` (one row per step, as it happens) and ``checkpoint.pt``
(model, optimizer, step, data generators; written every ``checkpoint_every`` steps, atomically,
and resumed with ``resume``).
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import checks, files, images
from ..checkpoints import CheckpointError
from ..deq import ContractionPenalty, ModelConfig, NonContractiveError, build, evaluate, held_out, train_step
from ..phantoms import VALIDATION_SEED
from ..physics import LeastSquares
from ..problems import initial_image, make_operator, simulate
from . import ddp

LOG_COLUMNS = ("step", "loss", "psnr", "seconds", "peak_mib", "forward_iters", "forward_residual",
               "backward_iters", "backward_residual", "tau", "contraction")
MAX_SKIPPED = 5


def training_mix(app: str) -> dict:
    """What ``app`` trains on: cell fields for IDT (a thin sample on an empty background -- its
    phase-only measurement cannot see an image's mean), the default mix of phantoms and natural
    patches otherwise (``images.MIX``)."""
    return {"random_cells": 1.0} if app == "idt" else dict(images.MIX)


@dataclass
class TrainConfig:
    """How a model is trained (recorded in the manifest beside its ``ModelConfig``)."""

    steps: int = 600
    batch_size: int = 2
    lr: float = 1e-3
    lr_tau: float = 1e-2
    warmup: int = 50
    contraction: float = 0.98
    contraction_weight: float = 50.0
    seed: int = 0
    val_images: int = 8
    memory_every: int = 10
    checkpoint_every: int = 100
    mix: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("steps", "batch_size", "val_images"):
            checks.integer(name, getattr(self, name), 1)
        for name in ("memory_every", "checkpoint_every", "seed", "warmup"):
            checks.integer(name, getattr(self, name), 0)
        for name in ("lr", "lr_tau", "contraction"):
            checks.number(name, getattr(self, name), positive=True)
        checks.number("contraction_weight", self.contraction_weight, minimum=0)


def validate(model, config: ModelConfig, n: int, device, properties: bool = True) -> dict:
    """``deq.evaluate`` on ``n`` held-out images of the model's problem (with its measured
    properties unless ``properties`` is False)."""
    A = make_operator(config.app, config.image_size, config.num_blocks)
    images_ = held_out(config.app, n, config.image_size).to(device)
    return evaluate(model, A, images_, config.snr_db, properties=properties)


def resume_state(path) -> dict:
    """The training checkpoint at ``path`` (the ``checkpoint.pt`` of an earlier run's log folder),
    or a ``CheckpointError`` saying what the file is instead."""
    path = Path(path)
    hint = "pass the checkpoint.pt that `oder-edu train deq` writes in its log folder (--checkpoint-every)"
    if not path.is_file():
        raise CheckpointError(f"--resume {path}: no such file; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, truncated, or holding code
        raise CheckpointError(f"--resume {path}: cannot load it as a training checkpoint "
                              f"({type(error).__name__}); {hint}") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "rows", "generators"} <= set(state):
        what = f"a {state['kind']!r} weight file" if isinstance(state, dict) and "kind" in state else "something else"
        raise CheckpointError(f"--resume {path} is not a training checkpoint (it is {what}); {hint}")
    return state


def run(config: ModelConfig, train: TrainConfig, log_dir, device="cpu", resume=None, progress=None) -> dict:
    """Train a model; returns ``{"model", "rows", "seconds", "before", "replicas", "skipped"}``
    (``before``: held-out metrics of the untrained model, rank 0 of a fresh run only;
    ``skipped``: batches whose forward solve diverged or stopped short of tol)."""
    device = ddp.device_for(str(device))
    rank, _ = ddp.setup(str(device))
    log_dir = Path(log_dir)
    mix = train.mix or training_mix(config.app)
    A = make_operator(config.app, config.image_size, config.num_blocks)
    torch.manual_seed(train.seed)  # the prior starts the same on every rank
    model = build(config, A).to(device)
    optimizer = torch.optim.Adam([{"params": model.denoiser.parameters(), "lr": train.lr},
                                  {"params": [model.log_tau], "lr": train.lr_tau}])
    # Each rank draws different images, noise and blocks; seed + rank keeps runs reproducible.
    generator = torch.Generator().manual_seed(train.seed + 1000 * rank)
    first, rows = 0, []
    if resume:
        state = resume_state(resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generators"][rank])
        first, rows = state["step"], state["rows"]
        penalty_v = state.get("penalty_v")
    before = validate(model, config, train.val_images, device, properties=False) if rank == 0 and not resume else None
    net = ddp.wrap(model, device)
    if rank == 0:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(log_dir / "log.csv", "a" if resume else "w", newline="")
        writer = csv.DictWriter(log_file, fieldnames=LOG_COLUMNS)
        if not resume:
            writer.writeheader()
    penalty = (ContractionPenalty(train.contraction, train.contraction_weight)
               if config.method != "unrolled" and train.contraction_weight > 0 else None)
    if penalty is not None and resume:
        penalty.v = None if penalty_v is None else penalty_v.to(device)
    steps = range(first, train.steps)
    start, skipped, in_a_row = time.perf_counter(), 0, 0
    model.train()
    for step in (steps if progress is None or rank != 0 else progress(steps)):
        x = images.training_images(train.batch_size, config.image_size, generator, mix).to(device)
        y = simulate(A, x, config.snr_db, generator)
        measure = train.memory_every > 0 and step % train.memory_every == 0
        for group, lr in zip(optimizer.param_groups, (train.lr, train.lr_tau)):  # Adam's first steps, damped
            group["lr"] = lr * min(1.0, (step + 1) / (train.warmup + 1))
        try:
            row = {"step": step + 1, **train_step(net, optimizer, x, initial_image(A, y), LeastSquares(A, y),
                                                   generator, measure, penalty)}
        except NonContractiveError as error:
            if ddp.world_size() > 1:  # the replicas must take the same steps
                raise
            skipped, in_a_row = skipped + 1, in_a_row + 1
            if in_a_row >= MAX_SKIPPED:
                raise NonContractiveError(f"{MAX_SKIPPED} training batches in a row diverged ({error}); start "
                                          f"from a smaller --tau-init or a lower --lr") from None
            continue
        in_a_row = 0
        rows.append(row)
        if rank == 0:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
            log_file.flush()
        if train.checkpoint_every and (step + 1) % train.checkpoint_every == 0:
            generators = ddp.gather(generator.get_state())
            if rank == 0:
                files.save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                                  "rows": rows, "generators": generators,
                                  "penalty_v": None if penalty is None else penalty.v}, log_dir / "checkpoint.pt")
    seconds = time.perf_counter() - start
    # Every replica's parameter digest and losses: identical digests after different data per
    # process show that the gradient averaging kept the replicas in step.
    replicas = ddp.gather({"digest": ddp.parameter_digest(model), "losses": [r["loss"] for r in rows]})
    if rank == 0:
        log_file.close()
    return {"model": model, "rows": rows, "seconds": seconds, "before": before, "replicas": replicas,
            "rank": rank, "mix": mix, "skipped": skipped}


def summary(config: ModelConfig, train: TrainConfig, result: dict, device) -> tuple[dict, dict]:
    """``(metrics, extra)`` of the manifest entry: held-out quality and the measured properties
    (contraction constant at the test fixed points, plain-iteration convergence), the training
    figures, the configs and the data recipe."""
    model, rows = result["model"], result["rows"]
    scores, before = validate(model, config, train.val_images, device), result["before"]
    tail = rows[-min(len(rows), 20):]
    peaks = [r["peak_mib"] for r in rows if r["peak_mib"] is not None]
    metrics = {
        "validation": f"{train.val_images} held_out images of {config.app} at {config.image_size}^2 "
                      f"(seed {VALIDATION_SEED}), noise and blocks seed {VALIDATION_SEED + 1}",
        "val_psnr": round(scores["psnr"], 2), "val_ssim": round(scores["ssim"], 4),
        "val_psnr_before_training": None if before is None else round(before["psnr"], 2),
        "x0_psnr": round(scores["x0_psnr"], 2), "val_forward_iters": round(scores["iters"], 1),
        "test_contraction": round(scores["contraction"], 4), "plain_converged": scores["plain_converged"],
        "final_train_loss": sum(r["loss"] for r in tail) / len(tail),
        "train_step_seconds": round(result["seconds"] / max(len(rows), 1), 3),
        "train_peak_mib": round(max(peaks), 2) if peaks else None, "tau": model.tau.item(),
        "skipped_steps": result["skipped"],
    }
    extra = {"model": asdict(config), "training": asdict(train), "processes": len(result["replicas"]),
             "data": images.recipe(result["mix"], config.image_size), "device": str(device),
             "torch_threads": torch.get_num_threads()}
    return metrics, extra
