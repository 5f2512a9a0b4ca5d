"""What every solver takes a step with: the data term, its (minibatch) gradient and a step size.

The default step γ = 1/(L + τ·L_R), and why. RED iterates T(x) = x − γ(∇g(x) + τR(x))
(Romano, Elad, Milanfar, SIAM J. Imaging Sci. 2017). ∇g is 1/L-cocoercive for convex,
L-smooth g = ½||Ax − y||² (Baillon–Haddad; L = ||A||²). If the denoiser D is firmly
nonexpansive, R = I − D is firmly nonexpansive too, hence 1-cocoercive (L_R = 1). A sum of a
1/L- and a 1/(τL_R)-cocoercive map is 1/(L + τL_R)-cocoercive, so T is averaged for every
γ < 2/(L + τL_R), and its iterates converge to a fixed point whenever one exists
(Krasnosel'skii–Mann; Bauschke & Combettes, *Convex Analysis and Monotone Operator Theory*,
2nd ed., Springer 2017, chapters 4 and 5). The default takes half of that bound. Lipschitz
continuity and monotonicity of R alone are *not* enough (a rotation is both, and its gradient
iteration spirals out); and a trained CNN denoiser is in general not firmly nonexpansive,
so for it the default is a heuristic whose outcome the notebooks measure.

Online methods use the minibatch gradient (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i), which is steeper
than ∇g: its Lipschitz constant is bounded by the minibatch constant L_b =
``A.minibatch_lipschitz(b)`` ≥ L_g, and the default step uses that bound instead of L_g. b is
the ``batch_size`` of the stream's sampler (``physics.online_sampler``), worked out once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks
from ..physics import LeastSquares
from ..physics.base import BlockOperator


@dataclass(frozen=True)
class StepSize:
    """γ = 1/(L + τ·L_R) with the constants it came from (L = ``data_lipschitz``: L_g, or the minibatch
    constant L_b of b = ``batch_size`` of the B = ``num_blocks`` blocks); ``explain`` says so in words."""

    value: float
    data_lipschitz: float
    tau: float
    lipschitz_R: float
    batch_size: int
    num_blocks: int

    @property
    def explain(self) -> str:
        which = ("L = L_g = ||A||²" if self.batch_size == self.num_blocks else
                 f"L = L_b = {self.data_lipschitz:.4g}, the minibatch constant at b = {self.batch_size} of "
                 f"B = {self.num_blocks} (≥ L_g)")
        return (f"γ = 1/(L + τ·L_R) = 1/({self.data_lipschitz:.4g} + {self.tau:.4g}·{self.lipschitz_R:.4g}) = "
                f"{self.value:.4g}, with {which}: half the bound 2/(L + τ·L_R) under which T is averaged "
                f"and converges, when D is firmly nonexpansive (then L_R = 1).")

    def __float__(self) -> float:
        return self.value


def step_size(A, tau: float = 0.0, lipschitz_R: float = 1.0, batch_size: int | None = None) -> StepSize:
    """The default step γ = 1/(L + τ·L_R) for operator ``A`` (module docstring): L = L_g = ||A||², or for
    ``batch_size`` b < B the minibatch constant ``A.minibatch_lipschitz(b)``. ``tau = 0`` gives 1/L."""
    if not isinstance(A, BlockOperator):
        raise TypeError(f"A must be a BlockOperator, got {type(A).__name__}")
    tau = checks.number("tau", tau, minimum=0)
    lipschitz_R = checks.number("lipschitz_R", lipschitz_R, minimum=0)
    b = A.num_blocks if batch_size is None else checks.integer("batch_size", batch_size, 1, A.num_blocks)
    L = A.minibatch_lipschitz(b)
    return StepSize(1.0 / (L + tau * lipschitz_R), L, tau, lipschitz_R, b, A.num_blocks)


def batch_size_of(sampler, A) -> int:
    """b of an online method's ``sampler`` (``physics.online_sampler``), B for the full gradient (None)."""
    return A.num_blocks if sampler is None else sampler.batch_size


def setup(A, y: torch.Tensor, x0: torch.Tensor | None):
    """The data term ``LeastSquares(A, y)`` and a checked start ``x0``.

    ``x0=None`` starts from zeros ``[N, C, H, W]`` (the batch, device and real precision of
    ``y``): no solver then depends on how well Aᵀy happens to be scaled. A given ``x0`` must
    have A's image shape and ``y``'s batch, device and precision, and be finite.
    """
    g = LeastSquares(A, y)  # checks y's shape, dtype and finiteness
    real = y.real.dtype if y.is_complex() else y.dtype
    if x0 is None:
        return g, torch.zeros(y.shape[0], *A.image_shape, dtype=real, device=y.device)
    g.check(x0)
    return g, checks.finite("x0", x0).detach()


class VarianceReduced:
    """The SVRG estimate of an affine map of x whose linear part is the data term's Hessian H = AᵀA (Johnson &
    Zhang, NeurIPS 2013; for PnP, Monardo, Iyer, Donegan, Lin, ICIP 2021): ``full`` (``g.grad`` or
    ``g.normal``) at a snapshot x̃ taken at every ``every``-th call, in between

        full(x̃) + (B/b) A_SᵀA_S (x − x̃),        S = ``draw()``,

    one minibatch normal-operator pass. It is unbiased like the plain minibatch estimate, but its variance
    vanishes as x approaches x̃, and x̃ follows the iterates: an iteration using it converges to the exact
    full-batch fixed point, where the plain online iteration stays in a noise ball. Per call it costs
    b + B/``every`` blocks on average; the snapshot is summed ``chunk`` blocks at a time, so it holds no more
    than a minibatch's memory. ``calls`` counts the calls, ``snapshots`` the full passes."""

    def __init__(self, full, g: LeastSquares, draw, every: int, chunk: int | None = None):
        self.full, self.g, self.draw, self.chunk = full, g, draw, chunk
        self.every = checks.integer("snapshot_every", every, 1)
        self.calls = self.snapshots = 0
        self.anchor = self.at_anchor = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The estimate at ``x``; ``self.blocks`` is then the S it used (None for a snapshot: all blocks)."""
        self.calls += 1
        if (self.calls - 1) % self.every == 0:
            self.anchor, self.at_anchor, self.blocks = x, self.full(x, chunk=self.chunk), None
            self.snapshots += 1
            return self.at_anchor
        self.blocks = self.draw()
        return self.at_anchor + self.g.normal(x - self.anchor, self.blocks)


def block_draws(sampler, generator: torch.Generator | None):
    """``() -> S``: the blocks of the next iteration, drawn by ``sampler`` from ``generator``, or None
    (all blocks, the full gradient) when ``sampler`` is None. Online PnP (Sun, Wohlberg, Kamilov, IEEE TCI
    2019) and online RED (Wu, Sun, Matlock, Liu, Tian, Kamilov, "SIMBA", IEEE J. Sel. Topics Signal
    Process. 2020) take the unbiased estimate (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over a fresh S each iteration."""
    checks.generator(generator)
    if sampler is None:
        return lambda: None
    return lambda: sampler(generator)
