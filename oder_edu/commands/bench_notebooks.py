"""``oder-edu bench notebooks``: wall time and peak RSS of each notebook, run top to bottom.

Each notebook executes in a fresh Python process (nbclient, a fresh kernel); that process
reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the kernel has exited, which is the
kernel's peak resident memory. Budgets (DESIGN.md): ≤ 3 min and ≤ 1.5 GB per notebook on a
2-core CPU, all notebooks ≤ 12 min.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ..cli import command_line
from .results import DEFAULT_OUT, check_out, write_results

_RUN_ONE = """
import json, resource, sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--notebooks", default="notebooks", help="folder of .ipynb files")


def main(args) -> int:
    check_out(args.out)
    records = []
    for path in sorted(Path(args.notebooks).glob("[0-9]*.ipynb")):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _RUN_ONE, str(path), str(path.parent)],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{path.name} failed to run top to bottom")
        rss = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]
        records.append({"notebook": path.stem, "seconds": round(seconds, 1), "peak_rss_mib": round(rss),
                        "within_budget": seconds <= 180 and rss <= 1536})
        print(f"{path.stem}: {seconds:.1f} s, {rss:.0f} MiB", flush=True)
    total = sum(r["seconds"] for r in records)
    caption = (f"Each notebook executed top to bottom in a fresh kernel (nbclient); peak RSS is the "
               f"kernel's. Total {total:.0f} s. Budgets: ≤ 180 s and ≤ 1536 MiB each, ≤ 720 s in all.")
    write_results("notebooks", records, args.out, caption, command_line(args))
    return 0
