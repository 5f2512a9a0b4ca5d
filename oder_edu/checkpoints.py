"""Shipped weights are data: the one place that reads and writes ``weights/MANIFEST.json``.

The manifest maps a name (e.g. ``"dncnn"``) to an entry::

    {"file": "dncnn.pt", "sha256": "...", "command": "oder-edu train denoiser ...",
     "seed": 0, "seconds": 612.3, "metrics": {...}, "date": "2025-...", "torch": "2.13.0", ...}

``load_state`` refuses a file whose sha256 differs from the manifest, and every failure
names the file and the command (from the manifest) that regenerates it. Files are loaded
with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path

import torch

MANIFEST = "MANIFEST.json"


class CheckpointError(RuntimeError):
    """A shipped weight file is missing, unrecorded or corrupted."""


def weights_dir() -> Path:
    """The package's ``oder_edu/weights`` folder."""
    return Path(__file__).resolve().parent / "weights"


def sha256(path) -> str:
    """Hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory=None) -> dict:
    """The manifest of ``directory`` (default ``weights_dir()``) as a dict; ``{}`` if absent."""
    path = Path(directory or weights_dir()) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); restore it from the repository") from None


def load_state(name: str, directory=None, map_location="cpu") -> dict:
    """Load checkpoint ``name`` (a manifest key) after checking its sha256.

    Returns whatever was saved (typically ``{"state_dict": ..., "config": ...}``).
    Raises ``CheckpointError`` naming the file and the regenerating command when the
    manifest has no entry, the file is missing, or its sha256 does not match.
    """
    directory = Path(directory or weights_dir())
    manifest = read_manifest(directory)
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(
            f"no weights named {name!r} in {directory / MANIFEST} (recorded: {known}); "
            f"train them with the matching `oder-edu train ...` command, which records the entry"
        )
    entry = manifest[name]
    path = directory / entry["file"]
    command = entry.get("command", "<no command recorded>")
    if not path.exists():
        raise CheckpointError(f"weights file {path} is missing; regenerate it with:\n    {command}")
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise CheckpointError(
            f"weights file {path} is corrupted or was changed: sha256 {actual[:16]}... but "
            f"{MANIFEST} records {entry['sha256'][:16]}...; regenerate it with:\n    {command}"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a matching sha256 with an unreadable file: saved by a broken run
        raise CheckpointError(f"cannot load {path} ({error}); regenerate it with:\n    {command}") from None


def record(name: str, path, command: str, seed: int, metrics: dict, extra: dict | None = None,
           seconds: float | None = None) -> dict:
    """Add or replace the manifest entry ``name`` for the weight file ``path``.

    The manifest is the ``MANIFEST.json`` beside ``path``. The entry holds the file name,
    its sha256, the exact ``command`` that made it, ``seed``, training ``seconds``,
    ``metrics`` (e.g. validation PSNR per sigma), the date, the torch version, and the
    keys of ``extra`` (e.g. the sigma range). Returns the entry.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot record {path}: the file does not exist")
    entry = {
        "file": path.name,
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
        "command": command,
        "seed": seed,
        "seconds": None if seconds is None else round(float(seconds), 1),
        "metrics": metrics,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        **(extra or {}),
    }
    manifest = read_manifest(path.parent)
    manifest[name] = entry
    text = json.dumps(dict(sorted(manifest.items())), indent=2) + "\n"
    # Write then rename, so a reader never sees a half-written manifest.
    partial = path.parent / (MANIFEST + ".partial")
    partial.write_text(text)
    os.replace(partial, path.parent / MANIFEST)
    return entry
