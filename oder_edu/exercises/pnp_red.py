"""Notebook 02 · PnP and RED: the RED step, the minibatch gradient of online RED and a denoiser's local
Lipschitz constant."""

from __future__ import annotations

import torch

from ..physics import LeastSquares
from ._grading import (B, INTEGER_DIVISION, S, _check, _compare, _diagnose, _draw, _hints, _number, _power_method,
                       _random_problem, _relative_error, _smooth, _tensor, b)
from ._recording import RecordingMatrix, only_blocks
from .questions import _question


# --- red_update -----------------------------------------------------------------------------------------------------
def check_red_update(red_update) -> bool:
    """``red_update(x, grad, D, gamma, tau, sigma) -> x⁺``: the RED step x⁺ = x − γ(∇g(x) + τ(x − D(x, σ)))
    (Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017).

    Verifies x⁺ on x ``[2, 1, 8, 8]`` with a toy denoiser (a box filter blended in by σ), to 1e-5. Diagnoses the
    residual's wrong sign (D(x, σ) − x), a missing τ, γ on the data term only, and a step uphill."""
    gen = torch.Generator().manual_seed(0)
    x, grad = _draw(gen, 2, 1, 8, 8, law=torch.rand), _draw(gen, 2, 1, 8, 8)
    gamma, tau, sigma = 0.3, 0.7, 0.5
    R = x - _smooth(x, sigma)
    return _compare("red_update", red_update, (x, grad, _smooth, gamma, tau, sigma), x - gamma * (grad + tau * R), [
        (x - gamma * (grad - tau * R),
         "the prior pulls the wrong way: RED's residual is R(x) = x − D(x, σ), not D(x, σ) − x."),
        (x - gamma * (grad + R), "the prior term is missing its weight τ."),
        (x - gamma * grad - tau * R, "the step γ multiplies both terms: x − γ(∇g + τR)."),
        (x + gamma * (grad + tau * R), "your step goes uphill: subtract γ(∇g + τR), do not add it."),
    ], "x − γ(∇g + τR(x))")


_hints(
    "red_update",
    idea="RED treats the denoiser residual R(x) = x − D(x, σ) as the gradient of the prior: one step moves "
         "against the data gradient plus τ times that residual, and γ scales the whole sum.",
    steps="denoise x once with D(x, sigma), subtract the result from x to get R(x), weight it by tau, add grad, "
          "and move x against that sum by gamma.",
    solution='''
def red_update(x, grad, D, gamma, tau, sigma):
    return x - gamma * (grad + tau * (x - D(x, sigma)))''')


# --- minibatch_gradient ---------------------------------------------------------------------------------------------
def check_minibatch_gradient(minibatch_gradient) -> bool:
    """``minibatch_gradient(A, y, x, blocks) -> [N, C, H, W]``: the online estimate
    (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over the b blocks S (Liu et al., NeurIPS 2022).

    Verifies the estimate with B = 7 and S = {1, 4, 5} (b = 3) against ``LeastSquares.grad``, to 1e-5, and that A
    was asked for the blocks in S only (A records them). Diagnoses a missing B/b, ``B // b`` (integer division: 2,
    not 2.33), b/B in its place, the full gradient, and the right value computed from all B blocks and sliced."""
    A, y, x = _random_problem(B, operator=RecordingMatrix)
    g, blocks = LeastSquares(A, y), torch.tensor(S)
    want = g.grad(x, blocks)
    mistakes = [
        (want * (B // b) / (B / b), INTEGER_DIVISION),
        (want / (B / b), f"your estimate is b/B = {b}/{B} of the right one: without the factor B/b its "
                         f"average over random S is not ∇g."),
        (want * (b / B) ** 2, "you scaled by b/B; the factor is B/b (fewer blocks must count for more)."),
        (g.grad(x), "that is the full gradient over all B blocks; use only the blocks in S."),
    ]

    def attempt():
        A.clear()
        got = _tensor(minibatch_gradient(A, y, x, blocks), "minibatch_gradient", want.shape)
        error = _relative_error(got, want)
        otherwise = f"relative error {error:.2g} against (B/b) Σ_(i∈S) A_iᵀ(A_i x − y_i)."
        return _diagnose(got, want, mistakes, otherwise) or only_blocks(A, blocks, "minibatch_gradient")
    return _check("minibatch_gradient", minibatch_gradient, attempt)


_hints(
    "minibatch_gradient",
    idea="the estimate uses only the blocks in S: residual and back-projection are computed on those b blocks, "
         "and the sum is scaled by B/b so that its average over random S is the full gradient ∇g.",
    steps="A.forward(x, blocks) minus y[:, blocks] is the residual of the chosen blocks; A.adjoint(…, blocks) "
          "back-projects it; B is A.num_blocks and b is len(blocks). Multiply by B/b computed with true division.",
    solution='''
def minibatch_gradient(A, y, x, blocks):
    residual = A.forward(x, blocks) - y[:, blocks]
    return A.num_blocks / len(blocks) * A.adjoint(residual, blocks)''')


# --- lipschitz_estimate ---------------------------------------------------------------------------------------------
def check_lipschitz_estimate(lipschitz_estimate) -> bool:
    """``lipschitz_estimate(R, x, num_iter) -> float``: ||∂R/∂x||₂ at ``x`` by power iteration on JᵀJ with
    autograd (``torch.func.jvp``/``vjp``), a lower bound on R's Lipschitz constant.

    Verifies the number returned with num_iter = 200 for a linear and a tanh map at x ``[1, 1, 5, 5]`` against the
    spectral norm of their dense Jacobians, to 1e-3. Diagnoses ||J||² instead of ||J||, and 1: the norm of the
    normalized vector instead of that of J applied to it, a value below ||J|| (J alone iterated: an eigenvalue), and one
    above it (a vector not normalized)."""
    gen = torch.Generator().manual_seed(0)
    x, W, M = _draw(gen, 1, 1, 5, 5), _draw(gen, 25, 25) / 5, _draw(gen, 25, 25) / 10
    linear = lambda z: (z.flatten(1) @ M.T).reshape(z.shape)  # noqa: E731
    nonlinear = lambda z: torch.tanh(z.flatten(1) @ W.T).reshape(z.shape)  # noqa: E731

    def attempt():
        for R in (linear, nonlinear):
            J = torch.autograd.functional.jacobian(R, x).reshape(x.numel(), x.numel())
            want = torch.linalg.matrix_norm(J, ord=2).item()
            got = _number(lipschitz_estimate(R, x.clone(), 200), "lipschitz_estimate")
            _power_method(got, want, want**2, f"you returned ||J||² = {got:.4g}; the Lipschitz estimate is its root, "
                          f"{want:.4g}.", "J", _off_the_norm(got, want))
    return _check("lipschitz_estimate", lipschitz_estimate, attempt)


def _off_the_norm(got: float, want: float) -> str:
    """What a power method that missed ||J||₂ is told: below it, it has not found the top singular vector (or
    iterated J alone, which finds an eigenvalue); above it, it did not normalize."""
    if got < want:
        return (f"you returned {got:.4g}, below ||J||₂ = {want:.4g}: the iteration has not found the top singular "
                f"vector. Iterating J alone (JVPs only) tends to J's largest eigenvalue in modulus, which for a "
                f"non-symmetric J is smaller than its largest singular value: iterate JᵀJ.")
    return (f"you returned {got:.4g}, above ||J||₂ = {want:.4g}, which ||J v|| cannot exceed for a unit vector v: "
            f"normalize v before the last product.")


_hints(
    "lipschitz_estimate",
    idea="||J||₂ is the square root of the largest eigenvalue of JᵀJ: run the power iteration on JᵀJ, applying J "
         "and Jᵀ with automatic differentiation instead of ever forming the matrix.",
    steps="start from a random unit vector v shaped like x; J v is the second output of torch.func.jvp(R, (x,), "
          "(v,)); Jᵀu comes from the function that torch.func.vjp(R, x) returns; normalize JᵀJv at each step; at "
          "the end return ||J v|| (not its square) as a float.",
    solution='''
import torch
from torch.func import jvp, vjp


def lipschitz_estimate(R, x, num_iter=20):
    v = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0)).to(x.device)
    v = v / v.norm()
    _, pullback = vjp(R, x)  # u -> Jᵀu at this x
    for _ in range(num_iter):
        w = pullback(jvp(R, (x,), (v,))[1])[0]
        v = w / w.norm()
    return jvp(R, (x,), (v,))[1].norm().item()''')


# --- questions ------------------------------------------------------------------------------------------------------
_question(
    "minibatch_constant",
    rtol=0.25,
    explanation="L_b = min((B/b)·L_g, B·max_i ||A_i||²) bounds the steepness of (B/b)·A_SᵀA_S for every S. CT "
                "angles all see the image's low frequencies, where AᵀA is largest: each angle holds a similar share "
                "of L_g, so B·max_i ||A_i||² is only a modest factor above L_g, far below (B/b)·L_g — and L_b with "
                "it. An MRI coil sees mostly the part of the image near it, where it alone can be as steep as all "
                "coils together: B·max_i ||A_i||² is then far above L_g and L_b is the worst case (B/b)·L_g.")

_question(
    "time_per_iteration",
    choices={"a": "to a quarter, since a quarter of the blocks are evaluated",
             "b": "by less than that: only the part of an iteration that works on blocks shrinks",
             "c": "not at all: the time of an iteration does not depend on the blocks"},
    answer="b",
    feedback={"a": "the blocks are not all of an iteration: the denoiser pass, the momentum and the residual "
                   "bookkeeping cost the same at every b.",
              "c": "the block evaluations do cost time — the bare solver timing shows it — but they share the "
                   "iteration with work that does not shrink."},
    explanation="An iteration costs a fixed part F (the denoiser, vector arithmetic) plus a part P·b/B that scales "
                "with the blocks, so its time falls to (F + P·b/B)/(F + P), never below F/(F + P). The block "
                "evaluations fall exactly by b/B, on any machine; time falls by the share of the iteration the "
                "blocks hold — on this problem, with a CNN denoiser on a small image, a modest share. Notebook 04 "
                "measures F and P for training.")
