"""The reconstruction explorer: PnP, RED and online RED on CT, MRI and IDT, live.

Controls: step size γ (log scale, the safe bound 1/L marked), denoiser strength σ, minibatch
ratio b/B, iterations, algorithm and problem, Run and Stop. Panel: the iterate beside the
ground truth and the error map, PSNR versus iteration with the full-batch run overlaid, and
readouts of PSNR, SSIM, seconds and peak tensor memory per iteration, each with the value of
the full-batch run beside it.

How it stays responsive (DESIGN.md, "Widgets use core ipywidgets only"): a run is an asyncio
task that does one iteration, reads the controls, and yields with ``await asyncio.sleep(0)``,
so the kernel handles slider messages between any two iterations. A changed γ, σ or b/B
restarts the solver's generator from the current iterate, so the history stays one
continuous sequence. Images are redrawn at most every 0.1 s; readouts every iteration.

The iteration is online RED (Wu et al., IEEE J. Sel. Topics Signal Process. 2020) or online
PnP (Sun, Wohlberg, Kamilov, IEEE TCI 2019) with the unbiased minibatch gradient
(B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i), the estimate ODER (Liu et al., NeurIPS 2022) uses; b = B is
the full-batch method. The reference run repeats every iteration with b = B and the same γ, σ.
"""

from __future__ import annotations

import asyncio
import html
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field

import ipywidgets as w
import torch

from ..algorithms import pnp_pgd, red, step_size
from ..device import default_device
from ..memory import PeakTensorMemory
from ..metrics import psnr, ssim
from ..physics import batch_size_for
from .problems import LABELS, PROBLEMS, make_problem
from .render import ReconstructionFigure, Throttle

ALGORITHMS = {"red": "RED", "red-nesterov": "RED + Nesterov", "pnp": "PnP-PGD"}
ENDLESS = 10**9  # a solver stream is restarted on every control change, never exhausted


@dataclass(frozen=True)
class Record:
    """One iteration of a run: the controls it used and what was measured.

    ``batch_ratio`` = b/B with ``blocks`` = b; ``seconds``: the solver's compute time for the
    iteration (``State.seconds``); ``peak_bytes``: its peak tensor memory (``PeakTensorMemory``,
    measured on the first two iterations after each change of the controls, see ``_Chain``);
    ``reference_*``: the same for the full-batch run (b = B) at the same iteration, None
    without a reference.
    """

    run: int
    iteration: int
    algorithm: str
    gamma: float
    sigma: float
    batch_ratio: float
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

    def step(self, settings, make_stream):
        """Advance one iteration; returns (state, seconds, peak_bytes)."""
        if settings != self.settings:
            self.stream, self.settings, self.elapsed, self.count = make_stream(self.x), settings, 0.0, 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # divergence is shown in the panel
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

    def follow(self, other: "_Chain") -> None:
        """Continue from ``other``'s iterate (with b = B the two runs are the same run)."""
        self.x, self.stream, self.settings = other.x, None, None


@dataclass
class _Run:
    id: int
    iterations: int
    main: _Chain
    reference: _Chain | None
    generator: torch.Generator
    history: list = field(default_factory=list)
    stop: bool = False
    started: float = field(default_factory=time.perf_counter)


def ratio_options(num_blocks: int) -> list[tuple[str, float]]:
    """Slider options b/B for b in the divisors of B and B/2, B/4, ... (rounded up)."""
    bs = {d for d in range(1, num_blocks + 1) if num_blocks % d == 0}
    bs |= {math.ceil(num_blocks / 2**j) for j in range(int(math.log2(num_blocks)) + 1)}
    return [(f"{b}/{num_blocks}", b / num_blocks) for b in sorted(bs)]


def close_all(widget: w.Widget) -> None:
    """Close ``widget`` and, first, every widget inside it."""
    for child in getattr(widget, "children", ()):
        close_all(child)
    widget.close()


class ReconstructionExplorer:
    """Live PnP / RED / online RED reconstruction with γ, σ and b/B under the student's hand.

    >>> ex = ReconstructionExplorer("mri", image_size=32, denoiser="gaussian")
    >>> ex.sigma.value = 0.04; history = ex.run_sync(5)   # no event loop needed
    >>> ex              # in a notebook: the widget; ex.start() / await ex.run() run live

    ``problem``: 'ct', 'mri' or 'idt' (see ``widgets.problems.make_problem``), at
    ``image_size``² with ``num_blocks`` (a dict per problem, e.g. ``{"ct": 90}``) blocks;
    ``algorithm``: 'red', 'red-nesterov' or 'pnp'; ``denoiser``: a name for
    ``load_denoiser`` ('dncnn', 'gaussian', 'tv') or a callable ``D(x, sigma)``;
    ``reference``: also run the full-batch iteration to compare (doubles the work at most).

    Programmatic API: ``run_sync(n)``, ``start(n)`` (returns the asyncio task, also
    ``self.task``), ``await run(n)``, ``stop()``, and ``history`` (one ``Record`` per
    iteration of the latest run). The controls are public widgets (``gamma``, ``sigma``,
    ``batch_ratio``, ``iterations``, ``algorithm``, ``problem``, ``reference``).
    """

    def __init__(self, problem: str = "ct", algorithm: str = "red", image_size: int = 64, *, denoiser="dncnn",
                 iterations: int = 100, num_blocks: dict | None = None, reference: bool = True,
                 device=None, seed: int = 0):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {tuple(ALGORITHMS)}, got {algorithm!r}")
        if problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {PROBLEMS}, got {problem!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 1000:
            raise ValueError(f"iterations must be an integer in [1, 1000], got {iterations!r}")
        num_blocks = dict(num_blocks or {})
        if set(num_blocks) - set(PROBLEMS):
            raise ValueError(f"num_blocks keys must be among {PROBLEMS}, got {sorted(num_blocks)}")
        self.device = default_device() if device is None else torch.device(device)
        if isinstance(denoiser, str):
            from ..denoisers import load_denoiser

            self.denoiser_name, denoiser = denoiser, load_denoiser(denoiser, device=self.device)
        elif callable(denoiser):
            self.denoiser_name = getattr(denoiser, "__name__", type(denoiser).__name__)
        else:
            raise TypeError(f"denoiser must be a name or a callable D(x, sigma), got {type(denoiser).__name__}")
        self.D, self.image_size, self.num_blocks, self.seed = denoiser, image_size, num_blocks, seed
        self._problems: dict = {}
        self._steps: dict = {}  # (problem, is PnP) -> safe step 1/L
        self._run: _Run | None = None
        self._runs = 0
        self.task: asyncio.Task | None = None
        self.error: Exception | None = None
        self.throttle = Throttle()
        self.frames: list[tuple[int, float]] = []  # (iteration shown, perf_counter) per redraw

        style = {"description_width": "80px"}
        layout = w.Layout(width="420px")
        self.problem = w.Dropdown(options=[(LABELS[p], p) for p in PROBLEMS], value=problem,
                                  description="problem", style=style)
        self.algorithm = w.Dropdown(options=[(v, k) for k, v in ALGORITHMS.items()], value=algorithm,
                                    description="algorithm", style=style)
        self.gamma = w.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05, description="step γ",
                                      readout_format=".3g", style=style, layout=layout)
        self.sigma = w.FloatSlider(value=0.05, min=0.0, max=0.2, step=0.005, description="denoiser σ",
                                   readout_format=".3f", style=style, layout=layout)
        self.batch_ratio = w.SelectionSlider(options=[("1/1", 1.0)], value=1.0, description="b/B",
                                             style=style, layout=layout)
        self.iterations = w.IntSlider(value=iterations, min=1, max=1000, description="iterations",
                                      style=style, layout=layout)
        self.reference = w.Checkbox(value=reference, description="full-batch reference (from next Run)",
                                    indent=False)
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop")
        self.bound = w.HTML()
        self.image = w.Image(format="png")
        self.readout = w.HTML()
        self.status = w.HTML()
        for widget, name in ((self.gamma, "oder-gamma"), (self.sigma, "oder-sigma"),
                             (self.batch_ratio, "oder-ratio"), (self.iterations, "oder-iterations"),
                             (self.run_button, "oder-run"), (self.stop_button, "oder-stop")):
            widget.add_class(name)
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.problem.observe(lambda _: self._set_problem(), names="value")
        for control in (self.gamma, self.algorithm, self.batch_ratio):
            control.observe(lambda _: self._show_bound(), names="value")
        self.widget = w.VBox([
            w.HBox([self.problem, self.algorithm, self.run_button, self.stop_button]),
            w.HBox([self.gamma, self.bound]),
            w.HBox([self.sigma, self.batch_ratio]),
            w.HBox([self.iterations, self.reference]),
            self.status, self.readout, self.image,
        ])
        self._set_problem()

    # --- what the notebook sees -------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Stop any run and close every widget of the explorer (ipywidgets keeps open widgets,
        and so their callbacks and this explorer, alive until they are closed)."""
        self._cancel()
        close_all(self.widget)

    @property
    def history(self) -> list[Record]:
        """One ``Record`` per iteration of the latest run (empty before the first)."""
        return self._run.history if self._run is not None else []

    @property
    def safe_step(self) -> float:
        """1/L for the current problem and algorithm: 1/(L_g + τ·L_R) for RED (L_R = 1),
        1/L_g for PnP (``algorithms.step_size``)."""
        key = (self.problem.value, self.algorithm.value == "pnp")
        if key not in self._steps:
            tau = 0.0 if key[1] else self._problem.tau
            self._steps[key] = step_size(self._problem.A, tau).value
        return self._steps[key]

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

    async def run(self, iterations: int | None = None) -> list[Record]:
        """Start a run and wait for it; returns its history (raises what stopped it, if an error)."""
        task = self.start(iterations)
        await task
        if self.error is not None:
            raise self.error
        return self.history

    def run_sync(self, iterations: int | None = None) -> list[Record]:
        """Run ``iterations`` (default: the slider's) iterations without an event loop, through
        the same code path as a live run; returns the history. For tests and nbval."""
        run = self._begin(iterations)
        for _ in range(run.iterations):
            if not self._iterate_safely(run):
                break
        time.sleep(self.throttle.wait())  # keep the redraw interval even for the last frame
        self._finish(run)
        if self.error is not None:
            raise self.error
        return run.history

    def stop(self) -> None:
        """Stop the current run after its current iteration (the widget stays usable)."""
        if self._run is not None:
            self._run.stop = True

    async def _loop(self, run: _Run) -> None:
        for _ in range(run.iterations):
            if run.stop or not self._iterate_safely(run):
                break
            await asyncio.sleep(0)  # let the kernel deliver slider and button messages
        await asyncio.sleep(self.throttle.wait())
        self._finish(run)

    def _begin(self, iterations) -> _Run:
        self._cancel()
        n = self.iterations.value if iterations is None else iterations
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {n!r}")
        p = self._problem
        self._runs += 1
        self.error = None
        self.frames = []
        reference = _Chain(p.x0) if self.reference.value else None
        self._run = _Run(self._runs, n, _Chain(p.x0), reference, torch.Generator().manual_seed(self.seed))
        self.status.value = f"<span class='oder-status'>run {self._runs}: running…</span>"
        return self._run

    def _cancel(self) -> None:
        # A second Run supersedes the first: flag it and cancel its task, which then ends at
        # its next await without touching the panel again.
        if self._run is not None:
            self._run.stop = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _settings(self):
        return (self.algorithm.value, float(self.gamma.value), float(self.sigma.value), float(self.batch_ratio.value))

    def _stream(self, settings, x0, generator):
        algorithm, gamma, sigma, ratio = settings
        p = self._problem
        common = dict(gamma=gamma, sigma=sigma, batch_ratio=ratio, x0=x0, max_iter=ENDLESS, generator=generator)
        if algorithm == "pnp":
            return pnp_pgd(p.A, p.y, self.D, **common)
        return red(p.A, p.y, self.D, tau=p.tau, accelerate=algorithm == "red-nesterov", **common)

    def _iterate_safely(self, run: _Run) -> bool:
        """One iteration; False when the run must end (divergence or an error, both shown)."""
        try:
            return self._iterate(run)
        except Exception as error:  # noqa: BLE001 - shown in the panel, re-raised by run/run_sync
            self.error = error
            self.status.value = (f"<span class='oder-warning' style='color:#b00'>error at iteration "
                                 f"{len(run.history) + 1}: {type(error).__name__}: {html.escape(str(error))}</span>")
            return False

    def _iterate(self, run: _Run) -> bool:
        settings = self._settings()
        algorithm, gamma, sigma, ratio = settings
        p = self._problem
        state, seconds, peak = run.main.step(settings, lambda x: self._stream(settings, x, run.generator))
        x = run.main.x
        values = dict(psnr=psnr(x, p.x_true).item(), ssim=self._ssim(x))
        if run.reference is not None:
            if ratio == 1.0:  # the run is its own reference
                run.reference.follow(run.main)
                ref = dict(reference_psnr=values["psnr"], reference_ssim=values["ssim"],
                           reference_seconds=seconds, reference_peak_bytes=peak)
            else:
                full = (algorithm, gamma, sigma, 1.0)
                ref_state, ref_seconds, ref_peak = run.reference.step(full, lambda x: self._stream(full, x, None))
                xr = run.reference.x
                ref = dict(reference_psnr=psnr(xr, p.x_true).item(), reference_ssim=self._ssim(xr),
                           reference_seconds=ref_seconds, reference_peak_bytes=ref_peak)
                if ref_state.diverged:  # its stream has ended; the run itself may go on
                    run.reference = None
        else:
            ref = {}
        record = Record(run.id, len(run.history) + 1, algorithm, gamma, sigma, ratio,
                        batch_size_for(p.A.num_blocks, ratio), seconds=seconds, peak_bytes=peak,
                        diverged=state.diverged, **values, **ref)
        run.history.append(record)
        self._show_readout(run)
        if state.diverged:
            hint = "Lower γ and press Run."
            if ratio < 1.0:  # the solver's advice is the full-batch bound, already too large here
                hint = (f"The minibatch gradient (B/b)·∇g_S can be up to B/b = {1 / ratio:.3g} times steeper "
                        f"than ∇g: lower γ below that bound, or raise b, and press Run.")
            self.status.value = (f"<span class='oder-warning' style='color:#b00'>⚠ diverged, run stopped: "
                                 f"{html.escape(state.message)}. {hint}</span>")
            return False
        if self.throttle.ready():
            self._draw(run)
        return True

    def _finish(self, run: _Run) -> None:
        if run is not self._run:  # superseded by a newer run
            return
        self._draw(run)
        if self.error is None and not (run.history and run.history[-1].diverged):
            what = "stopped" if run.stop else "done"
            self.status.value = (f"<span class='oder-status'>run {run.id} {what}: {len(run.history)} iterations "
                                 f"in {time.perf_counter() - run.started:.1f} s</span>")

    # --- display ---------------------------------------------------------------------------------
    def _ssim(self, x: torch.Tensor) -> float:
        if not torch.isfinite(x).all():
            return math.nan
        return ssim(x, self._problem.x_true).item()

    def _draw(self, run: _Run | None) -> None:
        history = run.history if run is not None else []
        x = run.main.x if run is not None else self._problem.x0
        self.image.value = self.figure.update(
            x, [r.iteration for r in history], [r.psnr for r in history], [r.reference_psnr for r in history],
            total=run.iterations if run is not None else self.iterations.value,
            title=f"iteration {history[-1].iteration}" if history else "start image x₀",
        )
        self.frames.append((history[-1].iteration if history else 0, time.perf_counter()))
        self.throttle.last = self.throttle.clock()  # every redraw counts for the 0.1 s interval

    def _show_readout(self, run: _Run) -> None:
        last = run.history[-1]
        # Time per iteration at the current cost settings: the last 10 iterations since they
        # changed; medians, as an iteration whose memory was being counted is slower.
        recent = []
        for r in reversed(run.history[-10:]):
            if (r.algorithm, r.batch_ratio) != (last.algorithm, last.batch_ratio):
                break
            recent.append(r)
        seconds = statistics.median(r.seconds for r in recent)
        ref = [r.reference_seconds for r in recent if r.reference_seconds is not None]
        ref_seconds = statistics.median(ref) if ref else None
        kind = PeakTensorMemory(self.device).kind
        rows = (
            ("PSNR", "oder-psnr", last.psnr, last.reference_psnr, "{:.2f} dB"),
            ("SSIM", "oder-ssim", last.ssim, last.reference_ssim, "{:.3f}"),
            ("seconds / iteration", "oder-seconds", seconds * 1e3,
             None if ref_seconds is None else ref_seconds * 1e3, "{:.1f} ms"),
            (f"{kind} / iteration", "oder-memory", last.peak_bytes / 2**20,
             None if last.reference_peak_bytes is None else last.reference_peak_bytes / 2**20, "{:.2f} MiB"),
        )
        cells = "".join(
            f"<tr><td>{name}</td><td class='oder-readout {cls}' style='padding:0 12px'>{form.format(mine)}</td>"
            f"<td class='oder-readout {cls}-full' style='padding:0 12px'>"
            f"{'–' if full is None else form.format(full)}</td></tr>"
            for name, cls, mine, full, form in rows
        )
        B = self._problem.A.num_blocks
        self.readout.value = (
            "<table style='font-family:monospace'>"
            f"<tr><th style='text-align:left'>iteration {last.iteration}/{run.iterations}</th>"
            f"<th>this run (b = {last.blocks}/{B} {self._problem.block_name})</th>"
            f"<th>full batch (b = {B}/{B})</th></tr>{cells}</table>"
        )

    def _show_bound(self) -> None:
        safe = self.safe_step
        what = "1/(L_g + τ·L_R)" if self.algorithm.value != "pnp" else "1/L_g"
        note = "" if self.batch_ratio.value == 1 else " (for b = B)"
        self.bound.value = (f"<span class='oder-bound' title='the safe step for the full gradient; a minibatch "
                            f"gradient may need a smaller one'>γ = {self.gamma.value / safe:.2f} × 1/L; "
                            f"safe bound 1/L = {what} = {safe:.3g}{note}</span>")

    def _set_problem(self) -> None:
        """Build (or reuse) the selected problem, reset the sliders to it, show its start image."""
        self._cancel()
        name = self.problem.value
        if name not in self._problems:
            self.status.value = f"<span class='oder-status'>building {LABELS[name]}…</span>"
            self._problems[name] = make_problem(name, self.image_size, self.num_blocks.get(name),
                                                device=self.device, seed=self.seed)
        p = self._problem = self._problems[name]
        self._run = None
        self.figure = ReconstructionFigure(p.x_true)
        options = ratio_options(p.A.num_blocks)
        self.batch_ratio.options = options
        self.batch_ratio.value = 1.0
        self.batch_ratio.tooltip = f"minibatch ratio: b of the B = {p.A.num_blocks} {p.block_name} per iteration"
        centre = math.log10(self.safe_step)
        slider = self.gamma
        slider.min, slider.max = min(slider.min, centre - 2), max(slider.max, centre + 1.5)
        slider.value = self.safe_step
        slider.min, slider.max = centre - 2, centre + 1.5
        self.sigma.value = p.sigma
        self._show_bound()
        start = psnr(p.x0, p.x_true).item()
        self.readout.value = f"<span class='oder-readout oder-psnr'>start image x₀: PSNR {start:.2f} dB</span>"
        self.status.value = (f"<span class='oder-status'>{p.label}: {p.A.num_blocks} {p.block_name}, "
                             f"{self.image_size}², {p.snr_db:.0f} dB SNR, τ = {p.tau:.3g}, denoiser "
                             f"{self.denoiser_name}. Press Run.</span>")
        self._draw(None)
