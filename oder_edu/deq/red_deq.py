"""RED-DEQ and ODER: a deep equilibrium model whose layer is one RED step.

The model (RED-DEQ: Gilton, Ongie, Willett, IEEE TCI 2021, in the RED form of Liu et al. 2022):

    x* = T(x*),   T(x) = x − γ (∇g(x) + τ R_θ(x)),

with g(x) = ½ Σ_i ||A_i x − y_i||² and R_θ the residual of a DnCNN (the shipped ``dncnn_small``
to start from).

**What is built in, what is measured.** The step is not learned: γ = 1/(L + τ L_R) with
L = L_g = ||A||² for the full gradient and L_R = 1, RED's assumption on the denoiser (Romano
et al. 2017). Were R_θ 1-cocoercive (a firmly nonexpansive denoiser), that step would make T
averaged and its iteration convergent (``algorithms.step``); a trained network is not
guaranteed to be (its certified bound, ``DnCNN.lipschitz_bound``, is far above 1), and the
convergence results of Liu et al. (2022) likewise *assume* a contractive T rather than enforce
it. So the contraction is trained for and measured: training adds a penalty on ||∂T/∂x||₂ at
the training fixed points above a target (``deq.ContractionPenalty``, in the spirit of the
Jacobian regularization of Bai, Koltun & Kolter, ICML 2021), and ``oder-edu train deq`` records,
for every shipped model, ||∂T/∂x||₂ at the fixed points of held-out images
(``deq.jacobian_norm``) and whether plain iteration from x0 converges (``deq.plain_solve``). A
penalty at training points certifies nothing elsewhere: what the course states is the measured
constant, where it was measured. Learning γ
would be pointless anyway: the fixed point, a root of ∇g + τR_θ, does not depend on γ, so its
gradient vanishes there and only truncated solves move it. τ > 0 (log-parameterized) and θ
are learned.

**ODER** (Liu, Xu, Gan, Shoushtari, Kamilov, NeurIPS 2022) replaces ∇g by the unbiased
minibatch estimate ∇_S g(x) = (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over b of the B blocks, in the
forward iterations and in the backward pass, so both cost b blocks instead of B. Its step uses
the minibatch constant (``A.minibatch_lipschitz``) for L, which bounds (B/b)||A_S||² for every
S. Two ways to draw S (``resample``):

- ``"iteration"`` (default; the paper's online iteration, and what the authors' released CT
  test code does, with a stratified S): a fresh S at every application of T in the forward
  solve and at every step of the backward solve. E_S[T_S] is the full-batch map with the same
  γ, so the iterates approach the full model's fixed point x* up to the noise of the estimate,
  and the backward iteration u = J_Sᵀu + v with fresh S has the full Jacobian's solution as its
  mean. Plain iteration is used (Anderson assumes a fixed map).
- ``"call"`` (a named ablation): one S per forward call. T_S is then one fixed map whose fixed
  point x*_S solves the problem on a b/B share of the data -- and E_S[x*_S] ≠ x* (notebook 04
  measures the bias).

What comes from where: the layer and the minibatch gradient in forward and backward are the
paper's; the stratified draw and the B/b normalization are in the authors' released test code
(``physics.samplers``, ``LeastSquares``); the derived γ, the measured contraction and the split
of the backward vector-Jacobian product below are this package's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import checks
from ..algorithms.red import REDMap, red_update
from ..algorithms.step import batch_size_of, block_draws
from ..physics import LeastSquares, make_sampler
from ..physics.samplers import SAMPLERS
from .layer import BACKWARDS, equilibrium, set_iterations
from .solvers import anderson, forward_iteration

RESAMPLE = ("iteration", "call")


class REDDEQ(nn.Module):
    """RED-DEQ, and ODER when ``batch_ratio < 1``: ``model(x0, g) -> x*`` ``[N, C, H, W]``.

    ``denoiser``: an ``nn.Module`` ``D(x, σ)`` with ``residual(x, σ)``; ``lipschitz_R`` the
    constant L_R of the step (default 1, RED's assumption; module docstring); ``sigma`` the
    denoiser's fixed strength; ``tau`` the initial prior weight. ``batch_ratio`` b/B in (0, 1],
    ``resample`` and ``sampler`` ('uniform', 'stratified', 'cyclic') say how ODER draws blocks;
    ``batch_ratio``, ``resample``, a ``generator`` and ``max_iter`` can be given per call. ``solver`` solves
    fixed maps (default Anderson); online solves use plain iteration. ``backward`` is
    "implicit", "jfb" or "unrolled"; the iteration counts and tolerances are DEQ's.
    """

    def __init__(self, denoiser: nn.Module, sigma: float, tau: float, *, lipschitz_R: float = 1.0,
                 batch_ratio: float = 1.0,
                 resample: str = "iteration", sampler: str = "stratified", solver=anderson,
                 backward: str = "implicit", max_iter: int = 100, tol: float = 1e-4,
                 backward_max_iter: int | None = None, backward_tol: float | None = None,
                 unroll_iter: int | None = None):
        super().__init__()
        if not isinstance(denoiser, nn.Module) or not callable(getattr(denoiser, "residual", None)):
            raise TypeError(f"denoiser must be an nn.Module with residual(x, sigma), got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.lipschitz_R = checks.number("lipschitz_R", lipschitz_R, positive=True)
        self.sigma = checks.number("sigma", sigma, minimum=0)
        self.log_tau = nn.Parameter(torch.tensor(math.log(checks.number("tau", tau, positive=True))))
        self.batch_ratio = checks.ratio("batch_ratio", batch_ratio)
        self.resample = checks.choice("resample", resample, RESAMPLE)
        self.sampler = checks.choice("sampler", sampler, tuple(SAMPLERS))
        self.solver = checks.function("solver", solver, "(f, z0, max_iter, tol) -> (z, trace)")
        self.backward = checks.choice("backward", backward, BACKWARDS)
        set_iterations(self, max_iter, tol, backward_max_iter, backward_tol, unroll_iter)

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    def data_lipschitz(self, g: LeastSquares, batch_size: int | None = None) -> float:
        """L of the step: L_g for the full gradient, the minibatch constant L_b for b = ``batch_size`` < B."""
        return g.A.minibatch_lipschitz(g.A.num_blocks if batch_size is None else batch_size)

    def gamma(self, g: LeastSquares, batch_size: int | None = None) -> torch.Tensor:
        """The step γ = 1/(L + τ·L_R) (module docstring), a function of the learned τ."""
        return 1.0 / (self.data_lipschitz(g, batch_size) + self.tau * self.lipschitz_R)

    def red_map(self, g: LeastSquares, batch_size: int | None = None) -> REDMap:
        """T_S(x) = x − γ(∇_S g(x) + τ R_θ(x)) with the step for b = ``batch_size`` blocks (default B)."""
        return REDMap(g, lambda x: self.denoiser.residual(x, self.sigma), self.gamma(g, batch_size), self.tau)

    def block_sampler(self, g: LeastSquares, batch_ratio: float):
        """The sampler of b/B = ``batch_ratio`` (b worked out there, once), or None for all blocks."""
        return None if batch_ratio == 1 else make_sampler(self.sampler, g.A.num_blocks, batch_ratio)

    def online(self, batch_ratio: float | None = None, resample: str | None = None) -> bool:
        """Whether a call draws a fresh S at every application of the map (b < B, ``resample="iteration"``).
        The map then changes every step: Anderson's model of one fixed map does not apply, so forward and
        backward solves use plain iteration, and no deterministic tolerance is ever met."""
        ratio = self.batch_ratio if batch_ratio is None else batch_ratio
        return ratio < 1 and (self.resample if resample is None else resample) == "iteration"

    @staticmethod
    def draws(sampler, resample: str, generator):
        """``() -> S``, called once per application of the map in a call (forward, attached, backward):
        None for all blocks; with ``resample="call"`` the one S drawn now; else a fresh S each time."""
        draw = block_draws(sampler, generator)
        if resample == "call" and sampler is not None:
            blocks = draw()
            return lambda: blocks
        return draw

    def forward(self, x0: torch.Tensor, g: LeastSquares, batch_ratio: float | None = None,
                resample: str | None = None, generator: torch.Generator | None = None,
                max_iter: int | None = None) -> torch.Tensor:
        if not isinstance(g, LeastSquares):
            raise TypeError(f"g must be a LeastSquares data term, got {type(g).__name__}")
        g.check(x0)
        checks.finite("x0", x0)
        ratio = self.batch_ratio if batch_ratio is None else checks.ratio("batch_ratio", batch_ratio)
        resample = self.resample if resample is None else checks.choice("resample", resample, RESAMPLE)
        max_iter = None if max_iter is None else checks.integer("max_iter", max_iter, 1)
        sampler = self.block_sampler(g, ratio)
        T = self.red_map(g, batch_size_of(sampler, g.A))
        draw = self.draws(sampler, resample, checks.generator(generator))
        solver = forward_iteration if self.online(ratio, resample) else self.solver

        def attach(x_star):
            # R_θ's graph at x* serves the VJPs Jᵀu of the backward solve and the final pass to θ and τ;
            # the data part of J is linear and known, (B/b)A_SᵀA_S, so it is applied directly -- with a
            # fresh S at every backward step when online.
            x_in = x_star.detach().requires_grad_()
            r = T.R(x_in)
            with torch.no_grad():
                data = T.g.grad(x_star, draw())
            constant = T.detached()
            vjp = lambda u: constant.linear(u, torch.autograd.grad(r, x_in, u, retain_graph=True)[0], draw())  # noqa: E731
            return red_update(x_in, data, r, T.gamma, T.tau), vjp

        return equilibrium(self, lambda x: T(x, draw()), x0, solver, attach, max_iter=max_iter)

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, tau={self.tau.item():.4g}, lipschitz_R={self.lipschitz_R}, batch_ratio={self.batch_ratio}, "
                f"resample={self.resample!r}, sampler={self.sampler!r}, backward={self.backward!r}")
