"""Virtual environments that tests build for themselves (the Colab-like one, nbgrader's), so CI builds
them from a fresh clone. Each lives in .cache/venvs/NAME-KEY (``make clean`` removes .cache), KEY a
hash of what decides its contents: a second run with the same pins reuses it, a changed pin builds
a new one and removes the old. A build that did not finish (no ``.complete``) is started again."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "venvs"


def key(*paths: Path) -> str:
    """16 hex digits of the contents of ``paths`` and the Python version the venv is made with."""
    digest = hashlib.sha256(platform.python_version().encode())
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def venv(name: str, digest: str, install) -> Path:
    """The python of the venv ``name``-``digest``, made and filled by ``install(python)`` if missing."""
    folder = CACHE / f"{name}-{digest}"
    python = folder / "bin" / "python"
    if (folder / ".complete").exists():
        return python
    for old in CACHE.glob(f"{name}-*"):  # an older key, or an unfinished build of this one
        shutil.rmtree(old)
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    install(python)
    (folder / ".complete").write_text(f"{name} {digest}\n")
    return python


def pip(python: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m pip ARGS`` (quiet); on failure, its output is in the assertion message."""
    done = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, env=clean_env())
    if check:
        assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would show another venv's packages to a venv's python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **extra}


def installed(python: Path) -> dict[str, str]:
    """{normalized name: version} of every distribution in the venv of ``python`` (pip and setuptools too)."""
    lines = pip(python, "list", "--format=freeze", "--exclude-editable").stdout.splitlines()
    return dict(normalized(line) for line in lines if "==" in line)


def normalized(pin: str) -> tuple[str, str]:
    """``("jupyter-client", "7.4.9")`` from ``"jupyter_client==7.4.9"`` (PEP 503 names)."""
    name, version = pin.split("#")[0].strip().split("==")
    return re.sub(r"[-_.]+", "-", name).lower(), version.strip()
