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
    """Four panels: the current reconstruction, the ground truth, the error map |x - x_true|
    and PSNR versus iteration (this run, and the full-batch reference run dashed).

    Images are shown on the fixed range [0, 1] of the ground truth, so brightness changes
    are real changes of the iterate; the error map uses [0, 0.5].
    """

    def __init__(self, x_true: torch.Tensor, figsize=(12.0, 3.1), dpi: float = 72):
        self.dpi = dpi
        # A fixed layout: constrained/tight layout would re-solve it on every frame (2-3x slower).
        self.fig = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(self.fig)
        axes = self.fig.subplots(1, 4, width_ratios=(1, 1, 1, 1.5))
        self.fig.subplots_adjust(left=0.01, right=0.99, bottom=0.16, top=0.88, wspace=0.12)
        truth = to_image(x_true)
        blank = np.zeros_like(truth)
        self.recon = axes[0].imshow(blank, cmap="gray", vmin=0, vmax=1)
        axes[1].imshow(truth, cmap="gray", vmin=0, vmax=1)
        self.error = axes[2].imshow(blank, cmap="inferno", vmin=0, vmax=0.5)
        self.truth = truth
        for ax, title in zip(axes[:3], ("reconstruction", "ground truth", "error |x − x_true|")):
            # An explicit y skips Matplotlib's per-frame search for a title position.
            ax.set_title(title, fontsize=10, y=1.01)
            ax.set_axis_off()
        self.recon_axes = axes[0]
        self.curve_axes = axes[3]
        (self.curve,) = axes[3].plot([], [], color="C0", lw=1.6, label="this run")
        (self.reference,) = axes[3].plot([], [], color="0.35", lw=1.2, ls="--", label="full batch (b = B)")
        axes[3].set_xlabel("iteration", fontsize=9)
        axes[3].set_ylabel("PSNR (dB)", fontsize=9)
        axes[3].tick_params(labelsize=8)
        axes[3].grid(alpha=0.3)
        axes[3].legend(fontsize=8, loc="lower right")

    def update(self, x: torch.Tensor, iterations, psnr_values, reference_values, title: str = "") -> bytes:
        """Redraw with iterate ``x`` ``[N, C, H, W]`` and the PSNR curves; return PNG bytes.

        ``reference_values`` may hold None where there is no reference value.
        """
        image = to_image(x)
        self.recon.set_data(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0))
        self.error.set_data(np.nan_to_num(np.abs(image - self.truth), nan=0.5, posinf=0.5))
        self.recon_axes.set_title(title or "reconstruction", fontsize=10, y=1.01)
        self.curve.set_data(iterations, _finite(psnr_values))
        self.reference.set_data(iterations, _finite(reference_values))
        values = [v for v in _finite(psnr_values) + _finite(reference_values) if math.isfinite(v)]
        ax = self.curve_axes
        ax.set_xlim(0, max(10, len(iterations) and iterations[-1]) + 1)
        if values:
            low, high = min(values), max(values)
            pad = max(0.5, 0.05 * (high - low))
            ax.set_ylim(low - pad, high + pad)
        return png_bytes(self.fig)


def _finite(values) -> list[float]:
    # A diverged PSNR (-inf or NaN) is left out of the curve rather than breaking the axis.
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]
