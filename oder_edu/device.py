"""Where tensors live: CUDA, then Apple's MPS, then the CPU; ``ODER_EDU_DEVICE`` overrides."""

from __future__ import annotations

import os

import torch


def available_devices() -> list[str]:
    """Device names usable on this machine, best first (e.g. ``['cuda', 'cpu']``)."""
    names = ["cuda"] if torch.cuda.is_available() else []
    if torch.backends.mps.is_available():
        names.append("mps")
    return names + ["cpu"]


def default_device() -> torch.device:
    """The best available device, or the one named by the environment variable ``ODER_EDU_DEVICE``
    (``cpu``, ``cuda``, ``cuda:1``, ``mps``; a ValueError if unknown or unavailable)."""
    name = os.environ.get("ODER_EDU_DEVICE", "").strip()
    return as_device(name, "ODER_EDU_DEVICE") if name else torch.device(available_devices()[0])


def as_device(device, what: str = "device") -> torch.device:
    """``device`` (a name such as ``"cuda:1"``, a ``torch.device``, or None for ``default_device()``)
    as a ``torch.device`` present on this machine; a ValueError or TypeError listing those otherwise."""
    if device is None:
        return default_device()
    available = available_devices()
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{what} must be a device name such as 'cpu' or 'cuda', or a torch.device; "
                        f"got {device!r} (available: {', '.join(available)})")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{what}={device!r} is not a device name; available: {', '.join(available)}") from None
    if resolved.type not in available:
        raise ValueError(f"{what}={device!r} is not available on this machine; available: {', '.join(available)}")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"{what}={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return resolved
