"""Training and validating the shipped denoisers (the loop behind ``oder-edu train denoiser``).

Each Adam step draws a fresh ``images.training_images`` batch and σ ~ U[σ_min, σ_max] per image, and
minimizes DnCNN's residual loss mean ||D(x + σn, σ) − x||² (Zhang et al., IEEE TIP 2017); ``validate``
compares with TV at its best weight on held-out phantoms, natural patches and the CT and MR slices.
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


@torch.no_grad()
def denoise_psnr(denoiser, clean: torch.Tensor, sigma: float, seed: int = VALIDATION_SEED + 1) -> float:
    """Mean PSNR (dB) of ``denoiser(clean + σn, σ)`` over ``clean`` ``[N, C, H, W]``, n drawn on the CPU
    from ``seed`` (the same noise on any device)."""
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=clean.dtype)
    return psnr(denoiser(clean + sigma * noise.to(clean.device), sigma).clamp(0, 1), clean).mean().item()


def best_tv_psnr(clean: torch.Tensor, sigma: float, num_iter: int = 200) -> tuple[float, float]:
    """TV denoising at its best weight among ``TV_LAM_PER_SIGMA_GRID * σ``: ``(psnr, lam)``."""
    return max((denoise_psnr(lambda v, s: tv_denoise(v, c * s, num_iter), clean, sigma), c * sigma)
               for c in TV_LAM_PER_SIGMA_GRID)


def validation_sets(size: int = 128) -> dict[str, torch.Tensor]:
    """Held-out images ``[n, 1, H, W]``: phantoms, camera and coins patches, the CT and MR slices."""
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
        results[name] = {"sigma": list(sigmas),
                         "denoiser": [round(denoise_psnr(denoiser, clean, s), 2) for s in sigmas],
                         "tv_best": [round(best_tv_psnr(clean, s)[0], 2) for s in sigmas],
                         "noisy": [round(denoise_psnr(lambda v, _: v, clean, s), 2) for s in sigmas]}
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
    for name, low in (("steps", 1), ("batch_size", 1), ("depth", 1), ("width", 1), ("patch_size", 8)):
        if getattr(config, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(config, name)}")
    # float32 activations of a training step (two per layer), before a batch is drawn
    checks.memory(f"a training step at --batch-size {config.batch_size}, --patch-size {config.patch_size}, "
                  f"--width {config.width}, --depth {config.depth}",
                  4.0 * config.batch_size * config.patch_size**2 * (2 * config.width * config.depth + 8))
    for name in ("sigma_min", "sigma_max"):
        checks.number(f"--{name.replace('_', '-')}", getattr(config, name), minimum=0)
    if not config.sigma_min < config.sigma_max:
        raise ValueError(f"--sigma-min must be below --sigma-max (the range σ is drawn from), got --sigma-min "
                         f"{config.sigma_min:g} and --sigma-max {config.sigma_max:g}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {config.lr}")
    return config
