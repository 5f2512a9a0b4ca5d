"""Predict-then-explain questions: the student writes a guess *before* the cell that measures the answer, then
``grade_prediction(name, predicted, measured)`` (a number, or a dict of numbers) or ``grade_choice(name, answer)``
(a letter) compares, prints one verdict line and the explanation, and returns True, False, or None when no guess
was written (a question left open never stops a notebook). Unlike the exercises, a question has no hint tiers
and no hidden answer: the explanation comes with every verdict, right or wrong.

Each notebook's questions are registered in its module beside its exercises (``_question``); ``QUESTIONS``
collects them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

QUESTIONS: dict[str, "Question"] = {}


@dataclass(frozen=True)
class Question:
    """One question: ``explanation`` (printed with every verdict); a numeric one has ``rtol`` (how close a
    prediction counts as right, relative); a choice has ``choices`` (letter -> option), ``answer`` (a letter) and
    ``feedback`` (letter -> why that option is wrong)."""

    explanation: str
    rtol: float | None = None
    choices: dict[str, str] = field(default_factory=dict)
    answer: str | None = None
    feedback: dict[str, str] = field(default_factory=dict)


def _question(name: str, explanation: str, *, rtol: float | None = None, choices: dict | None = None,
              answer: str | None = None, feedback: dict | None = None) -> None:
    """Register question ``name``: numeric (``rtol``) or a choice (``choices``, ``answer``, ``feedback`` for
    every wrong letter)."""
    if name in QUESTIONS:
        raise ValueError(f"question {name!r} is registered twice")
    choices, feedback = dict(choices or {}), dict(feedback or {})
    if (rtol is None) == (not choices):
        raise ValueError(f"question {name!r} must be numeric (rtol) or a choice (choices), not both or neither")
    if choices and (answer not in choices or set(feedback) != set(choices) - {answer}):
        raise ValueError(f"question {name!r}: the answer must be a choice and every other choice needs feedback")
    QUESTIONS[name] = Question(explanation, rtol, choices, answer, feedback)


def _registered(name) -> Question:
    if not isinstance(name, str) or name not in QUESTIONS:
        raise ValueError(f"no question named {name!r}; the questions are: {', '.join(sorted(QUESTIONS))}")
    return QUESTIONS[name]


def _as_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def grade_prediction(name: str, predicted, measured) -> bool | None:
    """Compare ``predicted`` with ``measured`` (numbers, or dicts with the same keys) within the question's rtol;
    print the verdict and the explanation. None (nothing predicted yet, or a dict of Nones) returns None."""
    question = _registered(name)
    if question.rtol is None:
        raise ValueError(f"{name!r} is a choice question: use grade_choice")
    if isinstance(measured, dict):
        if not isinstance(predicted, dict) and predicted is not None:
            raise TypeError(f"predict a dict with the keys {sorted(measured)}, got {type(predicted).__name__}")
        predicted = dict(predicted or {})
        if set(predicted) - set(measured):
            raise ValueError(f"unknown keys {sorted(set(predicted) - set(measured))}; expected {sorted(measured)}")
        pairs = {key: (predicted.get(key), measured[key]) for key in measured}
    else:
        pairs = {"": (predicted, measured)}
    if all(guess is None for guess, _ in pairs.values()):
        shown = ", ".join(f"{key + ': ' if key else ''}{_as_number(m, 'measured'):.3g}"
                          for key, (_, m) in pairs.items())
        print(f"? {name}: no prediction written — next time, guess before you run the measurement. "
              f"Measured: {shown}.\n  Why: {question.explanation}")
        return None
    right, parts = True, []
    for key, (guess, value) in pairs.items():
        value = _as_number(value, "measured")
        if guess is None:
            right = False
            parts.append(f"{key + ': ' if key else ''}no guess, measured {value:.3g}")
            continue
        guess = _as_number(guess, f"your prediction{' for ' + repr(key) if key else ''}")
        close = abs(guess - value) <= question.rtol * abs(value)
        right &= close
        parts.append(f"{key + ': ' if key else ''}you predicted {guess:.3g}, measured {value:.3g}"
                     f"{'' if close else ' (off by more than ' + format(question.rtol, '.0%') + ')'}")
    print(f"{'✓' if right else '✗'} {name}: {'; '.join(parts)}.\n  Why: {question.explanation}")
    return right


def grade_choice(name: str, answer) -> bool | None:
    """Grade the letter ``answer`` of choice question ``name``: print the verdict, why a wrong choice is wrong,
    and the explanation. None (not answered yet) returns None."""
    question = _registered(name)
    if not question.choices:
        raise ValueError(f"{name!r} is a numeric question: use grade_prediction")
    letters = ", ".join(repr(letter) for letter in question.choices)
    if answer is None:
        print(f"? {name}: no answer yet — set it to one of {letters} before running the cell that measures it.\n"
              f"  Why: {question.explanation}")
        return None
    letter = answer.strip().lower().strip("()") if isinstance(answer, str) else answer
    if letter not in question.choices:
        raise ValueError(f"answer with one of {letters}, got {answer!r}")
    if letter == question.answer:
        print(f"✓ {name}: ({letter}) {question.choices[letter]}\n  Why: {question.explanation}")
        return True
    print(f"✗ {name}: ({letter}) {question.choices[letter]} — {question.feedback[letter]}\n"
          f"  The answer is ({question.answer}): {question.choices[question.answer]}\n  Why: {question.explanation}")
    return False
