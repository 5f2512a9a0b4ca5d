"""What every bench shares: the --out, --device and --threads options and the files it writes,
``DIR/NAME.json`` and ``DIR/NAME.md`` (see benchmarks/README.md)."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from .. import checks, files
from ..cli import command_line

DEFAULT_OUT = Path("benchmarks/results")
SHIPPED = Path(__file__).resolve().parent.parent / "results"  # the package oder_edu.results


def add_bench_arguments(parser, device: bool = False, threads: bool = False) -> None:
    """--out, and --device and --threads N [N ...] (one record per count) if asked for."""
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    if device:
        parser.add_argument("--device", default=None, help="torch device (default: oder_edu.device.default_device())")
    if threads:
        parser.add_argument("--threads", type=int, nargs="+", default=None,
                            help="torch CPU thread counts, one record each (default: torch's choice, then 1)")


def thread_counts(threads: list[int] | None) -> list[int]:
    """The thread counts to measure with, each checked: --threads, or torch's choice then 1."""
    for count in threads or []:
        checks.integer("--threads", count, 1)
    return list(dict.fromkeys(threads or [torch.get_num_threads(), 1]))


def machine() -> dict:
    """What the figures were measured on."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def markdown_table(records: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in records for k in r))

    def fmt(v):
        if isinstance(v, float):  # as recorded, to four significant digits (a PSNR keeps its hundredths)
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:.1f}"
        if isinstance(v, list):
            return ", ".join(fmt(x) for x in v)
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in records]
    return "\n".join(lines)


def check_out(out_dir, name: str = "--out") -> Path:
    """The output folder, created, checked writable and swept of stale temporary files
    (``files.sweep``) *before* a long measurement; an ``OSError`` naming it (``name``: its flag)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out, prefix=".write-test.", suffix=files.SUFFIX)  # a sweepable name
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise OSError(error.errno, f"cannot write to {name} {out}: {error.strerror or error}") from None
    files.sweep(out)
    return out


def write_results(name: str, records: list[dict], args, caption: str, ship: bool = False,
                  sections: list[tuple[str, list[dict]]] | None = None) -> None:
    """Write ``args.out/name.json`` and ``.md`` (atomically) with the command of ``args``, print the
    table(s), and with ``ship`` (the default folder only) copy the JSON into the package's ``results/``.
    ``sections``: ``(title, records)`` pairs, one Markdown table each (default: one table of all)."""
    out, command = check_out(args.out), command_line(args)
    meta = {"command": command, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "caption": caption}
    table = markdown_table(records) if sections is None else "\n\n".join(
        f"## {title}\n\n{markdown_table(rows)}" for title, rows in sections)
    files.write_text(out / f"{name}.json", json.dumps({**meta, "records": records}, indent=2) + "\n")
    files.write_text(out / f"{name}.md", f"# {name}\n\n{caption}\n\n{table}\n\nWritten by `{command}` on "
                                         f"{meta['date']} ({meta['machine']}).\n")
    if ship and out.resolve() == DEFAULT_OUT.resolve():
        SHIPPED.mkdir(exist_ok=True)
        files.copy(out / f"{name}.json", SHIPPED / f"{name}.json")
    print(table)
