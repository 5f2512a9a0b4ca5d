"""``oder-edu train denoiser``: train a DnCNN, validate it on held-out real images, save it and record
it in the manifest beside it (the shipped weights' commands: oder_edu/weights/MANIFEST.json)."""

from __future__ import annotations

import errno

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
    add("--out", default="runs/denoiser/dncnn.pt", help="where to save the weights (default: %(default)s)")
    add("--name", default=None, help="manifest key (default: the file name without .pt)")
    add("--force", action="store_true", help="replace an existing file and manifest entry")
    add("--steps", type=int, default=default.steps, help="Adam steps (default: %(default)s)")
    add("--batch-size", type=int, default=default.batch_size)
    add("--patch-size", type=int, default=default.patch_size, help="training patches are PATCH x PATCH")
    add("--lr", type=float, default=default.lr, help="initial learning rate (cosine decay to 1%%)")
    add("--sigma-min", type=float, default=default.sigma_min)
    add("--sigma-max", type=float, default=default.sigma_max)
    add("--depth", type=int, default=default.depth, help="number of convolutions")
    add("--width", type=int, default=default.width, help="channels of the hidden layers")
    add("--seed", type=int, default=default.seed, help="seeds the initialization and the data")
    add("--device", default="cpu", help="cpu or cuda")
    add("--threads", type=int, default=None, help="CPU threads for torch")
    add("--no-progress", action="store_true", help="hide the progress bar")


def main(args) -> int:
    config = training.check(training.DenoiserConfig(
        depth=args.depth, width=args.width,
        sigma_min=args.sigma_min, sigma_max=args.sigma_max, patch_size=args.patch_size,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, seed=args.seed))
    out = checkpoints.weights_path(args.out, "--out")  # everything checked before hours of training
    if out.exists() and not args.force:
        raise FileExistsError(errno.EEXIST, f"--out {out} exists; pass --force to replace it")
    check_out(out.parent)  # a folder the weights can be written to, swept of stale temporaries
    as_device(args.device, "--device")
    if args.threads is not None:
        torch.set_num_threads(checks.integer("--threads", args.threads, 1))
    progress = None if args.no_progress else (lambda steps: tqdm(steps, desc="train denoiser", mininterval=5))
    model, losses, seconds = training.train(config, args.device, progress)
    validation = training.validate(model, device=args.device)
    entry = training.summary(config, model, losses, seconds, validation)
    checkpoints.save_state(out, "denoiser", model.config(), model, entry["metrics"], force=args.force)
    checkpoints.record(args.name or out.stem, out, command_line(args), args.seed, entry["metrics"],
                       {**entry["extra"], "device": str(args.device), "torch_threads": torch.get_num_threads()},
                       seconds=seconds, force=args.force)
    print(f"saved {out} in {seconds:.0f} s of training; PSNR in dB (denoiser / best TV) per σ:")
    for name, rows in validation.items():
        cells = "  ".join(f"{s:g}: {d:.2f}/{t:.2f}" for s, d, t in zip(rows["sigma"], rows["denoiser"], rows["tv_best"]))
        print(f"  {name:>24}  {cells}")
    return 0
