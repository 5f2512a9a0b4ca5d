"""Notebook 03 · deep equilibrium: fixed-point iteration, the implicit backward pass and Anderson's weights."""

from __future__ import annotations

import torch

from ._grading import RTOL, _check, _compare, _draw, _hints, _kind, _relative_error, _tensor, _Wrong
from .questions import _question


def _contraction(seed: int, norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, c)``: the affine contraction z ↦ z Wᵀ + c on ``[1, 8]``, with ||W|| = ``norm``."""
    gen = torch.Generator().manual_seed(seed)
    W = _draw(gen, 8, 8)
    return norm * W / torch.linalg.matrix_norm(W, ord=2), _draw(gen, 1, 8)


# --- fixed_point_iteration ------------------------------------------------------------------------------------------
def check_fixed_point_iteration(fixed_point_iteration) -> bool:
    """``fixed_point_iteration(f, z0, max_iter, tol) -> (z, residuals)``: z_{k+1} = f(z_k), recording
    ||f(z_k) − z_k|| / ||f(z_k)|| and stopping once it is below ``tol`` or after ``max_iter`` iterations (Banach).

    Verifies, for the affine contraction z ↦ z Wᵀ + c with ||W|| = 0.6 on ``[1, 8]`` from z_0 = 0: z against the
    fixed point (to 1e-5), residuals that stop as soon as one falls below tol = 1e-10, start at z_0 (1.0 from
    zeros) and end below where they start, and exactly 5 iterations with max_iter = 5 and tol = 0. Diagnoses a
    return that is no pair, residuals that are no list of numbers, iterating on past tol, residuals not measured
    from z_0, and ignoring max_iter."""
    W, c = _contraction(seed=0, norm=0.6)
    z_star = torch.linalg.solve(torch.eye(8, dtype=torch.float64) - W, c[0])[None]
    f = lambda z: z @ W.T + c  # noqa: E731
    z0 = torch.zeros_like(c)

    def residuals_of(value) -> list[float]:
        try:
            return [float(r) for r in value]
        except (TypeError, ValueError, RuntimeError):
            raise _Wrong("fixed_point_iteration's residuals must be a list of numbers, "
                         f"got {type(value).__name__}") from None

    def attempt():
        out = fixed_point_iteration(f, z0, 200, 1e-10)
        if out is None:
            raise _Wrong("fixed_point_iteration returned None; expected a pair (z, residuals) (a missing `return`?)")
        if not (isinstance(out, tuple) and len(out) == 2):
            return f"you returned {_kind(out)}; return a pair (z, residuals)."
        z, residuals = _tensor(out[0], "fixed_point_iteration", c.shape), residuals_of(out[1])
        if _relative_error(z, z_star) > RTOL:
            return f"z is not the fixed point: relative error {_relative_error(z, z_star):.2g}."
        if not residuals or residuals[-1] >= 1e-10 or len(residuals) >= 200:
            return "stop as soon as the residual falls below tol (and record every residual)."
        if residuals[0] < 0.5 or residuals[-1] > residuals[0]:
            return "residuals[k] must be ||f(z_k) − z_k|| / ||f(z_k)||, starting at z_0 (1.0 from zeros)."
        _, capped = fixed_point_iteration(f, z0, 5, 0.0)
        if len(residuals_of(capped)) != 5:
            return f"with max_iter=5 and tol=0 you ran {len(capped)} iterations instead of 5."
    return _check("fixed_point_iteration", fixed_point_iteration, attempt)


_hints(
    "fixed_point_iteration",
    idea="apply f again and again; after each application record how far the point moved, relative to the new "
         "value, and stop as soon as that falls below tol — or after max_iter applications.",
    steps="keep a list of residuals; in a loop of at most max_iter passes: compute f at the current z, append "
          "||f(z) − z|| / ||f(z)|| as a float, move z to f(z), and leave the loop once the last residual is below"
          " tol. Return the pair (z, residuals).",
    solution='''
def fixed_point_iteration(f, z0, max_iter=50, tol=1e-4):
    z, residuals = z0, []
    for _ in range(max_iter):
        fz = f(z)
        residuals.append(((fz - z).norm() / fz.norm()).item())
        z = fz
        if residuals[-1] < tol:
            break
    return z, residuals''')


# --- implicit_backward ----------------------------------------------------------------------------------------------
def check_implicit_backward(implicit_backward) -> bool:
    """``implicit_backward(vjp, v, max_iter, tol) -> u``: the solution of u = Jᵀu + v, i.e.
    (I − Jᵀ)u = v = ∂ℓ/∂x*, by fixed-point iteration, where ``vjp(u) = Jᵀu`` (Bai, Kolter, Koltun, NeurIPS 2019).

    Verifies u for v ``[1, 8]`` and a linear map with ||J|| = 0.7 against (I − Jᵀ)⁻¹v, to 1e-5. Diagnoses
    Jacobian-free backprop (u = v), a single iteration (Jᵀv + v), and Jᵀv."""
    J, _ = _contraction(seed=1, norm=0.7)  # the Jacobian of z ↦ z Wᵀ + c is W
    v = _draw(2, 1, 8)
    vjp = lambda u: u @ J  # noqa: E731  (row vectors: (Jᵀuᵀ)ᵀ = u J)
    want = torch.linalg.solve(torch.eye(8, dtype=torch.float64) - J.T, v[0])[None]
    return _compare("implicit_backward", implicit_backward, (vjp, v.clone(), 500, 1e-12), want, [
        (v, "you returned v itself: that is Jacobian-free backprop (JFB), which drops (I − Jᵀ)⁻¹."),
        (vjp(v) + v, "you did one iteration; keep iterating u = Jᵀu + v until it stops changing."),
        (vjp(v), "you returned Jᵀv: the fixed point is of u ↦ Jᵀu + v, with v added at every step."),
    ], "(I − Jᵀ)⁻¹ v")


_hints(
    "implicit_backward",
    idea="the backward pass needs u = (I − Jᵀ)⁻¹ v, the solution of the linear fixed point u = Jᵀu + v. When J is"
         " contractive, iterating that map converges, by the same argument as the forward pass. Returning v "
         "itself is JFB, which drops (I − Jᵀ)⁻¹.",
    steps="start from u = v; each step computes vjp(u) + v; stop when the change between two consecutive steps is"
          " at most tol times the norm of the new one, or after max_iter steps; return the last u.",
    solution='''
def implicit_backward(vjp, v, max_iter=100, tol=1e-6):
    u = v
    for _ in range(max_iter):
        u_next = vjp(u) + v
        done = (u_next - u).norm() <= tol * u_next.norm()
        u = u_next
        if done:
            break
    return u''')


# --- anderson_weights -----------------------------------------------------------------------------------------------
def check_anderson_weights(anderson_weights) -> bool:
    """``anderson_weights(G) -> alpha``: for residuals G ``[m, d]`` (one per row), the weights ``[m]``
    minimizing ||Σ_i α_i G_i|| subject to Σ_i α_i = 1, α = H⁻¹1 / (1ᵀH⁻¹1) with H = G Gᵀ (Anderson 1965; Walker
    and Ni 2011).

    Verifies α for G ``[4, 30]`` against that closed form, to 1e-3. Diagnoses the right weights unnormalized,
    other weights that do not sum to 1, and weights that sum to 1 but do not minimize (equal ones, say)."""
    G = _draw(0, 4, 30)
    w = torch.linalg.solve(G @ G.T, torch.ones(4, dtype=torch.float64))
    want = w / w.sum()

    def attempt():
        got = _tensor(anderson_weights(G.clone()), "anderson_weights", (4,))
        total = got.sum().item()
        if _relative_error(got, want) <= 1e-3:
            return None
        if abs(total - 1) > 1e-6:
            if _relative_error(got / got.sum(), want) <= 1e-3:
                return f"your weights sum to {total:.4g}; normalize them to sum to 1."
            return f"your weights sum to {total:.4g}; the constraint is Σ α_i = 1."
        return (f"these weights satisfy Σα = 1 but ||αᵀG|| = {(got @ G).norm().item():.4g} > "
                f"{(want @ G).norm().item():.4g}, the minimum.")
    return _check("anderson_weights", anderson_weights, attempt)


_hints(
    "anderson_weights",
    idea="minimizing ||Σ α_i G_i|| under Σ α_i = 1 is a small constrained least-squares problem: its Lagrange "
         "conditions say H α is a multiple of the all-ones vector, with H = G Gᵀ, and the constraint fixes the "
         "multiple.",
    steps="form the m×m matrix H from G and its transpose, solve H w = (a vector of m ones) with "
          "torch.linalg.solve, then rescale w so that its entries sum to 1.",
    solution='''
import torch


def anderson_weights(G):
    H = G @ G.T
    w = torch.linalg.solve(H, torch.ones(len(G), dtype=G.dtype, device=G.device))
    return w / w.sum()''')


# --- questions ------------------------------------------------------------------------------------------------------
_question(
    "unrolled_memory",
    rtol=0.3,
    explanation="Unrolling K iterations keeps the prior's activations of every one of them for the backward pass, "
                "so its peak is a fixed part (the weights, the measurement, one application's workspace) plus K "
                "times what one iteration stores: it grows linearly in K, but 8 times the iterations cost less than "
                "8 times the memory, by the fixed part. The implicit and JFB passes keep one set of activations, "
                "whatever K.")
