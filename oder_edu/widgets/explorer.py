"""The reconstruction explorer: PnP, RED and online RED on CT, MRI and IDT, live.

Controls: step γ (log scale, the default bound marked), denoiser strength σ, prior weight τ,
minibatch ratio b/B (fractions 1, 1/2, 1/4, ... of B), iterations, algorithm and problem, Run
and Stop. Panel: the iterate beside the ground truth and the error map, PSNR versus iteration
with the full-batch run overlaid, and readouts of PSNR, SSIM, time and peak tensor memory per
iteration, each beside the full-batch value. The iterations are those of ``runner``.

How it stays responsive (DESIGN.md, "Widgets use core ipywidgets only"): a run is an asyncio
task that does one iteration, reads the controls, and yields with ``await asyncio.sleep(0)``,
so the kernel handles slider messages between any two iterations. Images are redrawn at most
every 0.1 s; readouts every iteration.

Problems are ``problems.make_problem`` at their defaults. The default problem is IDT with 256
LEDs, where the measurement blocks are most of an iteration's cost: there, moving b/B down
visibly cuts the time and memory per iteration. σ and τ start at the problem's RED setting
(``Setting.red_sigma``, ``red_tau``: a sweep with the shipped DnCNN, shown in notebook 02), γ at
the default step.
"""

from __future__ import annotations

import asyncio
import html
import math
import statistics
import time

import ipywidgets as w
import torch

from .. import checks
from ..device import as_device
from ..memory import PeakTensorMemory
from ..metrics import psnr
from ..problems import make_problem
from .render import ReconstructionFigure, Throttle
from .runner import ALGORITHMS, ReconstructionRun, Settings, safe_step

PROBLEMS = ("ct", "mri", "idt")


def ratio_options(num_blocks: int) -> list[tuple[str, float]]:
    """b/B for b = B, B/2, B/4, ... while B/2^k is a whole number of blocks: clean fractions."""
    options, k = [], 0
    while num_blocks % 2**k == 0 and num_blocks // 2**k >= 1:
        options.append(("1" if k == 0 else f"1/{2**k}", 1 / 2**k))
        if num_blocks // 2**k == 1:
            break
        k += 1
    return options[::-1]


def close_all(widget: w.Widget) -> None:
    """Close ``widget`` and, first, every widget inside it."""
    for child in getattr(widget, "children", ()):
        close_all(child)
    widget.close()


class ReconstructionExplorer:
    """Live PnP / RED / online RED reconstruction with γ, σ, τ and b/B under the student's hand.

    >>> ex = ReconstructionExplorer("mri", denoiser="gaussian")
    >>> ex.sigma.value = 0.04; history = ex.run_sync(5)   # no event loop needed
    >>> ex              # in a notebook: the widget; ex.start() / await ex.run() run live

    ``problem``: 'ct', 'mri' or 'idt' (``problems.make_problem``, at ``image_size`` and with
    ``num_blocks`` blocks -- a dict per problem -- where given); ``algorithm``: 'red',
    'red-nesterov' or 'pnp'; ``denoiser``: a name for ``load_denoiser`` ('dncnn', 'gaussian',
    'tv') or a callable ``D(x, sigma)``; ``reference``: also run the full-batch iteration.

    Programmatic API: ``run_sync(n)``, ``start(n)`` (the asyncio task, also ``self.task``),
    ``await run(n)``, ``stop()``, ``history`` (one ``Record`` per iteration of the latest run),
    ``settings()`` and ``safe_step``. The controls are public widgets.
    """

    def __init__(self, problem: str = "idt", algorithm: str = "red", image_size: int | None = None, *,
                 denoiser="dncnn", iterations: int = 100, num_blocks: dict | None = None, reference: bool = True,
                 device=None, seed: int = 0):
        checks.choice("problem", problem, PROBLEMS)
        checks.choice("algorithm", algorithm, tuple(ALGORITHMS))
        iterations = checks.integer("iterations", iterations, 1, 1000)
        reference = checks.flag("reference", reference)
        self.image_size = None if image_size is None else checks.integer("image_size", image_size, 16)
        if num_blocks is not None and not isinstance(num_blocks, dict):
            raise TypeError(f"num_blocks must be a dict problem -> B (e.g. {{'ct': 90}}) or None, "
                            f"got {type(num_blocks).__name__}")
        num_blocks = dict(num_blocks or {})
        if set(num_blocks) - set(PROBLEMS):
            raise ValueError(f"num_blocks keys must be among {PROBLEMS}, got {sorted(num_blocks)}")
        self.num_blocks, self.seed = num_blocks, checks.integer("seed", seed)
        self.device = as_device(device)
        if isinstance(denoiser, str):
            from ..denoisers import load_denoiser

            self.denoiser_name, self.D = denoiser, load_denoiser(denoiser, device=self.device)
        else:
            self.D = checks.function("denoiser", denoiser, "D(x, sigma), or a name for load_denoiser")
            self.denoiser_name = getattr(denoiser, "__name__", type(denoiser).__name__)
        self._problems: dict = {}
        self._run: ReconstructionRun | None = None
        self._runs = 0
        self.task: asyncio.Task | None = None
        self.error: Exception | None = None
        self.throttle = Throttle()
        self.frames: list[tuple[int, float]] = []  # (iteration shown, perf_counter) per redraw

        style, layout = {"description_width": "80px"}, w.Layout(width="420px")
        self.problem = w.Dropdown(options=[(p, p) for p in PROBLEMS], value=problem, description="problem", style=style)
        self.algorithm = w.Dropdown(options=[(v, k) for k, v in ALGORITHMS.items()], value=algorithm,
                                    description="algorithm", style=style)
        self.gamma = w.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05, description="step γ",
                                      readout_format=".3g", style=style, layout=layout)
        self.sigma = w.FloatSlider(value=0.05, min=0.0, max=0.2, step=0.005, description="denoiser σ",
                                   readout_format=".3f", style=style, layout=layout)
        self.tau = w.FloatSlider(value=0.1, min=0.0, max=0.5, step=0.005, description="τ / L_g",
                                 readout_format=".3f", style=style, layout=layout)
        self.batch_ratio = w.SelectionSlider(options=[("1", 1.0)], value=1.0, description="b/B", style=style,
                                             layout=layout)
        self.iterations = w.IntSlider(value=iterations, min=1, max=1000, description="iterations", style=style,
                                      layout=layout)
        self.reference = w.Checkbox(value=reference, description="full-batch reference (from next Run)", indent=False)
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop")
        self.bound, self.image, self.readout, self.status = w.HTML(), w.Image(format="png"), w.HTML(), w.HTML()
        for widget, name in ((self.gamma, "oder-gamma"), (self.sigma, "oder-sigma"), (self.tau, "oder-tau"),
                             (self.batch_ratio, "oder-ratio"), (self.iterations, "oder-iterations"),
                             (self.run_button, "oder-run"), (self.stop_button, "oder-stop")):
            widget.add_class(name)
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.problem.observe(lambda _: self._set_problem(), names="value")
        for control in (self.gamma, self.tau, self.algorithm, self.batch_ratio):
            control.observe(lambda _: self._show_bound(), names="value")
        self.widget = w.VBox([
            w.HBox([self.problem, self.algorithm, self.run_button, self.stop_button]),
            w.HBox([self.gamma, self.bound]), w.HBox([self.sigma, self.tau]),
            w.HBox([self.batch_ratio, self.iterations, self.reference]),
            self.status, self.readout, self.image,
        ])
        self._set_problem()

    # --- what the notebook sees -------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Stop any run and close every widget (ipywidgets keeps open widgets, and so their
        callbacks and this explorer, alive until they are closed)."""
        self._cancel()
        close_all(self.widget)

    @property
    def history(self) -> list:
        """One ``Record`` per iteration of the latest run (empty before the first)."""
        return self._run.history if self._run is not None else []

    def settings(self) -> Settings:
        """The controls' values now (τ in absolute units, not × L_g)."""
        return Settings(self.algorithm.value, float(self.gamma.value), float(self.sigma.value),
                        float(self.tau.value) * self._L, float(self.batch_ratio.value))

    @property
    def safe_step(self) -> float:
        """The default step for the current problem, algorithm, τ and b/B (``runner.safe_step``)."""
        s = self.settings()
        return safe_step(self._problem, s.algorithm, s.tau, s.batch_ratio)

    # --- running -------------------------------------------------------------------------------
    def start(self, iterations: int | None = None) -> asyncio.Task:
        """Start a run as an asyncio task on the running loop (cancelling any earlier run)."""
        run = self._begin(iterations)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a front end calling back outside the loop: use the kernel's loop
            loop = asyncio.get_event_loop()
        self.task = loop.create_task(self._loop(run))
        return self.task

    async def run(self, iterations: int | None = None) -> list:
        """Start a run and wait for it; returns its history (raises what stopped it, if an error)."""
        await self.start(iterations)
        if self.error is not None:
            raise self.error
        return self.history

    def run_sync(self, iterations: int | None = None) -> list:
        """Run without an event loop, through the same code path as a live run; returns the
        history. For tests and nbval."""
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
        self._runs += 1
        self.error, self.frames = None, []
        self._run = ReconstructionRun(self._problem, self.D, n, self.reference.value, self.seed, self._runs)
        self.status.value = f"<span class='oder-status'>run {self._runs}: running…</span>"
        return self._run

    def _cancel(self) -> None:
        # A second Run supersedes the first: flag it and cancel its task, which then ends at
        # its next await without touching the panel again.
        if self._run is not None:
            self._run.stopped = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _iterate_safely(self, run: ReconstructionRun) -> bool:
        """One iteration; False when the run must end (divergence or an error, both shown)."""
        try:
            record = run.step(self.settings())
        except Exception as error:  # noqa: BLE001 - shown in the panel, re-raised by run/run_sync
            self.error = error
            self.status.value = (f"<span class='oder-warning' style='color:#b00'>error at iteration "
                                 f"{len(run.history) + 1}: {type(error).__name__}: {html.escape(str(error))}</span>")
            return False
        self._show_readout(run)
        if record.diverged:
            self.status.value = (f"<span class='oder-warning' style='color:#b00'>⚠ diverged, run stopped: "
                                 f"{html.escape(record.message)}. Change γ and press Run.</span>")
            return False
        if self.throttle.ready():
            self._draw(run)
        return True

    def _finish(self, run: ReconstructionRun) -> None:
        if run is not self._run:  # superseded by a newer run
            return
        self._draw(run)
        if self.error is None and not (run.history and run.history[-1].diverged):
            what = "stopped" if run.stopped and len(run.history) < run.iterations else "done"
            self.status.value = (f"<span class='oder-status'>run {run.id} {what}: {len(run.history)} iterations</span>")

    # --- display ---------------------------------------------------------------------------------
    def _draw(self, run: ReconstructionRun | None) -> None:
        history = run.history if run is not None else []
        self.image.value = self.figure.update(
            self._problem.x0 if run is None else run.x, [r.iteration for r in history], [r.psnr for r in history],
            [r.reference_psnr for r in history], total=run.iterations if run is not None else self.iterations.value,
            title=f"iteration {history[-1].iteration}" if history else "start image x₀")
        self.frames.append((history[-1].iteration if history else 0, time.perf_counter()))
        self.throttle.last = self.throttle.clock()  # every redraw counts for the 0.1 s interval

    def _show_readout(self, run: ReconstructionRun) -> None:
        last = run.history[-1]
        # Time per iteration at the current cost settings: the median of the last 10 iterations
        # since they changed (an iteration whose memory was being counted is slower).
        recent = []
        for r in reversed(run.history[-10:]):
            if (r.settings.algorithm, r.settings.batch_ratio) != (last.settings.algorithm, last.settings.batch_ratio):
                break
            recent.append(r)
        seconds = statistics.median(r.seconds for r in recent)
        ref = [r.reference_seconds for r in recent if r.reference_seconds is not None]
        rows = (
            ("PSNR", "oder-psnr", last.psnr, last.reference_psnr, "{:.2f} dB"),
            ("SSIM", "oder-ssim", last.ssim, last.reference_ssim, "{:.3f}"),
            ("time / iteration", "oder-seconds", seconds * 1e3, statistics.median(ref) * 1e3 if ref else None, "{:.1f} ms"),
            (f"{PeakTensorMemory(self.device).kind} / iteration", "oder-memory", last.peak_bytes / 2**20,
             None if last.reference_peak_bytes is None else last.reference_peak_bytes / 2**20, "{:.2f} MiB"),
        )
        cells = "".join(
            f"<tr><td>{name}</td><td class='oder-readout {cls}' style='padding:0 12px'>{form.format(mine)}</td>"
            f"<td class='oder-readout {cls}-full' style='padding:0 12px'>{'–' if full is None else form.format(full)}"
            f"</td></tr>" for name, cls, mine, full, form in rows)
        B, p = self._problem.A.num_blocks, self._problem
        self.readout.value = (
            "<table style='font-family:monospace'>"
            f"<tr><th style='text-align:left'>iteration {last.iteration}/{run.iterations}</th>"
            f"<th>this run (b = {last.blocks}/{B} {p.block_name})</th><th>full batch (b = {B}/{B})</th></tr>"
            f"{cells}</table><div class='oder-setting'>{html.escape(self._label)}</div>")

    def _show_bound(self) -> None:
        s = self.settings()
        safe = safe_step(self._problem, s.algorithm, s.tau, s.batch_ratio)
        what = "1/L" if s.algorithm == "pnp" else "1/(L + τ·L_R)"
        which = "L = L_g" if s.batch_ratio == 1 else f"L = the minibatch constant at b/B = {self.batch_ratio.label}"
        self.bound.value = (f"<span class='oder-bound'>γ = {s.gamma / safe:.2f} × {what}; default "
                            f"{what} = {safe:.3g} ({which})</span>")

    @property
    def _problem(self):
        return self._problems[self.problem.value]

    def _set_problem(self) -> None:
        """Build (or reuse) the selected problem, reset the controls to it, show its start image."""
        self._cancel()
        name = self.problem.value
        if name not in self._problems:
            self.status.value = f"<span class='oder-status'>building {name}…</span>"
            self._problems[name] = make_problem(name, self.image_size, self.num_blocks.get(name), seed=self.seed,
                                                device=self.device)
        p = self._problem
        self._run = None
        self._L = float(p.A.norm()) ** 2
        self.figure = ReconstructionFigure(p.x_true)
        self.batch_ratio.options = ratio_options(p.A.num_blocks)
        self.batch_ratio.value = 1.0
        self.batch_ratio.tooltip = f"minibatch ratio: b of the B = {p.A.num_blocks} {p.block_name} per iteration"
        self.sigma.value, self.tau.value = p.setting.red_sigma, p.setting.red_tau
        safe = self.safe_step
        centre = math.log10(safe)
        self.gamma.min, self.gamma.max = min(self.gamma.min, centre - 2), max(self.gamma.max, centre + 1.5)
        self.gamma.value = safe
        self.gamma.min, self.gamma.max = centre - 2, centre + 1.5
        self._show_bound()
        n = p.A.image_shape[-1]
        self._label = (f"{p.label}: {p.A.num_blocks} {p.block_name}, {n}², {p.snr_db:.0f} dB SNR, denoiser "
                       f"{self.denoiser_name}")
        start = psnr(p.x0, p.x_true).item()
        self.readout.value = f"<span class='oder-readout oder-psnr'>start image x₀: PSNR {start:.2f} dB</span>"
        self.status.value = f"<span class='oder-status'>{html.escape(self._label)}. Press Run.</span>"
        self._draw(None)
