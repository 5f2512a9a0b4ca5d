"""Figures for the widgets: Matplotlib's Agg backend rendering to PNG bytes, and a throttle.

An ``ipywidgets.Image`` shows PNG bytes in every front end (JupyterLab, Notebook 7, VS Code,
Colab), so no interactive Matplotlib backend (ipympl) is needed. Figures are built from
``matplotlib.figure.Figure`` directly, never through ``pyplot``: pyplot keeps every figure
alive in its global registry until ``plt.close``, whereas these are freed with their owner.
A figure is built once and its artists updated in place (``set_data``), which makes a
redraw several times cheaper than rebuilding it.
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FRAME_INTERVAL = 0.1  # seconds: the explorers redraw images at most this often


def png_bytes(fig: Figure, dpi: float | None = None) -> bytes:
    """Render ``fig`` with Agg and return PNG bytes (fast zlib level: frames are short-lived)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


class Throttle:
    """Allows an action at most once every ``interval`` seconds of ``clock``.

    ``ready()`` is True (and restarts the interval) when at least ``interval`` seconds have
    passed since the last time it was True; ``wait()`` is how long until it will be.
    ``clock`` is injectable so that tests need no real time.
    """

    def __init__(self, interval: float = FRAME_INTERVAL, clock=time.monotonic):
        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval >= 0):
            raise ValueError(f"interval must be a finite number >= 0 seconds, got {interval!r}")
        self.interval, self.clock = float(interval), clock
        self.last: float | None = None

    def wait(self) -> float:
        if self.last is None:
            return 0.0
        return max(0.0, self.last + self.interval - self.clock())

    def ready(self) -> bool:
        if self.wait() > 0:
            return False
        self.last = self.clock()
        return True


def to_image(x: torch.Tensor) -> np.ndarray:
    """The first image of a batch ``[N, C, H, W]`` as a float ``[H, W]`` array (channel 0)."""
    return x[0, 0].detach().float().cpu().numpy()


class ReconstructionFigure:
    """Four panels: the current reconstruction, the ground truth, the error map |x − x_true|
    and PSNR versus iteration (this run, and the full-batch reference run dashed).

    Images use the fixed range [0, 1] of the ground truth (so a brightness change is a real
    change of the iterate); the error map uses [0, 0.5]. Frames are drawn by blitting: the
    static parts (axes, ticks, labels, the ground truth) are rendered once and kept as a
    pixel buffer; a frame restores it and draws only the changing artists, then encodes
    the Agg buffer as PNG. Text is most of a full draw's cost, so this makes a frame several
    times cheaper. The background is redrawn only when the PSNR axis must grow.
    """

    def __init__(self, x_true: torch.Tensor, figsize=(12.0, 3.1), dpi: float = 72):
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
        for ax, title in zip(axes[1:3], ("ground truth", "error |x − x_true|")):
            # An explicit y skips Matplotlib's search for a title position.
            ax.set_title(title, fontsize=10, y=1.01)
        for ax in axes[:3]:
            ax.set_axis_off()
        self.title = axes[0].set_title("", fontsize=10, y=1.01, animated=True)
        ax = self.curve_axes = axes[3]
        (self.curve,) = ax.plot([], [], color="C0", lw=1.6, label="this run", animated=True)
        (self.reference,) = ax.plot([], [], color="0.35", lw=1.2, ls="--", label="full batch (b = B)", animated=True)
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
        """Fit the curve's limits to the data; True if they changed (the background must be
        redrawn). The x-axis doubles as iterations pass (up to ``total``) and the y-axis
        moves in whole 2 dB steps, so a run of n iterations redraws it O(log n) times."""
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

    def update(self, x: torch.Tensor, iterations, psnr_values, reference_values, total: int = 0,
               title: str = "") -> bytes:
        """Draw iterate ``x`` ``[N, C, H, W]`` and the PSNR curves (over ``iterations``, the
        x-axis spanning ``total``); return PNG bytes. ``reference_values`` may hold None."""
        image = to_image(x)
        self.recon.set_data(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0))
        self.error.set_data(np.nan_to_num(np.abs(image - self.truth), nan=0.5, posinf=0.5))
        self.title.set_text(title or "reconstruction")
        mine, reference = _finite(psnr_values), _finite(reference_values)
        self.curve.set_data(iterations, mine)
        self.reference.set_data(iterations, reference)
        values = [v for v in mine + reference if math.isfinite(v)]
        last = iterations[-1] if len(iterations) else 0
        if self._fit_axes(max(total, last), last, values) or self.background is None:
            self.canvas.draw()  # everything but the animated artists
            self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        else:
            self.canvas.restore_region(self.background)
        for artist in (self.recon, self.error, self.title, self.curve, self.reference):
            self.fig.draw_artist(artist)
        return canvas_png(self.canvas)


def canvas_png(canvas: FigureCanvasAgg) -> bytes:
    """PNG bytes of what Agg has rendered into ``canvas`` (RGB, fast zlib level)."""
    from PIL import Image  # Matplotlib's own PNG writer; a dependency of Matplotlib

    width, height = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def _finite(values) -> list[float]:
    # A diverged PSNR (-inf or NaN) is left out of the curve rather than breaking the axis.
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]
