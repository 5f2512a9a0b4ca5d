"""Training and validating the shipped denoisers (the loop behind ``oder-edu train denoiser``).

Each Adam step draws a fresh ``images.training_images`` batch (the corpus shared with the DEQ/ODER models)
and σ = σ_min + (σ_max − σ_min)·u² per image, u uniform (more weight on the small σ that PnP and RED use),
and minimizes the residual loss mean ||D(x + σn, σ) − x||² (Zhang et al., IEEE TIP 2017). The learning rate
warms up linearly over ``warmup`` steps, then decays along a cosine to 1 % (a function of the step, so a
resumed run continues the schedule). Every ``validate_every`` steps the denoiser is scored on the
*selection* set -- the validation picture and phantoms of a seed used nowhere else -- and the best weights
are kept; the saved model is the best one. ``validate`` then reports the *test* figures: held-out phantoms,
the test pictures, the CT and MR slices, each against TV at its best weight. The run is resumable
(``train.session``): model, optimizer, data generator, step and best weights are saved every few minutes.
A run with ``init`` fine-tunes: it starts from a weight file's network instead of a fresh initialization,
with its own learning-rate schedule and σ range, and the starting weights compete for selection as step 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from .. import checkpoints, checks, images
from ..denoisers import DnCNN, UNet, tv_denoise
from ..denoisers.pretrained import from_config
from ..metrics import psnr
from ..phantoms import VALIDATION_SEED, validation_phantoms
from .session import Session, schedule

VALIDATION_SIGMAS = (0.025, 0.05, 0.1, 0.15, 0.2)
SELECTION_SIGMAS = (0.05, 0.1)
TV_LAM_PER_SIGMA_GRID = (0.4, 0.6, 0.8, 1.0, 1.2, 1.5)
ARCHITECTURES = ("unet", "dncnn")
LOG_COLUMNS = ("step", "loss", "lr", "seconds", "selection_psnr")


@dataclass
class DenoiserConfig:
    """Everything a denoiser training run depends on (recorded in the manifest): the architecture (a
    ``UNet`` of ``widths`` x ``blocks``, or a ``DnCNN`` of ``depth`` x ``width``) and the recipe."""
    architecture: str = "unet"
    widths: tuple = (32, 64, 128)
    blocks: int = 2
    depth: int = 7
    width: int = 32
    sigma_min: float = 0.0
    sigma_max: float = 0.2
    patch_size: int = 64
    batch_size: int = 16
    steps: int = 20000
    lr: float = 1e-3
    warmup: int = 200
    validate_every: int = 500
    seed: int = 0
    mix: dict = field(default_factory=lambda: dict(images.MIX))
    init: str | None = None  # a manifest name or .pt path to fine-tune, or None for a fresh network
    selection_sigmas: tuple = SELECTION_SIGMAS  # the noise levels the kept weights are chosen at

    def network(self) -> torch.nn.Module:
        """A fresh network, or with ``init`` the weights it names (ValueError if they are of another
        architecture than this config's, or were trained for a σ range that excludes this one)."""
        if self.init is None:
            sigma_range = (self.sigma_min, self.sigma_max)
            if self.architecture == "unet":
                return UNet(1, tuple(self.widths), self.blocks, sigma_range)
            return DnCNN(1, self.depth, self.width, sigma_range)
        state = checkpoints.load_state(self.init, kind="denoiser")
        model = from_config(state["config"])
        model.load_state_dict(state["state_dict"])
        shape = ({"widths": tuple(self.widths), "blocks": self.blocks} if self.architecture == "unet"
                 else {"depth": self.depth, "width": self.width})
        if model.config()["architecture"] != self.architecture or any(
                _plain(getattr(model, k)) != _plain(v) for k, v in shape.items()):
            raise ValueError(f"--init {self.init} holds a {model!r:.200}, not the --architecture {self.architecture} "
                             f"of {shape}; give the options that match it")
        low, high = model.sigma_range
        if not low <= self.sigma_min < self.sigma_max <= high:
            raise ValueError(f"--init {self.init} was trained for σ in [{low:g}, {high:g}]; fine-tune it within that "
                             f"range, got --sigma-min {self.sigma_min:g} --sigma-max {self.sigma_max:g}")
        return model


def parent(init: str) -> dict:
    """What a fine-tuned denoiser started from: the weight file's name and sha256, and for a manifest name
    the command and seconds that trained it."""
    path, entry = checkpoints.locate(init)
    entry = entry or {}
    return {"init": init, "sha256": checkpoints.sha256(path), "command": entry.get("command"),
            "seconds": entry.get("seconds")}



def check_resumable(config, saved: dict) -> None:
    """ValueError unless ``config`` continues the run that saved ``saved`` (the same recipe; only the number
    of steps may differ, which stretches the rest of the learning-rate schedule)."""
    changed = sorted(k for k, v in asdict(config).items() if k != "steps" and k in saved and _plain(v) != _plain(saved[k]))
    if changed:
        raise ValueError(f"--resume continues a run with another {', '.join(changed)} "
                         f"(saved: {', '.join(f'{k}={saved[k]!r}' for k in changed)}); give the same options")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def selection_set(size: int = 128) -> torch.Tensor:
    """``[16, 1, H, W]``: crops of the validation picture and phantoms of a seed nothing else uses; the best
    checkpoint is chosen on these, never on the test images of ``validation_sets``."""
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    return torch.cat([images.natural_crops(8, size, generator, split="validation"),
                      validation_phantoms(8, size, seed=VALIDATION_SEED + 100)])


def selection_score(denoiser, clean: torch.Tensor, sigmas=SELECTION_SIGMAS) -> float:
    """Mean PSNR (dB) of ``denoiser`` on ``clean`` over the noise levels ``sigmas``."""
    was_training = getattr(denoiser, "training", False)
    denoiser.eval()
    score = sum(denoise_psnr(denoiser, clean, s) for s in sigmas) / len(sigmas)
    denoiser.train(was_training)
    return score


def train(config: DenoiserConfig, log_dir, command: str, device=None, resume: bool = False, progress=None,
          save_every: float = 300.0) -> tuple[torch.nn.Module, Session]:
    """Train ``config.network()`` in ``log_dir`` (resumed from its saved state with ``resume``); returns the
    best model (by ``selection_score``) in eval mode and the ``Session`` (log rows, segments, seconds).
    ``progress`` wraps the step range (e.g. tqdm)."""
    device = torch.device("cpu") if device is None else torch.device(device)
    session = Session(log_dir, LOG_COLUMNS, command, resume, save_every)
    torch.manual_seed(config.seed)  # the initialization
    model = config.network().to(device)
    generator = torch.Generator().manual_seed(config.seed)  # the data, on the CPU on every device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    best = None
    if session.state is not None:
        check_resumable(config, session.state["config"])
        model.load_state_dict(session.state["model"])
        optimizer.load_state_dict(session.state["optimizer"])
        generator.set_state(session.state["generator"])
        best = session.state["best"]
    clean = selection_set().to(device)

    def state():
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "best": best, "config": asdict(config)}

    def keep_if_best(step: int) -> float:
        nonlocal best
        score = selection_score(model, clean, config.selection_sigmas)
        if best is None or score > best["score"]:
            best = {"score": score, "step": step,
                    "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        return score

    if config.init is not None and session.state is None:  # the weights fine-tuning starts from compete too
        session.log({"step": 0, "seconds": session.seconds, "selection_psnr": keep_if_best(0)})
    steps = range(session.step, config.steps)
    model.train()
    try:
        for step in steps if progress is None else progress(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr = schedule(step, config.lr, config.warmup, config.steps)
            x = images.training_images(config.batch_size, config.patch_size, generator, config.mix)
            u = torch.rand(config.batch_size, generator=generator)
            sigma = config.sigma_min + (config.sigma_max - config.sigma_min) * u.square()
            noise = sigma[:, None, None, None] * torch.randn(x.shape, generator=generator)
            x, sigma, noise = x.to(device), sigma.to(device), noise.to(device)
            loss = (model(x + noise, sigma) - x).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            row = {"step": step + 1, "loss": loss.item(), "lr": lr, "seconds": session.seconds}
            if (step + 1) % config.validate_every == 0 or step + 1 == config.steps:
                row["selection_psnr"] = keep_if_best(step + 1)
            session.log(row)
            session.checkpoint(state)
        session.checkpoint(state, force=True)
    finally:
        session.close()
    if best is not None:
        model.load_state_dict(best["state_dict"])
    return model.eval(), session


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
    """The test images ``[n, 1, H, W]``: held-out phantoms, crops of the test pictures (``images.NATURAL_TEST``,
    never trained or selected on), the CT and MR slices."""
    return {
        "phantoms": validation_phantoms(8, size),
        f"natural ({', '.join(images.NATURAL_TEST)})": images.natural_crops(
            8, size, torch.Generator().manual_seed(VALIDATION_SEED), split="test"),
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


def summary(config: DenoiserConfig, model: torch.nn.Module, session: Session, validation: dict) -> dict:
    """The metrics and extra fields of a denoiser's manifest entry: the test figures, the selection score and
    step of the kept weights, the training segments (commands, steps, seconds) and the data recipe."""
    rows = session.rows()
    tail = [float(r["loss"]) for r in rows[-100:] if r["loss"]]  # a fine-tune's step 0 scores, takes no step
    scored = [(int(r["step"]), float(r["selection_psnr"])) for r in rows if r.get("selection_psnr")]
    best_step, best_score = max(scored, key=lambda item: item[1]) if scored else (None, None)
    metrics = {"validation": validation, "final_loss": sum(tail) / max(len(tail), 1),
               "selection_psnr": None if best_score is None else round(best_score, 3), "kept_step": best_step}
    if isinstance(model, DnCNN):
        metrics["lipschitz_bound"] = round(model.lipschitz_bound(), 4)
    seconds = sum(segment["seconds"] for segment in session.segments)
    return {
        "metrics": metrics,
        "extra": {"config": asdict(config), "data": images.recipe(config.mix, config.patch_size),
                  "parameters": sum(p.numel() for p in model.parameters()), "steps": session.step,
                  "segments": session.segments, "seconds_per_step": round(seconds / max(session.step, 1), 3),
                  **({"parent": parent(config.init)} if config.init is not None else {})},
        "seconds": seconds,
    }


def check(config: DenoiserConfig) -> DenoiserConfig:
    """ValueError for a configuration that cannot train, naming the bad value."""
    checks.choice("architecture", config.architecture, ARCHITECTURES)
    for name, low in (("steps", 1), ("batch_size", 1), ("depth", 2), ("width", 1), ("blocks", 1), ("patch_size", 8),
                      ("validate_every", 1)):
        if getattr(config, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(config, name)}")
    widest = max(config.widths) if config.architecture == "unet" else config.width
    layers = 4 * config.blocks * len(config.widths) if config.architecture == "unet" else config.depth
    # float32 activations of a training step (two per layer), before a batch is drawn
    checks.memory(f"a training step at --batch-size {config.batch_size}, --patch-size {config.patch_size}",
                  4.0 * config.batch_size * config.patch_size**2 * (2 * widest * layers + 8))
    for name in ("sigma_min", "sigma_max"):
        checks.number(f"--{name.replace('_', '-')}", getattr(config, name), minimum=0)
    if not config.sigma_min < config.sigma_max:
        raise ValueError(f"--sigma-min must be below --sigma-max (the range σ is drawn from), got --sigma-min "
                         f"{config.sigma_min:g} and --sigma-max {config.sigma_max:g}")
    if not config.selection_sigmas or not all(math.isfinite(x) and x > 0 for x in config.selection_sigmas):
        raise ValueError(f"--selection-sigmas must be noise levels > 0, got {config.selection_sigmas}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {config.lr}")
    return config
