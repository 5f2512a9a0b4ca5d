"""The reconstruction explorer without its widgets: PnP and RED, online when b/B < 1 (Sun, Wohlberg,
Kamilov, IEEE TCI 2019; the minibatch gradient of ODER, Liu et al., NeurIPS 2022)."""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch

from .. import checks
from ..algorithms import pnp_pgd, red, step_size
from ..algorithms.step import batch_size_of
from ..memory import PeakTensorMemory
from ..metrics import psnr, ssim
from ..physics import online_sampler

ALGORITHMS = {"red": "RED", "red-nesterov": "RED + Nesterov", "pnp": "PnP-PGD"}
ENDLESS = 10**9  # a stream is restarted on every change of the settings, never exhausted
RED_SIGMAS, RED_TAUS_OVER_L = (0.01, 0.02, 0.05), (0.01, 0.03, 0.1, 0.3)  # red_sweep's σ and τ/L_g


@dataclass(frozen=True)
class Settings:
    """The student's controls: algorithm, step γ, denoiser strength σ, prior weight τ (absolute, RED only), b/B."""

    algorithm: str
    gamma: float
    sigma: float
    tau: float
    batch_ratio: float

    def __post_init__(self):
        checks.choice("algorithm", self.algorithm, tuple(ALGORITHMS))
        checks.number("gamma", self.gamma, positive=True)
        checks.number("sigma", self.sigma, minimum=0)
        checks.number("tau", self.tau, minimum=0)
        checks.ratio("batch_ratio", self.batch_ratio)


@dataclass(frozen=True)
class Record:
    """One iteration: ``batch_size`` = the number of blocks it used (b, as drawn: its block evaluations per image),
    PSNR (dB), SSIM, the solver's own seconds (``State.seconds``: the method's cost, without anything the panel
    does between iterations), peak tensor bytes (``_Chain``), the same for the full-batch run (None without one),
    whether and why the solver stopped the run, ``band_psnr``: the PSNR of the same iteration in runs with other
    seeds (online only; empty at b = B, where every seed gives the same run), and ``wall_seconds``: the whole
    step of the panel (this run, the reference, the band, PSNR and SSIM)."""

    run: int
    iteration: int
    settings: Settings
    batch_size: int
    psnr: float
    ssim: float
    seconds: float
    peak_bytes: int
    reference_psnr: float | None = None
    reference_ssim: float | None = None
    reference_seconds: float | None = None
    reference_peak_bytes: int | None = None
    diverged: bool = False
    message: str = ""
    band_psnr: tuple[float, ...] = ()
    wall_seconds: float = 0.0


class _Chain:
    """Iterates whose solver restarts from the current x on a change of settings. Peak memory is counted (costly)
    on the first two iterations after it (the first may include set-up); later ones reuse the second's figure."""

    def __init__(self, x0: torch.Tensor):
        self.x, self.stream, self.settings, self.elapsed = x0, None, None, 0.0
        self.count, self.peak = 0, 0

    def step(self, settings: Settings, make_stream):
        """Advance one iteration; returns (state, seconds, peak_bytes)."""
        if settings != self.settings:
            self.stream, self.settings, self.elapsed, self.count = make_stream(self.x), settings, 0.0, 0
        memory = PeakTensorMemory(self.x.device) if self.count < 2 else nullcontext()
        with warnings.catch_warnings(), memory:
            warnings.simplefilter("ignore", RuntimeWarning)  # divergence is reported in the record
            state = next(self.stream)
        if self.count < 2:
            self.peak = memory.peak_bytes
        self.count += 1
        seconds, self.elapsed, self.x = state.seconds - self.elapsed, state.seconds, state.x
        return state, seconds, self.peak


class ReconstructionRun:
    """``iterations`` iterations on a ``problems.Problem`` with denoiser ``D``, restarting from ``main.x``
    ``[1, C, H, W]`` on a change of settings; with ``reference``, a full-batch run (b = B, same γ, σ, τ) beside;
    with ``band`` > 0, as many online runs with the seeds ``seed + 1, …`` beside (the spread of the online
    curve over the draws of S; at b = B they follow the main run, which every seed would repeat)."""

    def __init__(self, problem, D, iterations: int, reference: bool = True, seed: int = 0, id: int = 1,
                 band: int = 0):
        self.problem, self.D, self.reference, self.seed, self.id = problem, D, reference, seed, id
        self.iterations = checks.integer("iterations", iterations, 1)
        self.generator = torch.Generator().manual_seed(seed)
        self.main, self.full = _Chain(problem.x0), _Chain(problem.x0) if reference else None
        self.band = [(_Chain(problem.x0), torch.Generator().manual_seed(seed + k))
                     for k in range(1, checks.integer("band", band, 0) + 1)]
        self.history, self.stopped = [], False

    @property
    def done(self) -> bool:
        return self.stopped or len(self.history) >= self.iterations or bool(self.history and self.history[-1].diverged)

    def _stream(self, settings: Settings, x0, generator):
        p, s = self.problem, settings
        common = dict(gamma=s.gamma, sigma=s.sigma, batch_ratio=s.batch_ratio, x0=x0, max_iter=ENDLESS,
                      sampler=p.setting.sampler, generator=generator)
        if s.algorithm == "pnp":
            return pnp_pgd(p.A, p.y, self.D, **common)
        return red(p.A, p.y, self.D, tau=s.tau, accelerate=s.algorithm == "red-nesterov", **common)

    def _quality(self, x: torch.Tensor) -> tuple[float, float]:
        if not torch.isfinite(x).all():
            return -math.inf, math.nan
        return psnr(x, self.problem.x_true).item(), ssim(x.clamp(0, 1), self.problem.x_true).item()

    def step(self, settings: Settings) -> Record:
        """One iteration with ``settings``; the record says if the solver stopped the run."""
        if not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings(algorithm, gamma, sigma, tau, batch_ratio), "
                            f"got {type(settings).__name__}")
        started = time.perf_counter()
        state, seconds, peak = self.main.step(settings, lambda x: self._stream(settings, x, self.generator))
        quality = self._quality(self.main.x)
        band = self._step_band(settings)
        reference = ()
        if self.full is not None:
            if settings.batch_ratio == 1.0:  # the run is its own reference: continue from it
                self.full.x, self.full.stream, self.full.settings = self.main.x, None, None
                reference = (*quality, seconds, peak)
            else:
                full = replace(settings, batch_ratio=1.0)
                full_state, *cost = self.full.step(full, lambda x: self._stream(full, x, None))
                reference = (*self._quality(self.full.x), *cost)
                if full_state.diverged:  # its stream has ended; the run itself may go on
                    self.full = None
        drawn = self.problem.A.num_blocks if state.blocks is None else len(state.blocks)
        record = Record(self.id, len(self.history) + 1, settings, drawn, *quality, seconds, peak,
                        *reference, diverged=state.diverged, message=state.message, band_psnr=band,
                        wall_seconds=time.perf_counter() - started)
        self.history.append(record)
        return record

    def _step_band(self, settings: Settings) -> tuple[float, ...]:
        """One iteration of every band run with ``settings``: their PSNRs (none at b = B, where they follow the
        main run; a band run the solver stopped is dropped)."""
        if settings.batch_ratio == 1.0:
            for chain, _ in self.band:
                chain.x, chain.stream, chain.settings = self.main.x, None, None
            return ()
        values, kept = [], []
        for chain, generator in self.band:
            state, *_ = chain.step(settings, lambda x, g=generator: self._stream(settings, x, g))
            if not state.diverged:
                finite = torch.isfinite(chain.x).all()
                values.append(psnr(chain.x, self.problem.x_true).item() if finite else -math.inf)
                kept.append((chain, generator))
        self.band = kept
        return tuple(values)


def safe_step(problem, algorithm: str, tau: float = 0.0, batch_ratio: float = 1.0) -> float:
    """The default step of ``algorithms.step_size``: 1/(L + τ·L_R) for RED with L_R = 1 (RED's assumption on
    the denoiser; the shipped DnCNN's certified bound is far above it, notebook 02 measures it), 1/L for PnP;
    L = L_g = ||A||², or the minibatch constant L_b of the b the problem's sampler draws when b/B < 1."""
    sampler = online_sampler(problem.setting.sampler, problem.A.num_blocks, batch_ratio)
    return step_size(problem.A, 0.0 if algorithm == "pnp" else tau, 1.0, batch_size_of(sampler, problem.A)).value


def red_sweep(problem, D, sigmas=RED_SIGMAS, taus_over_L=RED_TAUS_OVER_L, iterations: int = 100) -> list[dict]:
    """RED at the default step for each σ in ``sigmas`` and τ/L_g in ``taus_over_L``: rows of final and best PSNR (dB)."""
    L, rows = problem.A.norm() ** 2, []
    for sigma in sigmas:
        for tau in taus_over_L:
            run = ReconstructionRun(problem, D, iterations, reference=False)
            settings = Settings("red", safe_step(problem, "red", tau * L), sigma, tau * L, 1.0)
            while not run.done:
                run.step(settings)
            curve = [r.psnr for r in run.history]
            best = max(range(len(curve)), key=curve.__getitem__)
            rows.append({"sigma": sigma, "tau_over_L": tau, "final_psnr": round(curve[-1], 2),
                         "best_psnr": round(curve[best], 2), "best_iteration": best + 1,
                         "diverged": run.history[-1].diverged})
    return rows


def choose_red_setting(rows: list[dict], within: float = 0.3) -> dict:
    """The row of best final PSNR among those ending within ``within`` dB of their best iterate (not worsening)."""
    stable = [r for r in rows if not r["diverged"] and r["best_psnr"] - r["final_psnr"] <= within]
    if not stable:
        raise ValueError(f"no setting ends within {within} dB of its best iterate")
    return max(stable, key=lambda r: r["final_psnr"])
