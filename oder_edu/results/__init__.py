"""Measured results that the notebooks and widgets display: copies, made by ``oder-edu bench ...``,
of its JSON files in ``benchmarks/results/``, shipped in the package for a clone, Binder or a wheel."""

from __future__ import annotations

import importlib.resources
import json
import re


def names() -> list[str]:
    """The names of the shipped results (``load`` reads them)."""
    return sorted(r.name[: -len(".json")] for r in importlib.resources.files(__name__).iterdir()
                  if r.name.endswith(".json"))


def load(name: str) -> dict:
    """The shipped result ``name`` (e.g. ``"oder"``): ``{"command", "machine", "date", "caption",
    "records"}``. Only a shipped name is read, never a path (a ValueError); a FileNotFoundError
    names the command that writes a missing one."""
    if not isinstance(name, str):
        raise TypeError(f"name must be the name of a shipped result (one of {', '.join(names())}), "
                        f"got {type(name).__name__}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"name must be the name of a shipped result (one of {', '.join(names())}), not a path; "
                         f"got {name!r} (read your own bench files with json.load)")
    resource = importlib.resources.files(__name__) / f"{name}.json"
    if not resource.is_file():
        raise FileNotFoundError(f"no shipped result {name!r} (shipped: {', '.join(names())}); "
                                f"`oder-edu bench {name}` in the repository writes it")
    return json.loads(resource.read_text())
