"""``oder-edu bench notebooks``: wall time and peak RSS of each notebook run top to bottom in a fresh
kernel, against the course's budgets (benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..timing import timed
from .results import add_bench_arguments, check_out, write_results

_RUN_ONE = """
import json, resource, sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def add_arguments(parser) -> None:
    add_bench_arguments(parser)
    parser.add_argument("--notebooks", default="notebooks", help="folder of instructor notebooks (default: notebooks)")


def main(args) -> int:
    check_out(args.out)
    records = []
    for path in sorted(Path(args.notebooks).glob("[0-9]*.ipynb")):
        done, seconds = timed(subprocess.run, [sys.executable, "-c", _RUN_ONE, str(path), str(path.parent)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{path.name} failed to run top to bottom")
        rss = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]
        records.append({"notebook": path.stem, "seconds": round(seconds, 1), "peak_rss_mib": round(rss),
                        "within_budget": seconds <= 180 and rss <= 1536})
        print(f"{path.stem}: {seconds:.1f} s, {rss:.0f} MiB", flush=True)
    caption = (f"Each notebook executed top to bottom in a fresh kernel (nbclient); peak RSS is the kernel's. Total "
               f"{sum(r['seconds'] for r in records):.0f} s. Budgets: ≤ 180 s and ≤ 1536 MiB each, ≤ 720 s in all.")
    write_results("notebooks", records, args, caption)
    return 0
