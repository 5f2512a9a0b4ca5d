"""Benchmarks behind ``oder-edu bench NAME``: each writes ``DIR/NAME.json`` and ``DIR/NAME.md``.

A bench module exposes ``add_arguments(parser)`` (optional) and ``main(args)``, which
measures, then calls ``write_results``. The README quotes the files written here.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

DEFAULT_OUT = Path("benchmarks/results")


def median_ms(fn, repeat: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA synchronized)."""
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


def machine() -> dict:
    """What the figures were measured on."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def markdown_table(records: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in records for k in r))

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in records]
    return "\n".join(lines)


def write_results(name: str, records: list[dict], out_dir=DEFAULT_OUT, caption: str = "", command: str = "") -> Path:
    """Write ``out_dir/name.json`` (records + machine + command) and ``out_dir/name.md``; print the table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": command or f"oder-edu bench {name}", "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "caption": caption}
    (out / f"{name}.json").write_text(json.dumps({**meta, "records": records}, indent=2) + "\n")
    table = markdown_table(records)
    text = f"# {name}\n\n{caption}\n\n{table}\n\nWritten by `{meta['command']}` on {meta['date']} ({meta['machine']}).\n"
    (out / f"{name}.md").write_text(text)
    print(table)
    return out / f"{name}.json"
