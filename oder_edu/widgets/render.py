"""What the explorers share. Figures are drawn by Matplotlib's Agg backend into PNG bytes for an
``ipywidgets.Image`` (every front end shows those), never through ``pyplot``, which keeps them alive."""

from __future__ import annotations

import io
import math
import time

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image  # Matplotlib's own PNG writer; a dependency of Matplotlib

from .compat import mimebundle


def png_bytes(canvas: FigureCanvasAgg) -> bytes:
    """PNG bytes of what Agg has rendered into ``canvas`` (RGB, fast zlib level: frames are short-lived)."""
    buffer = io.BytesIO()
    rgba = Image.frombuffer("RGBA", canvas.get_width_height(physical=True), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    rgba.convert("RGB").save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


class Panel:
    """An explorer shown as its ``widget``; ``close()`` closes every widget, which frees the explorer."""

    def _repr_mimebundle_(self, **kwargs):
        return mimebundle(self.widget, **kwargs)  # ipywidgets 7 (Colab) or 8

    def close(self) -> None:
        close_all(self.widget)


def close_all(widget) -> None:
    """Close ``widget`` and, first, every widget inside it."""
    for child in getattr(widget, "children", ()):
        close_all(child)
    widget.close()


class Throttle:
    """At most one redraw every ``interval`` seconds of ``clock`` (injectable: tests need no real
    time): ``ready()`` is True, restarting the interval, once it has passed; ``wait()``: until then."""

    def __init__(self, interval: float = 0.1, clock=time.monotonic):
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval >= 0):
            raise ValueError(f"interval must be a finite number >= 0 seconds, got {interval!r}")
        self.interval, self.clock, self.last = float(interval), clock, None  # last: when ready() last was True

    def wait(self) -> float:
        return 0.0 if self.last is None else max(0.0, self.last + self.interval - self.clock())

    def ready(self) -> bool:
        if self.wait() > 0:
            return False
        self.last = self.clock()
        return True


def to_image(x) -> np.ndarray:
    """The first image of a batch ``[N, C, H, W]`` as a float ``[H, W]`` array (channel 0)."""
    return x[0, 0].detach().float().cpu().numpy()


class ReconstructionFigure:
    """The iterate, ground truth, error |x − x_true| (fixed ranges [0, 1], [0, 0.5]) and PSNR per iteration (the
    full batch dashed, the spread of the online run over seeds shaded), blitted: the static parts (mostly text) are
    kept as pixels until the PSNR axis changes."""

    def __init__(self, x_true, figsize=(12.0, 3.1), dpi: float = 72):  # x_true: [N, C, H, W]
        # A fixed layout: constrained/tight layout would re-solve it on every full draw.
        self.fig = Figure(figsize=figsize, dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        axes = self.fig.subplots(1, 4, width_ratios=(1, 1, 1, 1.6))
        self.fig.subplots_adjust(left=0.01, right=0.95, bottom=0.16, top=0.88, wspace=0.1)
        self.truth = to_image(x_true)
        blank = np.zeros_like(self.truth)
        self.recon = axes[0].imshow(blank, cmap="gray", vmin=0, vmax=1, animated=True)
        axes[1].imshow(self.truth, cmap="gray", vmin=0, vmax=1)
        self.error = axes[2].imshow(blank, cmap="inferno", vmin=0, vmax=0.5, animated=True)
        for ax, title in zip(axes, ("", "ground truth", "error |x − x_true|")):
            ax.set_title(title, fontsize=10, y=1.01, animated=ax is axes[0])  # a fixed y: no placement search
            ax.set_axis_off()
        self.title = axes[0].title
        ax = self.curve_axes = axes[3]
        (self.curve,) = ax.plot([], [], color="C0", lw=1.6, label="this run", animated=True)
        (self.reference,) = ax.plot([], [], color="0.35", lw=1.2, ls="--", label="full batch (b = B)", animated=True)
        self.band = ax.fill_between([], [], [], color="C0", alpha=0.2, lw=0, label="spread over seeds", animated=True)
        ax.yaxis.tick_right()
        ax.yaxis.set_label_position("right")
        ax.set_xlabel("iteration", fontsize=9)
        ax.set_ylabel("PSNR (dB)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_ylim(10, 40)
        self.background = None

    def _fit_axes(self, total: int, last: int, values: list[float]) -> bool:
        """Fit the PSNR axis (x doubling up to ``total``, y in 2 dB steps); True if it changed."""
        ax = self.curve_axes
        x_high = min(max(total, 16), 2 ** max(4, math.ceil(math.log2(max(last, 1)))))
        y_low, y_high = ax.get_ylim()
        if values:
            low, high = 2 * math.floor((min(values) - 1) / 2), 2 * math.ceil((max(values) + 1) / 2)
            # Refit when the data leaves the axis, or fills less than a quarter of it.
            if low < y_low or high > y_high or (high - low) < (y_high - y_low) / 4:
                y_low, y_high = low, high
        changed = (x_high, y_low, y_high) != (ax.get_xlim()[1], *ax.get_ylim())
        ax.set_xlim(0, x_high)
        ax.set_ylim(y_low, y_high)
        return changed

    def update(self, x, iterations, psnr_values, reference_values, total: int = 0, title: str = "",
               band=None) -> bytes:
        """PNG bytes of iterate ``x`` ``[N, C, H, W]`` and the PSNR curves (dB, the reference's may hold None);
        ``band``: per iteration, the PSNRs of the runs with other seeds (empty where there are none)."""
        image = to_image(x)
        self.recon.set_data(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0))
        self.error.set_data(np.nan_to_num(np.abs(image - self.truth), nan=0.5, posinf=0.5))
        self.title.set_text(title or "reconstruction")
        # A diverged PSNR (-inf, NaN) or a missing one is left out of the curve, not the axis.
        mine, reference = ([v if v is not None and math.isfinite(v) else math.nan for v in values]
                           for values in (psnr_values, reference_values))
        self.curve.set_data(iterations, mine)
        self.reference.set_data(iterations, reference)
        low, high = self._spread(mine, band or [()] * len(mine))
        values = [v for v in mine + reference + low + high if math.isfinite(v)]
        last = iterations[-1] if len(iterations) else 0
        if self._fit_axes(max(total, last), last, values) or self.background is None:
            self.canvas.draw()  # everything but the animated artists
            self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        else:
            self.canvas.restore_region(self.background)
        self.band.remove()
        self.band = self.curve_axes.fill_between(iterations, low, high, color="C0", alpha=0.2, lw=0, animated=True)
        for artist in (self.recon, self.error, self.title, self.band, self.curve, self.reference):
            self.fig.draw_artist(artist)
        return png_bytes(self.canvas)

    @staticmethod
    def _spread(mine: list[float], band) -> tuple[list[float], list[float]]:
        """Per iteration, the lowest and highest PSNR of this run and the band's runs (NaN where there is no band:
        the shading breaks there)."""
        low, high = [], []
        for value, others in zip(mine, band):
            values = [v for v in (value, *others) if v is not None and math.isfinite(v)] if others else []
            low.append(min(values) if values else math.nan)
            high.append(max(values) if values else math.nan)
        return low, high
