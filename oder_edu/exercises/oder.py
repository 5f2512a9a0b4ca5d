"""Notebook 04 · ODER: the expected minibatch gradient, ODER's map T_S and its fixed point for one block set."""

from __future__ import annotations

import math

import torch

from ..physics import LeastSquares
from ._grading import (B, INTEGER_DIVISION, S, _check, _compare, _diagnose, _hints, _random_problem,
                       _relative_error, _smooth, _tensor, b)
from ._recording import RecordingMatrix, only_blocks
from .questions import _question


# --- expected_minibatch_gradient ------------------------------------------------------------------------------------
def check_expected_minibatch_gradient(expected_minibatch_gradient) -> bool:
    """``expected_minibatch_gradient(A, y, x, batch_size) -> [N, C, H, W]``: the average over all C(B, b) subsets S
    of (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i), exactly ∇g(x) (ODER's estimate is unbiased); checked with B = 7, b = 3.

    Verifies the value against ∇g(x) to 1e-5 and, since ∇g(x) itself has that value, that every one of the 35
    block sets of size 3 was used (A records them). Diagnoses a missing B/b, ``B // b``, a sum instead of an
    average, and the full gradient computed without drawing minibatches (``A.adjoint(A.forward(x) − y)``)."""
    A, y, x = _random_problem(B, operator=RecordingMatrix)
    want, subsets = LeastSquares(A, y).grad(x), math.comb(B, b)
    summed = f"you summed over the {subsets} subsets; average instead."
    mistakes = [
        (want * (B // b) / (B / b), INTEGER_DIVISION),
        (want / (B / b), f"your average is b/B = {b}/{B} of ∇g(x): each subset's sum needs the factor B/b."),
        (want * subsets, summed), (want * subsets / (B / b), summed),
    ]

    def attempt():
        A.clear()
        got = _tensor(expected_minibatch_gradient(A, y, x, b), "expected_minibatch_gradient", want.shape)
        problem = _diagnose(got, want, mistakes, f"relative error {_relative_error(got, want):.2g} against ∇g(x).")
        drawn = {tuple(sorted(S.tolist())) for S in A.used if S is not None and S.numel() == b}
        if problem or len(drawn) == subsets:
            return problem
        return (f"your result is ∇g(x), but your function used {len(drawn)} of the {subsets} block sets S of size "
                f"b = {b}: average the minibatch estimate over every one of them (A.forward and A.adjoint "
                f"restricted to S).")
    return _check("expected_minibatch_gradient", expected_minibatch_gradient, attempt)


_hints(
    "expected_minibatch_gradient",
    idea="average the minibatch estimate over every block set S of size b. Each block lies in the same share b/B "
         "of those sets, which is exactly what the factor B/b undoes — so the average is ∇g.",
    steps="itertools.combinations(range(A.num_blocks), batch_size) lists the sets (make each a tensor); for each,"
          " compute the minibatch estimate with its factor B/b (true division) and add it to a running total; "
          "divide the total by the number of sets.",
    solution='''
import itertools

import torch


def expected_minibatch_gradient(A, y, x, batch_size):
    B, total, count = A.num_blocks, 0, 0
    for S in itertools.combinations(range(B), batch_size):
        S = torch.tensor(S)
        total = total + B / batch_size * A.adjoint(A.forward(x, S) - y[:, S], S)
        count += 1
    return total / count''')


# --- oder_map -------------------------------------------------------------------------------------------------------
def check_oder_map(oder_map) -> bool:
    """``oder_map(x, A, y, D, gamma, tau, sigma, blocks) -> x⁺``: ODER's forward map
    T_S(x) = x − γ((B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) + τ(x − D(x, σ))) (Liu et al., NeurIPS 2022).

    Verifies T_S(x) with B = 7, S = {1, 4, 5} and a toy denoiser, to 1e-5, and that A was asked for the blocks in
    S only (A records them). Diagnoses ``B // b``, a missing B/b, the full-batch RED map, the residual's wrong
    sign, and the right value computed from all B blocks (``A.forward(x)[:, S]``)."""
    A, y, x = _random_problem(B, seed=3, operator=RecordingMatrix)
    g, blocks, (gamma, tau, sigma) = LeastSquares(A, y), torch.tensor(S), (0.2, 0.5, 0.8)
    grad_S, R = g.grad(x, blocks), x - _smooth(x, sigma)
    want = x - gamma * (grad_S + tau * R)
    mistakes = [
        (x - gamma * (grad_S * (B // b) / (B / b) + tau * R), INTEGER_DIVISION),
        (x - gamma * (grad_S / (B / b) + tau * R),
         f"the minibatch gradient lacks the factor B/b = {B}/{b}, so T_S is biased towards the prior."),
        (x - gamma * (g.grad(x) + tau * R), "that is the full-batch RED map; ODER uses only the blocks in S."),
        (x - gamma * (grad_S - tau * R),
         "the prior pulls the wrong way: the residual is R(x) = x − D(x, σ), not D(x, σ) − x."),
    ]

    def attempt():
        A.clear()
        got = _tensor(oder_map(x, A, y, _smooth, gamma, tau, sigma, blocks), "oder_map", want.shape)
        error = _relative_error(got, want)
        return (_diagnose(got, want, mistakes, f"relative error {error:.2g} against T_S(x).")
                or only_blocks(A, blocks, "oder_map"))
    return _check("oder_map", oder_map, attempt)


_hints(
    "oder_map",
    idea="ODER's map is the RED step with ∇g replaced by the minibatch estimate over the blocks S: the data term "
         "from the blocks in S only, scaled by B/b, plus τ times the denoiser residual.",
    steps="compute the minibatch gradient as in notebook 02 (residual and back-projection on `blocks`, times "
          "A.num_blocks / len(blocks) with true division), add tau times (x − D(x, sigma)), and move x against "
          "the sum by gamma.",
    solution='''
def oder_map(x, A, y, D, gamma, tau, sigma, blocks):
    grad = A.num_blocks / len(blocks) * A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)
    return x - gamma * (grad + tau * (x - D(x, sigma)))''')


# --- subset_fixed_point ---------------------------------------------------------------------------------------------
def check_subset_fixed_point(subset_fixed_point) -> bool:
    """``subset_fixed_point(A, y, blocks, mu) -> x*_S``: the fixed point of ODER's map with one block set S and
    the prior R(x) = x: the minimizer of (B/b)·½ Σ_{i∈S} ||A_i x − y_i||² + (μ/2)||x||².

    Verifies x*_S with B = 7, S = {1, 4, 5} and μ = 0.3 against a direct solve, to 1e-4 (an iterative answer must
    converge that far). Diagnoses ``B // b``, a missing B/b, and the full-data solution x*."""
    A, y, _ = _random_problem(B, seed=4)
    blocks, mu = torch.tensor(S), 0.3

    def solve(blocks, scale):
        n = math.prod(A.image_shape)
        M = A.matrix().reshape(A.num_blocks, -1, n)[blocks].reshape(-1, n)
        rhs = scale * y[:, blocks].reshape(y.shape[0], -1) @ M
        x = torch.linalg.solve(scale * M.T @ M + mu * torch.eye(n, dtype=M.dtype), rhs.T).T
        return x.reshape(y.shape[0], *A.image_shape)

    return _compare("subset_fixed_point", subset_fixed_point, (A, y, blocks, mu), solve(blocks, B / b), [
        (solve(blocks, B // b), INTEGER_DIVISION),
        (solve(blocks, 1.0), f"that is the fixed point without the factor B/b = {B}/{b}: the data term must be the "
                             f"unbiased estimate."),
        (solve(torch.arange(B), 1.0), "that is the full-data solution x*; use only the blocks in S."),
    ], "the solution of ((B/b)A_SᵀA_S + μI)x = (B/b)A_Sᵀy_S — if you iterate, run more steps or check the step size",
        rtol=1e-4)


_hints(
    "subset_fixed_point",
    idea="with one fixed block set S and the prior R(x) = x, ODER's map is gradient descent on a strongly convex "
         "quadratic: (B/b)·½ Σ_(i∈S) ||A_i x − y_i||² + (μ/2)||x||². Its fixed point is that quadratic's "
         "minimizer, the solution of ((B/b) A_SᵀA_S + μI) x = (B/b) A_Sᵀ y_S.",
    steps="from zeros, repeat a few thousand gradient steps x ← x − γ((B/b)·A_Sᵀ(A_S x − y_S) + μx), with "
          "A.forward/A.adjoint restricted to `blocks`, B/b by true division and a safe step γ = "
          "1/((B/b)·A.norm()² + mu); or solve the linear system by conjugate gradients.",
    solution='''
import torch


def subset_fixed_point(A, y, blocks, mu, num_iter=3000):
    scale = A.num_blocks / len(blocks)
    gamma = 1.0 / (scale * A.norm() ** 2 + mu)
    x = torch.zeros(y.shape[0], *A.image_shape, dtype=y.dtype, device=y.device)
    for _ in range(num_iter):
        x = x - gamma * (scale * A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks) + mu * x)
    return x''')


# --- questions (for notebook 04) ------------------------------------------------------------------------------------
_question(
    "time_flat_in_B",
    choices={"a": "the blocks are computed in parallel, so more of them come for free",
             "b": "a step's fixed cost (the prior's passes, autograd's bookkeeping) is much larger than its "
                  "per-block work at these B, so the time F + P·B grows too slowly to see",
             "c": "the timer is too coarse to measure a step"},
    answer="b",
    feedback={"a": "on a CPU the blocks of a subset are evaluated one after another; the memory, which does grow "
                   "with B, shows that the work is there.",
              "c": "a step takes a large fraction of a second, far above the timer's resolution; repeated "
                   "measurements agree."},
    explanation="Time per step is about F + P·B: the prior's forward and backward passes and the solver's "
                "bookkeeping (F) do not depend on B, the measurement blocks (P per block) do. While P·B is small "
                "next to F the curve looks flat; widen the range of B and the linear part appears. Memory has no "
                "such floor in the blocks' share, so it shows the growth first.")
