"""``oder-edu train denoiser``: train the noise-level-conditional DnCNN that ships with oder-edu.

Each Adam step draws a fresh batch from ``phantoms.training_images`` (ellipse phantoms,
Shepp-Logan variations, crops of scikit-image's pictures), a noise level per image
sigma ~ U[sigma_min, sigma_max], and minimizes the residual-learning loss of DnCNN
(Zhang et al., IEEE TIP 2017)

    mean || R(x + sigma n, sigma) - sigma n ||^2,   n ~ N(0, I).

At the end it measures PSNR per sigma on held-out phantoms (``validation_phantoms``, a
seed never used for training), and TV at its best lam at sigma = 0.1 for comparison,
saves ``{"config", "state_dict"}`` and records the run in ``MANIFEST.json``.
The shipped weights came from (two runs here gave bit-identical files with one thread):

    oder-edu train denoiser --out oder_edu/weights/dncnn.pt --steps 2000 --seed 0 --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from .. import checkpoints
from ..cli import command_line
from ..denoisers import DnCNN, tv_denoise
from ..metrics import psnr
from ..phantoms import VALIDATION_SEED, training_images, validation_phantoms

VALIDATION_SIGMAS = (0.025, 0.05, 0.1, 0.15, 0.2)
TV_LAM_PER_SIGMA_GRID = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="oder_edu/weights/dncnn.pt", help="where to save the weights")
    parser.add_argument("--name", default=None, help="manifest key (default: the file name without .pt)")
    parser.add_argument("--steps", type=int, default=2000, help="Adam steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=64, help="training images are PATCH x PATCH")
    parser.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (cosine decay to 1%%)")
    parser.add_argument("--sigma-min", type=float, default=0.0)
    parser.add_argument("--sigma-max", type=float, default=0.2)
    parser.add_argument("--depth", type=int, default=7, help="number of convolutions")
    parser.add_argument("--width", type=int, default=32, help="channels of the hidden layers")
    parser.add_argument("--spectral-norm", action="store_true", help="spectrally normalize every convolution")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialization and the data")
    parser.add_argument("--val-images", type=int, default=16, help="held-out phantoms for validation")
    parser.add_argument("--val-size", type=int, default=128, help="their side in pixels")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the shipped weights were trained on cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar")


def noisy_copy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``x + sigma n`` with n ~ N(0, I) drawn on the CPU from ``seed`` (same noise on any device)."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    return x + sigma * noise.to(x.device)


@torch.no_grad()
def denoise_psnr(denoiser, images: torch.Tensor, sigma: float, seed: int = VALIDATION_SEED + 1) -> float:
    """Mean PSNR (dB) of ``denoiser(noisy, sigma)`` over ``images [N, C, H, W]`` at noise level ``sigma``."""
    noisy = noisy_copy(images, sigma, seed)
    return psnr(denoiser(noisy, sigma).clamp(0, 1), images).mean().item()


def best_tv_psnr(images: torch.Tensor, sigma: float, seed: int = VALIDATION_SEED + 1, num_iter: int = 200,
                 factors=TV_LAM_PER_SIGMA_GRID) -> tuple[float, float]:
    """TV denoising at its best ``lam`` among ``factors * sigma``: ``(psnr, lam)``."""
    results = [
        (denoise_psnr(lambda y, s: tv_denoise(y, c * s, num_iter), images, sigma, seed), c * sigma)
        for c in factors
    ]
    return max(results)


def train(model: DnCNN, steps: int, batch_size: int, patch_size: int, lr: float,
          sigma_range: tuple[float, float], generator: torch.Generator, progress: bool = True) -> list[float]:
    """Adam with cosine learning-rate decay on fresh ``training_images`` batches; returns the losses."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1), eta_min=lr / 100)
    low, high = sigma_range
    losses = []
    bar = tqdm(range(steps), desc="train denoiser", disable=not progress, mininterval=5)
    model.train()
    for step in bar:
        x = training_images(batch_size, patch_size, generator)
        sigma = low + (high - low) * torch.rand(batch_size, generator=generator)
        noise = sigma[:, None, None, None] * torch.randn(x.shape, generator=generator)
        x, sigma, noise = x.to(device), sigma.to(device), noise.to(device)
        loss = (model.residual(x + noise, sigma) - noise).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0:
            recent = losses[-50:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.2e}")
    model.eval()
    return losses


def main(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.batch_size < 1 or args.patch_size < 8:
        raise ValueError(f"need steps >= 1, batch size >= 1, patch size >= 8; got {args.steps}, "
                         f"{args.batch_size}, {args.patch_size}")
    if not 0 <= args.sigma_min < args.sigma_max:
        raise ValueError(f"need 0 <= sigma-min < sigma-max, got {args.sigma_min}, {args.sigma_max}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = args.name or out.stem
    command = command_line(args)
    device = torch.device(args.device)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the initialization
    sigma_range = (args.sigma_min, args.sigma_max)
    model = DnCNN(1, args.depth, args.width, args.spectral_norm, sigma_range).to(device)
    generator = torch.Generator().manual_seed(args.seed)  # the data, on the CPU on every device
    start, start_cpu = time.perf_counter(), time.process_time()
    losses = train(model, args.steps, args.batch_size, args.patch_size, args.lr, sigma_range, generator,
                   progress=not args.no_progress)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - start_cpu  # all threads; wall time depends on the machine's load

    images = validation_phantoms(args.val_images, args.val_size).to(device)
    val_psnr = {str(s): round(denoise_psnr(model, images, s), 2) for s in VALIDATION_SIGMAS}
    noisy_psnr = {str(s): round(denoise_psnr(lambda y, _: y, images, s), 2) for s in VALIDATION_SIGMAS}
    tv_psnr, tv_lam = best_tv_psnr(images, 0.1)
    metrics = {
        "validation": {"function": "phantoms.validation_phantoms", "images": args.val_images,
                       "size": args.val_size, "seed": VALIDATION_SEED, "noise_seed": VALIDATION_SEED + 1},
        "val_psnr": val_psnr,
        "noisy_psnr": noisy_psnr,
        "tv_best_psnr_sigma_0.1": round(tv_psnr, 2),
        "tv_best_lam_sigma_0.1": round(tv_lam, 3),
        "final_loss": sum(losses[-100:]) / len(losses[-100:]),
    }
    params = sum(p.numel() for p in model.parameters())
    state = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
    torch.save({"config": model.config(), "state_dict": state}, out)
    extra = {"sigma_range": list(sigma_range), "parameters": params, "steps": args.steps,
             "batch_size": args.batch_size, "patch_size": args.patch_size,
             "device": str(device), "torch_threads": torch.get_num_threads(),
             "cpu_seconds": round(cpu_seconds, 1), "seconds_per_step": round(seconds / args.steps, 3),
             "lipschitz_bound": round(model.lipschitz_bound(), 3)}
    checkpoints.record(name, out, command, args.seed, metrics, extra, seconds=seconds)

    print(f"saved {out} ({out.stat().st_size / 1e3:.0f} kB, {params} parameters) in {seconds:.0f} s of training")
    print("sigma      " + "  ".join(f"{s:>6}" for s in VALIDATION_SIGMAS))
    print("noisy dB   " + "  ".join(f"{noisy_psnr[str(s)]:6.2f}" for s in VALIDATION_SIGMAS))
    print("DnCNN dB   " + "  ".join(f"{val_psnr[str(s)]:6.2f}" for s in VALIDATION_SIGMAS))
    print(f"TV at best lam = {tv_lam:.3f}, sigma = 0.1: {tv_psnr:.2f} dB")
    return 0
