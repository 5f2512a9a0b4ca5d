"""Wall-clock timing that is honest on a GPU: ``median_ms``."""

from __future__ import annotations

import statistics
import time

import torch

from . import checks


def median_ms(fn, repeat: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` runs after ``warmup`` runs;
    CUDA work is synchronized before each clock reading (kernels run asynchronously)."""
    repeat, warmup = checks.integer("repeat", repeat, 1), checks.integer("warmup", warmup, 0)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
