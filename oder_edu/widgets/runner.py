"""The reconstruction explorer without its widgets: a run whose settings may change between
any two iterations, with its history and a full-batch reference run beside it.

``ReconstructionRun(problem, D).step(settings)`` advances one iteration of PnP or RED (online
when b/B < 1: Sun, Wohlberg, Kamilov, IEEE TCI 2019; Wu et al., "SIMBA", 2020; the minibatch
gradient of ODER, Liu et al., NeurIPS 2022) and returns its ``Record``. A changed γ, σ, τ or
b/B restarts the solver's stream from the current iterate, so the history stays one
continuous sequence. The reference repeats every iteration with b = B and the same γ, σ, τ.
Tests, benches and the explorer all drive runs through this class.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from .. import checks
from ..algorithms import pnp_pgd, red, step_size
from ..memory import PeakTensorMemory
from ..metrics import psnr, ssim
from ..physics import batch_size_for

ALGORITHMS = {"red": "RED", "red-nesterov": "RED + Nesterov", "pnp": "PnP-PGD"}
ENDLESS = 10**9  # a stream is restarted on every change of the settings, never exhausted


@dataclass(frozen=True)
class Settings:
    """What the student controls: the algorithm, step γ, denoiser strength σ, prior weight τ
    (RED only) and minibatch ratio b/B."""

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
    """One iteration: the settings it used and what was measured.

    ``blocks`` = b; ``seconds``: the solver's compute time for the iteration; ``peak_bytes``: its
    peak tensor memory (measured on the first two iterations after each change of the
    settings, see ``_Chain``); ``reference_*``: the full-batch run at the same iteration, None
    without a reference; ``diverged``/``message``: the solver stopped the run.
    """

    run: int
    iteration: int
    settings: Settings
    blocks: int
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


class _Chain:
    """One iterate sequence whose solver restarts from the current x when its settings change.

    Peak tensor memory is measured on the first two iterations after each restart; later
    iterations run the same operations on the same shapes and repeat the second figure.
    (The first may include one-time set-up, such as an operator caching a buffer; counting
    every allocation costs Python time per tensor operation, too much to pay every time.)
    """

    MEASURED = 2

    def __init__(self, x0: torch.Tensor):
        self.x, self.stream, self.settings, self.elapsed = x0, None, None, 0.0
        self.count, self.peak = 0, 0

    def step(self, settings: Settings, make_stream):
        """Advance one iteration; returns (state, seconds, peak_bytes)."""
        if settings != self.settings:
            self.stream, self.settings, self.elapsed, self.count = make_stream(self.x), settings, 0.0, 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # divergence is reported in the record
            if self.count < self.MEASURED:
                with PeakTensorMemory(self.x.device) as memory:
                    state = next(self.stream)
                self.peak = memory.peak_bytes
            else:
                state = next(self.stream)
        self.count += 1
        seconds, self.elapsed = state.seconds - self.elapsed, state.seconds
        self.x = state.x
        return state, seconds, self.peak


@dataclass
class ReconstructionRun:
    """A run of ``iterations`` iterations on ``problem`` (``problems.Problem``) with denoiser ``D``.

    ``step(settings)`` does one iteration and returns its ``Record`` (also appended to
    ``history``); ``done`` says whether the run has used its iterations or diverged. With
    ``reference``, a full-batch run follows beside it.
    """

    problem: object
    D: object
    iterations: int
    reference: bool = True
    seed: int = 0
    id: int = 1
    history: list = field(default_factory=list)

    def __post_init__(self):
        self.iterations = checks.integer("iterations", self.iterations, 1)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.main = _Chain(self.problem.x0)
        self.full = _Chain(self.problem.x0) if self.reference else None
        self.stopped = False

    @property
    def x(self) -> torch.Tensor:
        """The current iterate ``[1, C, H, W]``."""
        return self.main.x

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
        truth = self.problem.x_true
        return psnr(x, truth).item(), ssim(x.clamp(0, 1), truth).item()

    def step(self, settings: Settings) -> Record:
        """One iteration with ``settings``; the record says if the solver stopped the run."""
        if not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings(algorithm, gamma, sigma, tau, batch_ratio), "
                            f"got {type(settings).__name__}")
        state, seconds, peak = self.main.step(settings, lambda x: self._stream(settings, x, self.generator))
        quality = self._quality(self.main.x)
        reference = {}
        if self.full is not None:
            full = Settings(settings.algorithm, settings.gamma, settings.sigma, settings.tau, 1.0)
            if settings.batch_ratio == 1.0:  # the run is its own reference: continue from it
                self.full.x, self.full.stream, self.full.settings = self.main.x, None, None
                values = (*quality, seconds, peak)
            else:
                ref_state, ref_seconds, ref_peak = self.full.step(full, lambda x: self._stream(full, x, None))
                values = (*self._quality(self.full.x), ref_seconds, ref_peak)
                if ref_state.diverged:  # its stream has ended; the run itself may go on
                    self.full = None
            reference = dict(zip(("reference_psnr", "reference_ssim", "reference_seconds", "reference_peak_bytes"),
                                 values))
        record = Record(self.id, len(self.history) + 1, settings,
                        batch_size_for(self.problem.A.num_blocks, settings.batch_ratio), *quality, seconds, peak,
                        diverged=state.diverged, message=state.message, **reference)
        self.history.append(record)
        return record

    def run_sync(self, settings: Settings, iterations: int | None = None) -> list[Record]:
        """Step until done (or ``iterations`` more steps) with fixed settings; returns the history."""
        for _ in range(self.iterations if iterations is None else iterations):
            if self.done:
                break
            self.step(settings)
        return self.history


def safe_step(problem, settings_or_algorithm, tau: float = 0.0, batch_ratio: float = 1.0) -> float:
    """The default step of ``algorithms.step_size`` for the problem: 1/(L + τ·L_R) for RED
    (L_R = 1, the shipped DnCNN's certified bound), 1/L for PnP, with L the minibatch constant
    when b/B < 1."""
    algorithm = getattr(settings_or_algorithm, "algorithm", settings_or_algorithm)
    return step_size(problem.A, 0.0 if algorithm == "pnp" else tau, 1.0, batch_ratio).value


RED_SIGMAS = (0.01, 0.02, 0.05)
RED_TAUS = (0.01, 0.03, 0.1, 0.3)  # × L_g


def red_sweep(problem, D, sigmas=RED_SIGMAS, taus=RED_TAUS, iterations: int = 100) -> list[dict]:
    """RED (the explorer's default algorithm, default step) on ``problem`` for every σ in
    ``sigmas`` and τ/L_g in ``taus``: one row each with the final PSNR, the best PSNR over the
    iterations and where it was. ``choose_red_setting`` picks the explorer's defaults from it."""
    L = problem.A.norm() ** 2
    rows = []
    for sigma in sigmas:
        for tau in taus:
            run = ReconstructionRun(problem, D, iterations, reference=False)
            settings = Settings("red", safe_step(problem, "red", tau * L), sigma, tau * L, 1.0)
            curve = [r.psnr for r in run.run_sync(settings)]
            best = max(range(len(curve)), key=curve.__getitem__)
            rows.append({"sigma": sigma, "tau_over_L": tau, "final_psnr": round(curve[-1], 2),
                         "best_psnr": round(curve[best], 2), "best_iteration": best + 1,
                         "diverged": run.history[-1].diverged})
    return rows


def choose_red_setting(rows: list[dict], within: float = 0.3) -> dict:
    """The row with the best final PSNR among those that end within ``within`` dB of their best
    iterate (a setting whose picture does not get worse the longer it runs)."""
    stable = [r for r in rows if not r["diverged"] and r["best_psnr"] - r["final_psnr"] <= within]
    if not stable:
        raise ValueError(f"no setting ends within {within} dB of its best iterate")
    return max(stable, key=lambda r: r["final_psnr"])
