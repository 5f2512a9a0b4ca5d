"""Wall-clock timing that is honest on a GPU: CUDA work is synchronized before each clock reading
(kernels run asynchronously)."""

from __future__ import annotations

import statistics
import time

import torch

from . import checks


def _synchronize(device) -> None:  # device None: the current CUDA device
    if torch.cuda.is_initialized() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize(device)


def timed(fn, *args, device=None, **kwargs):
    """``(fn(*args, **kwargs), seconds)``: the result of the call and its wall time."""
    _synchronize(device)
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    _synchronize(device)
    return result, time.perf_counter() - start


def median_ms(fn, repeat: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` runs after ``warmup`` runs."""
    repeat, warmup = checks.integer("repeat", repeat, 1), checks.integer("warmup", warmup, 0)
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn)[1] * 1e3 for _ in range(repeat))
