"""Measured results that the notebooks and widgets display, shipped inside the package so they
load from a clone, on Binder and from an installed wheel alike: copies of the JSON files that
``oder-edu bench ...`` writes to ``benchmarks/results/`` (the bench copies them here itself)."""

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
