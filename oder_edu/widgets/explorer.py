"""The reconstruction explorer: PnP, RED and online RED on CT, MRI and IDT, live; a run is an asyncio
task that yields after every iteration, so the kernel handles slider messages in between."""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import math
import statistics
import time

import ipywidgets as w

from .. import checks
from ..denoisers import load_denoiser
from ..device import as_device
from ..memory import PeakTensorMemory
from ..metrics import psnr
from ..problems import make_problem
from .compat import set_tooltip
from .render import Panel, ReconstructionFigure, Throttle
from .runner import ALGORITHMS, ReconstructionRun, Settings, safe_step

PROBLEMS = ("ct", "mri", "idt")


def ratio_options(num_blocks: int) -> list[tuple[str, float]]:
    """(label, b/B) for b = B, B/2, B/4, ... while b is a whole number of blocks, smallest first."""
    options, k = [("1", 1.0)], 1
    while num_blocks % 2**k == 0:
        options.insert(0, (f"1/{2**k}", 1 / 2**k))
        k += 1
    return options


class ReconstructionExplorer(Panel):
    """Sliders for step γ, denoiser σ, prior weight τ (× L_g) and b/B; shows the iterate, truth, error, PSNR
    curve (with the spread over ``band`` more seeds when online) and per-iteration PSNR, SSIM, block evaluations,
    the solver's own time and memory beside the full-batch run's. γ follows the default step of the current
    algorithm, τ and b/B (``runner.safe_step``) until the student moves it (``gamma_auto``). ``batch_ratio``: the
    b/B it opens at (the nearest available); ``num_blocks``: B per problem; ``denoiser``: a ``load_denoiser`` name
    or ``D(x, sigma)``; ``frames``: (iteration, perf_counter).

    >>> ex = ReconstructionExplorer("mri", denoiser="gaussian")
    >>> ex.sigma.value = 0.04; history = ex.run_sync(5)   # no event loop needed
    >>> ex              # in a notebook: the widget; ex.start() / await ex.run() run live
    """

    def __init__(self, problem: str = "idt", algorithm: str = "red", image_size: int | None = None, *,
                 denoiser="dncnn", iterations: int = 100, num_blocks: dict | None = None, reference: bool = True,
                 device=None, seed: int = 0, batch_ratio: float = 0.25, band: int = 3):
        checks.choice("problem", problem, PROBLEMS)
        checks.choice("algorithm", algorithm, tuple(ALGORITHMS))
        iterations = checks.integer("iterations", iterations, 1, 1000)
        reference = checks.flag("reference", reference)
        self.image_size = None if image_size is None else checks.integer("image_size", image_size, 16)
        if num_blocks is not None and not isinstance(num_blocks, dict):
            raise TypeError(f"num_blocks must be a dict problem -> B (e.g. {{'ct': 90}}) or None, "
                            f"got {type(num_blocks).__name__}")
        self.num_blocks = dict(num_blocks or {})
        if set(self.num_blocks) - set(PROBLEMS):
            raise ValueError(f"num_blocks keys must be among {PROBLEMS}, got {sorted(self.num_blocks)}")
        self.seed, self.device = checks.integer("seed", seed), as_device(device)
        self.initial_ratio, self.band_size = checks.ratio("batch_ratio", batch_ratio), checks.integer("band", band, 0)
        self._setting_gamma = False  # True while the panel itself moves γ (not the student)
        self._panel_gamma = None  # the last γ the panel set
        if isinstance(denoiser, str):
            self.denoiser_name, self.D = denoiser, load_denoiser(denoiser, device=self.device)
        else:
            self.D = checks.function("denoiser", denoiser, "D(x, sigma), or a name for load_denoiser")
            self.denoiser_name = getattr(denoiser, "__name__", type(denoiser).__name__)
        self._problems, self._run, self._runs, self.task, self.error = {}, None, 0, None, None
        self.panel_seconds: list[float] = []  # per iteration: everything but the solver (reference, band, drawing)
        self.throttle, self.frames = Throttle(), []
        style, wide = {"description_width": "80px"}, w.Layout(width="420px")
        slider = lambda kind, name, **kw: kind(style=style, layout=wide, **kw).add_class(name)  # noqa: E731
        self.problem = w.Dropdown(options=PROBLEMS, value=problem, description="problem", style=style)
        self.algorithm = w.Dropdown(options=[(v, k) for k, v in ALGORITHMS.items()], value=algorithm,
                                    description="algorithm", style=style)
        self.gamma = slider(w.FloatLogSlider, "oder-gamma", value=1.0, base=10, min=-1, max=1, step=0.05,
                            description="step γ", readout_format=".3g")
        self.sigma = slider(w.FloatSlider, "oder-sigma", value=0.05, min=0.0, max=0.2, step=0.005,
                            description="denoiser σ", readout_format=".3f")
        self.tau = slider(w.FloatSlider, "oder-tau", value=0.1, min=0.0, max=0.5, step=0.005, description="τ / L_g",
                          readout_format=".3f")
        self.batch_ratio = slider(w.SelectionSlider, "oder-ratio", options=[("1", 1.0)], description="b/B")
        self.iterations = slider(w.IntSlider, "oder-iterations", value=iterations, min=1, max=1000,
                                 description="iterations")
        self.reference = w.Checkbox(value=reference, description="full-batch reference (from next Run)", indent=False)
        self.gamma_auto = w.Checkbox(value=True, description="γ = default step", indent=False)
        self.gamma_auto.add_class("oder-gamma-auto")
        set_tooltip(self.gamma_auto, "γ follows the default step of the current b/B, τ and algorithm until you move it")
        self.band = w.Checkbox(value=self.band_size > 0, description=f"spread over {self.band_size} more seeds "
                               f"(from next Run)", indent=False, disabled=self.band_size == 0)
        self.run_button = w.Button(description="Run", button_style="success", icon="play").add_class("oder-run")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop").add_class("oder-stop")
        self.bound, self.image, self.readout, self.status = w.HTML(), w.Image(format="png"), w.HTML(), w.HTML()
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.problem.observe(lambda _: self._set_problem(), names="value")
        self.gamma.observe(lambda _: self._gamma_moved(), names="value")
        for control in (self.tau, self.algorithm, self.batch_ratio, self.gamma_auto):
            control.observe(lambda _: self._follow_default(), names="value")
        self.widget = w.VBox([w.HBox([self.problem, self.algorithm, self.run_button, self.stop_button]),
                              w.HBox([self.gamma, self.gamma_auto, self.bound]), w.HBox([self.sigma, self.tau]),
                              w.HBox([self.batch_ratio, self.iterations]), w.HBox([self.reference, self.band]),
                              self.status, self.readout, self.image])
        self._set_problem()

    def close(self) -> None:
        self._cancel()
        super().close()

    @property
    def history(self) -> list:
        """One ``Record`` per iteration of the latest run (empty before the first)."""
        return [] if self._run is None else self._run.history

    def settings(self) -> Settings:
        """The controls' values now (τ in absolute units, not × L_g)."""
        return Settings(self.algorithm.value, float(self.gamma.value), float(self.sigma.value),
                        float(self.tau.value) * self._L, float(self.batch_ratio.value))

    @property
    def safe_step(self) -> float:
        """The default step for the current problem, algorithm, τ and b/B (``runner.safe_step``)."""
        s = self.settings()
        return safe_step(self._problem, s.algorithm, s.tau, s.batch_ratio)

    def start(self, iterations: int | None = None) -> asyncio.Task:
        """Start a run as a task on the running loop (else the kernel's), cancelling any earlier run."""
        run = self._begin(iterations)
        self.task = asyncio.get_event_loop().create_task(self._loop(run))
        return self.task

    async def run(self, iterations: int | None = None) -> list:
        """Start a run and wait for it; returns its history (raises what stopped it, if an error)."""
        await self.start(iterations)
        if self.error is not None:
            raise self.error
        return self.history

    def run_sync(self, iterations: int | None = None) -> list:
        """Run without an event loop, through the same steps as a live run."""
        run = self._begin(iterations)
        while not run.done and self._iterate_safely(run):
            pass
        time.sleep(self.throttle.wait())  # keep the redraw interval even for the last frame
        self._finish(run)
        if self.error is not None:
            raise self.error
        return run.history

    def stop(self) -> None:
        """Stop the current run after its current iteration (the widget stays usable)."""
        if self._run is not None:
            self._run.stopped = True

    async def _loop(self, run: ReconstructionRun) -> None:
        while not run.done and self._iterate_safely(run):
            await asyncio.sleep(0)  # let the kernel deliver slider and button messages
        await asyncio.sleep(self.throttle.wait())
        self._finish(run)

    def _begin(self, iterations) -> ReconstructionRun:
        self._cancel()
        n = self.iterations.value if iterations is None else checks.integer("iterations", iterations, 1)
        self._runs, self.error, self.frames, self.panel_seconds = self._runs + 1, None, [], []
        self._run = ReconstructionRun(self._problem, self.D, n, self.reference.value, self.seed, self._runs,
                                      band=self.band_size if self.band.value else 0)
        self._say(f"run {self._runs}: running…")
        return self._run

    def _cancel(self) -> None:
        # A second Run supersedes the first: its task ends at its next await, leaving the panel alone.
        self.stop()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _iterate_safely(self, run: ReconstructionRun) -> bool:
        """One iteration; False when the run must end (divergence or an error, both shown)."""
        started = time.perf_counter()
        try:
            record = run.step(self.settings())
        except Exception as error:  # noqa: BLE001 - shown in the panel, re-raised by run/run_sync
            self.error = error
            self._say(f"error at iteration {len(run.history) + 1}: {type(error).__name__}: "
                      f"{html.escape(str(error))}", warn=True)
            return False
        if record.diverged:
            self._show_readout(run)
            self._say(f"⚠ diverged, run stopped: {html.escape(record.message)}. Change γ and press Run.", warn=True)
            return False
        if self.throttle.ready():
            self._draw(run)
        self.panel_seconds.append(time.perf_counter() - started - record.seconds)
        self._show_readout(run)
        return True

    def _finish(self, run: ReconstructionRun) -> None:
        if run is not self._run:  # superseded by a newer run
            return
        self._draw(run)
        if self.error is None and not (run.history and run.history[-1].diverged):  # else: shown already
            what = "stopped" if run.stopped and len(run.history) < run.iterations else "done"
            self._say(f"run {run.id} {what}: {len(run.history)} iterations")

    def _say(self, message: str, warn: bool = False) -> None:  # message: HTML
        span = "<span class='oder-warning' style='color:#b00'>" if warn else "<span class='oder-status'>"
        self.status.value = f"{span}{message}</span>"

    def _draw(self, run: ReconstructionRun | None) -> None:
        history = run.history if run is not None else []
        self.image.value = self.figure.update(
            self._problem.x0 if run is None else run.main.x, [r.iteration for r in history], [r.psnr for r in history],
            [r.reference_psnr for r in history], total=run.iterations if run is not None else self.iterations.value,
            title=f"iteration {history[-1].iteration}" if history else "start image x₀",
            band=[r.band_psnr for r in history])
        self.frames.append((history[-1].iteration if history else 0, time.perf_counter()))
        self.throttle.last = self.throttle.clock()  # every redraw counts for the 0.1 s interval

    def _show_readout(self, run: ReconstructionRun) -> None:
        """PSNR, SSIM, block evaluations, the solver's own time (median of the last ≤ 10 iterations at this
        algorithm and b/B: the method's cost, without the panel's work) and peak memory; then what the panel
        spends per iteration besides (the reference run, the seed band, PSNR and SSIM, drawing)."""
        last, p, B = run.history[-1], self._problem, self._problem.A.num_blocks
        cost = lambda r: (r.settings.algorithm, r.settings.batch_ratio)  # noqa: E731
        recent = list(itertools.takewhile(lambda r: cost(r) == cost(last), reversed(run.history[-10:])))
        ref = [r.reference_seconds for r in recent if r.reference_seconds is not None]
        rows = (
            ("PSNR", "oder-psnr", last.psnr, last.reference_psnr, "{:.2f} dB"),
            ("SSIM", "oder-ssim", last.ssim, last.reference_ssim, "{:.3f}"),
            ("block evaluations / iteration", "oder-blocks", last.batch_size, B, "{:d}"),  # b of B: exact
            ("solver time / iteration", "oder-seconds", statistics.median(r.seconds for r in recent) * 1e3,
             statistics.median(ref) * 1e3 if ref else None, "{:.1f} ms"),
            (f"{PeakTensorMemory(self.device).kind} / iteration", "oder-memory", last.peak_bytes / 2**20,
             None if last.reference_peak_bytes is None else last.reference_peak_bytes / 2**20, "{:.2f} MiB"))
        cells = "".join(
            f"<tr><td>{name}</td><td class='oder-readout {cls}' style='padding:0 12px'>{form.format(mine)}</td>"
            f"<td class='oder-readout {cls}-full' style='padding:0 12px'>{'–' if full is None else form.format(full)}"
            f"</td></tr>" for name, cls, mine, full, form in rows)
        spread = ""
        if last.band_psnr:
            values = (last.psnr, *last.band_psnr)
            spread = (f"<div class='oder-band'>PSNR over {len(values)} seeds: {min(values):.2f} to {max(values):.2f} "
                      f"dB (the band in the plot)</div>")
        panel = self.panel_seconds[-10:]
        overhead = "" if not panel else (
            f"<div class='oder-overhead'>the panel's own work per iteration (full-batch reference, seed band, PSNR, "
            f"SSIM, drawing): {statistics.median(panel) * 1e3:.1f} ms — not part of either method's cost</div>")
        self.readout.value = (
            "<table style='font-family:monospace'>"
            f"<tr><th style='text-align:left'>iteration {last.iteration}/{run.iterations}</th>"
            f"<th>this run (b = {last.batch_size}/{B} {p.block_name})</th><th>full batch (b = {B}/{B})</th></tr>"
            f"{cells}</table>{spread}{overhead}<div class='oder-setting'>{html.escape(self._label)}</div>")

    def _show_bound(self) -> None:
        s, safe = self.settings(), self.safe_step
        what = "1/L" if s.algorithm == "pnp" else "1/(L + τ·L_R)"
        which = "L = L_g" if s.batch_ratio == 1 else f"L = the minibatch constant at b/B = {self.batch_ratio.label}"
        self.bound.value = (f"<span class='oder-bound'>γ = {s.gamma:.3g} = {s.gamma / safe:.2f} × {what}; default "
                            f"{what} = {safe:.3g} ({which})</span>")

    @contextlib.contextmanager
    def _as_panel(self):
        """Changes of γ inside are the panel's, not the student's: γ keeps following the default step."""
        outer, self._setting_gamma = self._setting_gamma, True
        try:
            yield
        finally:
            self._setting_gamma = outer

    def _set_gamma(self, value: float, low: float | None = None, high: float | None = None) -> None:
        """Move the γ slider to ``value`` as the panel (not the student), its range widened to hold it (or set to
        [low, high] in log10, widened as needed).

        The range starts on the grid through ``value`` (whole slider steps in log10): a browser's slider rounds a
        value that lies between two grid points and sends the rounded one back, which would read as the student's
        move and stop γ following the default step."""
        exponent, step = math.log10(value), self.gamma.step
        low = min(self.gamma.min if low is None else low, exponent - 0.5)
        high = max(self.gamma.max if high is None else high, exponent + 0.5)
        low = exponent - step * math.ceil((exponent - low) / step - 1e-9)  # value is a whole number of steps above
        with self._as_panel(), self.gamma.hold_sync():  # one message to the browser: range and value together
            self.gamma.min, self.gamma.max = min(self.gamma.min, low), max(self.gamma.max, high)
            self.gamma.value = value
            self.gamma.min, self.gamma.max = low, high
        self._panel_gamma = value

    def _gamma_moved(self) -> None:
        """The student moved γ: it stops following the default step. A change of less than half a slider step from
        the value the panel set is the browser rounding it to the slider's grid, not the student's move (a slider
        moves by whole steps)."""
        rounded = (self._panel_gamma is not None
                   and abs(math.log10(self.gamma.value / self._panel_gamma)) < self.gamma.step / 2)
        if not self._setting_gamma and not rounded:
            self.gamma_auto.value = False
        self._show_bound()

    def _follow_default(self) -> None:
        """After a change of τ, algorithm, b/B or the checkbox: γ back to the default step, if it follows it."""
        if self.gamma_auto.value:
            self._set_gamma(self.safe_step)
        self._show_bound()

    def reset(self) -> None:
        """Every control back to the problem's defaults (σ, τ, the opening b/B, γ following the default step) and
        the panel to its start image; built problems are kept."""
        self._set_problem()

    @property
    def current_problem(self):
        """The ``problems.Problem`` being explored (its A, y, x0, x_true and setting): what a notebook times the
        bare solver on."""
        return self._problems[self.problem.value]

    _problem = current_problem

    def _set_problem(self) -> None:
        self._cancel()
        name = self.problem.value
        if name not in self._problems:
            self._say(f"building {name}…")
            self._problems[name] = make_problem(name, self.image_size, self.num_blocks.get(name), seed=self.seed,
                                                device=self.device)
        p, self._run = self._problem, None
        self._L = float(p.A.norm()) ** 2  # L_g = ||A||², the unit of the τ slider
        self.figure = ReconstructionFigure(p.x_true)
        options = ratio_options(p.A.num_blocks)
        with self._as_panel():
            self.batch_ratio.options = options
            # the option nearest the opening ratio, on a log scale: 1/4 opens at 1/4 where B allows it
            self.batch_ratio.value = min((v for _, v in options),
                                         key=lambda v: abs(math.log2(v) - math.log2(self.initial_ratio)))
            self.sigma.value, self.tau.value = p.setting.red_sigma, p.setting.red_tau_over_L
            self.gamma_auto.value = True
        set_tooltip(self.batch_ratio, f"minibatch ratio: b of the B = {p.A.num_blocks} {p.block_name} per iteration")
        # γ from 2 decades below the full-batch default step to 1.5 above (and down to the current default).
        full = math.log10(safe_step(p, self.algorithm.value, self.tau.value * self._L, 1.0))
        self._set_gamma(self.safe_step, full - 2, full + 1.5)
        self._show_bound()
        self._label = (f"{p.label}: {p.A.num_blocks} {p.block_name}, {p.A.image_shape[-1]}², {p.snr_db:.0f} dB SNR, "
                       f"denoiser {self.denoiser_name}")
        start = psnr(p.x0, p.x_true).item()
        self.readout.value = f"<span class='oder-readout oder-psnr'>start image x₀: PSNR {start:.2f} dB</span>"
        self._say(f"{html.escape(self._label)}. Press Run.")
        self._draw(None)
