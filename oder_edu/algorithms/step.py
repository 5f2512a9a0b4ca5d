"""The default step size γ = 1/(L_g + τ·L_R), and the divergence guard every solver shares.

For the RED update x⁺ = x − γ(∇g(x) + τ R(x)) (Romano, Elad, Milanfar, SIAM J. Imaging Sci.
2017), the map ∇g + τR is (L_g + τ·L_R)-Lipschitz, with L_g = ||A||² for
g(x) = ½||Ax − y||² and L_R the Lipschitz constant of the denoiser residual R = I − D.
A gradient step no longer than the inverse of that constant is the classical safe choice
(Nesterov, Introductory Lectures on Convex Optimization, 2004; for RED, Reehorst
& Schniter, IEEE TCI 2019). With τ = 0 it is the 1/L_g step of gradient descent and PnP-PGD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GROWTH = 1000.0  # a step this many times the first step (and larger than x) means divergence


def check_number(name: str, value, *, positive: bool = False) -> float:
    """``value`` as a float; TypeError if it is not a real number, ValueError if it is
    non-finite, negative, or (with ``positive``) zero."""
    if torch.is_tensor(value) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
    return value


@dataclass(frozen=True)
class StepSize:
    """γ = 1/(L_g + τ·L_R) with the constants it came from; ``explain`` says so in words."""

    value: float
    lipschitz_g: float
    tau: float
    lipschitz_R: float

    @property
    def explain(self) -> str:
        return (
            f"γ = 1/(L_g + τ·L_R) = 1/({self.lipschitz_g:.4g} + {self.tau:.4g}·{self.lipschitz_R:.4g})"
            f" = {self.value:.4g}, because ∇g + τR is (L_g + τ·L_R)-Lipschitz, with L_g = ||A||²"
            f" from power iteration and L_R the denoiser residual's Lipschitz bound, and a gradient"
            f" step of at most one over that constant cannot make the iterates blow up."
        )

    def __float__(self) -> float:
        return self.value


def step_size(A, tau: float = 0.0, lipschitz_R: float = 1.0) -> StepSize:
    """The safe step γ = 1/(L_g + τ·L_R) for operator ``A`` (``L_g = A.norm()**2``).

    ``lipschitz_R = 1`` holds when the denoiser is firmly non-expansive (a proximal operator,
    or a denoiser whose symmetric Jacobian has eigenvalues in [0, 1], as RED assumes); a
    merely non-expansive D gives R = I − D a bound of 2. ``tau = 0`` gives 1/L_g.
    """
    tau = check_number("tau", tau)
    lipschitz_R = check_number("lipschitz_R", lipschitz_R)
    L_g = float(A.norm()) ** 2
    total = L_g + tau * lipschitz_R
    if total <= 0:
        raise ValueError(f"L_g + τ·L_R must be > 0 to define a step size, got {total}")
    return StepSize(1.0 / total, L_g, tau, lipschitz_R)


def divergence_reason(step: float, first_step: float | None, prev_norm: float) -> str | None:
    """Why the iterates are diverging, or None.

    ``step`` = ||x_k − x_{k−1}||, ``first_step`` the first non-zero step of the run,
    ``prev_norm`` = ||x_{k−1}||. Two signs: a non-finite iterate (its step is then NaN or
    Inf), or a step that has grown ``GROWTH``× over the first one *and* exceeds the whole
    previous iterate. The relative residual alone cannot tell: under geometric blow-up
    x_k ≈ ρ x_{k−1} it stays near ρ − 1 while the step grows like ρ^k. The second condition
    keeps a warm start (a tiny first step) from raising a false alarm.
    """
    if not math.isfinite(step):
        return "non-finite values"
    if first_step is not None and step > GROWTH * first_step and step > prev_norm:
        return f"the step grew over {GROWTH:.0f}× its first size"
    return None
