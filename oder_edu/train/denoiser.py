"""Training and validating the shipped denoisers (the loop behind ``oder-edu train denoiser``).

Each Adam step draws a fresh batch from ``images.training_images`` (procedural phantoms and
natural-image patches, ``images.MIX``), a noise level per image σ ~ U[σ_min, σ_max], and
minimizes DnCNN's residual-learning loss mean ||R(x + σn, σ) − σn||² = mean ||D(x + σn, σ) − x||²
(Zhang et al., IEEE TIP 2017).

Validation (``validate``) uses images never trained on: ``phantoms.validation_phantoms`` and,
for real structure, held-out patches of scikit-image's ``camera`` and ``coins`` and the CT
and MR slices of ``data/``; at each σ it compares with TV denoising at its best weight.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from .. import checks, images
from ..denoisers import DnCNN, tv_denoise
from ..metrics import psnr
from ..phantoms import VALIDATION_SEED, validation_phantoms

VALIDATION_SIGMAS = (0.025, 0.05, 0.1, 0.15, 0.2)
TV_LAM_PER_SIGMA_GRID = (0.4, 0.6, 0.8, 1.0, 1.2, 1.5)


@dataclass
class DenoiserConfig:
    """Everything a denoiser training run depends on (recorded in the manifest)."""

    depth: int = 7
    width: int = 32
    sigma_min: float = 0.0
    sigma_max: float = 0.2
    patch_size: int = 128
    batch_size: int = 8
    steps: int = 3000
    lr: float = 1e-3
    seed: int = 0
    mix: dict = field(default_factory=lambda: dict(images.MIX))

    def network(self) -> DnCNN:
        return DnCNN(1, self.depth, self.width, (self.sigma_min, self.sigma_max))


def train(config: DenoiserConfig, device=None, progress=None) -> tuple[DnCNN, list[float], float]:
    """Train ``config.network()`` (Adam, cosine decay of the learning rate to 1 %); returns
    ``(model in eval mode, losses, seconds)``. ``progress`` wraps the step range (e.g. tqdm)."""
    device = torch.device("cpu") if device is None else torch.device(device)
    torch.manual_seed(config.seed)  # the initialization
    model = config.network().to(device)
    generator = torch.Generator().manual_seed(config.seed)  # the data, on the CPU on every device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr / 100)
    steps = range(config.steps) if progress is None else progress(range(config.steps))
    losses, start = [], time.perf_counter()
    model.train()
    for _ in steps:
        x = images.training_images(config.batch_size, config.patch_size, generator, config.mix)
        sigma = config.sigma_min + (config.sigma_max - config.sigma_min) * torch.rand(config.batch_size, generator=generator)
        noise = sigma[:, None, None, None] * torch.randn(x.shape, generator=generator)
        x, sigma, noise = x.to(device), sigma.to(device), noise.to(device)
        loss = (model(x + noise, sigma) - x).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return model.eval(), losses, time.perf_counter() - start


def noisy_copy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``x + σ n`` with n ~ N(0, I) drawn on the CPU from ``seed`` (the same noise on any device)."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    return x + sigma * noise.to(x.device)


@torch.no_grad()
def denoise_psnr(denoiser, clean: torch.Tensor, sigma: float, seed: int = VALIDATION_SEED + 1) -> float:
    """Mean PSNR (dB) of ``denoiser(clean + σn, σ)`` over the images of ``clean`` ``[N, C, H, W]``."""
    return psnr(denoiser(noisy_copy(clean, sigma, seed), sigma).clamp(0, 1), clean).mean().item()


def best_tv_psnr(clean: torch.Tensor, sigma: float, num_iter: int = 200) -> tuple[float, float]:
    """TV denoising at its best weight among ``TV_LAM_PER_SIGMA_GRID * σ``: ``(psnr, lam)``."""
    return max((denoise_psnr(lambda v, s: tv_denoise(v, c * s, num_iter), clean, sigma), c * sigma)
               for c in TV_LAM_PER_SIGMA_GRID)


def validation_sets(size: int = 128) -> dict[str, torch.Tensor]:
    """Held-out images: procedural phantoms, natural patches never trained on (camera, coins),
    and the real CT and MR slices (each ``[n, 1, H, W]``)."""
    return {
        "phantoms": validation_phantoms(8, size),
        "natural (camera, coins)": images.natural_crops(8, size, torch.Generator().manual_seed(VALIDATION_SEED),
                                                        held_out=True),
        "CT slice": images.real_image("ct"),
        "MR slice": images.real_image("mr"),
    }


def validate(denoiser, sigmas=VALIDATION_SIGMAS, size: int = 128, device=None) -> dict:
    """``{set: {"sigma": [...], "denoiser": [...], "tv_best": [...], "noisy": [...]}}`` in dB."""
    results = {}
    for name, clean in validation_sets(size).items():
        clean = clean.to(device or "cpu")
        rows = {"sigma": list(sigmas), "denoiser": [], "tv_best": [], "noisy": []}
        for sigma in sigmas:
            rows["denoiser"].append(round(denoise_psnr(denoiser, clean, sigma), 2))
            rows["tv_best"].append(round(best_tv_psnr(clean, sigma)[0], 2))
            rows["noisy"].append(round(denoise_psnr(lambda v, s: v, clean, sigma), 2))
        results[name] = rows
    return results


def summary(config: DenoiserConfig, model: DnCNN, losses: list[float], seconds: float, validation: dict) -> dict:
    """The metrics and extra fields of a denoiser's manifest entry."""
    tail = losses[-100:]
    return {
        "metrics": {"validation": validation, "final_loss": sum(tail) / len(tail),
                    "lipschitz_bound": round(model.lipschitz_bound(), 4)},
        "extra": {"config": asdict(config), "data": images.recipe(config.mix, config.patch_size),
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "seconds_per_step": round(seconds / max(config.steps, 1), 3)},
    }


def check(config: DenoiserConfig) -> DenoiserConfig:
    """ValueError for a configuration that cannot train, naming the bad value."""
    for name in ("steps", "batch_size", "depth", "width"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.patch_size < 8:
        raise ValueError(f"--patch-size must be >= 8, got {config.patch_size}")
    # float32 activations of a training step (two per layer), before a batch is drawn
    checks.memory(f"a training step at --batch-size {config.batch_size}, --patch-size {config.patch_size}, "
                  f"--width {config.width}, --depth {config.depth}",
                  4.0 * config.batch_size * config.patch_size**2 * (2 * config.width * config.depth + 8))
    if not 0 <= config.sigma_min < config.sigma_max:
        raise ValueError(f"need 0 <= sigma-min < sigma-max, got {config.sigma_min}, {config.sigma_max}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {config.lr}")
    return config
