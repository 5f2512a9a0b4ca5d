"""Argument checks shared by every public entry point: one function per kind of argument.

Each returns the value in its plain Python (or torch) form, or raises -- ``TypeError`` for the
wrong kind of object, ``ValueError`` for a value out of range -- with a message that names the
parameter, says what was expected and shows what was given. numpy scalars and one-element
tensors count as the numbers they hold; ``True`` and ``False`` never do.
"""

from __future__ import annotations

import math
import numbers

import torch


def _scalar(value):
    """A one-element tensor or numpy scalar as a Python number (anything else unchanged)."""
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_complex():
        return value.item()
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars and 0-d arrays
        return value.item()
    return value


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {_range(minimum, maximum)}, got {value}")
    return value


def number(name: str, value, minimum: float | None = None, maximum: float | None = None,
           positive: bool = False) -> float:
    """``value`` as a finite float in [minimum, maximum] (and > 0 with ``positive``)."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be a number {_range(minimum, maximum)}, got {value}")
    return value


def ratio(name: str, value) -> float:
    """A minibatch ratio b/B in (0, 1]."""
    value = number(name, value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value}")
    return value


def choice(name: str, value, options):
    """``value`` if it is one of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def flag(name: str, value) -> bool:
    """``value`` as a bool: ``True``/``False`` (or a numpy bool), never a truthy string or number."""
    value = _scalar(value)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def generator(value) -> torch.Generator | None:
    """A ``torch.Generator`` or None."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(value).__name__}")
    return value


def function(name: str, value, signature: str):
    """``value`` if callable; the message shows the expected ``signature``."""
    if not callable(value):
        raise TypeError(f"{name} must be a callable {signature}, got {type(value).__name__}")
    return value


def finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` if every entry is finite (one host sync)."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or Inf; expected finite values")
    return tensor


def image_batch(name: str, x, channels: int | None = None) -> torch.Tensor:
    """A real floating-point image batch ``[N, C, H, W]`` with N >= 1 (and C = ``channels``)."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor image batch [N, C, H, W], got {type(x).__name__}")
    if x.is_complex() or not x.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[0] == 0 or (channels is not None and x.shape[1] != channels):
        c = "C" if channels is None else str(channels)
        raise ValueError(f"{name} must have shape [N, {c}, H, W] with N >= 1, got {tuple(x.shape)}")
    return x


def memory(name: str, nbytes: float, limit: float = 8 * 2**30) -> None:
    """Refuse before allocating: ``nbytes`` (an estimate for ``name``) must stay under ``limit``."""
    if nbytes > limit:
        raise ValueError(f"{name} would need about {nbytes / 2**30:.1f} GiB, more than the limit of "
                         f"{limit / 2**30:.0f} GiB; choose a smaller size")


def _range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum}, {maximum}]"
    if minimum is not None:
        return f">= {minimum}"
    return f"<= {maximum}"
