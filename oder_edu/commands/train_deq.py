"""``oder-edu train deq``: train a RED-DEQ (``--method full``), ODER (``--method oder --ratio
0.25``; variance-reduced with ``--snapshot-every m``, the plain online iteration with 0) or the
unrolled baseline, save it (never over an existing file unless --force) and record it -- every
command that trained it, seed, seconds, data recipe, held-out metrics, measured contraction -- in
the manifest beside it. ``--resume`` continues the run saved in ``--log-dir`` (every few minutes). ``torchrun --nproc_per_node=K -m oder_edu.cli train deq ...`` trains
data-parallel. The shipped checkpoints' exact commands are in oder_edu/weights/MANIFEST.json.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, fields
from pathlib import Path

import torch

from .. import checkpoints, checks, files
from ..cli import command_line
from ..device import as_device
from ..deq import ModelConfig, save
from ..deq.model import METHODS
from ..problems import APPS
from ..train import ddp
from ..train.deq import TrainConfig, run, summary
from .results import check_out


def add_arguments(parser) -> None:
    add = parser.add_argument
    model, train = ModelConfig(), TrainConfig()
    add("--app", choices=APPS[2:], default="ct", help="CT angles, MRI coils or IDT LEDs as blocks")
    add("--method", choices=METHODS, default="full", help="full DEQ, ODER, or the unrolled baseline")
    add("--ratio", type=float, default=0.25, help="ODER's minibatch ratio b/B in (0, 1)")
    add("--image-size", type=int, default=None, help="default: the app's setting (problems.SETTINGS)")
    add("--num-blocks", type=int, default=None, help="B; default: the app's setting")
    add("--snr", type=float, default=None, help="input SNR in dB; default: the app's setting")
    for name in ("resample", "sampler", "snapshot_every", "sigma", "tau_over_L", "tau_spread", "pretrained", "depth",
                 "width", "solver", "backward", "max_iter", "tol", "backward_max_iter", "backward_tol", "unroll_iter",
                 "eval_max_iter", "eval_tol", "minibatch_step"):
        default = getattr(model, name)
        add(f"--{name.replace('_', '-')}", type=type(default), default=default, help=f"default: {default}")
    add("--no-pretrained", dest="pretrained", action="store_const", const=None, help="start from a fresh prior")
    for name in ("steps", "batch_size", "lr", "lr_tau", "warmup", "contraction", "contraction_weight",
                 "contraction_lanczos", "seed", "val_images", "validate_every", "memory_every", "save_every"):
        default = getattr(train, name)
        add(f"--{name.replace('_', '-')}", type=type(default), default=default, help=f"default: {default}")
    add("--out", default=None, help="final weights (default LOG_DIR/model.pt)")
    add("--name", default=None, help="manifest key (default: the file name without .pt)")
    add("--force", action="store_true", help="replace an existing file and manifest entry")
    add("--log-dir", default=None, help="default runs/deq_APP_METHOD")
    add("--resume", action="store_true", help="continue the run saved in --log-dir")
    add("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    add("--threads", type=int, default=None, help="CPU threads for torch")
    add("--no-progress", action="store_true", help="hide the progress bar")


def configs(args) -> tuple[ModelConfig, TrainConfig]:
    """The two configs of a command line (ValueError naming a bad value)."""
    ratio = checks.ratio("ratio", args.ratio)
    ratio = ratio if args.method == "oder" else 1.0
    if args.pretrained in ("none", ""):
        args.pretrained = None
    model = ModelConfig(app=args.app, image_size=args.image_size, num_blocks=args.num_blocks, snr_db=args.snr,
                        method=args.method, batch_ratio=ratio,
                        **{f.name: getattr(args, f.name) for f in fields(ModelConfig)
                           if f.name not in ("app", "image_size", "num_blocks", "snr_db", "method", "batch_ratio")})
    train = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "mix"})
    return model, train


def main(args) -> int:
    from tqdm import tqdm

    model_config, train_config = configs(args)
    log_dir = Path(args.log_dir or f"runs/deq_{args.app}_{args.method}")
    out = checkpoints.weights_path(args.out, "--out") if args.out else log_dir / "model.pt"
    if out.exists() and not args.force:  # before the training, not after
        raise FileExistsError(errno.EEXIST, f"--out {out} exists; pass --force to replace it")
    if os.environ.get("RANK", "0") == "0":  # folders for the log and the weights, also before the training
        check_out(log_dir, "--log-dir"), check_out(out.parent)
    as_device(args.device, "--device")
    if args.threads is not None:
        torch.set_num_threads(checks.integer("--threads", args.threads, 1))
    command = command_line(args)
    if ddp.world_size() > 1:
        command = command.replace("oder-edu", "torchrun ... -m oder_edu.cli", 1)
    progress = None if args.no_progress else (lambda steps: tqdm(steps, desc=f"train deq {args.app} {args.method}",
                                                                 mininterval=5))
    result = run(model_config, train_config, log_dir, args.device, args.resume, progress, command)
    if result["rank"] == 0:
        metrics, extra, seconds = summary(model_config, train_config, result, args.device)
        save(out, result["model"], model_config, metrics, force=args.force)
        log = out.with_suffix(".log.csv")  # the training curve ships beside the weights
        files.copy(log_dir / "log.csv", log)
        entry = checkpoints.record(args.name or out.stem, out, extra["segments"][0]["command"], args.seed, metrics,
                                   {**extra, "log": log.name}, seconds=seconds, force=args.force)
        files.write_text(log_dir / "log.json", json.dumps(entry, indent=1) + "\n")
        print(f"saved {out}: test PSNR {metrics['val_psnr']:.2f} dB (x0 {metrics['x0_psnr']:.2f} dB, before training "
              f"{metrics['val_psnr_before_training']:.2f}), ||dT/dx|| of the iterated map {metrics['test_contraction']:.3f}, "
              f"plain iteration converged: {metrics['plain_converged']}; {seconds:.0f} s of training")
    ddp.cleanup()
    return 0
