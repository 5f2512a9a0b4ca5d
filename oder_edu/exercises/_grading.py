"""The machinery every check shares: the verdict and its hint tiers (``_check``), what a wrong kind of answer is
told (``_Wrong``, ``_tensor``, ``_number``), comparisons with a reference and its typical mistakes (``_diagnose``,
``_compare``), the seeded problems the checks draw, and ``solution`` and ``reset``.

Every exercise registers its tiers with ``_hints(name, idea=…, steps=…, solution=…)`` beside its check, in the
module of its notebook; ``HINTS`` collects them.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from ..physics import MatrixOperator


@dataclass(frozen=True)
class Hints:
    """One exercise's tiers: ``idea`` (first wrong answer; no code), ``steps`` (added from the second one on; a
    recipe in words), ``solution`` (full code, printed only by ``solution(name)``)."""

    idea: str
    steps: str
    solution: str


HINTS: dict[str, Hints] = {}  # every exercise's tiers, registered by _hints beside its check
_failures: dict[str, int] = {}  # wrong answers per exercise in this kernel (stubs not counted)
_withheld: list[bool] = []  # non-empty once withhold_solutions() ran (a graded lab)


def _hints(name: str, idea: str, steps: str, solution: str) -> None:
    """Register the tiers of exercise ``name``: ``idea`` and ``steps`` must not contain the solution's code."""
    if name in HINTS:
        raise ValueError(f"the hints of exercise {name!r} are registered twice")
    HINTS[name] = Hints(idea, steps, solution)


def _exercise(name, caller: str) -> str:
    """``name`` without a ``check_`` prefix, if it names an exercise: else a TypeError or a ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"{caller} expects the name of an exercise, such as \"landweber\", got {name!r} "
                        f"({type(name).__name__})")
    name = name.removeprefix("check_")
    if name not in HINTS:
        raise ValueError(f"no exercise named {name!r}; the exercises are: {', '.join(sorted(HINTS))}")
    return name


def withhold_solutions() -> None:
    """A graded lab (nbgrader): from now on, in this kernel, ``solution`` prints no answer and the hints stop
    offering one. The environment variable ``ODER_EDU_WITHHOLD_SOLUTIONS=1`` does the same for every kernel."""
    _withheld.append(True)


def _solutions_withheld() -> bool:
    return bool(_withheld) or os.environ.get("ODER_EDU_WITHHOLD_SOLUTIONS") == "1"


def solution(name: str) -> None:
    """Print a full answer to exercise ``name`` (``"power_iteration"``, ...; a ``check_`` prefix is ignored),
    unless solutions are withheld (``withhold_solutions``)."""
    name = _exercise(name, "solution")
    if _solutions_withheld():
        print(f"This is a graded lab: its full answers are withheld. The hints of check_{name} still help; "
              f"ask your instructor for more.")
        return
    print(f"A full answer to {name} (one of several: yours may look different and still pass):\n")
    print(HINTS[name].solution.strip("\n"))


def reset(name: str | None = None) -> None:
    """Forget the wrong answers counted so far (of exercise ``name``, or of all): back to the first tier."""
    for key in list(_failures) if name is None else [_exercise(name, "reset")]:
        _failures.pop(key, None)


class _Wrong(Exception):
    """An answer of the wrong kind (None, a string, a shape) or a diagnosed mistake; the message says which."""


# The package itself (checks, operators) and torch: a crash's line is the last one outside both.
_NOT_THE_STUDENTS = (Path(__file__).resolve().parent.parent, Path(torch.__file__).resolve().parent)


def _where(error: BaseException) -> str:
    """`` (line 7: x = ...)``: the last line of the student's own code in the traceback."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if not any(folder in Path(frame.filename).resolve().parents for folder in _NOT_THE_STUDENTS):
            return f" (line {frame.lineno}{': ' + frame.line.strip() if frame.line else ''})"
    return ""


def _check(name: str, fn, attempt) -> bool:
    """Run ``attempt()`` (None when the answer is right, else what is wrong, returned or raised as ``_Wrong``),
    print the verdict and the hints of this exercise's tier, and return the verdict."""
    if not callable(fn):
        raise TypeError(f"check_{name} expects your function itself (no parentheses after its name), "
                        f"got a {type(fn).__name__}")
    try:
        problem = attempt()
    except NotImplementedError as error:  # the notebook stub: its own nudge, not counted
        print(f"✗ {name}: not implemented yet — replace the `raise NotImplementedError` line with your code.")
        message = str(error).strip()
        print(f"  {message}" if message.startswith("Hint:") else f"  Hint: {message or HINTS[name].idea}")
        return False
    except _Wrong as wrong:
        problem = str(wrong)
    except Exception as error:  # the student's code crashed: say how and where, keep the notebook running
        problem = f"your function raised {type(error).__name__}: {error}{_where(error)}"
    if not problem:
        print(f"✓ {name}: correct.")
        return True
    _failures[name] = _failures.get(name, 0) + 1
    print(f"✗ {name}: {problem}\n  Hint: {HINTS[name].idea}")
    if _failures[name] >= 2:
        print(f"  Closer: {HINTS[name].steps}")
        if not _solutions_withheld():
            print(f'  Still stuck? solution("{name}") prints a full answer.')
    return False


def _kind(value) -> str:
    return f"a {type(value).__name__}" + (f" of {len(value)} items" if isinstance(value, (tuple, list)) else "")


def _tensor(value, name: str, shape) -> torch.Tensor:
    """``value`` as a float64 CPU tensor of ``shape``, or ``_Wrong`` saying what came back."""
    shape = tuple(shape)
    if value is None:
        raise _Wrong(f"{name} returned None; expected a tensor of shape {shape} (a missing `return`?)")
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise _Wrong(f"{name} returned {_kind(value)}; expected a tensor of shape {shape}") from None
    if t.is_complex():
        raise _Wrong(f"{name} returned complex values, expected a real tensor")
    if t.dtype == torch.bool:
        raise _Wrong(f"{name} returned booleans; expected a real tensor of shape {shape}")
    if tuple(t.shape) != shape:
        raise _Wrong(f"{name} returned shape {tuple(t.shape)}, expected {shape}")
    return t.detach().cpu().double()


def _number(value, name: str) -> float:
    """``value`` as a float (a number or a one-element tensor), or ``_Wrong`` saying what came back."""
    if value is None:
        raise _Wrong(f"{name} returned None; expected a number (a missing `return`?)")
    if torch.is_tensor(value) and value.numel() != 1:
        raise _Wrong(f"{name} returned a tensor of shape {tuple(value.shape)}; expected a number")
    if isinstance(value, (str, bool)) or (torch.is_tensor(value) and value.is_complex()):
        raise _Wrong(f"{name} returned {_kind(value)}; expected a number")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise _Wrong(f"{name} returned {_kind(value)}; expected a number") from None


RTOL = 1e-5  # loose enough for an answer computed in float32, far below any typical mistake


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _diagnose(got, want, mistakes, otherwise: str, rtol: float = RTOL) -> str | None:
    """None when ``got`` ≈ ``want``; else the message of the first of ``mistakes`` (pairs: what a typical mistake
    returns, what to tell) that ``got`` matches; else ``otherwise``."""
    if _relative_error(got, want) <= rtol:
        return None
    return next((message for wrong, message in mistakes if _relative_error(got, wrong) <= rtol), otherwise)


def _compare(name: str, fn, args: tuple, want, mistakes, against: str, rtol: float = RTOL) -> bool:
    """The usual check: ``fn(*args)`` must be a tensor ≈ ``want``; ``mistakes`` as in ``_diagnose``."""
    def attempt():
        got = _tensor(fn(*args), name, want.shape)
        error = _relative_error(got, want)
        return _diagnose(got, want, mistakes, f"relative error {error:.2g} against {against}.", rtol)
    return _check(name, fn, attempt)


def _power_method(got: float, want: float, other: float, as_other: str, applied: str, otherwise: str) -> None:
    """``_Wrong`` unless a power method's ``got`` ≈ ``want`` (to 1e-3): ``as_other`` if it is ``other``, or 1."""
    if abs(got - want) <= 1e-3 * want:
        return
    if abs(got - other) <= 1e-3 * other:
        raise _Wrong(as_other)
    if abs(got - 1.0) <= 1e-6:
        raise _Wrong(f"you returned 1: the norm of the normalized vector, not of {applied} applied to it.")
    raise _Wrong(otherwise)


def _draw(seed_or_gen, *shape, law=torch.randn) -> torch.Tensor:
    """float64 samples of ``law`` (``torch.randn``, ``torch.rand``) of ``shape`` from a generator or a seed."""
    gen = torch.Generator().manual_seed(seed_or_gen) if isinstance(seed_or_gen, int) else seed_or_gen
    return law(*shape, generator=gen, dtype=torch.float64)


def _random_problem(num_blocks: int, seed: int = 0, operator=MatrixOperator):
    """``(A, y, x)``: ``num_blocks`` blocks of 2 rows and 16 columns (an ``operator``, a ``MatrixOperator`` or a
    subclass), y ``[2, num_blocks, 2]``, x ``[2, 1, 4, 4]``."""
    gen = torch.Generator().manual_seed(seed)
    A = operator(_draw(gen, 2 * num_blocks, 16) / 4, (1, 4, 4), num_blocks)
    return A, _draw(gen, 2, num_blocks, 2), _draw(gen, 2, 1, 4, 4)


# The minibatch checks use B = 7 blocks and S of b = 3: B/b = 2.33 is no whole number, so B // b = 2 is caught.
B, S = 7, [1, 4, 5]
b = len(S)
INTEGER_DIVISION = (f"you computed B/b with integer division: B // b = {B} // {b} = {B // b}, but "
                    f"B/b = {B}/{b} = {B / b:.4g}. Divide as real numbers.")


def _smooth(x: torch.Tensor, sigma) -> torch.Tensor:
    """A toy denoiser D(x, σ): a 3x3 box average blended in by σ ∈ [0, 1]."""
    box = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return (1 - sigma) * x + sigma * box
