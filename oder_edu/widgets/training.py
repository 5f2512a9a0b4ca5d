"""The training explorer: what DEQ and ODER training cost as the minibatch ratio b/B moves.

ODER (Liu, Xu, Gan, Shoushtari, Kamilov, NeurIPS 2022) trains a deep-equilibrium RED model
with the minibatch gradient (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) in its forward and backward
fixed-point iterations, so a training step's memory and time scale with b instead of B. This
widget shows, for the chosen b/B, the measured training-step peak memory, step time and test
PSNR of ODER next to full-batch DEQ (b = B), from one of two sources, always labelled:

- the results of ``oder-edu bench oder`` (records with ``app``, ``image_size``, ``num_blocks``,
  ``method``, ``ratio``, ``train_step_ms``, ``train_peak_mib``, ``test_psnr``, ...): by default
  the copy shipped in the package (``oder_edu.results``), or a JSON file you name;
- short live runs on this machine, through a ``measure(app, method, ratio) -> dict``
  callable you pass in (returning at least ``train_step_ms``, ``train_peak_mib`` and
  ``test_psnr``); the widget never decides how to train. Live runs appear as settings of
  their own ("ct (live runs)"), never mixed with the file's figures.
"""

from __future__ import annotations

import html
import json
import math
import numbers
from pathlib import Path

import ipywidgets as w
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import checks
from .. import results as shipped
from .explorer import close_all
from .render import png_bytes

SHIPPED = "shipped"
METRICS = (("train_peak_mib", "training-step peak memory", "MiB"), ("train_step_ms", "training-step time", "ms"),
           ("test_psnr", "test PSNR", "dB"))
LIVE_RATIOS = (0.125, 0.25, 0.5)


def read_results(source) -> tuple[list[dict], str]:
    """The usable records of a benchmark result (``SHIPPED`` or a JSON path) and a label naming
    its origin. Records without an app, a method among 'full'/'oder' or a ratio in (0, 1] are
    left out, never guessed."""
    if source == SHIPPED:
        data, name = shipped.load("oder"), "oder.json shipped with oder_edu"
    else:
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
    label = f"{name} ({data.get('command', 'oder-edu bench oder')}, {data.get('date', '?')}, {where})"
    usable = [dict(r, source="benchmark") for r in records if _usable(r)]
    return usable, label


def _usable(record) -> bool:
    ratio = _number(record.get("ratio")) if isinstance(record, dict) else None
    return (isinstance(record, dict) and record.get("method") in ("full", "oder", "unrolled")
            and ratio is not None and 0 < ratio <= 1)


def _number(value) -> float | None:
    """A finite real number (numpy scalars included) as a float, else None: what can be shown."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _check_record(record, app, method, ratio) -> dict:
    if not isinstance(record, dict):
        raise TypeError(f"measure({app!r}, {method!r}, {ratio}) must return a dict, got {type(record).__name__}")
    missing = [key for key, _, _ in METRICS if key not in record]
    if missing:
        raise ValueError(f"measure({app!r}, {method!r}, {ratio}) returned no {missing}; got keys {sorted(record)}")
    return {**record, "app": app, "method": method, "ratio": ratio, "source": "live"}


def setting(record: dict) -> tuple:
    """What a record was measured on: (app, image_size, num_blocks), or (app, 'live', None)
    for live runs, which are never mixed with the file's figures."""
    if record.get("source") == "live":
        return (record.get("app"), "live", None)
    return (record.get("app"), record.get("image_size"), record.get("num_blocks"))


def _setting_label(key: tuple) -> str:
    app, size, blocks = key
    if size == "live":
        return f"{app} (live runs)"
    return f"{app}" + (f" {size}²" if size else "") + (f", B = {blocks}" if blocks else "")


class TrainingExplorer:
    """DEQ versus ODER training: memory, step time and test PSNR versus b/B.

    ``results``: ``"shipped"`` (default: the results shipped in ``oder_edu.results``), a path to
    an ``oder.json``, a list of such records, or None.
    ``measure``: optional callable ``measure(app, method, ratio) -> dict`` for live runs
    (``method`` is 'full' with ratio 1, or 'oder'), offered for each of ``apps`` at
    ``ratios`` as separate "(live runs)" settings. ``measure_sync()`` (or the "Measure
    live" button) measures full DEQ and ODER at the selected ratio, each once; ``history``
    lists the live records, ``records`` all of them with their ``source``.
    """

    def __init__(self, results=SHIPPED, *, measure=None, apps=("ct", "idt"), ratios=LIVE_RATIOS):
        if measure is not None and not callable(measure):
            raise TypeError(f"measure must be a callable (app, method, ratio) -> dict, got {type(measure).__name__}")
        ratios = tuple(checks.ratio("ratios", r) for r in ratios)
        self.measure, self.history = measure, []
        self.records: list[dict] = []
        self.source = "no benchmark file"
        if isinstance(results, (str, Path)):
            if results != SHIPPED and not Path(results).exists():
                raise FileNotFoundError(f"no benchmark file at {results}; run `oder-edu bench oder` to write it")
            self.records, self.source = read_results(results)
        elif isinstance(results, list):
            self.records, self.source = [dict(r, source="benchmark") for r in results if _usable(r)], "records given"
        elif results is not None:
            raise TypeError(f"results must be a path, a list of records or None, got {type(results).__name__}")
        if not self.records and measure is None:
            raise ValueError("no results to show: run `oder-edu bench oder`, or pass measure=... for live runs")
        keys = [setting(r) for r in self.records if r.get("method") in ("full", "oder")]
        keys += [(app, "live", None) for app in apps] if measure is not None else []
        keys = list(dict.fromkeys(keys))
        if not keys:
            raise ValueError("no full DEQ or ODER record to show, and no apps for live runs: pass results of "
                             "`oder-edu bench oder`, or measure=... with apps=('ct', ...)")
        self.setting = w.Dropdown(options=[(_setting_label(k), k) for k in keys], value=keys[0], description="setting")
        self.ratio = w.SelectionSlider(options=[("1/1", 1.0)], description="b/B", layout=w.Layout(width="380px"))
        self.ratio.add_class("oder-ratio")
        self.live_ratios = tuple(ratios)
        self.measure_button = w.Button(description="Measure live", icon="play",
                                       tooltip="short training runs on this machine (a '(live runs)' setting)")
        self.measure_button.add_class("oder-measure")
        self.table, self.status, self.image = w.HTML(), w.HTML(), w.Image(format="png")
        self.measure_button.on_click(lambda _: self.measure_sync())
        self.setting.observe(lambda _: self._set_setting(), names="value")
        self.ratio.observe(lambda _: self._show(), names="value")
        self.widget = w.VBox([w.HBox([self.setting, self.ratio, self.measure_button]), self.status, self.table,
                              self.image])
        self.fig = Figure(figsize=(10.5, 2.8), dpi=72)
        FigureCanvasAgg(self.fig)
        self.axes = self.fig.subplots(1, 3)
        self.fig.subplots_adjust(left=0.06, right=0.99, bottom=0.2, top=0.85, wspace=0.3)
        self._set_setting()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Close every widget (which releases this explorer and its figure)."""
        close_all(self.widget)

    @property
    def live(self) -> bool:
        return self.setting.value[1] == "live"

    # --- data ------------------------------------------------------------------------------
    def lookup(self, method: str, ratio: float) -> dict | None:
        """The selected setting's record for ``method`` at ``ratio`` (the last one if repeated)."""
        found = [r for r in self.records if setting(r) == self.setting.value and r.get("method") == method
                 and math.isclose(float(r.get("ratio", 1.0)), ratio)]
        return found[-1] if found else None

    def measure_sync(self) -> list[dict]:
        """Measure full DEQ and ODER at the selected ratio live (each once per app and ratio)."""
        if self.measure is None or not self.live:
            raise RuntimeError("live runs need measure=... and a '(live runs)' setting selected")
        app, ratio = self.setting.value[0], float(self.ratio.value)
        new = []
        for method, r in (("full", 1.0), ("oder", ratio)):
            if (method == "oder" and r == 1.0) or self.lookup(method, r) is not None:
                continue
            self.status.value = (f"<span class='oder-status'>measuring {method} at b/B = {r:g} "
                                 f"on {html.escape(app)}…</span>")
            new.append(_check_record(self.measure(app, method, r), app, method, r))
        self.records += new
        self.history += new
        self._show()
        return new

    # --- display ---------------------------------------------------------------------------
    def _ratios(self) -> list[float]:
        ratios = {float(r["ratio"]) for r in self.records
                  if setting(r) == self.setting.value and r.get("method") == "oder"}
        if self.live:
            ratios |= set(self.live_ratios)
        return sorted(ratios | {1.0})

    def _set_setting(self) -> None:
        self.measure_button.disabled = not self.live
        ratios = self._ratios()
        self.ratio.options = [(_fraction(r), r) for r in ratios]
        self.ratio.value = 0.25 if 0.25 in ratios else ratios[0]
        self._show()

    def _show(self) -> None:
        ratio = float(self.ratio.value)
        full = self.lookup("full", 1.0)
        oder = full if ratio == 1.0 else self.lookup("oder", ratio)
        rows = []
        for key, name, unit in METRICS:
            a, b = (None if r is None else _number(r.get(key)) for r in (full, oder))
            if key == "test_psnr":
                versus = f"{b - a:+.2f} dB" if a is not None and b is not None else "–"
            else:
                versus = f"{b / a:.2f}×" if a and b is not None else "–"
            rows.append(f"<tr><td>{name}</td><td class='oder-readout oder-{key}-full'>{_fmt(a, unit)}</td>"
                        f"<td class='oder-readout oder-{key}'>{_fmt(b, unit)}</td><td>{versus}</td></tr>")
        label = "live runs on this machine" if self.live else self.source
        self.table.value = (
            "<table style='font-family:monospace'><tr><th></th><th>full DEQ (b = B)</th>"
            f"<th>ODER (b/B = {_fraction(ratio)})</th><th>ODER vs full</th></tr>" + "".join(rows) + "</table>"
            f"<div class='oder-source'>source: {html.escape(label)}</div>"
        )
        self.status.value = "" if oder else (
            "<span class='oder-status'>no measurement at this ratio yet"
            + (": press Measure live" if self.live else "") + "</span>")
        self._plot(ratio, full)

    def _plot(self, ratio: float, full: dict | None) -> None:
        # x = log2(b/B), labelled as fractions: ratios halve from one measurement to the next.
        ratios = [r for r in self._ratios() if r < 1.0]
        ticks = ratios + [1.0]
        for ax, (key, name, unit) in zip(self.axes, METRICS):
            ax.clear()
            value = lambda record: None if record is None else _number(record.get(key))  # noqa: E731
            points = [(math.log2(r), v) for r in ratios if (v := value(self.lookup("oder", r))) is not None]
            if points:
                ax.plot(*zip(*points), "o-", color="C0", label="ODER")
            if value(full) is not None:
                ax.axhline(value(full), color="0.3", ls="--", label="full DEQ")
            chosen = value(self.lookup("oder", ratio)) if ratio < 1.0 else None
            if chosen is not None:
                ax.plot([math.log2(ratio)], [chosen], "o", ms=11, mfc="none", mec="C3", mew=2)
            ax.set_xticks([math.log2(r) for r in ticks], [_fraction(r) for r in ticks])
            ax.set_xlim(math.log2(ticks[0]) - 0.5, 0.5)
            ax.set_xlabel("b/B", fontsize=9)
            ax.set_title(f"{name} ({unit})", fontsize=10, y=1.01)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
        if self.axes[0].get_legend_handles_labels()[0]:
            self.axes[0].legend(fontsize=8)
        self.image.value = png_bytes(self.fig)


def _fraction(ratio: float) -> str:
    inverse = 1.0 / ratio
    return f"1/{inverse:g}" if math.isclose(inverse, round(inverse)) else f"{ratio:g}"


def _fmt(value, unit: str) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} {unit}" if unit == "dB" else f"{value:.1f} {unit}"
