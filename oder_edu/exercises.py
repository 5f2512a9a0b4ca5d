"""Checks for the notebooks' exercises: ``check_<exercise>(your_function) -> bool``.

Every exercise asks for a small function; its check calls that function on a problem with
a known answer (built here, seeded), prints ``✓ ...`` or ``✗ ...`` with a hint aimed at the
mistake it recognised, and returns True or False. It never raises for a wrong or unfinished
answer (an unfinished one is the stub of ``oder-edu labs``, whose ``NotImplementedError``
carries the notebook's own hint, which is printed instead of the full recipe), so a student's
notebook keeps running; only passing something that is not a function raises a TypeError.

    from oder_edu.exercises import check_power_iteration
    check_power_iteration(power_iteration)      # ✓ power_iteration: correct.
"""

from __future__ import annotations

import itertools
import math
import numbers

import torch

from .physics.base import BlockOperator, LeastSquares


# --- the machinery shared by every check ----------------------------------------------------
class _Wrong(Exception):
    """What the student's function returned cannot be checked (None, a string, a wrong shape):
    reported as what came back, never as a crash of their code."""


def _check(name: str, fn, hint: str, attempt) -> bool:
    """Run ``attempt()`` (None when the answer is right, else a sentence saying what is
    wrong) and report. ``hint`` is printed with every wrong answer."""
    if not callable(fn):
        raise TypeError(
            f"check_{name} expects your function itself (no parentheses after its name), "
            f"got a {type(fn).__name__}"
        )
    try:
        problem = attempt()
    except NotImplementedError as error:
        # The stub of a student notebook: show its own nudge, not the full recipe below.
        print(f"✗ {name}: not implemented yet — replace the `raise NotImplementedError` line with your code.")
        if str(error):
            print(f"  {error}")
        return False
    except _Wrong as error:
        problem = str(error)
    except Exception as error:  # the student's code crashed: say how, do not crash the notebook
        problem = f"your function raised {type(error).__name__}: {error}"
    if problem:
        print(f"✗ {name}: {problem}\n  Hint: {hint}")
        return False
    print(f"✓ {name}: correct.")
    return True


def _tensor(value, name: str, shape) -> torch.Tensor:
    """``value`` as a float64 tensor of ``shape``, or ``_Wrong`` saying what came back."""
    if value is None:
        raise _Wrong(f"{name} returned None; expected a tensor of shape {tuple(shape)} (a missing `return`?)")
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise _Wrong(f"{name} returned a {type(value).__name__}; expected a tensor of shape {tuple(shape)}") from None
    if tuple(t.shape) != tuple(shape):
        raise _Wrong(f"{name} returned shape {tuple(t.shape)}, expected {tuple(shape)}")
    if t.is_complex():
        raise _Wrong(f"{name} returned complex values, expected a real tensor")
    return t.detach().double()


def _number(value, name: str) -> float:
    """``value`` as a float (a number or a one-element tensor), or ``_Wrong`` saying what came back."""
    if value is None:
        raise _Wrong(f"{name} returned None; expected a number (a missing `return`?)")
    if torch.is_tensor(value) and value.numel() != 1:
        raise _Wrong(f"{name} returned a tensor of shape {tuple(value.shape)}; expected a number")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise _Wrong(f"{name} returned a {type(value).__name__}; expected a number") from None


def _residuals(value) -> list[float]:
    """The residuals of ``fixed_point_iteration`` as floats, or ``_Wrong``."""
    try:
        return [float(r) for r in value]
    except (TypeError, ValueError, RuntimeError):
        got = type(value).__name__
        raise _Wrong(f"fixed_point_iteration's residuals must be a list of numbers, got {got}") from None


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


RTOL = 1e-5  # loose enough for an answer computed in float32, far below any typical mistake


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> bool:
    return _relative_error(a, b) <= rtol


class _Matrix(BlockOperator):
    """A dense matrix as a blocked operator, so every check has an exact reference:
    ``M`` ``[B * r, C * H * W]`` split into B row blocks of r rows; images ``[N, C, H, W]``,
    measurements ``[N, b, r]``."""

    def __init__(self, M: torch.Tensor, num_blocks: int, image_shape=(1, 4, 4)):
        rows, cols = M.shape
        if rows % num_blocks or cols != math.prod(image_shape):
            raise ValueError(f"cannot split a {rows}x{cols} matrix into {num_blocks} blocks for images {image_shape}")
        self.num_blocks, self.image_shape = num_blocks, tuple(image_shape)
        self.block_shape = (rows // num_blocks,)
        self.M = M.reshape(num_blocks, rows // num_blocks, cols)

    def _forward(self, x, blocks):
        M = self._buffer("M", x)
        blocks = range(self.num_blocks) if blocks is None else blocks.tolist()
        return torch.stack([x.flatten(1) @ M[i].T for i in blocks], dim=1)  # [N, b, r], block by block

    def _adjoint(self, y, blocks):
        M = self._buffer("M", y)
        blocks = range(self.num_blocks) if blocks is None else blocks.tolist()
        x = sum(y[:, j] @ M[i] for j, i in enumerate(blocks))
        return x.reshape(y.shape[0], *self.image_shape)

    def matrix(self) -> torch.Tensor:
        """The whole matrix ``[B * r, C * H * W]``."""
        return self.M.reshape(-1, self.M.shape[-1])


def _matrix_operator(singular_values, num_blocks: int, seed: int) -> _Matrix:
    """A 16-column operator ``U diag(s) Vᵀ`` with the given singular values (random U, V)."""
    gen = torch.Generator().manual_seed(seed)
    s = torch.as_tensor(singular_values, dtype=torch.float64)
    rows = len(s)
    U, _ = torch.linalg.qr(torch.randn(rows, rows, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))
    S = torch.zeros(rows, 16, dtype=torch.float64)
    S[:, :rows] = torch.diag(s)
    return _Matrix(U @ S @ V.T, num_blocks)


def _random_problem(num_blocks: int = 6, seed: int = 0):
    """``(A, y, x)``: a 6-block 12x16 operator, its data ``[2, 6, 2]`` and a point ``[2, 1, 4, 4]``."""
    gen = torch.Generator().manual_seed(seed)
    A = _Matrix(torch.randn(12, 16, generator=gen, dtype=torch.float64) / 4, num_blocks)
    y = torch.randn(2, num_blocks, 12 // num_blocks, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 1, 4, 4, generator=gen, dtype=torch.float64)
    return A, y, x


def _smooth(x: torch.Tensor, sigma) -> torch.Tensor:
    """A toy denoiser D(x, σ) for the checks: a 3x3 box average blended in by σ ∈ [0, 1]."""
    box = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return (1 - sigma) * x + sigma * box


# --- 01 · inverse problems ---------------------------------------------------------------------
def check_power_iteration(power_iteration) -> bool:
    """``power_iteration(A, num_iter) -> float``: L = ||A||² = λ_max(AᵀA), the Lipschitz
    constant of ∇g for g(x) = ½||Ax − y||², by the power method (von Mises 1929)."""
    hint = ("start from a random x; repeat z = A.adjoint(A.forward(x)), L = ||z||, x = z / L; "
            "after enough iterations L is the largest eigenvalue of AᵀA.")

    def attempt():
        for seed, s in ((0, [3.0, 1.5, 1.0, 0.5, 0.2, 0.1]), (1, [0.8, 0.3, 0.2, 0.1, 0.1, 0.05])):
            A = _matrix_operator(s, num_blocks=3, seed=seed)
            L = s[0] ** 2
            got = _number(power_iteration(A, 100), "power_iteration")
            if abs(got - L) <= 1e-3 * L:
                continue
            if abs(got - s[0]) <= 1e-3 * s[0]:
                return f"you returned ||A|| = {got:.4g}, but L = ||A||² = {L:.4g}."
            return f"for an operator with ||A||² = {L:.4g} you returned {got:.4g}."
        return None

    return _check("power_iteration", power_iteration, hint, attempt)


def check_landweber(landweber) -> bool:
    """``landweber(A, y, gamma, num_iter) -> x``: ``num_iter`` gradient steps on
    g(x) = ½||Ax − y||² from x_0 = 0, x_{k+1} = x_k − γ Aᵀ(A x_k − y) (Landweber 1951)."""
    hint = "x = zeros of A's image shape; repeat num_iter times: x = x - gamma * A.adjoint(A.forward(x) - y)."

    def reference(A, y, gamma, k, sign=-1.0):
        x = torch.zeros(y.shape[0], *A.image_shape, dtype=y.dtype)
        for _ in range(k):
            x = x + sign * gamma * A.adjoint(A.forward(x) - y)
        return x

    def attempt():
        A, y, _ = _random_problem()
        gamma = 1.0 / A.matrix().square().sum().item()  # a safe step below 1/L
        want = reference(A, y, gamma, 10)
        got = _tensor(landweber(A, y, gamma, 10), "landweber", want.shape)
        if _close(got, want):
            return None
        if _close(got, reference(A, y, gamma, 10, sign=+1.0)):
            return "your steps go uphill: subtract γ∇g, do not add it."
        if _close(got, reference(A, y, gamma, 9)) or _close(got, reference(A, y, gamma, 11)):
            return "you took one step too few or too many: num_iter steps from x_0 = 0."
        return f"relative error {_relative_error(got, want):.2g} against the reference iterate."

    return _check("landweber", landweber, hint, attempt)


def check_psnr(my_psnr) -> bool:
    """``my_psnr(x, ref) -> [N]``: PSNR = 10 log10(1 / MSE) per image of a batch
    ``[N, C, H, W]`` with values in [0, 1], the MSE taken over C, H, W."""
    hint = "mse = (x - ref).square().mean(dim=(1, 2, 3)); return 10 * torch.log10(1 / mse)."

    def attempt():
        gen = torch.Generator().manual_seed(0)
        ref = torch.rand(2, 1, 16, 16, generator=gen, dtype=torch.float64)
        x = ref + torch.tensor([0.01, 0.1], dtype=torch.float64)[:, None, None, None] * torch.randn(
            ref.shape, generator=gen, dtype=torch.float64)
        mse = (x - ref).square().mean(dim=(1, 2, 3))
        want = 10 * torch.log10(1 / mse)
        got = my_psnr(x, ref)
        if isinstance(got, numbers.Real) or (torch.is_tensor(got) and got.numel() == 1):
            return "you returned one number for a batch of two images: average over (1, 2, 3) only."
        got = _tensor(got, "my_psnr", want.shape)
        if _close(got, want):
            return None
        if _close(got, 20 * torch.log10(1 / mse)):
            return "20 log10 applies to the root of the MSE; with the MSE itself use 10 log10."
        if _close(got, 10 * torch.log10(1 / (x - ref).square().sum(dim=(1, 2, 3)))):
            return "you summed the squared errors; the MSE is their mean."
        return f"expected {want.tolist()} dB, got {got.tolist()}."

    return _check("psnr", my_psnr, hint, attempt)


# --- 02 · PnP and RED --------------------------------------------------------------------------
def check_red_update(red_update) -> bool:
    """``red_update(x, grad, D, gamma, tau, sigma) -> x⁺``: the RED step
    x⁺ = x − γ(∇g(x) + τ(x − D(x, σ))) (Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017)."""
    hint = "return x - gamma * (grad + tau * (x - D(x, sigma)))."

    def attempt():
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(2, 1, 8, 8, generator=gen, dtype=torch.float64)
        grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        gamma, tau, sigma = 0.3, 0.7, 0.5
        residual = x - _smooth(x, sigma)
        want = x - gamma * (grad + tau * residual)
        got = _tensor(red_update(x, grad, _smooth, gamma, tau, sigma), "red_update", x.shape)
        if _close(got, want):
            return None
        if _close(got, x - gamma * (grad - tau * residual)):
            return "the prior pulls the wrong way: RED's residual is R(x) = x − D(x, σ), not D(x, σ) − x."
        if _close(got, x - gamma * (grad + residual)):
            return "the prior term is missing its weight τ."
        if _close(got, x - gamma * grad - tau * residual):
            return "the step γ multiplies both terms: x − γ(∇g + τR)."
        return f"relative error {_relative_error(got, want):.2g} against x − γ(∇g + τR(x))."

    return _check("red_update", red_update, hint, attempt)


def check_minibatch_gradient(minibatch_gradient) -> bool:
    """``minibatch_gradient(A, y, x, blocks) -> [N, C, H, W]``: the online estimate
    (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over the b blocks S (Liu et al., NeurIPS 2022)."""
    hint = ("r = A.forward(x, blocks) - y[:, blocks]; "
            "return A.num_blocks / len(blocks) * A.adjoint(r, blocks).")

    def attempt():
        A, y, x = _random_problem()
        blocks = torch.tensor([1, 4])
        want = LeastSquares(A, y).grad(x, blocks)
        got = _tensor(minibatch_gradient(A, y, x, blocks), "minibatch_gradient", want.shape)
        if _close(got, want):
            return None
        scale = A.num_blocks / len(blocks)
        if _close(got * scale, want):
            return (f"your estimate is b/B = 1/{scale:g} of the right one: without the factor B/b its "
                    f"average over random S is not ∇g.")
        if _close(got, LeastSquares(A, y).grad(x)):
            return "that is the full gradient over all B blocks; use only the blocks in S."
        return f"relative error {_relative_error(got, want):.2g} against (B/b) Σ_(i∈S) A_iᵀ(A_i x − y_i)."

    return _check("minibatch_gradient", minibatch_gradient, hint, attempt)


def _jacobian_norm(R, x: torch.Tensor) -> float:
    """||∂R/∂x||₂ at ``x`` from the dense Jacobian (small images only)."""
    J = torch.autograd.functional.jacobian(R, x).reshape(x.numel(), x.numel())
    return torch.linalg.matrix_norm(J, ord=2).item()


def check_lipschitz_estimate(lipschitz_estimate) -> bool:
    """``lipschitz_estimate(R, x, num_iter) -> float``: the spectral norm of R's Jacobian at
    ``x`` by power iteration on JᵀJ with autograd (J v by ``torch.func.jvp``, Jᵀ u by
    ``torch.func.vjp``), a lower bound on R's Lipschitz constant."""
    hint = ("v = random like x, normalized; repeat: u = jvp(R, (x,), (v,))[1]; "
            "w = vjp(R, x)[1](u)[0]; v = w / ||w||; the norm is ||J v|| = ||u|| at the end.")

    def attempt():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 1, 5, 5, generator=gen, dtype=torch.float64)
        W = torch.randn(25, 25, generator=gen, dtype=torch.float64) / 5
        M = torch.randn(25, 25, generator=gen, dtype=torch.float64) / 10

        def linear(z):
            return (z.flatten(1) @ M.T).reshape(z.shape)

        def nonlinear(z):
            return torch.tanh(z.flatten(1) @ W.T).reshape(z.shape)

        for R in (linear, nonlinear):
            want = _jacobian_norm(R, x)
            got = _number(lipschitz_estimate(R, x.clone(), 200), "lipschitz_estimate")
            if abs(got - want) <= 1e-3 * want:
                continue
            if abs(got - want**2) <= 1e-3 * want**2:
                return f"you returned ||J||² = {got:.4g}; the Lipschitz estimate is its root, {want:.4g}."
            return f"the Jacobian's norm is {want:.4g}, you returned {got:.4g}."
        return None

    return _check("lipschitz_estimate", lipschitz_estimate, hint, attempt)


# --- 03 · deep equilibrium ----------------------------------------------------------------------
def _contraction(seed: int = 0, d: int = 8, norm: float = 0.6):
    """A batch-of-one affine contraction f(z) = z Wᵀ + c with ||W|| = ``norm``, and its fixed point."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(d, d, generator=gen, dtype=torch.float64)
    W = norm * W / torch.linalg.matrix_norm(W, ord=2)
    c = torch.randn(1, d, generator=gen, dtype=torch.float64)
    z_star = torch.linalg.solve(torch.eye(d, dtype=torch.float64) - W, c[0])[None]
    return W, c, z_star


def check_fixed_point_iteration(fixed_point_iteration) -> bool:
    """``fixed_point_iteration(f, z0, max_iter, tol) -> (z, residuals)``: z_{k+1} = f(z_k),
    recording ||f(z_k) − z_k|| / ||f(z_k)|| each iteration and stopping once it is below
    ``tol`` or after ``max_iter`` iterations (Banach's fixed-point theorem)."""
    hint = ("residuals = []; loop max_iter times: fz = f(z); residuals.append(((fz - z).norm() / fz.norm()).item()); "
            "z = fz; stop when the last residual < tol; return z, residuals.")

    def attempt():
        W, c, z_star = _contraction()
        f = lambda z: z @ W.T + c  # noqa: E731
        z0 = torch.zeros_like(c)
        out = fixed_point_iteration(f, z0, 200, 1e-10)
        if not (isinstance(out, tuple) and len(out) == 2):
            return "return a pair (z, residuals)."
        z, residuals = out
        z = _tensor(z, "fixed_point_iteration", c.shape)
        residuals = _residuals(residuals)
        if not _close(z, z_star):
            return f"z is not the fixed point: relative error {_relative_error(z, z_star):.2g}."
        if not residuals or residuals[-1] >= 1e-10 or len(residuals) >= 200:
            return "stop as soon as the residual falls below tol (and record every residual)."
        if residuals[0] < 0.5 or residuals[-1] > residuals[0]:
            return "residuals[k] must be ||f(z_k) − z_k|| / ||f(z_k)||, starting at z_0 (1.0 from zeros)."
        _, capped = fixed_point_iteration(f, z0, 5, 0.0)
        if len(_residuals(capped)) != 5:
            return f"with max_iter=5 and tol=0 you ran {len(capped)} iterations instead of 5."
        return None

    return _check("fixed_point_iteration", fixed_point_iteration, hint, attempt)


def check_implicit_backward(implicit_backward) -> bool:
    """``implicit_backward(vjp, v, max_iter, tol) -> g``: the solution of g = Jᵀg + v, i.e.
    g = (I − Jᵀ)⁻¹ v, by fixed-point iteration, where ``vjp(g) = Jᵀg`` (implicit function
    theorem; Bai, Kolter, Koltun, NeurIPS 2019)."""
    hint = "g = v; repeat: g_next = vjp(g) + v; stop when ||g_next - g|| <= tol * ||g_next||; return g."

    def attempt():
        W, _, _ = _contraction(seed=1, norm=0.7)
        J = W  # the Jacobian of z -> z Wᵀ + c is W
        v = torch.randn(1, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        vjp = lambda g: g @ J  # noqa: E731  (row vectors: (Jᵀgᵀ)ᵀ = g J)
        want = torch.linalg.solve(torch.eye(8, dtype=torch.float64) - J.T, v[0])[None]
        got = _tensor(implicit_backward(vjp, v.clone(), 500, 1e-12), "implicit_backward", v.shape)
        if _close(got, want):
            return None
        if _close(got, v):
            return "you returned v itself: that is Jacobian-free backprop (JFB), which drops (I − Jᵀ)⁻¹."
        if _close(got, vjp(v) + v):
            return "you did one iteration; keep iterating g = Jᵀg + v until it stops changing."
        return f"relative error {_relative_error(got, want):.2g} against (I − Jᵀ)⁻¹ v."

    return _check("implicit_backward", implicit_backward, hint, attempt)


def check_anderson_weights(anderson_weights) -> bool:
    """``anderson_weights(G) -> alpha``: for residuals G ``[m, d]`` (one per row), the weights
    ``[m]`` minimizing ||Σ_i α_i G_i|| subject to Σ_i α_i = 1, α = H⁻¹1 / (1ᵀH⁻¹1) with
    H = G Gᵀ (Anderson 1965; Walker and Ni, SIAM J. Numer. Anal. 2011)."""
    hint = ("H = G @ G.T; w = torch.linalg.solve(H, torch.ones(len(G), dtype=G.dtype)); "
            "return w / w.sum().")

    def attempt():
        G = torch.randn(4, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        w = torch.linalg.solve(G @ G.T, torch.ones(4, dtype=torch.float64))
        want = w / w.sum()
        got = _tensor(anderson_weights(G.clone()), "anderson_weights", (4,))
        if _close(got, want, 1e-3):
            return None
        if abs(got.sum().item() - 1) > 1e-6:
            if _close(got / got.sum(), want, 1e-3):
                return f"your weights sum to {got.sum().item():.4g}; normalize them to sum to 1."
            return f"your weights sum to {got.sum().item():.4g}; the constraint is Σ α_i = 1."
        return (f"these weights satisfy Σα = 1 but ||αᵀG|| = {(got @ G).norm().item():.4g} > "
                f"{(want @ G).norm().item():.4g}, the minimum.")

    return _check("anderson_weights", anderson_weights, hint, attempt)


# --- 04 · ODER ----------------------------------------------------------------------------------
def check_expected_minibatch_gradient(expected_minibatch_gradient) -> bool:
    """``expected_minibatch_gradient(A, y, x, batch_size) -> [N, C, H, W]``: the average of
    (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over all C(B, b) subsets S of size b. It equals the full
    gradient ∇g(x) exactly, which is why ODER's estimate is unbiased."""
    hint = ("loop over itertools.combinations(range(A.num_blocks), batch_size); for each S add "
            "B/b * A.adjoint(A.forward(x, S) - y[:, S], S); divide by the number of subsets.")

    def attempt():
        A, y, x = _random_problem()
        want = LeastSquares(A, y).grad(x)
        got = _tensor(expected_minibatch_gradient(A, y, x, 2), "expected_minibatch_gradient", want.shape)
        if _close(got, want):
            return None
        if _close(got * 3, want):
            return "your average is b/B = 1/3 of ∇g(x): each subset's sum needs the factor B/b."
        subsets = len(list(itertools.combinations(range(6), 2)))
        if _close(got, want * subsets) or _close(got * 3, want * subsets):
            return f"you summed over the {subsets} subsets; average instead."
        return f"relative error {_relative_error(got, want):.2g} against ∇g(x)."

    return _check("expected_minibatch_gradient", expected_minibatch_gradient, hint, attempt)


def check_oder_map(oder_map) -> bool:
    """``oder_map(x, A, y, D, gamma, tau, sigma, blocks) -> x⁺``: ODER's forward map
    T_S(x) = x − γ((B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) + τ(x − D(x, σ))) (Liu et al., NeurIPS 2022)."""
    hint = ("grad = A.num_blocks / len(blocks) * A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks); "
            "return x - gamma * (grad + tau * (x - D(x, sigma))).")

    def attempt():
        A, y, x = _random_problem(seed=3)
        blocks = torch.tensor([0, 2, 5])
        gamma, tau, sigma = 0.2, 0.5, 0.8
        g = LeastSquares(A, y)
        residual = x - _smooth(x, sigma)
        want = x - gamma * (g.grad(x, blocks) + tau * residual)
        got = _tensor(oder_map(x, A, y, _smooth, gamma, tau, sigma, blocks), "oder_map", want.shape)
        if _close(got, want):
            return None
        scale = A.num_blocks / len(blocks)
        if _close(got, x - gamma * (g.grad(x, blocks) / scale + tau * residual)):
            return f"the minibatch gradient lacks the factor B/b = {scale:g}, so T_S is biased towards the prior."
        if _close(got, x - gamma * (g.grad(x) + tau * residual)):
            return "that is the full-batch RED map; ODER uses only the blocks in S."
        return f"relative error {_relative_error(got, want):.2g} against T_S(x)."

    return _check("oder_map", oder_map, hint, attempt)


def check_subset_fixed_point(subset_fixed_point) -> bool:
    """``subset_fixed_point(A, y, blocks, mu) -> x*_S``: the fixed point of ODER's map with one
    block set S and the linear prior R(x) = x, i.e. the minimizer of
    (B/b)·½ Σ_{i∈S} ||A_i x − y_i||² + (μ/2)||x||², the solution of
    ((B/b) A_SᵀA_S + μI) x = (B/b) A_Sᵀ y_S."""
    hint = ("solve ((B/b) A_SᵀA_S + μ I) x = (B/b) A_Sᵀ y_S: e.g. gradient steps "
            "x = x − γ((B/b) A.adjoint(A.forward(x, S) − y[:, S], S) + μ x) until they stop moving.")

    def solve(A, y, blocks, mu, scale):
        n = math.prod(A.image_shape)
        M = A.matrix().reshape(A.num_blocks, -1, n)[blocks].reshape(-1, n)
        lhs = scale * M.T @ M + mu * torch.eye(n, dtype=M.dtype)
        rhs = scale * y[:, blocks].reshape(y.shape[0], -1) @ M
        return torch.linalg.solve(lhs, rhs.T).T.reshape(y.shape[0], *A.image_shape)

    def attempt():
        A, y, _ = _random_problem(seed=4)
        blocks, mu = torch.tensor([1, 4]), 0.3
        scale = A.num_blocks / len(blocks)
        want = solve(A, y, blocks, mu, scale)
        got = _tensor(subset_fixed_point(A, y, blocks, mu), "subset_fixed_point", want.shape)
        if _close(got, want, 1e-4):
            return None
        if _close(got, solve(A, y, blocks, mu, 1.0), 1e-4):
            return f"that is the fixed point without the factor B/b = {scale:g}: the data term must be the unbiased estimate."
        if _close(got, solve(A, y, torch.arange(A.num_blocks), mu, 1.0), 1e-4):
            return "that is the full-data solution x*; use only the blocks in S."
        return f"relative error {_relative_error(got, want):.2g} against the solution of ((B/b)A_SᵀA_S + μI)x = (B/b)A_Sᵀy_S."

    return _check("subset_fixed_point", subset_fixed_point, hint, attempt)


# --- 05 · applications --------------------------------------------------------------------------
def check_add_noise_snr(add_noise_snr) -> bool:
    """``add_noise_snr(y, snr_db, generator) -> y + e``: white Gaussian noise e drawn from
    ``generator`` with input SNR 20 log10(||y|| / ||e||) = ``snr_db`` on average, i.e.
    e = s·n with n standard normal and s = ||y|| / sqrt(numel) · 10^(−snr/20)."""
    hint = ("s = y.norm() / y.numel() ** 0.5 * 10 ** (-snr_db / 20); "
            "return y + s * torch.randn(y.shape, generator=generator, dtype=y.dtype).")

    def attempt():
        y = torch.rand(4, 60, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
        for snr in (30.0, 50.0):
            noisy = add_noise_snr(y, snr, torch.Generator().manual_seed(1))
            noisy = _tensor(noisy, "add_noise_snr", y.shape)
            again = _tensor(add_noise_snr(y, snr, torch.Generator().manual_seed(1)), "add_noise_snr", y.shape)
            if not torch.equal(noisy, again):
                return "two calls with equally seeded generators differ: draw the noise from `generator`."
            measured = 20 * math.log10(y.norm().item() / (noisy - y).norm().item())
            if abs(measured - 2 * snr) < 0.2:
                return f"the SNR came out {measured:.1f} dB instead of {snr:g}: amplitudes scale as 10^(−snr/20), not /10."
            if abs(measured - snr) > 0.2:
                return f"asked for {snr:g} dB, measured {measured:.2f} dB."
        return None

    return _check("add_noise_snr", add_noise_snr, hint, attempt)


def check_window(window) -> bool:
    """``window(hu, center, width) -> [0, 1] image``: a CT display window, mapping
    Hounsfield units in [center − width/2, center + width/2] linearly onto [0, 1] and
    clipping outside."""
    hint = "return ((hu - (center - width / 2)) / width).clamp(0, 1)."

    def attempt():
        hu = torch.linspace(-1200, 1200, 97, dtype=torch.float64).reshape(1, 1, 1, 97)
        center, width = 40.0, 400.0
        want = ((hu - (center - width / 2)) / width).clamp(0, 1)
        got = _tensor(window(hu, center, width), "window", hu.shape)
        if _close(got, want):
            return None
        if got.min() < 0 or got.max() > 1:
            return f"values run from {got.min().item():.3g} to {got.max().item():.3g}: clip to [0, 1]."
        if _close(got, ((hu - center) / width).clamp(0, 1)):
            return "the window starts at center − width/2, not at center."
        return f"relative error {_relative_error(got, want):.2g} against the linear window."

    return _check("window", window, hint, attempt)
