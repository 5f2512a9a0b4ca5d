"""Measured results that the notebooks and widgets display: copies, made by ``oder-edu bench ...``,
of its JSON files in ``benchmarks/results/``, shipped in the package for a clone, Binder or a wheel."""

from __future__ import annotations

import importlib.resources
import json


def load(name: str) -> dict:
    """The shipped result ``name`` (e.g. ``"oder"``): ``{"command", "machine", "date", "caption",
    "records"}``. A FileNotFoundError names the command that writes it."""
    resource = importlib.resources.files(__name__) / f"{name}.json"
    if not resource.is_file():
        raise FileNotFoundError(f"no shipped result {name!r}; `oder-edu bench {name}` in the repository writes it")
    return json.loads(resource.read_text())
