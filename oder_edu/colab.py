"""The second half of the notebooks' set-up cell on Colab. The cell installs the package with
``--no-deps``, then calls ``install_missing()``: of the package's requirements, pip installs those no
version of which is installed, and nothing else. Colab's own packages stay as they are -- torch
above all (a pip-installed torch would be a multi-GB CUDA build in place of Colab's), and
ipywidgets 7.7.1, the version Colab's front end renders. Plain ``pip install`` would instead complete
the dependency tree of everything it touches, adding what Colab deliberately leaves out (its
IPython 7.34 names jedi, which Colab does not ship).

Only the standard library is used here: this runs before the requirements are known to be there.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from importlib import metadata

NEVER = ("torch",)  # installed by the platform, never by this package
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", _NAME.match(requirement).group(1)).lower()


def missing(distribution: str = "oder-edu") -> list[str]:
    """The requirements of ``distribution`` (its extras left out) with no version of their project installed."""
    lacking = []
    for requirement in metadata.requires(distribution) or []:
        spec, _, marker = requirement.partition(";")
        if "extra" in marker:
            continue
        if marker.strip():
            raise ValueError(f"{distribution} requires {requirement!r}: environment markers are not evaluated here")
        try:
            metadata.version(_name(spec))
        except metadata.PackageNotFoundError:
            lacking.append(spec.strip())
    return lacking


def install_missing(distribution: str = "oder-edu", run=subprocess.run) -> list[str]:
    """pip-install what ``missing`` lists (``run``: how to run pip) and return it; torch is never installed."""
    lacking = missing(distribution)
    platform = [_name(r) for r in lacking if _name(r) in NEVER]
    if platform:
        raise RuntimeError(f"{', '.join(platform)} is not installed: install the build for this machine first "
                           f"(https://pytorch.org/get-started); the set-up cell never installs it")
    if lacking:
        run([sys.executable, "-m", "pip", "install", "-q", *lacking], check=True)
        importlib.invalidate_caches()
    return lacking
