"""RED-DEQ and ODER: a deep equilibrium model whose layer is one RED step.

RED-DEQ (Gilton, Ongie, Willett, "Deep equilibrium architectures for inverse problems in
imaging", IEEE TCI 2021; in the RED form used by Liu et al. 2022) learns the prior R_theta
through the fixed point of

    T_theta(x) = x - gamma (grad g(x) + tau R_theta(x)),   g(x) = 1/2 sum_i ||A_i x - y_i||^2,

where R_theta(x) = x - D_theta(x, sigma) is the residual of a spectral-normalized DnCNN and
gamma, tau > 0 are learned too (log-parameterized, so they stay positive and Adam moves them
by relative amounts whatever their scale).

ODER (Liu, Xu, Gan, Shoushtari, Kamilov, "Online deep equilibrium learning for
regularization by denoising", NeurIPS 2022, Algorithm 1) keeps everything but replaces
grad g by the unbiased minibatch estimate over b of the B blocks,

    grad_S g(x) = (B / b) sum_{i in S} A_i^T (A_i x - y_i),

in the forward iterations *and* in the backward pass (the Jacobian J = dT/dx then contains
(B/b) A_S^T A_S instead of A^T A), so both cost O(b) operator blocks instead of O(B).
Two ways to draw S, chosen by ``resample``:

- ``"call"`` (default): one S per forward call, used by every forward iteration and by the
  attached application whose graph the backward pass differentiates -- the authors'
  training code. T_S is then one fixed contraction: the forward solve converges (Anderson
  acceleration, which assumes a fixed map, works), the fixed point x*_S exists and the
  implicit-function-theorem gradient is exact for it. That is why it is the default.
- ``"iteration"``: a fresh S at every application of T -- the authors' released test code
  (online RED). Over the iterations every block is used, but the map is random: the
  residual stalls at a noise floor instead of converging, so use ``forward_iteration`` or
  ``nesterov`` rather than Anderson, and the backward pass differentiates the last draw.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..algorithms.red import red_step
from ..algorithms.step import check_number, step_size
from ..physics import LeastSquares, make_sampler
from ..physics.samplers import SAMPLERS
from .layer import DEQ
from .solvers import NonContractiveError, anderson

RESAMPLE = ("call", "iteration")


class REDMap(nn.Module):
    """The RED step T_theta(x; S) = x - gamma (grad_S g(x) + tau R_theta(x)): ``[N, C, H, W] -> [N, C, H, W]``.

    ``denoiser`` is an ``nn.Module`` with ``residual(x, sigma)`` (e.g. ``DnCNN``), ``sigma``
    its fixed strength; ``gamma`` and ``tau`` the positive initial step and prior weight.
    ``forward(x, g, blocks)``: ``g`` a ``LeastSquares`` data term; ``blocks`` None (full
    gradient), a block index tensor S, or a callable drawing a fresh S at every call.
    """

    def __init__(self, denoiser: nn.Module, sigma: float, gamma: float, tau: float):
        super().__init__()
        if not isinstance(denoiser, nn.Module) or not callable(getattr(denoiser, "residual", None)):
            raise TypeError(f"denoiser must be an nn.Module with residual(x, sigma), got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.sigma = check_number("sigma", sigma)
        self.log_gamma = nn.Parameter(torch.tensor(math.log(check_number("gamma", gamma, positive=True))))
        self.log_tau = nn.Parameter(torch.tensor(math.log(check_number("tau", tau, positive=True))))

    @property
    def gamma(self) -> torch.Tensor:
        return self.log_gamma.exp()

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    def forward(self, x: torch.Tensor, g: LeastSquares, blocks=None) -> torch.Tensor:
        if callable(blocks):
            blocks = blocks()
        return red_step(x, g.grad(x, blocks), self.denoiser, self.gamma, self.tau, self.sigma)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, gamma={self.gamma.item():.4g}, tau={self.tau.item():.4g}"


class REDDEQ(DEQ):
    """RED-DEQ, and ODER when ``batch_ratio < 1``: ``model(x0, g) -> x*`` ``[N, C, H, W]``.

    ``x0`` the initial image ``[N, C, H, W]`` (e.g. FBP), ``g = LeastSquares(A, y)``.
    ``batch_ratio`` b/B in (0, 1], ``resample`` ("call" or "iteration", see the module
    docstring) and ``sampler`` ('uniform', 'stratified', 'cyclic') set how ODER draws the
    blocks; both can be overridden per call, with a ``generator`` for reproducible draws.
    All other keywords (``solver``, ``backward`` = "implicit" | "jfb" | "unrolled",
    ``max_iter``, ``tol``, ...) go to :class:`DEQ`.

    The learnable parameters are those of ``denoiser`` and ``f.log_gamma``, ``f.log_tau``;
    ``model.f.gamma`` and ``model.f.tau`` give their current values.

    Anderson acceleration is a root-finder: it returns the root of grad g + tau R_theta = 0
    even when T is not a contraction, and that root does not depend on gamma. Training with
    it can therefore grow gamma beyond the contractive range (gamma * ||A||^2 > 2; the
    shipped CT checkpoints did); such a model must be run with Anderson -- plain or Nesterov
    iteration on it diverge and raise ``NonContractiveError``.
    """

    def __init__(self, denoiser: nn.Module, sigma: float, gamma: float, tau: float,
                 batch_ratio: float = 1.0, resample: str = "call", sampler: str = "uniform",
                 solver=anderson, **deq_options):
        super().__init__(REDMap(denoiser, sigma, gamma, tau), solver=solver, **deq_options)
        self.batch_ratio, self.resample, self.sampler = self._check_ratio(batch_ratio, resample, sampler)

    @staticmethod
    def _check_ratio(batch_ratio, resample, sampler):
        ratio = check_number("batch_ratio", batch_ratio)
        if not 0 < ratio <= 1:
            raise ValueError(f"batch_ratio must lie in (0, 1], got {batch_ratio}")
        if resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {RESAMPLE}, got {resample!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler!r}")
        return ratio, resample, sampler

    def forward(self, x0: torch.Tensor, g: LeastSquares, batch_ratio: float | None = None,
                resample: str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        if not isinstance(g, LeastSquares):
            raise TypeError(f"g must be a LeastSquares data term, got {type(g).__name__}")
        ratio, resample, _ = self._check_ratio(
            self.batch_ratio if batch_ratio is None else batch_ratio, resample or self.resample, self.sampler
        )
        blocks = None
        if ratio < 1:
            draw = make_sampler(self.sampler, g.A.num_blocks, ratio)
            blocks = draw(generator) if resample == "call" else (lambda: draw(generator))
        # A spectral-normalized weight is recomputed, with one more power iteration in
        # training mode, at every access: T would change slightly from one iteration to the
        # next, and pay for it. Caching makes T one fixed map per call; the first access
        # (below, with autograd on) keeps the normalization on the gradient's path.
        with nn.utils.parametrize.cached():
            for module in self.modules():
                if nn.utils.parametrize.is_parametrized(module):
                    for name in module.parametrizations:
                        getattr(module, name)
            try:
                return super().forward(x0, g, blocks)
            except NonContractiveError as error:
                raise NonContractiveError(f"{error} {self._safe_step_hint(g)}") from None

    def _safe_step_hint(self, g: LeastSquares) -> str:
        tau = self.f.tau.item()
        bound = getattr(self.f.denoiser, "lipschitz_bound", None)
        lipschitz_R = bound() if callable(bound) else 1.0
        safe = step_size(g.A, tau, lipschitz_R)
        return f"Here gamma = {self.f.gamma.item():.4g}; a safe step: {safe.explain}"


# --- the prior R_theta ----------------------------------------------------------------


def spectral_normalize(denoiser: nn.Module) -> float:
    """Wrap every convolution of a ReLU ``DnCNN`` in spectral normalization, in place,
    keeping what the network computes up to one positive factor, which is returned.

    Spectral normalization (Miyato et al., ICLR 2018) replaces each kernel W_l by
    W_l / s_l (s_l its largest singular value, by power iteration). A ReLU network is
    positively homogeneous layer by layer, so also dividing each bias b_l by
    c_l = s_1 ... s_l makes the new network output exactly R(x) / c_L: a trained denoiser's
    residual survives the normalization up to the factor c = c_L, which a RED weight tau
    can absorb (tau -> tau * c keeps T unchanged). Returns c.
    """
    scale = 1.0
    for conv in (m for m in denoiser.modules() if isinstance(m, nn.Conv2d)):
        if nn.utils.parametrize.is_parametrized(conv):
            raise ValueError("the denoiser's convolutions are already parametrized (spectral-normalized?)")
        before = conv.weight.detach().norm()
        nn.utils.parametrizations.spectral_norm(conv)  # runs 15 power iterations on W_l
        scale *= (before / conv.weight.detach().norm()).item()  # s_l = ||W_l|| / ||W_l / s_l||
        if conv.bias is not None:
            with torch.no_grad():
                conv.bias /= scale
    if hasattr(denoiser, "spectral_norm"):
        denoiser.spectral_norm = True
    return scale


def make_prior(pretrained: str | None = "dncnn", depth: int = 7, width: int = 32):
    """The spectral-normalized DnCNN R_theta of RED-DEQ, and the factor c of its residual.

    With ``pretrained`` naming shipped weights (``checkpoints.load_state``), the network is
    that denoiser, spectral-normalized by :func:`spectral_normalize`, so that
    R_theta = R_shipped / c (weights already trained with spectral normalization give c = 1).
    Without shipped weights (``pretrained=None``, or none recorded) it is a freshly
    initialized ``DnCNN(depth, width, spectral_norm=True)`` and c = 1. Returns ``(net, c)``.
    """
    from .. import checkpoints
    from ..denoisers import DnCNN

    if pretrained is None:
        return DnCNN(1, depth, width, spectral_norm=True), 1.0
    state = checkpoints.load_state(pretrained)
    config = dict(state["config"])
    trained_with_norm = config.pop("spectral_norm", False)
    net = DnCNN(**config, spectral_norm=trained_with_norm)
    net.load_state_dict(state["state_dict"])
    return net, (1.0 if trained_with_norm else spectral_normalize(net))
