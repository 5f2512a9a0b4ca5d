"""Weights are data: the one place that saves, records and loads them.

A weight file holds ``{"kind", "config", "state_dict", "metrics"}`` (plain data and tensors, loaded
with ``weights_only=True``); ``oder_edu/weights/MANIFEST.json`` maps a name to its entry (file,
sha256, command, seed, seconds, metrics, ...). Loads check the sha256 and name the regenerating
command on failure; saves are atomic (``oder_edu.files``) and never replace a file or entry without ``force=True``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from . import checks, files

MANIFEST = "MANIFEST.json"
KINDS = ("denoiser", "red_deq")


class CheckpointError(RuntimeError):
    """A weight file is missing, unrecorded, corrupted, of the wrong kind or would be overwritten."""


def weights_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"


def sha256(path) -> str:
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
    fail = lambda what: CheckpointError(f"{what}; restore it from the repository")  # noqa: E731
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise fail(f"{path} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise fail(f"{path} must map names to entries (a JSON object), got a {type(manifest).__name__}")
    for name, entry in manifest.items():
        if not isinstance(entry, dict):
            raise fail(f"{path}: the entry {name!r} must be a dict (file, sha256, command, ...), got {entry!r:.80}")
    return manifest


def locate(source) -> tuple[Path, dict | None]:
    """``(path, manifest entry or None)`` of a manifest name or a ``.pt`` path."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"weights must be named by a manifest name or a path to a .pt file, got {type(source).__name__}")
    path = Path(source)
    if path.suffix == ".pt":
        if not path.exists():
            raise CheckpointError(f"no weight file at {path}")
        entry = read_manifest(path.parent).get(path.stem)
        return path, entry if entry and entry.get("file") == path.name else None
    manifest = read_manifest()
    if str(source) not in manifest:
        known = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"no weights named {str(source)!r} in {weights_dir() / MANIFEST} (recorded: {known}); "
                              f"train them with the matching `oder-edu train ...` command, which records the entry")
    entry = manifest[str(source)]
    return weights_dir() / entry.get("file", f"{source}.pt"), entry


def load_state(source, kind: str | None = None, map_location="cpu") -> dict:
    """The state of a weight file (manifest name or path), after checking its sha256 and ``kind``."""
    if kind is not None:
        checks.choice("kind", kind, KINDS)
    path, entry = locate(source)
    command = (entry or {}).get("command", "the `oder-edu train ...` command that made it")
    fail = lambda what: CheckpointError(f"{what}; regenerate it with:\n    {command}")  # noqa: E731
    if entry is not None:
        if not path.exists():
            raise fail(f"weights file {path} is missing")
        if "sha256" not in entry:
            raise fail(f"{MANIFEST} records no sha256 for {path.name}")
        if (actual := sha256(path)) != entry["sha256"]:
            raise fail(f"weights file {path} is corrupted or was changed: sha256 {actual[:16]}... but "
                       f"{MANIFEST} records {entry['sha256'][:16]}...")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated, not a torch file, or holding code
        raise fail(f"cannot load {path} ({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(state, dict) or not {"kind", "config", "state_dict"} <= set(state):
        raise CheckpointError(f"{path} is not an oder-edu weight file (no kind, config and state_dict)")
    if kind is not None and state["kind"] != kind:
        raise CheckpointError(f"{path} holds a {state['kind']!r} model, not a {kind!r}: "
                              f"{'load_denoiser' if state['kind'] == 'denoiser' else 'deq.load_model'} loads it")
    return state


def _plain(value, where: str):
    """``value`` with numpy scalars as Python numbers; a TypeError naming where anything else sits."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if value is None or type(value) in (bool, int, float, str) or torch.is_tensor(value):
        return value
    raise TypeError(f"{where} is a {type(value).__name__} ({value!r:.60}); a weight file holds only numbers, "
                    f"strings, lists, dicts and tensors")


def weights_path(path, name: str = "path") -> Path:
    """``path`` checked as where weights can be saved (``name``: the argument, in errors): a file path
    ending in ``.pt``, the suffix by which loading tells a path from a manifest name."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path to a .pt file, got {type(path).__name__}")
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"{name} must be a path ending in .pt (weights load by their .pt path or manifest "
                         f"name), got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{name} {path} is a folder; expected a path to a .pt file")
    return path


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise CheckpointError(f"{path} exists; refusing to overwrite it (pass force=True, or --force on the "
                              f"command line, to replace it)")


def save_state(path, kind: str, config: dict, model: torch.nn.Module, metrics: dict | None = None,
               force: bool = False) -> Path:
    """Save ``model``'s weights (float32, CPU) and ``config`` atomically; no overwrite unless ``force``."""
    checks.choice("kind", kind, KINDS)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config, metrics = _plain(config, "config"), _plain(metrics or {}, "metrics")
    state = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
    path = weights_path(path)
    _refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    return files.save_torch({"kind": kind, "config": config, "state_dict": state, "metrics": metrics}, path,
                            overwrite=force)


def record(name: str, path, command: str, seed: int, metrics: dict, extra: dict | None = None,
           seconds: float | None = None, force: bool = False) -> dict:
    """Add (and return) the entry ``name`` for ``path`` to the manifest beside it, locked against parallel
    trainings; an entry of another file is only replaced with ``force``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a string (the manifest key), got {name!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot record {path}: the file does not exist")
    entry = {
        "file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size, "command": command,
        "seed": seed, "seconds": None if seconds is None else round(float(seconds), 1), "metrics": metrics,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, **(extra or {}),
    }
    with _locked(path.parent / (MANIFEST + ".lock")):
        manifest = read_manifest(path.parent)
        old = manifest.get(name)
        if old is not None and old.get("sha256") != entry["sha256"] and not force:
            raise CheckpointError(f"{path.parent / MANIFEST} already records {name!r} for another file; "
                                  f"refusing to replace it (pass force=True / --force)")
        manifest[name] = entry
        files.write_text(path.parent / MANIFEST, json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return entry


@contextlib.contextmanager
def _locked(lock: Path):
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single trainings are still safe
        yield
        return
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, whatever the block does
        yield
