"""``oder-edu train denoiser``: train a denoiser (the U-Net by default, or a DnCNN), keep the weights that
score best on the selection images, report them on held-out test images, save them and record them in
the manifest beside them (the shipped weights' commands: oder_edu/weights/MANIFEST.json). A run is
resumable: ``--resume`` continues the run of ``--log-dir`` where it stopped; ``--init`` fine-tunes shipped
weights instead of starting from scratch."""

from __future__ import annotations

import errno
from pathlib import Path

import torch
from tqdm import tqdm

from .. import checkpoints, checks
from ..cli import command_line
from ..device import as_device
from ..train import denoiser as training
from .results import check_out


def add_arguments(parser) -> None:
    add = parser.add_argument
    default = training.DenoiserConfig()
    add("--out", default="runs/denoiser/unet.pt", help="where to save the weights (default: %(default)s)")
    add("--name", default=None, help="manifest key (default: the file name without .pt)")
    add("--force", action="store_true", help="replace an existing file and manifest entry")
    add("--log-dir", default=None, help="the run's state and log (default: OUT without .pt, plus '.run')")
    add("--resume", action="store_true", help="continue the run saved in --log-dir")
    add("--init", default=None, help="fine-tune these weights (a manifest name such as unet, or a .pt path) with a "
        "fresh learning-rate schedule; the architecture options must match them and --sigma-min/--sigma-max "
        "lie in their σ range; the manifest records them as the parent")
    add("--architecture", choices=training.ARCHITECTURES, default=default.architecture,
        help="unet (DRUNet-style) or dncnn (default: %(default)s)")
    add("--widths", type=int, nargs="+", default=list(default.widths), help="U-Net channels per level")
    add("--blocks", type=int, default=default.blocks, help="U-Net residual blocks per level")
    add("--depth", type=int, default=default.depth, help="DnCNN: number of convolutions")
    add("--width", type=int, default=default.width, help="DnCNN: channels of the hidden layers")
    add("--steps", type=int, default=default.steps, help="Adam steps (default: %(default)s)")
    add("--batch-size", type=int, default=default.batch_size)
    add("--patch-size", type=int, default=default.patch_size, help="training patches are PATCH x PATCH")
    add("--lr", type=float, default=default.lr, help="peak learning rate (warm-up, then cosine decay to 1%%)")
    add("--warmup", type=int, default=default.warmup, help="warm-up steps of the learning rate")
    add("--validate-every", type=int, default=default.validate_every, help="steps between selection scores")
    add("--selection-sigmas", type=float, nargs="+", default=list(default.selection_sigmas),
        help="noise levels of the selection score that chooses the kept weights (default: %(default)s)")
    add("--sigma-min", type=float, default=default.sigma_min,
        help="smallest training noise σ (σ = min + (max − min)·u², u uniform)")
    add("--sigma-max", type=float, default=default.sigma_max,
        help="largest training noise σ; with --init, within the σ range of those weights")
    add("--seed", type=int, default=default.seed, help="seeds the initialization and the data")
    add("--save-every", type=float, default=300.0, help="seconds between saves of the resumable state")
    add("--device", default="cpu", help="cpu or cuda")
    add("--threads", type=int, default=None, help="CPU threads for torch")
    add("--no-progress", action="store_true", help="hide the progress bar")


def main(args) -> int:
    config = training.check(training.DenoiserConfig(
        architecture=args.architecture, widths=tuple(args.widths), blocks=args.blocks, depth=args.depth,
        width=args.width, sigma_min=args.sigma_min, sigma_max=args.sigma_max, patch_size=args.patch_size,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, warmup=args.warmup,
        validate_every=args.validate_every, seed=args.seed, init=args.init,
        selection_sigmas=tuple(args.selection_sigmas)))
    out = checkpoints.weights_path(args.out, "--out")  # everything checked before hours of training
    if out.exists() and not args.force:
        raise FileExistsError(errno.EEXIST, f"--out {out} exists; pass --force to replace it")
    check_out(out.parent)  # a folder the weights can be written to, swept of stale temporaries
    log_dir = Path(args.log_dir) if args.log_dir else out.with_suffix(".run")
    as_device(args.device, "--device")
    if args.threads is not None:
        torch.set_num_threads(checks.integer("--threads", args.threads, 1))
    progress = None if args.no_progress else (lambda steps: tqdm(steps, desc="train denoiser", mininterval=5))
    model, session = training.train(config, log_dir, command_line(args), args.device, args.resume, progress,
                                    checks.number("--save-every", args.save_every, positive=True))
    validation = training.validate(model, device=args.device)
    entry = training.summary(config, model, session, validation)
    checkpoints.save_state(out, "denoiser", model.config(), model, entry["metrics"], force=args.force)
    checkpoints.record(args.name or out.stem, out, session.segments[0]["command"], args.seed, entry["metrics"],
                       {**entry["extra"], "device": str(args.device), "torch_threads": torch.get_num_threads()},
                       seconds=entry["seconds"], force=args.force)
    print(f"saved {out} (step {entry['metrics']['kept_step']} of {session.step}, {entry['seconds']:.0f} s of "
          f"training); PSNR in dB (denoiser / best TV) per σ:")
    for name, rows in validation.items():
        cells = "  ".join(f"{s:g}: {d:.2f}/{t:.2f}" for s, d, t in zip(rows["sigma"], rows["denoiser"], rows["tv_best"]))
        print(f"  {name:>24}  {cells}")
    return 0
