"""RED-DEQ and ODER: a deep equilibrium model whose layer is one RED step.

The model (RED-DEQ: Gilton, Ongie, Willett, IEEE TCI 2021, in the RED form of Liu et al. 2022):

    x* = T(x*),   T(x) = x − γ (∇g(x) + τ R_θ(x)),

with g(x) = ½ Σ_i ||A_i x − y_i||² and R_θ the residual of a denoiser (the shipped ``dncnn_small`` to
start from). The fixed point is a root of ∇g + τR_θ: it does not depend on γ, only on τ and θ.

**What is built in, what is measured.** γ is derived, not learned: γ = 1/(L + τ L_R), L_R = 1 (RED's
assumption on the denoiser, Romano et al. 2017) and L the constant of the gradient the map uses (L_g, or
the minibatch constant L_b). Were R_θ 1-cocoercive, T would be averaged and its iteration convergent
(``algorithms.step``); a trained network is not guaranteed to be, and the convergence results of Liu et
al. (2022) *assume* a contractive map rather than enforce it. So the contraction of the map that is
iterated is trained for (``deq.ContractionPenalty``, on that map with its own step) and measured
(``deq.jacobian_norm``). τ is learned within a factor ``tau_spread`` of its initial value,
τ = τ₀·spread^{tanh ϑ}: τ and the scale of R_θ are redundant in the fixed point (only τR_θ enters), so
a free τ can drift without bound while R_θ grows to compensate (measured on the previous models: MRI
τ/L_g from 0.30 to 0.0044); the bound keeps γτ, and with it the map's contraction, where it was set.

**ODER** (Liu, Xu, Gan, Shoushtari, Kamilov, NeurIPS 2022) replaces ∇g by the unbiased minibatch
estimate ∇_S g(x) = (B/b) Σ_{i∈S} A_iᵀ(A_i x − y_i) over b of the B blocks, in the forward iterations and
in the backward pass, with a minibatch step γ_b = 1/(L_b + τ). Three ways to use it (``resample``,
``snapshot_every``), and two steps (``minibatch_step``, below):

- **variance-reduced** (``snapshot_every`` = m; the course's ODER): a fresh S at every application, with
  the SVRG estimate ∇g(x̃) + (B/b)A_SᵀA_S(x − x̃) and a full gradient at a snapshot x̃ every m
  applications (``algorithms.step.VarianceReduced``; Johnson & Zhang, NeurIPS 2013). Its iterates
  converge to the full model's fixed point x*, so Anderson applies, the implicit gradient is exact, and
  the backward solve is variance-reduced the same way. A map costs b + B/m blocks on average.
- **online** (``resample="iteration"``, no snapshot; the paper's iteration, and what the authors' released
  CT test code does, with a stratified S): a fresh S at every application and no full pass ever. E_S[T_S]
  is the full map, so the iterates hover around x* in a noise ball of radius O(γ_b σ_b/(1 − λ))
  (notebook 04); no deterministic tolerance is met, so its stopping rule is the iteration budget, plain
  iteration is used (Anderson models one fixed map), and the output is the average of the second half of
  the iterates (``solvers.averaged_iteration``), whose noise shrinks with the budget.
- **one S per call** (``resample="call"``, a named ablation): a fixed map whose fixed point x*_S solves the
  problem on a b/B share of the data -- and E_S[x*_S] ≠ x* (notebook 04 measures the bias).

What comes from where: the layer and the minibatch gradient in forward and backward are the paper's; the
stratified draw and the B/b normalization are in the authors' released test code (``physics.samplers``,
``LeastSquares``); variance reduction (from stochastic optimization, applied to PnP by Monardo et al.,
ICIP 2021), the derived γ, the bounded τ, the contraction control and the split of the backward
vector-Jacobian product below are this package's.

**The minibatch step** (``minibatch_step``, our choice). ``"bound"``: γ_b = 1/(L_b + τ) with the bound
L_b = ``A.minibatch_lipschitz(b)`` on (B/b)||A_SᵀA_S|| for every S of size b. ``"full"``: the full map's γ_f =
1/(L_g + τ) for every map. A map T_S is averaged for γ < 2/(L_S + τ L_R), L_S = (B/b)||A_SᵀA_S|| of the S
drawn (``algorithms.step``), so γ_f keeps it averaged wherever L_S <= 2 L_g + τ -- a property of the draws, not
a bound: notebook 04 ("Which step?") measures 8 stratified draws at each shipped ODER setting (b/B = 1/4): below
1.4 L_g in MRI, where L_b = 4 L_g, and close to L_g in CT and IDT. The iterated map's contraction is trained for and
measured either way.

**Training and testing solve to different tolerances** (our choice). A relative residual ε of a map with
contraction λ bounds the distance to its fixed point only by ε/(1 − λ) (notebook 04). Training stops at
``tol`` (the implicit gradient needs a fixed point, not a precise one); an evaluation-mode call -- the test
procedure the course reports -- stops at ``eval_tol`` within ``eval_max_iter`` maps. The online iteration
has no tolerance: its budget is ``max_iter`` in both.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import checks
from ..algorithms.red import REDMap, red_update
from ..algorithms.step import VarianceReduced, batch_size_of, block_draws
from ..physics import LeastSquares, make_sampler
from ..physics.samplers import SAMPLERS
from .layer import BACKWARDS, equilibrium, set_iterations
from .solvers import anderson, averaged_iteration

RESAMPLE = ("iteration", "call")
MINIBATCH_STEPS = ("bound", "full")  # the step of a minibatch map (module docstring)


class REDDEQ(nn.Module):
    """RED-DEQ, and ODER when ``batch_ratio < 1``: ``model(x0, g) -> x*`` ``[N, C, H, W]``.

    ``denoiser``: an ``nn.Module`` ``D(x, σ)`` with ``residual(x, σ)``; ``lipschitz_R`` the
    constant L_R of the step (default 1, RED's assumption; module docstring); ``sigma`` the
    denoiser's fixed strength; ``tau`` the initial prior weight τ₀, learned within a factor
    ``tau_spread`` of it (1: fixed). ``batch_ratio`` b/B in (0, 1], ``resample``, ``sampler``
    ('uniform', 'stratified', 'cyclic') and ``snapshot_every`` (m, or None) say how ODER draws blocks
    (module docstring); ``batch_ratio``, ``resample``, ``snapshot_every``, a ``generator``, ``max_iter``,
    ``tol`` and the ``solver`` can be given per call; in evaluation mode ``eval_max_iter`` and ``eval_tol``
    (default: the training ones) replace ``max_iter`` and ``tol`` (module docstring). ``solver`` solves
    fixed and variance-reduced maps (default Anderson); online ones use plain iteration. ``backward`` is
    "implicit", "jfb" or "unrolled"; the iteration counts and tolerances are DEQ's.
    """

    def __init__(self, denoiser: nn.Module, sigma: float, tau: float, *, lipschitz_R: float = 1.0,
                 tau_spread: float = 4.0, batch_ratio: float = 1.0, resample: str = "iteration",
                 sampler: str = "stratified", snapshot_every: int | None = None, solver=anderson,
                 backward: str = "implicit", max_iter: int = 100, tol: float = 1e-4,
                 backward_max_iter: int | None = None, backward_tol: float | None = None,
                 unroll_iter: int | None = None, eval_max_iter: int | None = None, eval_tol: float | None = None,
                 minibatch_step: str = "bound"):
        super().__init__()
        if not isinstance(denoiser, nn.Module) or not callable(getattr(denoiser, "residual", None)):
            raise TypeError(f"denoiser must be an nn.Module with residual(x, sigma), got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.lipschitz_R = checks.number("lipschitz_R", lipschitz_R, positive=True)
        self.sigma = checks.number("sigma", sigma, minimum=0)
        self.register_buffer("tau_center", torch.tensor(checks.number("tau", tau, positive=True)))
        self.tau_spread = checks.number("tau_spread", tau_spread, minimum=1)
        self.tau_theta = nn.Parameter(torch.tensor(0.0))
        self.batch_ratio = checks.ratio("batch_ratio", batch_ratio)
        self.resample = checks.choice("resample", resample, RESAMPLE)
        self.sampler = checks.choice("sampler", sampler, tuple(SAMPLERS))
        self.snapshot_every = None if snapshot_every is None else checks.integer("snapshot_every", snapshot_every, 1)
        self.solver = checks.function("solver", solver, "(f, z0, max_iter, tol) -> (z, trace)")
        self.backward = checks.choice("backward", backward, BACKWARDS)
        set_iterations(self, max_iter, tol, backward_max_iter, backward_tol, unroll_iter)
        self.eval_max_iter = max_iter if eval_max_iter is None else checks.integer("eval_max_iter", eval_max_iter, 1)
        self.eval_tol = tol if eval_tol is None else checks.number("eval_tol", eval_tol, minimum=0)
        self.minibatch_step = checks.choice("minibatch_step", minibatch_step, MINIBATCH_STEPS)

    @property
    def tau(self) -> torch.Tensor:
        """τ = τ₀·spread^{tanh ϑ}: within a factor ``tau_spread`` of τ₀ whatever ϑ becomes (module docstring)."""
        return self.tau_center * self.tau_spread ** torch.tanh(self.tau_theta)

    def data_lipschitz(self, g: LeastSquares, batch_size: int | None = None) -> float:
        """L of the step: L_g for the full gradient, and for b = ``batch_size`` < B the minibatch constant L_b
        (``minibatch_step="bound"``) or L_g (``"full"``; module docstring)."""
        full = batch_size is None or self.minibatch_step == "full"
        return g.A.minibatch_lipschitz(g.A.num_blocks if full else batch_size)

    def gamma(self, g: LeastSquares, batch_size: int | None = None) -> torch.Tensor:
        """The step γ = 1/(L + τ·L_R) (module docstring), a function of the learned τ."""
        return 1.0 / (self.data_lipschitz(g, batch_size) + self.tau * self.lipschitz_R)

    def red_map(self, g: LeastSquares, batch_size: int | None = None) -> REDMap:
        """T_S(x) = x − γ(∇_S g(x) + τ R_θ(x)) with the step for b = ``batch_size`` blocks (default B)."""
        return REDMap(g, lambda x: self.denoiser.residual(x, self.sigma), self.gamma(g, batch_size), self.tau)

    def block_sampler(self, g: LeastSquares, batch_ratio: float | None = None):
        """The sampler of b/B = ``batch_ratio`` (default the model's; b worked out there, once), or None for all blocks."""
        ratio = self.batch_ratio if batch_ratio is None else batch_ratio
        return None if ratio == 1 else make_sampler(self.sampler, g.A.num_blocks, ratio)

    def online(self, batch_ratio: float | None = None, resample: str | None = None, snapshot_every=False) -> bool:
        """Whether a call iterates a map that never settles: a fresh S at every application (b < B,
        ``resample="iteration"``) without variance reduction. Then Anderson's model of one fixed map does not
        apply (forward and backward solves use plain iteration), no deterministic tolerance is ever met, and
        the stopping rule is the iteration budget with the tail average as output (``averaged_iteration``)."""
        ratio = self.batch_ratio if batch_ratio is None else batch_ratio
        every = self.snapshot_every if snapshot_every is False else snapshot_every
        return ratio < 1 and (self.resample if resample is None else resample) == "iteration" and every is None

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
                max_iter: int | None = None, snapshot_every=False, solver=None, tol: float | None = None) -> torch.Tensor:
        if not isinstance(g, LeastSquares):
            raise TypeError(f"g must be a LeastSquares data term, got {type(g).__name__}")
        g.check(x0)
        checks.finite("x0", x0)
        ratio = self.batch_ratio if batch_ratio is None else checks.ratio("batch_ratio", batch_ratio)
        resample = self.resample if resample is None else checks.choice("resample", resample, RESAMPLE)
        every = self.snapshot_every if snapshot_every is False else (
            None if snapshot_every is None else checks.integer("snapshot_every", snapshot_every, 1))
        max_iter = None if max_iter is None else checks.integer("max_iter", max_iter, 1)
        sampler = self.block_sampler(g, ratio)
        T = self.red_map(g, batch_size_of(sampler, g.A))
        draw = self.draws(sampler, resample, checks.generator(generator))
        online = self.online(ratio, resample, every)
        if solver is None:
            solver = averaged_iteration if online else self.solver
        else:
            solver = checks.function("solver", solver, "(f, z0, max_iter, tol) -> (z, trace)")
        reduced = every is not None and sampler is not None and resample == "iteration"
        # A variance-reduced call estimates ∇g(x) (forward) and AᵀA u (backward) by VarianceReduced; the others
        # use the minibatch estimates over draw() (all blocks when the call is full batch).
        chunk = batch_size_of(sampler, g.A)
        grad = VarianceReduced(g.grad, g, draw, every, chunk) if reduced else lambda x: g.grad(x, draw())
        f = (lambda x: T.step(x, grad(x))) if reduced else (lambda x: T(x, draw()))

        def attach(x_star):
            # R_θ's graph at x* serves the VJPs Jᵀu of the backward solve and the final pass to θ and τ; the
            # data part of J is linear and known, (B/b)A_SᵀA_S (or its variance-reduced estimate), so it is
            # applied directly -- with a fresh S at every backward step unless one S serves the whole call.
            x_in = x_star.detach().requires_grad_()
            r = T.R(x_in)
            with torch.no_grad():
                data = grad(x_star)
            constant = T.detached()
            normal = VarianceReduced(g.normal, g, draw, every, chunk) if reduced else None

            def vjp(u):
                JRt_u = torch.autograd.grad(r, x_in, u, retain_graph=True)[0]
                return constant.linear(u, JRt_u, Hv=normal(u)) if reduced else constant.linear(u, JRt_u, draw())

            return red_update(x_in, data, r, T.gamma, T.tau), vjp

        tol = None if tol is None else checks.number("tol", tol, minimum=0)
        if online:  # the budget is the stopping rule
            tol = 0.0
        elif not self.training:  # the test procedure (module docstring)
            max_iter, tol = max_iter or self.eval_max_iter, self.eval_tol if tol is None else tol
        return equilibrium(self, f, x0, solver, attach, max_iter=max_iter, tol=tol)

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, tau={self.tau.item():.4g}, lipschitz_R={self.lipschitz_R}, batch_ratio="
                f"{self.batch_ratio}, resample={self.resample!r}, sampler={self.sampler!r}, snapshot_every="
                f"{self.snapshot_every}, backward={self.backward!r}")
