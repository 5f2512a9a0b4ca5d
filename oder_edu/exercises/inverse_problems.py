"""Notebook 01 · inverse problems: the power method for L_g = ||A||², Landweber's gradient descent and PSNR."""

from __future__ import annotations

import numbers

import torch

from ._grading import (_check, _compare, _diagnose, _draw, _hints, _number, _power_method, _random_problem, _tensor,
                       _Wrong)
from ._recording import RecordingMatrix
from .questions import _question


# --- power_iteration ------------------------------------------------------------------------------------------------
def check_power_iteration(power_iteration) -> bool:
    """``power_iteration(A, num_iter) -> float``: L = ||A||² = λ_max(AᵀA) by the power method (von Mises 1929).

    Verifies the number returned with num_iter = 100 on two 6x16 operators U diag(s) Vᵀ (3 blocks of 2 rows) of
    known singular values s, to 1e-3. Diagnoses ||A|| instead of ||A||², 1: the norm of the normalized vector
    instead of that of AᵀA applied to it, and the package's answer (``A.norm() ** 2``: A counts the calls)."""
    def attempt():
        for seed, s in ((0, [3.0, 1.5, 1.0, 0.5, 0.2, 0.1]), (1, [0.8, 0.3, 0.2, 0.1, 0.1, 0.05])):
            gen = torch.Generator().manual_seed(seed)
            U, V = torch.linalg.qr(_draw(gen, 6, 6))[0], torch.linalg.qr(_draw(gen, 16, 16))[0]
            M = U @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ V[:, :6].T
            A = RecordingMatrix(M, (1, 4, 4), num_blocks=3)
            L, got = s[0] ** 2, _number(power_iteration(A, 100), "power_iteration")
            if A.norm_calls:
                raise _Wrong("you called A.norm(), the package's own power iteration: the exercise is to write "
                             "it, with A.forward and A.adjoint.")
            _power_method(got, L, s[0], f"you returned ||A|| = {got:.4g}, but L = ||A||² = {L:.4g}.", "AᵀA",
                          f"for an operator with ||A||² = {L:.4g} you returned {got:.4g}.")
    return _check("power_iteration", power_iteration, attempt)


_hints(
    "power_iteration",
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
    return L''')


# --- landweber ------------------------------------------------------------------------------------------------------
def check_landweber(landweber) -> bool:
    """``landweber(A, y, gamma, num_iter) -> x``: num_iter steps x_{k+1} = x_k − γ Aᵀ(A x_k − y) from x_0 = 0
    (Landweber 1951), gradient descent on g(x) = ½||Ax − y||².

    Verifies the iterate after 10 steps, x ``[2, 1, 4, 4]``, on 6 blocks of a random matrix with γ below 1/L_g,
    to 1e-5. Diagnoses steps uphill (+γ∇g), one step too few or too many, and steps that ignore γ."""
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


_hints(
    "landweber",
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
    return x''')


# --- psnr -----------------------------------------------------------------------------------------------------------
def check_psnr(my_psnr) -> bool:
    """``my_psnr(x, ref) -> [N]``: PSNR = 10 log10(1 / MSE) per image of a batch ``[N, C, H, W]`` with values in
    [0, 1], the MSE taken over C, H, W.

    Verifies the N = 2 values of two images at two noise levels, to 1e-5. Diagnoses one number for the whole
    batch, 20 log10 of the MSE, a sum of squared errors instead of their mean, and the wrong sign."""
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


_hints(
    "psnr",
    idea="PSNR compares the squared error with the peak value (1 here): 10·log10(1 / MSE), in decibels. Each "
         "image of the batch gets its own MSE, the mean of its squared errors over channels and pixels.",
    steps="square the difference, take the mean over dimensions (1, 2, 3) — not over the batch, so one value per "
          "image remains, shape [N] — then turn 1/MSE into decibels with torch.log10.",
    solution='''
import torch


def my_psnr(x, ref):
    mse = (x - ref).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse)''')


# --- questions ------------------------------------------------------------------------------------------------------
_question(
    "fista_past_its_bound",
    choices={"a": "it blows up, like any method run past the step its guarantee needs",
             "b": "it converges about as fast as at γ = 1/L_g",
             "c": "it converges, but clearly slower than at γ = 1/L_g: most of what momentum buys is lost"},
    answer="c",
    feedback={"a": "the adaptive restart resets the momentum whenever a step reverses the last one, so the "
                   "oscillation that would grow is cut short; the plain gradient step itself is stable up to 2/L_g.",
              "b": "above 1/L_g the data step over-shoots along the top singular vectors (its factor 1 − γL_g is "
                   "negative), momentum amplifies that, and every restart throws the accumulated momentum away."},
    explanation="FISTA's O(1/k²) guarantee needs γ ≤ 1/L_g. Between 1/L_g and 2/L_g the gradient step still "
                "contracts, but it flips the sign of the error along the top singular vectors; momentum then "
                "pumps that oscillation, and the restart — triggered again and again — keeps it stable at the "
                "price of its speed. The derivation below the sweep says from which step on.")
