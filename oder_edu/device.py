"""Where tensors live: CUDA, then Apple's MPS, then the CPU; ``ODER_EDU_DEVICE`` overrides."""

from __future__ import annotations

import os

import torch


def available_devices() -> list[str]:
    """Device names usable on this machine, best first (e.g. ``['cuda', 'cpu']``)."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names + ["cpu"]


def default_device() -> torch.device:
    """The best available device, or the one named by the environment variable
    ``ODER_EDU_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    An unknown or unavailable name raises a ValueError listing what is available.
    """
    available = available_devices()
    name = os.environ.get("ODER_EDU_DEVICE", "").strip()
    if not name:
        return torch.device(available[0])
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"ODER_EDU_DEVICE={name!r} is not a device name; available: {', '.join(available)}"
        ) from None
    if device.type not in available:
        raise ValueError(
            f"ODER_EDU_DEVICE={name!r} is not available on this machine; available: {', '.join(available)}"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"ODER_EDU_DEVICE={name!r}: only {torch.cuda.device_count()} CUDA device(s) present"
        )
    return device
