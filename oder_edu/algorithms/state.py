"""What every solver streams: one ``State`` per iteration, produced by one shared loop.

Each solver in this package is written as an infinite generator of new iterates
(``updates``); ``iterate`` turns it into the public stream. It measures the fixed-point
residual and the compute time, applies the divergence guard, and stops at ``max_iter`` or
when the residual falls below ``tol``. Writing this once keeps every solver a few lines of
math and makes all of them stop, time and fail the same way.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..physics import LeastSquares, make_sampler
from ..physics.samplers import batch_size_for
from .step import divergence_reason


@dataclass
class State:
    """One iteration of a solver.

    - ``iteration``: k = 1, 2, ... (the state after k updates of ``x0``);
    - ``x``: the iterate x_k, ``[N, C, H, W]``;
    - ``residual``: the relative fixed-point change ||x_k - x_{k-1}|| / ||x_{k-1}|| (norms
      over the whole batch; divided by ||x_k|| instead when x_{k-1} = 0, so the first step
      from zeros reads 1);
    - ``seconds``: compute time spent inside the solver since it started (the time the
      caller spends between iterations, e.g. drawing, is not counted);
    - ``objective``: the objective at x_k summed over the batch, where the method minimizes
      one (gradient descent, Tikhonov, FISTA-TV), else None;
    - ``blocks``: the block set S drawn for this iteration by online methods, else None;
    - ``diverged`` / ``message``: set on the last state of a stream ended by the divergence
      guard; the message names the step size that is safe.
    """

    iteration: int
    x: torch.Tensor
    residual: float
    seconds: float
    objective: float | None = None
    blocks: torch.Tensor | None = None
    diverged: bool = False
    message: str = ""


def check_stopping(max_iter, tol) -> None:
    """ValueError unless ``max_iter`` is an int >= 1 and ``tol`` a finite number >= 0."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")


def momentum(step: Callable, x0: torch.Tensor, accelerate: bool) -> Iterator:
    """Iterates of x_{k+1} = step(s_k), the update shared by gradient descent, PnP-PGD,
    RED and FISTA-TV. ``step(s)`` returns ``(x_next, blocks)``.

    Without acceleration s_k = x_k. With it, s_k is Nesterov's extrapolation in the form of
    FISTA (Beck & Teboulle, SIAM J. Imaging Sci. 2009):
    t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2,  s_{k+1} = x_{k+1} + (t_k - 1)/t_{k+1} (x_{k+1} - x_k).
    Yields ``(x_{k+1}, {"blocks": blocks})`` forever.
    """
    x, s, t = x0, x0, 1.0
    while True:
        x_next, blocks = step(s)
        if accelerate:
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            s = x_next + ((t - 1.0) / t_next) * (x_next - x)
            t = t_next
        else:
            s = x_next
        x = x_next
        yield x, {"blocks": blocks}


def iterate(
    updates: Iterator,
    x0: torch.Tensor,
    *,
    max_iter: int,
    tol: float,
    setting: str,
    advice: Callable[[], str],
    objective: Callable[[torch.Tensor], float] | None = None,
) -> Iterator[State]:
    """The public stream of a solver: ``State`` per item of ``updates``.

    ``updates`` yields ``(x_k, extras)`` with ``extras`` a dict of further State fields
    (e.g. ``blocks``). Stops after ``max_iter`` states, or after the first state whose
    residual is below ``tol``. If the divergence guard fires (``step.divergence_reason``),
    the last state has ``diverged=True`` and a ``message`` built from ``setting`` (the step
    size used, e.g. ``"γ = 0.5"``) and ``advice()`` (e.g. ``"try γ ≤ 0.048 = ..."``, computed
    only then); the same message is issued as a RuntimeWarning and the stream ends.
    On divergence ``x`` is the offending iterate if it is finite, else the last finite one.
    ``max_iter`` and ``tol`` are checked here, at the call, not at the first ``next``.
    """
    check_stopping(max_iter, tol)
    return _stream(updates, x0, max_iter, tol, setting, advice, objective)


def _stream(updates, x0, max_iter, tol, setting, advice, objective):
    seconds, first_step = 0.0, None
    x_prev = x0
    prev_norm = x0.norm().item()
    started = time.perf_counter()
    for k in range(1, max_iter + 1):
        # Solvers never need autograd; a learned denoiser would otherwise grow a graph
        # through every iteration. Grad mode is entered and left around each update only,
        # so the caller's code between iterations keeps its own mode.
        with torch.no_grad():
            x, extras = next(updates)
            step = (x - x_prev).norm().item()  # .item() also waits for the GPU: honest seconds
            norm = x.norm().item()
            denominator = prev_norm if prev_norm > 0 else norm
            residual = step / denominator if denominator > 0 else (0.0 if step == 0 else math.inf)
            if first_step is None and step > 0:
                first_step = step
            reason = divergence_reason(step, first_step, prev_norm)
            value = objective(x) if objective is not None and reason is None else None
        seconds += time.perf_counter() - started
        if reason is not None:
            message = f"iterates diverged at iteration {k} ({reason}) with {setting}; {advice()}"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            last = x if math.isfinite(norm) else x_prev
            yield State(k, last, residual, seconds, None, diverged=True, message=message, **extras)
            return
        yield State(k, x, residual, seconds, value, **extras)
        if residual < tol:
            return
        started = time.perf_counter()
        x_prev, prev_norm = x, norm


# --- shared set-up -------------------------------------------------------------------------
def setup(A, y: torch.Tensor, x0: torch.Tensor | None):
    """The data term ``LeastSquares(A, y)`` and a checked copy-free start ``x0``.

    ``x0=None`` starts from zeros ``[N, C, H, W]`` (the batch, device and real precision of
    ``y``): no solver then depends on how well Aᵀy happens to be scaled. A given ``x0`` must
    have A's image shape and ``y``'s batch, device and precision (ValueError otherwise).
    """
    g = LeastSquares(A, y)  # checks y's shape, dtype and finiteness
    real = y.real.dtype if y.is_complex() else y.dtype
    if x0 is None:
        return g, torch.zeros(y.shape[0], *A.image_shape, dtype=real, device=y.device)
    A.check_image(x0)
    if x0.shape[0] != y.shape[0]:
        raise ValueError(f"x0 has batch {x0.shape[0]} but y has batch {y.shape[0]}; expected them equal")
    if x0.dtype != real or x0.device != y.device:
        raise ValueError(
            f"x0 must have y's precision and device ({real}, {y.device}), got ({x0.dtype}, {x0.device})"
        )
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or Inf; expected a finite start image")
    return g, x0.detach()


def gradient_oracle(g, batch_ratio: float, sampler, generator: torch.Generator | None):
    """``x -> (∇g(x), blocks)``: the full gradient when ``batch_ratio == 1`` (blocks None),
    else the unbiased minibatch estimate (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over S drawn by
    ``sampler`` each call (online PnP: Sun, Wohlberg, Kamilov, IEEE TCI 2019; online RED:
    Wu, Sun, Matlock, Liu, Tian, Kamilov, "SIMBA", IEEE J. Sel. Topics Signal Process.
    2020). ``sampler`` is a name for ``make_sampler`` ('uniform', 'stratified', 'cyclic')
    or a callable ``generator -> blocks`` (which then decides b itself; ``batch_ratio`` is
    only checked).
    """
    if isinstance(batch_ratio, bool) or not isinstance(batch_ratio, (int, float)):
        raise TypeError(f"batch_ratio must be a number in (0, 1], got {type(batch_ratio).__name__}")
    batch_size_for(g.A.num_blocks, batch_ratio)  # ValueError unless 0 < batch_ratio <= 1
    if isinstance(sampler, str):
        draw = make_sampler(sampler, g.A.num_blocks, batch_ratio)  # checks the name
        if batch_ratio == 1:
            return lambda x: (g.grad(x), None)
    elif callable(sampler):
        draw = sampler  # it decides b itself
    else:
        raise TypeError(f"sampler must be a name or a callable generator -> blocks, got {type(sampler).__name__}")

    def oracle(x):
        blocks = draw(generator)
        return g.grad(x, blocks), blocks

    return oracle
