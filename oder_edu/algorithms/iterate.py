"""One vocabulary for every iteration in the package: the solvers of ``algorithms`` and the
fixed-point solvers of ``deq`` stream the same ``State``s, measure the same residual and stop
on the same divergence rule.

A method is written as an infinite generator of *updates* ``(Tx, x, extras)``: the map's
value ``Tx = T(x)`` at the point ``x`` it was applied to (for momentum methods, the
extrapolated point), and further ``State`` fields. ``stream`` turns updates into states; the
caller decides when to stop, what to show and whether to warn (``iterate``) or raise
(``solve``).

- **Residual.** ``max_n ||T(x)_n - x_n|| / ||T(x)_n||`` over the images n of the batch: how far
  the point is from being a fixed point, relative to the image (0 at a fixed point; 1 for the
  first step from zeros).
- **Divergence.** Non-finite values, or the step ``||T(x) - x||`` -- averaged over the last few
  iterations, so that one lucky small step of a stochastic iteration does not set the scale --
  grown ``GROWTH`` times over its smallest value so far *while* the iterate has grown ``SCALE``
  times over its size at that best point (or at the start, if larger). Either alone misfires: a
  stochastic or accelerated step can jump without the iterate going anywhere, and an iterate
  started from zeros or a faint x0 grows while converging.
- **Momentum.** Nesterov's extrapolation in FISTA's form with adaptive restart: t resets to 1
  whenever the new step points against the progress, <T(s) − s, T(s) − x> < 0 (the gradient
  restart of O'Donoghue & Candès, Found. Comput. Math. 2015), or against the previous step,
  <T(s_k) − s_k, T(s_{k−1}) − s_{k−1}> < 0. The first keeps the speed-up on convex problems; the
  second stops momentum from feeding an oscillation (a map that flips the sign of the error every
  step), which the first cannot see.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .. import checks

GROWTH = 10.0
SCALE = 2.0


class NonContractiveError(ValueError):
    """An iteration diverged: the map is not a contraction here (a step size too large?)."""


@dataclass
class State:
    """One iteration of a solver.

    - ``iteration``: k = 1, 2, ... (the state after k applications of the map);
    - ``x``: the iterate x_k = T(s_{k-1}), ``[N, ...]``;
    - ``residual``: ``max_n ||T(s)_n - s_n|| / ||T(s)_n||`` at the point s the map was applied to;
    - ``seconds``: compute time spent inside the solver since it started (the time the caller
      spends between iterations, e.g. drawing, is not counted);
    - ``objective``: the objective at x_k summed over the batch, for methods that minimize one;
    - ``blocks``: the block set S drawn for this iteration by online methods, else None;
    - ``diverged`` / ``message``: set on the last state of a stream stopped by the divergence rule.
    """

    iteration: int
    x: torch.Tensor
    residual: float
    seconds: float
    objective: float | None = None
    blocks: torch.Tensor | None = None
    diverged: bool = False
    message: str = ""


@dataclass
class SolverTrace:
    """What ``solve`` did: the residual of every iteration, their number, and whether the residual fell
    below ``tol`` (the rule on which the stream stops)."""

    residuals: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False

    def __repr__(self) -> str:
        last = f"{self.residuals[-1]:.2e}" if self.residuals else "n/a"
        return f"SolverTrace(iterations={self.iterations}, converged={self.converged}, residual={last})"


def apply(T, x: torch.Tensor, what: str = "the map") -> torch.Tensor:
    """``T(x)``, checked to be a tensor of x's shape (a broadcast would corrupt the iteration)."""
    Tx = T(x)
    if not torch.is_tensor(Tx) or Tx.shape != x.shape:
        got = tuple(Tx.shape) if torch.is_tensor(Tx) else type(Tx).__name__
        raise ValueError(f"{what} must return a tensor of the input shape {tuple(x.shape)}, got {got}")
    return Tx


def fixed_point_updates(step: Callable, x0: torch.Tensor, accelerate: bool = False) -> Iterator:
    """Updates of x_{k+1} = T(s_k): ``step(s)`` returns ``(T(s), extras)``.

    Without acceleration s_k = x_k. With it, s_k is Nesterov's extrapolation in FISTA's form
    (Beck & Teboulle, SIAM J. Imaging Sci. 2009), t_{k+1} = (1 + sqrt(1 + 4 t_k²))/2,
    s_{k+1} = x_{k+1} + (t_k − 1)/t_{k+1} (x_{k+1} − x_k), restarted (t = 1, s_{k+1} = x_{k+1})
    when the step T(s_k) − s_k points against the progress x_{k+1} − x_k or against the last step.
    """
    x, s, t, d_last = x0, x0, 1.0, None
    while True:
        x_next, extras = step(s)
        yield x_next, s, extras
        if accelerate:
            d = x_next - s
            if (d * (x_next - x)).sum().item() < 0 or (d_last is not None and (d * d_last).sum().item() < 0):
                t = 1.0  # the step points back (gradient restart) or reversed the last one (oscillation)
            d_last = d
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            s = x_next + ((t - 1.0) / t_next) * (x_next - x)
            t = t_next
        else:
            s = x_next
        x = x_next


def stream(updates: Iterator, x0: torch.Tensor, max_iter: int, tol: float, describe: Callable[[], str],
           objective: Callable | None = None) -> Iterator[State]:
    """States of ``updates`` until ``max_iter``, the first residual below ``tol``, or divergence
    (a last state with ``diverged=True`` and the message ``describe()``, computed only then).

    Updates run without autograd (a learned denoiser would otherwise grow a graph through every
    iteration); ``torch.autograd.grad`` inside them still works. On divergence ``x`` is the
    offending iterate if it is finite, else the last finite one.
    """
    max_iter = checks.integer("max_iter", max_iter, 1)
    tol = checks.number("tol", tol, minimum=0)
    return _states(updates, x0, max_iter, tol, describe, objective)


def _states(updates, x0, max_iter, tol, describe, objective):
    seconds, smallest, smoothed = 0.0, math.inf, None
    reference = _norms(x0).max().item() if torch.is_tensor(x0) else 0.0
    last = x0
    started = time.perf_counter()
    for k in range(1, max_iter + 1):
        with torch.no_grad():
            Tx, x, extras = next(updates)
            step, size = _norms(Tx - x), _norms(Tx)
            values = torch.stack([step.max(), size.max(), (step / size).nan_to_num(0.0, math.inf).max()]).tolist()
            step_max, size_max, residual = values  # one host sync per iteration, which also times a GPU honestly
            if k == 1:
                reference = max(reference, size_max)
            finite = math.isfinite(step_max) and math.isfinite(size_max)
            smoothed = step_max if smoothed is None else 0.5 * (smoothed + step_max)
            diverged = not finite or (smoothed > GROWTH * smallest and size_max > SCALE * reference)
            if smoothed < smallest:  # the best point so far sets both scales
                smallest, reference = smoothed, max(reference, size_max)
            value = objective(Tx) if objective is not None and not diverged else None
        seconds += time.perf_counter() - started
        if diverged:
            reason = "non-finite values" if not finite else (
                f"the step grew {smoothed / max(smallest, 1e-300):.3g}× over its smallest value while the "
                f"iterate grew {size_max / max(reference, 1e-300):.3g}× over its size at the smallest step")
            message = f"iterates diverged at iteration {k} ({reason}); {describe()}"
            yield State(k, Tx if finite else last, residual, seconds, None, diverged=True, message=message, **extras)
            return
        yield State(k, Tx, residual, seconds, value, **extras)
        if residual < tol:
            return
        last = Tx
        started = time.perf_counter()


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def iterate(updates: Iterator, x0: torch.Tensor, *, max_iter: int, tol: float, setting: str,
            advice: Callable[[], str], objective: Callable | None = None) -> Iterator[State]:
    """The public stream of an ``algorithms`` solver: ``stream``, and a RuntimeWarning with the
    message on divergence. ``setting`` (e.g. ``"γ = 0.5"``) and ``advice()`` (a step that is
    safe, e.g. ``"try γ ≤ 0.048 = ..."``) make the message."""
    states = stream(updates, x0, max_iter, tol, lambda: f"with {setting}; {advice()}", objective)

    def warned():
        for state in states:
            if state.diverged:
                warnings.warn(state.message, RuntimeWarning, stacklevel=3)
            yield state

    return warned()


def solve(updates: Iterator, x0: torch.Tensor, max_iter: int, tol: float,
          advice: str = "reduce the step size") -> tuple[torch.Tensor, SolverTrace]:
    """Run ``updates`` to the end of their ``stream``: ``(x, trace)``, the last iterate and what
    happened. Divergence raises ``NonContractiveError`` (a DEQ must not train on garbage)."""
    trace, state = SolverTrace(), None
    for state in stream(updates, x0, max_iter, tol, lambda: f"the map is not contractive: {advice}"):
        if state.diverged:
            raise NonContractiveError(state.message)
        trace.residuals.append(state.residual)
    trace.iterations = len(trace.residuals)
    trace.converged = state.residual < tol  # the stream's own stopping rule
    return state.x, trace
