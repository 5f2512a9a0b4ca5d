"""The training explorer: what DEQ and ODER training cost as the minibatch ratio b/B moves, and what the trained
models score. ODER (Liu, Xu, Gan, Shoushtari, Kamilov, NeurIPS 2022) trains a deep-equilibrium RED model with the
minibatch gradient (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i), so a step's memory and time scale with b.

What it shows is ``METRICS``: one panel and one table row per metric, read from any record that has its key
(records are matched on app, image_size, num_blocks, method and ratio only). Live runs measure only the metrics
marked ``live``: a step's time and memory are measured by one step, a held-out PSNR needs a trained model and
comes only from the benchmark's checkpoints."""

from __future__ import annotations

import html
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as w
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import checks
from .. import results as shipped
from ..problems import SETTINGS
from .render import Panel, png_bytes

SHIPPED = "shipped"


@dataclass(frozen=True)
class Metric:
    """A record key shown by the explorer: its ``name`` and ``unit``, the decimals it is shown with, whether
    ODER is compared with full DEQ as a ``ratio`` (a cost) or a ``difference`` (a score, dB), whether its axis
    starts at zero (a cost: a saving reads true only against zero), and whether a live run can measure it."""

    key: str
    name: str
    unit: str
    digits: int = 1
    compare: str = "ratio"
    zero_based: bool = True
    live: bool = True


METRICS = (
    Metric("train_peak_mib", "training-step peak memory", "MiB"),
    Metric("train_step_ms", "training-step time", "ms"),
    Metric("test_psnr", "held-out test PSNR", "dB", digits=2, compare="difference", zero_based=False, live=False),
)
LIVE_RATIOS = (0.125, 0.25, 0.5)
LIVE_APPS = tuple(app for app, s in SETTINGS.items() if s.num_blocks > 1)  # apps with blocks to sample: ct, mri, idt


def read_results(source) -> tuple[list[dict], str]:
    """The records of a benchmark result (``SHIPPED`` or a JSON path) and a label naming its origin."""
    if source == SHIPPED:
        data, name = shipped.load("oder"), "oder.json shipped with oder_edu"
    else:
        if not Path(source).exists():
            raise FileNotFoundError(f"no benchmark file at {source}; run `oder-edu bench oder` to write it")
        name = Path(source).name
        try:
            data = json.loads(Path(source).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{name} is not valid JSON ({error}); expected the output of "
                             f"`oder-edu bench oder`") from None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ValueError(f"{name} holds no 'records' list; expected the output of `oder-edu bench oder`")
    machine = data.get("machine", {})
    where = machine.get("gpu") or machine.get("cpu") or "unknown machine"
    return records, f"{name} ({data.get('command', 'oder-edu bench oder')}, {data.get('date', '?')}, {where})"


def _number(value) -> float | None:
    """A finite real number (numpy scalars included) as a float, else None: what can be shown."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return float(value) if real and math.isfinite(value) else None


def measured_on(record: dict) -> tuple:
    """What a record was measured on: (app, image_size, num_blocks), or (app, 'live', None)."""
    if record.get("source") == "live":
        return (record.get("app"), "live", None)
    return (record.get("app"), record.get("image_size"), record.get("num_blocks"))


def _label(key: tuple) -> str:
    app, size, blocks = key
    if size == "live":
        return f"{app} (live runs)"
    return f"{app}" + (f" {size}²" if size else "") + (f", B = {blocks}" if blocks else "")


def _fraction(ratio: float) -> str:
    inverse = 1.0 / ratio
    return f"1/{inverse:g}" if math.isclose(inverse, round(inverse)) else f"{ratio:g}"


class TrainingExplorer(Panel):
    """ODER's ``METRICS`` (training-step peak memory and time, held-out test PSNR) at b/B beside full DEQ's (b = B),
    at every ratio measured, from ``results`` of ``oder-edu bench oder`` ("shipped", a path, a list or None;
    records without a method or a ratio in (0, 1] left out) or from live runs for ``apps`` (of ``LIVE_APPS``):
    ``measure(app, 'full' at 1 or 'oder', ratio) -> dict`` with the keys of the live metrics (time and memory of
    one training step; anything else it returns is dropped — one step of an untrained model has no test PSNR)."""

    def __init__(self, results=SHIPPED, *, measure=None, apps=("ct", "idt"), ratios=LIVE_RATIOS):
        if measure is not None:
            checks.function("measure", measure, "(app, method, ratio) -> dict")
        if isinstance(apps, (str, bytes)) or not hasattr(apps, "__iter__"):
            raise TypeError(f"apps must be a tuple of app names such as ('ct', 'idt'), got {apps!r}")
        apps = tuple(checks.choice("apps", app, LIVE_APPS) for app in apps)
        self.live_ratios = tuple(checks.ratio("ratios", r) for r in ratios)
        self.measure, self.history, self.source = measure, [], "no benchmark file"
        if isinstance(results, (str, Path)):
            results, self.source = read_results(results)
        elif isinstance(results, list):
            self.source = "records given"
        elif results is not None:
            raise TypeError(f"results must be a path, a list of records or None, got {type(results).__name__}")
        self.records = [dict(r, source="benchmark") for r in results or []
                        if isinstance(r, dict) and r.get("method") in ("full", "oder", "unrolled")
                        and 0 < (_number(r.get("ratio")) or 0) <= 1]
        if not self.records and measure is None:
            raise ValueError("no results to show: run `oder-edu bench oder`, or pass measure=... for live runs")
        keys = [measured_on(r) for r in self.records if r["method"] in ("full", "oder")]
        keys = list(dict.fromkeys(keys + ([(app, "live", None) for app in apps] if measure is not None else [])))
        if not keys:
            raise ValueError("no full DEQ or ODER record to show, and no apps for live runs: pass results of "
                             "`oder-edu bench oder`, or measure=... with apps=('ct', ...)")
        self.case = w.Dropdown(options=[(_label(k), k) for k in keys], value=keys[0], description="measured on")
        self.ratio = w.SelectionSlider(options=[("1/1", 1.0)], description="b/B",
                                       layout=w.Layout(width="380px")).add_class("oder-ratio")
        self.measure_button = w.Button(description="Measure live", icon="play", tooltip="short training runs on "
                                       "this machine (a '(live runs)' setting)").add_class("oder-measure")
        self.table, self.status, self.image = w.HTML(), w.HTML(), w.Image(format="png")
        self.measure_button.on_click(lambda _: self.measure_sync())
        self.case.observe(lambda _: self._set_case(), names="value")
        self.ratio.observe(lambda _: self._show(), names="value")
        self.widget = w.VBox([w.HBox([self.case, self.ratio, self.measure_button]), self.status, self.table,
                              self.image])
        self.fig = Figure(figsize=(3.5 * len(METRICS), 2.8), dpi=72)
        self.canvas = FigureCanvasAgg(self.fig)
        self.axes = self.fig.subplots(1, len(METRICS), squeeze=False,
                                      gridspec_kw=dict(left=0.06, right=0.99, bottom=0.2, top=0.85, wspace=0.3))[0]
        self._set_case()

    @property
    def live(self) -> bool:
        return self.case.value[1] == "live"

    def lookup(self, method: str, ratio: float) -> dict | None:
        """The selected setting's record for ``method`` at ``ratio`` (the last one if repeated)."""
        found = [r for r in self.records if measured_on(r) == self.case.value and r["method"] == method
                 and math.isclose(float(r["ratio"]), ratio)]
        return found[-1] if found else None

    def measure_sync(self) -> list[dict]:
        """Measure full DEQ and ODER at the selected ratio live (each once per app and ratio)."""
        if self.measure is None or not self.live:
            raise RuntimeError("live runs need measure=... and a '(live runs)' setting selected")
        app, ratio, new = self.case.value[0], float(self.ratio.value), []
        for method, r in (("full", 1.0), ("oder", ratio)):
            if (method == "oder" and r == 1.0) or self.lookup(method, r) is not None:
                continue
            self.status.value = (f"<span class='oder-status'>measuring {method} at b/B = {r:g} on "
                                 f"{html.escape(app)}…</span>")
            record, call = self.measure(app, method, r), f"measure({app!r}, {method!r}, {r})"
            if not isinstance(record, dict):
                raise TypeError(f"{call} must return a dict, got {type(record).__name__}")
            missing = [m.key for m in METRICS if m.live and m.key not in record]
            if missing:
                raise ValueError(f"{call} returned no {missing}; got keys {sorted(record)}")
            measured = {m.key: record[m.key] for m in METRICS if m.live}
            new.append({**measured, "app": app, "method": method, "ratio": r, "source": "live"})
        self.records += new
        self.history += new
        self._show()
        return new

    def _ratios(self) -> list[float]:
        ratios = {float(r["ratio"]) for r in self.records if measured_on(r) == self.case.value and r["method"] == "oder"}
        return sorted(ratios | set(self.live_ratios if self.live else ()) | {1.0})

    def _set_case(self) -> None:
        self.measure_button.disabled = not self.live
        ratios = self._ratios()
        self.ratio.options = [(_fraction(r), r) for r in ratios]
        self.ratio.value = 0.25 if 0.25 in ratios else ratios[0]
        self._show()

    def _value(self, method: str, ratio: float, key: str) -> float | None:
        record = self.lookup(method, ratio)
        return None if record is None else _number(record.get(key))

    def _show(self) -> None:
        """The table (full DEQ, ODER at b/B, and ODER vs full) and, per metric, ODER at every measured b/B (log2
        axis) against full DEQ's value; cost axes start at zero."""
        ratio, ticks, rows = float(self.ratio.value), self._ratios(), []
        method = "full" if ratio == 1.0 else "oder"
        for ax, metric in zip(self.axes, METRICS):
            rows.append(self._row(metric, ratio, method))
            self._plot(ax, metric, ratio, ticks)
        if self.axes[0].get_legend_handles_labels()[0]:
            self.axes[0].legend(fontsize=8, loc="lower right")
        self.canvas.draw()
        self.image.value = png_bytes(self.canvas)
        label = "live runs on this machine" if self.live else self.source
        note = ("<div class='oder-note'>live runs measure one training step's time and memory; a held-out PSNR "
                "needs a trained model: see the benchmark's settings</div>" if self.live else "")
        self.table.value = (
            "<table style='font-family:monospace'><tr><th></th><th>full DEQ (b = B)</th>"
            f"<th>ODER (b/B = {_fraction(ratio)})</th><th>ODER vs full</th></tr>" + "".join(rows) + "</table>"
            f"{note}<div class='oder-source'>source: {html.escape(label)}</div>")
        self.status.value = "" if self.lookup(method, ratio) else (
            "<span class='oder-status'>no measurement at this ratio yet"
            + (": press Measure live" if self.live else "") + "</span>")

    def _row(self, metric: Metric, ratio: float, method: str) -> str:
        """One table row: full DEQ's value, ODER's at ``ratio`` and their ratio (a cost) or difference (a score)."""
        key, unit = metric.key, metric.unit
        full, oder = self._value("full", 1.0, key), self._value(method, ratio, key)
        if metric.compare == "difference":
            versus = f"{oder - full:+.{metric.digits}f} {unit}" if full is not None and oder is not None else "–"
        else:
            versus = f"{oder / full:.2f}×" if full and oder is not None else "–"
        shown = ["–" if v is None else f"{v:.{metric.digits}f} {unit}" for v in (full, oder)]
        return (f"<tr><td>{metric.name}</td><td class='oder-readout oder-{key}-full'>{shown[0]}</td>"
                f"<td class='oder-readout oder-{key}'>{shown[1]}</td><td>{versus}</td></tr>")

    def _plot(self, ax, metric: Metric, ratio: float, ticks: list[float]) -> None:
        """ODER's value at every ratio that has one, full DEQ's as a dashed line, the selected ratio circled."""
        key = metric.key
        ax.clear()
        full, oder = self._value("full", 1.0, key), self._value("full" if ratio == 1.0 else "oder", ratio, key)
        points = [(math.log2(r), v) for r in ticks if r < 1.0 and (v := self._value("oder", r, key)) is not None]
        if points:
            ax.plot(*zip(*points), "o-", color="C0", label="ODER")
        if full is not None:
            ax.axhline(full, color="0.3", ls="--", label="full DEQ")
        if ratio < 1.0 and oder is not None:
            ax.plot([math.log2(ratio)], [oder], "o", ms=11, mfc="none", mec="C3", mew=2)
        values = [v for _, v in points] + ([full] if full is not None else [])
        if metric.zero_based:
            ax.set_ylim(0, 1.15 * max(values) if values and max(values) > 0 else 1)
        elif values:
            spread = max(max(values) - min(values), 1.0)
            ax.set_ylim(min(values) - 0.5 * spread, max(values) + 0.5 * spread)
        ax.set_xticks([math.log2(r) for r in ticks], [_fraction(r) for r in ticks])
        ax.set_xlim(math.log2(ticks[0]) - 0.5, 0.5)
        ax.set_xlabel("b/B", fontsize=9)
        ax.set_title(f"{metric.name} ({metric.unit})", fontsize=10, y=1.01)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
