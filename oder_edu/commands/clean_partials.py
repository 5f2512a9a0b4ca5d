"""``oder-edu clean-partials DIR ...``: remove the temporary files that a killed or failed save left
in the given folders, and nothing else (``oder_edu.files.sweep``: the package's own temporary
names, ``.NAME.XXXXXXXX.partial`` and the fixed names of earlier versions, that no running
process is writing). Every command already sweeps the folders it writes into when it starts."""

from __future__ import annotations

import errno
from pathlib import Path

from .. import files


def add_arguments(parser) -> None:
    parser.add_argument("folders", nargs="+", metavar="DIR", help="folders to sweep (e.g. runs/deq_ct_full .)")
    parser.add_argument("--recursive", action="store_true", help="sweep their subfolders too")


def main(args) -> int:
    for folder in map(Path, args.folders):  # every folder checked before any file is removed
        if not folder.is_dir():
            raise FileNotFoundError(errno.ENOENT, f"{folder}: no such folder; expected a folder to sweep")
    removed = [path for folder in args.folders for path in files.sweep(folder, args.recursive)]
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} stale temporary file{'s' if len(removed) != 1 else ''} removed")
    return 0
