"""Checks for the notebooks' exercises: ``ok = check_<exercise>(your_function)``.

Each check runs your function on a small seeded problem with a known answer, prints ``✓ <exercise>: correct.`` or
``✗ <exercise>: <what is wrong>`` and returns True or False, so a later cell can use your function where it passed
(``L = power_iteration(A, 100) if power_ok else A.norm() ** 2``). Hints come in tiers, counted per exercise in this
kernel: the first wrong answer gets a diagnosis and a conceptual ``idea`` (no code), every later one adds concrete
``steps`` and points to ``solution("<exercise>")``, the only thing that prints a full answer; ``reset()`` forgets
the counts. The notebook stub (``raise NotImplementedError("Hint: ...")``) prints its own hint and is not counted.
A wrong, empty or crashing answer is reported, never raised; passing something that is not a function
(``check_psnr(my_psnr(x, ref))``) raises a TypeError.
"""

from __future__ import annotations

import math
import numbers
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from .physics.base import BlockOperator, LeastSquares


# --- the machinery shared by every check ------------------------------------------------------------------------
@dataclass(frozen=True)
class Hints:
    """One exercise's tiers: ``idea`` (first wrong answer; no code), ``steps`` (added from the second one on; a
    recipe in words), ``solution`` (full code, printed only by ``solution(name)``)."""

    idea: str
    steps: str
    solution: str


_failures: dict[str, int] = {}  # wrong answers per exercise in this kernel (stubs not counted)


def solution(name: str) -> None:
    """Print a full answer to exercise ``name`` (``"power_iteration"``, ...; a ``check_`` prefix is ignored)."""
    name = str(name).removeprefix("check_")
    if name not in HINTS:
        raise ValueError(f"no exercise named {name!r}; the exercises are: {', '.join(sorted(HINTS))}")
    print(f"A full answer to {name} (one of several: yours may look different and still pass):\n")
    print(HINTS[name].solution.strip("\n"))


def reset(name: str | None = None) -> None:
    """Forget the wrong answers counted so far (of exercise ``name``, or of all): back to the first tier."""
    for key in list(_failures) if name is None else [str(name).removeprefix("check_")]:
        _failures.pop(key, None)


class _Wrong(Exception):
    """An answer of the wrong kind (None, a string, a shape) or a diagnosed mistake; the message says which."""


_NOT_THE_STUDENTS = (Path(__file__).resolve().parent, Path(torch.__file__).resolve().parent)


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
        print(f'  Closer: {HINTS[name].steps}\n  Still stuck? solution("{name}") prints a full answer.')
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


class _Matrix(BlockOperator):
    """A dense matrix as a blocked operator, so every check has an exact reference: ``M`` ``[B * r, C * H * W]``
    split into B row blocks of r rows; images ``[N, C, H, W]``, measurements ``[N, b, r]``."""

    def __init__(self, M: torch.Tensor, num_blocks: int, image_shape=(1, 4, 4)):
        rows, cols = M.shape
        if rows % num_blocks or cols != math.prod(image_shape):
            raise ValueError(f"cannot split a {rows}x{cols} matrix into {num_blocks} blocks for images {image_shape}")
        self.num_blocks, self.image_shape, self.block_shape = num_blocks, tuple(image_shape), (rows // num_blocks,)
        self.M = M.reshape(num_blocks, rows // num_blocks, cols)

    def _rows(self, like, blocks) -> list:
        """The row blocks ``M_i`` ``[r, C * H * W]`` of ``blocks`` (all when None), like ``like``."""
        M = self._buffer("M", like)
        return [M[i] for i in (range(self.num_blocks) if blocks is None else blocks.tolist())]

    def _forward(self, x, blocks):
        return torch.stack([x.flatten(1) @ M_i.T for M_i in self._rows(x, blocks)], dim=1)  # [N, b, r]

    def _adjoint(self, y, blocks):
        return sum(y[:, j] @ M_i for j, M_i in enumerate(self._rows(y, blocks))).reshape(y.shape[0], *self.image_shape)

    def matrix(self) -> torch.Tensor:
        """The whole matrix ``[B * r, C * H * W]``."""
        return self.M.reshape(-1, self.M.shape[-1])


def _draw(seed_or_gen, *shape, law=torch.randn) -> torch.Tensor:
    """float64 samples of ``law`` (``torch.randn``, ``torch.rand``) of ``shape`` from a generator or a seed."""
    gen = torch.Generator().manual_seed(seed_or_gen) if isinstance(seed_or_gen, int) else seed_or_gen
    return law(*shape, generator=gen, dtype=torch.float64)


def _random_problem(num_blocks: int, seed: int = 0):
    """``(A, y, x)``: ``num_blocks`` blocks of 2 rows and 16 columns, y ``[2, num_blocks, 2]``, x ``[2, 1, 4, 4]``."""
    gen = torch.Generator().manual_seed(seed)
    A = _Matrix(_draw(gen, 2 * num_blocks, 16) / 4, num_blocks)
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


# --- 01 · inverse problems --------------------------------------------------------------------------------------
def check_power_iteration(power_iteration) -> bool:
    """``power_iteration(A, num_iter) -> float``: L = ||A||² = λ_max(AᵀA) by the power method (von Mises 1929);
    checked with num_iter = 100 on two 12x16 operators U diag(s) Vᵀ, to 1e-3."""
    def attempt():
        for seed, s in ((0, [3.0, 1.5, 1.0, 0.5, 0.2, 0.1]), (1, [0.8, 0.3, 0.2, 0.1, 0.1, 0.05])):
            gen = torch.Generator().manual_seed(seed)
            U, V = torch.linalg.qr(_draw(gen, 6, 6))[0], torch.linalg.qr(_draw(gen, 16, 16))[0]
            A = _Matrix(U @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ V[:, :6].T, num_blocks=3)
            L, got = s[0] ** 2, _number(power_iteration(A, 100), "power_iteration")
            _power_method(got, L, s[0], f"you returned ||A|| = {got:.4g}, but L = ||A||² = {L:.4g}.", "AᵀA",
                          f"for an operator with ||A||² = {L:.4g} you returned {got:.4g}.")
    return _check("power_iteration", power_iteration, attempt)


def check_landweber(landweber) -> bool:
    """``landweber(A, y, gamma, num_iter) -> x``: num_iter steps x_{k+1} = x_k − γ Aᵀ(A x_k − y) from x_0 = 0
    (Landweber 1951), gradient descent on g(x) = ½||Ax − y||²; checked for 10 steps, x ``[2, 1, 4, 4]``."""
    A, y, _ = _random_problem(6)
    gamma = 1.0 / A.matrix().square().sum().item()  # a safe step below 1/L_g

    def steps(k, step):
        x = torch.zeros(y.shape[0], *A.image_shape, dtype=y.dtype)
        for _ in range(k):
            x = x - step * A.adjoint(A.forward(x) - y)
        return x

    too_few_or_many = "you took one step too few or too many: num_iter steps from x_0 = 0."
    return _compare("landweber", landweber, (A, y, gamma, 10), steps(10, gamma), [
        (steps(10, -gamma), "your steps go uphill: subtract γ∇g, do not add it."),
        (steps(9, gamma), too_few_or_many), (steps(11, gamma), too_few_or_many),
        (steps(10, 1.0), "your steps ignore gamma: each one moves by γ times the gradient."),
    ], "the reference iterate")


def check_psnr(my_psnr) -> bool:
    """``my_psnr(x, ref) -> [N]``: PSNR = 10 log10(1 / MSE) per image of a batch ``[N, C, H, W]`` with values in
    [0, 1], the MSE taken over C, H, W; checked with N = 2 at two noise levels."""
    gen = torch.Generator().manual_seed(0)
    ref = _draw(gen, 2, 1, 16, 16, law=torch.rand)
    x = ref + torch.tensor([0.01, 0.1], dtype=torch.float64)[:, None, None, None] * _draw(gen, ref.shape)
    squared = (x - ref).square()
    want = 10 * torch.log10(1 / squared.mean(dim=(1, 2, 3)))

    def attempt():
        got = my_psnr(x, ref)
        if isinstance(got, numbers.Real) or (torch.is_tensor(got) and got.numel() == 1):
            return "you returned one number for a batch of two images: average over (1, 2, 3) only."
        got = _tensor(got, "my_psnr", want.shape)
        return _diagnose(got, want, [
            (2 * want, "20 log10 applies to the root of the MSE; with the MSE itself use 10 log10."),
            (10 * torch.log10(1 / squared.sum(dim=(1, 2, 3))), "you summed the squared errors; the MSE is their mean."),
            (-want, "your values have the wrong sign: PSNR grows as the error shrinks (log of 1/MSE)."),
        ], f"expected {want.tolist()} dB, got {got.tolist()}.")
    return _check("psnr", my_psnr, attempt)


# --- 02 · PnP and RED -------------------------------------------------------------------------------------------
def check_red_update(red_update) -> bool:
    """``red_update(x, grad, D, gamma, tau, sigma) -> x⁺``: the RED step x⁺ = x − γ(∇g(x) + τ(x − D(x, σ)))
    (Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017); checked on x ``[2, 1, 8, 8]``."""
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


def check_minibatch_gradient(minibatch_gradient) -> bool:
    """``minibatch_gradient(A, y, x, blocks) -> [N, C, H, W]``: the online estimate (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i)
    over the b blocks S (Liu et al., NeurIPS 2022); checked with B = 7, b = 3."""
    A, y, x = _random_problem(B)
    g, blocks = LeastSquares(A, y), torch.tensor(S)
    want = g.grad(x, blocks)
    return _compare("minibatch_gradient", minibatch_gradient, (A, y, x, blocks), want, [
        (want * (B // b) / (B / b), INTEGER_DIVISION),
        (want / (B / b), f"your estimate is b/B = {b}/{B} of the right one: without the factor B/b its "
                         f"average over random S is not ∇g."),
        (want * (b / B) ** 2, "you scaled by b/B; the factor is B/b (fewer blocks must count for more)."),
        (g.grad(x), "that is the full gradient over all B blocks; use only the blocks in S."),
    ], "(B/b) Σ_(i∈S) A_iᵀ(A_i x − y_i)")


def check_lipschitz_estimate(lipschitz_estimate) -> bool:
    """``lipschitz_estimate(R, x, num_iter) -> float``: ||∂R/∂x||₂ at ``x`` by power iteration on JᵀJ with autograd
    (``torch.func.jvp``/``vjp``), a lower bound on R's Lipschitz constant; checked against dense Jacobians, to 1e-3."""
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
                          f"{want:.4g}.", "J", f"the Jacobian's norm is {want:.4g}, you returned {got:.4g}.")
    return _check("lipschitz_estimate", lipschitz_estimate, attempt)


# --- 03 · deep equilibrium --------------------------------------------------------------------------------------
def _contraction(seed: int, norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, c)``: the affine contraction z ↦ z Wᵀ + c on ``[1, 8]``, with ||W|| = ``norm``."""
    gen = torch.Generator().manual_seed(seed)
    W = _draw(gen, 8, 8)
    return norm * W / torch.linalg.matrix_norm(W, ord=2), _draw(gen, 1, 8)


def check_fixed_point_iteration(fixed_point_iteration) -> bool:
    """``fixed_point_iteration(f, z0, max_iter, tol) -> (z, residuals)``: z_{k+1} = f(z_k), recording
    ||f(z_k) − z_k|| / ||f(z_k)|| and stopping once it is below ``tol`` or after ``max_iter`` iterations (Banach)."""
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


def check_implicit_backward(implicit_backward) -> bool:
    """``implicit_backward(vjp, v, max_iter, tol) -> u``: the solution of u = Jᵀu + v, i.e. (I − Jᵀ)u = v = ∂ℓ/∂x*,
    by fixed-point iteration, where ``vjp(u) = Jᵀu`` (Bai, Kolter, Koltun, NeurIPS 2019); v ``[1, 8]``, ||J|| = 0.7."""
    J, _ = _contraction(seed=1, norm=0.7)  # the Jacobian of z ↦ z Wᵀ + c is W
    v = _draw(2, 1, 8)
    vjp = lambda u: u @ J  # noqa: E731  (row vectors: (Jᵀuᵀ)ᵀ = u J)
    want = torch.linalg.solve(torch.eye(8, dtype=torch.float64) - J.T, v[0])[None]
    return _compare("implicit_backward", implicit_backward, (vjp, v.clone(), 500, 1e-12), want, [
        (v, "you returned v itself: that is Jacobian-free backprop (JFB), which drops (I − Jᵀ)⁻¹."),
        (vjp(v) + v, "you did one iteration; keep iterating u = Jᵀu + v until it stops changing."),
        (vjp(v), "you returned Jᵀv: the fixed point is of u ↦ Jᵀu + v, with v added at every step."),
    ], "(I − Jᵀ)⁻¹ v")


def check_anderson_weights(anderson_weights) -> bool:
    """``anderson_weights(G) -> alpha``: for residuals G ``[m, d]`` (one per row), the weights ``[m]`` minimizing
    ||Σ_i α_i G_i|| subject to Σ_i α_i = 1, α = H⁻¹1 / (1ᵀH⁻¹1) with H = G Gᵀ (Anderson 1965; Walker and Ni 2011)."""
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


# --- 04 · ODER --------------------------------------------------------------------------------------------------
def check_expected_minibatch_gradient(expected_minibatch_gradient) -> bool:
    """``expected_minibatch_gradient(A, y, x, batch_size) -> [N, C, H, W]``: the average over all C(B, b) subsets S
    of (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i), exactly ∇g(x) (ODER's estimate is unbiased); checked with B = 7, b = 3."""
    A, y, x = _random_problem(B)
    want, subsets = LeastSquares(A, y).grad(x), math.comb(B, b)
    summed = f"you summed over the {subsets} subsets; average instead."
    return _compare("expected_minibatch_gradient", expected_minibatch_gradient, (A, y, x, b), want, [
        (want * (B // b) / (B / b), INTEGER_DIVISION),
        (want / (B / b), f"your average is b/B = {b}/{B} of ∇g(x): each subset's sum needs the factor B/b."),
        (want * subsets, summed), (want * subsets / (B / b), summed),
    ], "∇g(x)")


def check_oder_map(oder_map) -> bool:
    """``oder_map(x, A, y, D, gamma, tau, sigma, blocks) -> x⁺``: ODER's forward map
    T_S(x) = x − γ((B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) + τ(x − D(x, σ))) (Liu et al., NeurIPS 2022); B = 7, b = 3."""
    A, y, x = _random_problem(B, seed=3)
    g, blocks, (gamma, tau, sigma) = LeastSquares(A, y), torch.tensor(S), (0.2, 0.5, 0.8)
    grad_S, R = g.grad(x, blocks), x - _smooth(x, sigma)
    want = x - gamma * (grad_S + tau * R)
    return _compare("oder_map", oder_map, (x, A, y, _smooth, gamma, tau, sigma, blocks), want, [
        (x - gamma * (grad_S * (B // b) / (B / b) + tau * R), INTEGER_DIVISION),
        (x - gamma * (grad_S / (B / b) + tau * R),
         f"the minibatch gradient lacks the factor B/b = {B}/{b}, so T_S is biased towards the prior."),
        (x - gamma * (g.grad(x) + tau * R), "that is the full-batch RED map; ODER uses only the blocks in S."),
        (x - gamma * (grad_S - tau * R),
         "the prior pulls the wrong way: the residual is R(x) = x − D(x, σ), not D(x, σ) − x."),
    ], "T_S(x)")


def check_subset_fixed_point(subset_fixed_point) -> bool:
    """``subset_fixed_point(A, y, blocks, mu) -> x*_S``: the fixed point of ODER's map with one block set S and the
    prior R(x) = x: the minimizer of (B/b)·½ Σ_{i∈S} ||A_i x − y_i||² + (μ/2)||x||²; B = 7, b = 3, to 1e-4."""
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


# --- 05 · applications ------------------------------------------------------------------------------------------
def check_add_noise_snr(add_noise_snr) -> bool:
    """``add_noise_snr(y, snr_db, generator) -> y + e``: white Gaussian noise e = s·n, n standard normal drawn from
    ``generator``, s = ||y|| / sqrt(numel) · 10^(−snr/20); checked at 30 and 50 dB, to 0.2 dB, and for seeding."""
    y = _draw(0, 4, 60, 64, law=torch.rand) + 0.5

    def attempt():
        for snr in (30.0, 50.0):
            noisy, again = (_tensor(add_noise_snr(y, snr, torch.Generator().manual_seed(1)), "add_noise_snr", y.shape)
                            for _ in range(2))
            if not torch.equal(noisy, again):
                return "two calls with equally seeded generators differ: draw the noise from `generator`."
            if torch.equal(noisy, y):
                return "you returned y unchanged: add the noise."
            measured = 20 * math.log10(y.norm().item() / (noisy - y).norm().item())
            if abs(measured - 2 * snr) < 0.2:
                return (f"the SNR came out {measured:.1f} dB instead of {snr:g}: amplitudes scale as 10^(−snr/20), "
                        f"not /10.")
            if abs(measured - snr) > 0.2:
                return f"asked for {snr:g} dB, measured {measured:.2f} dB."
    return _check("add_noise_snr", add_noise_snr, attempt)


def check_window(window) -> bool:
    """``window(hu, center, width) -> [0, 1] image``: a CT display window, mapping Hounsfield units in
    [center − width/2, center + width/2] linearly onto [0, 1] and clipping outside; checked on −1200 to 1200 HU."""
    hu = torch.linspace(-1200, 1200, 97, dtype=torch.float64).reshape(1, 1, 1, 97)
    center, width = 40.0, 400.0
    want = ((hu - (center - width / 2)) / width).clamp(0, 1)

    def attempt():
        got = _tensor(window(hu, center, width), "window", hu.shape)
        if _relative_error(got, want) > RTOL and (got.min() < 0 or got.max() > 1):
            return f"values run from {got.min().item():.3g} to {got.max().item():.3g}: clip to [0, 1]."
        return _diagnose(got, want, [(((hu - center) / width).clamp(0, 1),
                                      "the window starts at center − width/2, not at center.")],
                         f"relative error {_relative_error(got, want):.2g} against the linear window.")
    return _check("window", window, attempt)


# --- the hint tiers and a full answer of every exercise ---------------------------------------------------------
HINTS: dict[str, Hints] = {
    "power_iteration": Hints(
        idea="L = ||A||² is the largest eigenvalue of AᵀA. Applying AᵀA again and again to a random start stretches "
             "its component along the top eigenvector the most; normalize after each application, and the stretch "
             "factor of one application tends to L.",
        steps="start from a random image of shape [1, *A.image_shape]; in each of the num_iter steps apply A.forward,"
              " then A.adjoint, read the norm of the result (the current estimate of L) and divide by it before the "
              "next step; return that norm as a float — ||A||², not ||A||.",
        solution='''
import torch


def power_iteration(A, num_iter=50):
    x = torch.randn(1, *A.image_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    L = 0.0
    for _ in range(num_iter):
        z = A.adjoint(A.forward(x))
        L = z.norm().item()
        x = z / L
    return L'''),
    "landweber": Hints(
        idea="gradient descent on g(x) = ½||Ax − y||² starts from the zero image and moves, at every step, against "
             "the gradient ∇g(x) = Aᵀ(Ax − y), by γ times it.",
        steps="make x an all-zero tensor of shape [y.shape[0], *A.image_shape] (y's dtype and device); then, num_iter"
              " times: the residual in measurement space with A.forward, back to image space with A.adjoint, and "
              "subtract gamma times that from x. Return x.",
        solution='''
import torch


def landweber(A, y, gamma, num_iter):
    x = torch.zeros(y.shape[0], *A.image_shape, dtype=y.dtype, device=y.device)
    for _ in range(num_iter):
        x = x - gamma * A.adjoint(A.forward(x) - y)
    return x'''),
    "psnr": Hints(
        idea="PSNR compares the squared error with the peak value (1 here): 10·log10(1 / MSE), in decibels. Each "
             "image of the batch gets its own MSE, the mean of its squared errors over channels and pixels.",
        steps="square the difference, take the mean over dimensions (1, 2, 3) — not over the batch, so one value per "
              "image remains, shape [N] — then turn 1/MSE into decibels with torch.log10.",
        solution='''
import torch


def my_psnr(x, ref):
    mse = (x - ref).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse)'''),
    "red_update": Hints(
        idea="RED treats the denoiser residual R(x) = x − D(x, σ) as the gradient of the prior: one step moves "
             "against the data gradient plus τ times that residual, and γ scales the whole sum.",
        steps="denoise x once with D(x, sigma), subtract the result from x to get R(x), weight it by tau, add grad, "
              "and move x against that sum by gamma.",
        solution='''
def red_update(x, grad, D, gamma, tau, sigma):
    return x - gamma * (grad + tau * (x - D(x, sigma)))'''),
    "minibatch_gradient": Hints(
        idea="the estimate uses only the blocks in S: residual and back-projection are computed on those b blocks, "
             "and the sum is scaled by B/b so that its average over random S is the full gradient ∇g.",
        steps="A.forward(x, blocks) minus y[:, blocks] is the residual of the chosen blocks; A.adjoint(…, blocks) "
              "back-projects it; B is A.num_blocks and b is len(blocks). Multiply by B/b computed with true division.",
        solution='''
def minibatch_gradient(A, y, x, blocks):
    residual = A.forward(x, blocks) - y[:, blocks]
    return A.num_blocks / len(blocks) * A.adjoint(residual, blocks)'''),
    "lipschitz_estimate": Hints(
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
    return jvp(R, (x,), (v,))[1].norm().item()'''),
    "fixed_point_iteration": Hints(
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
    return z, residuals'''),
    "implicit_backward": Hints(
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
    return u'''),
    "anderson_weights": Hints(
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
    return w / w.sum()'''),
    "expected_minibatch_gradient": Hints(
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
    return total / count'''),
    "oder_map": Hints(
        idea="ODER's map is the RED step with ∇g replaced by the minibatch estimate over the blocks S: the data term "
             "from the blocks in S only, scaled by B/b, plus τ times the denoiser residual.",
        steps="compute the minibatch gradient as in notebook 02 (residual and back-projection on `blocks`, times "
              "A.num_blocks / len(blocks) with true division), add tau times (x − D(x, sigma)), and move x against "
              "the sum by gamma.",
        solution='''
def oder_map(x, A, y, D, gamma, tau, sigma, blocks):
    grad = A.num_blocks / len(blocks) * A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)
    return x - gamma * (grad + tau * (x - D(x, sigma)))'''),
    "subset_fixed_point": Hints(
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
    return x'''),
    "add_noise_snr": Hints(
        idea="an SNR in decibels compares amplitudes, 20·log10(||y|| / ||e||): scale standard normal noise so that "
             "its root-mean-square is that of y times 10^(−snr/20), and draw it from the generator you were given, so"
             " that the same seed gives the same noise.",
        steps="the root-mean-square of y is y.norm() / sqrt(y.numel()); draw standard normal noise with "
              "torch.randn(y.shape, generator=generator, dtype=y.dtype); multiply it by that RMS and by 10 ** "
              "(-snr_db / 20), and add it to y.",
        solution='''
import torch


def add_noise(y, snr_db, generator):
    s = y.norm() / y.numel() ** 0.5 * 10 ** (-snr_db / 20)
    return y + s * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)'''),
    "window": Hints(
        idea="a display window maps the Hounsfield range [center − width/2, center + width/2] linearly onto [0, 1], "
             "and everything outside it to the nearest end.",
        steps="subtract the window's lower edge (center − width/2), divide by width, then clamp to [0, 1].",
        solution='''
def window(hu, center, width):
    return ((hu - (center - width / 2)) / width).clamp(0, 1)'''),
}
