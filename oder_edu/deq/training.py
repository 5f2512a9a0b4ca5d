"""One training step, evaluation and the measured properties of a RED-DEQ / ODER model.

- ``train_step``: one Adam step on mean ||x* − x||² (forward solve, backward, update), with its
  time, peak tensor memory and solver iterations, optionally with a ``ContractionPenalty``;
- ``evaluate``: PSNR / SSIM on held-out images, with the model run as trained, with all blocks,
  or online;
- ``jacobian_norm``: ||∂T/∂x||₂ at given points by the Lanczos process on JᵀJ -- what the course
  calls the model's measured contraction constant -- and ``weakest_direction``, the direction that sets it,
  with the data term's and the prior's shares;
- ``plain_solve``: plain fixed-point iteration with the model's own step, to check that it
  converges without Anderson's help.
"""

from __future__ import annotations

import contextlib
import time

import torch

from .. import checks
from ..algorithms.iterate import NonContractiveError
from ..images import natural_crops
from ..memory import PeakTensorMemory
from ..metrics import psnr, ssim
from ..phantoms import VALIDATION_SEED, validation_phantoms
from ..physics import LeastSquares
from ..physics.base import lanczos
from ..problems import APPS, initial_image, simulate
from .red_deq import REDDEQ
from .solvers import averaged_iteration, forward_iteration


SELECTION_SEED = VALIDATION_SEED + 100  # phantoms of the selection split: used nowhere else


def held_out(app: str, n: int, image_size: int, split: str = "test") -> torch.Tensor:
    """``n`` images of ``app`` ``[n, 1, H, W]`` that nothing trains on: cell fields for IDT; otherwise half
    phantoms and half crops of natural pictures. ``split="test"``: the figures the course reports
    (``VALIDATION_SEED``, the test pictures ``images.NATURAL_TEST``); ``"validation"``: what training selects
    its best checkpoint on (``SELECTION_SEED``, the validation picture), so no test image is ever chosen on."""
    checks.choice("app", app, APPS)
    seed = {"test": VALIDATION_SEED, "validation": SELECTION_SEED}[checks.choice("split", split, ("test", "validation"))]
    if app == "idt":
        return validation_phantoms(n, image_size, seed=seed, cells=True)
    k = n // 2
    parts = [validation_phantoms(n - k, image_size, seed=seed)]
    if k:
        parts.append(natural_crops(k, image_size, torch.Generator().manual_seed(seed), split=split))
    return torch.cat(parts)


def train_step(model, optimizer, x: torch.Tensor, x0: torch.Tensor, g: LeastSquares,
               generator: torch.Generator, measure_memory: bool = True,
               penalty: ContractionPenalty | None = None) -> dict:
    """One Adam step on mean ||x* − x||² (plus the ``penalty`` at x*, if given); returns the log
    row: loss, batch PSNR, seconds, peak tensor memory (MiB), the blocks the step evaluated (forward,
    backward and penalty; ``LeastSquares.evaluations``), the solves' iterations and last residuals, τ/L_g
    and the penalty's estimate of ||∂T/∂x|| on the iterated map (``contraction``, the largest in the batch).

    ``model`` is the ``REDDEQ`` or its ``DistributedDataParallel`` wrapper. A step whose forward solve of
    a settling map (full batch, one S, or variance-reduced) stops short of its tolerance raises
    ``NonContractiveError``: the implicit gradient is the gradient at a fixed point. With
    ``measure_memory``, peak tensor memory is measured around the whole step; on the CPU that counter
    intercepts every tensor operation and slows the step, so its time is then not representative
    (``peak_mib`` is None without it).
    """
    deq = getattr(model, "module", model)
    checks.finite("the training images x", x)  # NaN targets would turn every weight into NaN
    memory = PeakTensorMemory(x.device) if measure_memory else contextlib.nullcontext()
    evaluations = g.evaluations
    start = time.perf_counter()
    with memory:
        x_hat = model(x0, g, generator=generator)
        if deq.backward != "unrolled" and not deq.online() and deq.tol > 0 and not deq.forward_trace.converged:
            # the implicit gradient is the gradient at a fixed point; without one it can point anywhere
            raise NonContractiveError(f"the forward solve did not reach tol in {deq.forward_trace.iterations} "
                                      f"iterations (residual {deq.forward_trace.residuals[-1]:.2e})")
        loss = (x_hat - x).square().mean()
        contraction, norms = penalty(deq, x_hat, g, generator) if penalty is not None else (0.0, None)
        optimizer.zero_grad(set_to_none=True)
        (loss + contraction).backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    forward, backward = deq.forward_trace, deq.backward_trace
    return {
        "loss": loss.item(), "psnr": psnr(x_hat.detach().clamp(0, 1), x).mean().item(), "seconds": seconds,
        "peak_mib": memory.peak_bytes / 2**20 if measure_memory else None, "blocks": g.evaluations - evaluations + (0 if penalty is None else penalty.evaluations),
        "forward_iters": forward.iterations, "forward_residual": forward.residuals[-1],
        "backward_iters": 0 if backward is None else backward.iterations,
        "backward_residual": None if backward is None else backward.residuals[-1],
        "tau_over_L": deq.tau.item() / g.A.norm() ** 2, "contraction": None if norms is None else norms.max().item(),
    }


def _per_image(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *[1] * (t.ndim - 1))


def iterated_map(model: REDDEQ, g: LeastSquares, generator: torch.Generator | None = None):
    """``(T, S)``: the map a call of ``model`` iterates, with the step it iterates it with -- the full map
    with γ_f, or for ODER a minibatch map T_S with its minibatch step (``REDDEQ.gamma``) and S drawn from
    ``generator`` -- and S (None: all blocks). Its Jacobian I − γ((B/b)A_SᵀA_S + τJ_R) is also the
    variance-reduced map's."""
    sampler = model.block_sampler(g)
    blocks = None if sampler is None else sampler(generator)
    return model.red_map(g, None if blocks is None else len(blocks)), blocks


def _linearization(T, x: torch.Tensor, blocks=None):
    """``(J, Jᵀ)`` of the RED map ``T`` (an ``algorithms.REDMap``) over ``blocks`` linearized at ``x``: J v and
    Jᵀu by ``T.linear`` with J_R v from ``torch.func.jvp`` and J_Rᵀu from ``torch.func.vjp`` through the prior.
    Call them under ``torch.no_grad()``: the transforms differentiate R by themselves, and under the graph to θ
    every iteration's vector would hold its predecessors' (measured: 13.6 MiB for one 64² MRI image, 2.7
    without)."""
    T, x = T.detached(), x.detach()
    with torch.no_grad():
        _, pullback = torch.func.vjp(T.R, x)
    J = lambda v: T.linear(v, torch.func.jvp(T.R, (x,), (v,))[1], blocks)  # noqa: E731
    Jt = lambda u: T.linear(u, pullback(u)[0], blocks)  # noqa: E731
    return J, Jt


def _top_singular_vector(T, x: torch.Tensor, v: torch.Tensor, num_iter: int, blocks=None, method: str = "power",
                         tol: float = 1e-5):
    """The top right singular vector of J from ``v`` (``_linearization``): ``(v, J v)``, the unit vector per image
    and its image. ``method="power"``: ``num_iter`` power iterations on JᵀJ -- a few, warm-started, serve the
    penalty, but from a cold start they approach ||J|| slowly where the top of the spectrum is crowded;
    ``"lanczos"``: at most ``num_iter`` steps of ``physics.base.lanczos`` (relative residual ``tol``), what
    ``jacobian_norm`` uses."""
    J, Jt = _linearization(T, x, blocks)
    with torch.no_grad():
        if method == "lanczos":
            v = lanczos(lambda w: Jt(J(w)), v, num_iter, tol)[1]
        else:
            v = v / _per_image(v)
            for _ in range(num_iter):
                w = Jt(J(v))
                v = w / _per_image(w)
        return v, J(v)


def jacobian_norm(model: REDDEQ, x: torch.Tensor, g: LeastSquares, num_iter: int = 200, tol: float = 1e-5,
                  draws: int = 4, seed: int = 0) -> torch.Tensor:
    """``[N]``: ||∂T/∂x||₂ at each image of ``x`` for the map the model iterates (``iterated_map``): ||Jv|| for
    the top eigenvector v of JᵀJ found by Lanczos (``physics.base.lanczos``: at most ``num_iter`` products,
    relative residual ``tol``) from a seeded random start -- J applied to a unit vector, so never above the
    true norm, and equal to it once converged; for ODER the largest over ``draws`` block sets S drawn with
    ``seed``. (Thirty power iterations, what this measured before, read 0.989 at a held-out image of the
    shipped CT model where the norm is 0.998: notebook 04, section 7.)"""
    num_iter = checks.integer("num_iter", num_iter, 1)
    tol = checks.number("tol", tol, minimum=0)
    generator = torch.Generator().manual_seed(checks.integer("seed", seed))
    draws = 1 if model.batch_ratio == 1 else checks.integer("draws", draws, 1)
    return torch.stack([_weakest(model, x, g, generator, num_iter, tol)[3].flatten(1).norm(dim=1)
                        for _ in range(draws)]).amax(0)


def _weakest(model: REDDEQ, x: torch.Tensor, g: LeastSquares, generator: torch.Generator, num_iter: int, tol: float):
    """``(T, S, v, Jv)``: the iterated map with its S drawn from ``generator``, and the top eigenvector v of JᵀJ
    by Lanczos from a random start drawn from it too."""
    T, blocks = iterated_map(model, g, generator)
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return T, blocks, *_top_singular_vector(T, x, v, num_iter, blocks, "lanczos", tol)


def weakest_direction(model: REDDEQ, x: torch.Tensor, g: LeastSquares, num_iter: int = 200, tol: float = 1e-5,
                      seed: int = 0) -> dict:
    """Where the map the model iterates (``iterated_map``; ODER: one S drawn with ``seed``) contracts least, at
    each image of ``x``: the top right singular vector v of J = ∂T/∂x = I − γ(H + τJ_R), H the data part
    ((B/b)A_SᵀA_S), found as ``jacobian_norm`` finds it (the same v for the same seed). Returns ``[N]`` tensors:
    ``sigma`` = ||Jv|| (the contraction constant ``jacobian_norm`` reports), and the two shares of
    ⟨v, Jv⟩ = 1 − ``data`` − ``prior`` (an identity for unit v): ``data`` = γ⟨v, Hv⟩, how much the
    measurements pull back along v, and ``prior`` = γτ⟨v, J_R v⟩, how much the denoiser's residual does;
    ``seen`` = ⟨v, Hv⟩/L_g, the share of the largest curvature of g that v sees; ``gamma_tau`` = γτ, the prior's
    weight in the step (prior / gamma_tau = ⟨v, J_R v⟩, the share of v the denoiser removes); and ``v`` itself.
    σ ≥ ⟨v, Jv⟩, with equality when Jv is parallel to v (notebook 04 measures how close)."""
    generator = torch.Generator().manual_seed(checks.integer("seed", seed))
    T, blocks, v, Jv = _weakest(model, x, g, generator, checks.integer("num_iter", num_iter, 1),
                                checks.number("tol", tol, minimum=0))
    T, x = T.detached(), x.detach()
    with torch.no_grad():
        Hv = g.normal(v, blocks)
        JRv = torch.func.jvp(T.R, (x,), (v,))[1]
    inner = lambda a, b: (a * b).flatten(1).sum(1)  # noqa: E731
    sigma = Jv.flatten(1).norm(dim=1)
    return {"sigma": sigma, "data": T.gamma * inner(v, Hv), "prior": T.gamma * T.tau * inner(v, JRv),
            "seen": inner(v, Hv) / g.A.norm() ** 2, "gamma_tau": T.gamma * T.tau * torch.ones_like(sigma), "v": v}


class ContractionPenalty:
    """``weight · max(0, ||∂T/∂x (x*_1)||₂ − target)²``: a hinge on the contraction constant of the
    map the model iterates (``iterated_map``: the full map with γ_f, or ODER's minibatch map with its
    minibatch step and a fresh S every step), at the training fixed points, differentiable in the prior's
    weights θ. For ODER it touches b blocks only, like the rest of its step.

    It is measured at one image of the batch (the first; the images are drawn at random): the control is
    then a small share of a step's time and memory -- at the whole batch its double backward set the
    training peak of both methods alike.

    A Jacobian penalty in the spirit of Bai, Koltun & Kolter (ICML 2021), who penalize a Hutchinson
    estimate of ||J||_F²; this one targets the quantity the course measures, the spectral norm:
    ``num_iter`` steps of ``method`` (``_top_singular_vector``: power iteration on JᵀJ, or Lanczos) warm-started
    from the last step's vector ``v`` (the training state keeps it), then ||Jᵀu|| with u = Jv/||Jv|| evaluated
    with the graph (double backward through the prior). τ and γ enter as constants: with τ in it, Adam's steady
    steps drove τ up without end (measured on CT before τ was bounded: τ/L_g from 0.1 to 0.9 in 400 steps).
    The estimate is a lower bound, and with three power iterations a low one where the top of JᵀJ's spectrum
    is crowded (the shipped models: a median of 0.94-0.99 over their logs, 0.995-1.004 at the test fixed points
    by ``jacobian_norm``'s Lanczos, ``bench oder``): the warm start follows a moving map, and a few power
    iterations a step do not catch up with it. Twenty Lanczos steps (``TrainConfig.contraction_lanczos``) see
    the converged constant; ``TrainConfig`` has what they cost in PSNR.
    """

    def __init__(self, target: float = 0.985, weight: float = 1.0, num_iter: int = 3, method: str = "power"):
        self.target = checks.number("target", target, positive=True)
        self.weight = checks.number("weight", weight, minimum=0)
        self.num_iter = checks.integer("num_iter", num_iter, 1)
        self.method = checks.choice("method", method, ("power", "lanczos"))
        self.v = None

    def __call__(self, model: REDDEQ, x_star: torch.Tensor, g: LeastSquares,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(penalty, norm)``: the scalar to add to the loss and the ``[1]`` estimate at the first image."""
        x, g = x_star[:1].detach(), LeastSquares(g.A, g.y[:1])
        self.evaluations = 0
        if self.v is None or self.v.shape != x.shape:
            self.v = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype).to(x.device)
        T, blocks = iterated_map(model, g, generator)
        T = T.detached()
        self.v, u = _top_singular_vector(T, x, self.v, self.num_iter, blocks, self.method)
        u = u / _per_image(u)
        with torch.enable_grad():
            xr = x.requires_grad_()
            JRt_u = torch.autograd.grad(T.R(xr), xr, u, create_graph=True)[0]
        norms = T.linear(u, JRt_u, blocks).flatten(1).norm(dim=1)
        self.evaluations = g.evaluations
        return self.weight * (norms - self.target).clamp(min=0).square().mean(), norms.detach()


@torch.no_grad()
def plain_solve(model: REDDEQ, x0: torch.Tensor, g: LeastSquares, max_iter: int = 300, tol: float = 1e-4,
                generator: torch.Generator | None = None):
    """The model's own map iterated without Anderson's help (``forward_iteration``; the tail average for the
    online map), from ``x0`` with the model's own step: ``(x, trace)``."""
    solver = averaged_iteration if model.online() else forward_iteration
    x = model(x0, g, generator=generator, max_iter=max_iter, tol=tol, solver=solver)
    return x, model.forward_trace


def evaluate(model: REDDEQ, A, images: torch.Tensor, snr_db: float, seed: int = VALIDATION_SEED + 1,
             batch_size: int = 4, properties: bool = False, **call) -> dict:
    """Mean PSNR / SSIM of ``model`` on ``images`` ``[n, 1, H, W]`` (eval mode, no autograd).

    Noise and block draws come from a generator seeded with ``seed``; ``call`` (``batch_ratio``,
    ``resample``, ``snapshot_every``, ``max_iter``) goes to the model. Also reports x0's PSNR, the mean
    forward iterations, the block evaluations and the seconds per image. With ``properties``: the
    largest ||∂T/∂x||₂ of the iterated map at the outputs (``contraction``; for ODER over draws of S), and
    whether plain iteration of the model's own map (no Anderson) from x0 reaches a relative residual of
    1e-4 within 300 iterations on every image (``plain_converged``; None for the online map, whose
    stopping rule is its budget).
    """
    batch_size = checks.integer("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    scores = {"psnr": [], "ssim": [], "x0_psnr": [], "iters": [], "blocks": [], "seconds": []}
    contraction, plain = [], []
    for batch in images.split(batch_size):
        y = simulate(A, batch, snr_db, generator)
        x0, g = initial_image(A, y), LeastSquares(A, y)
        start = time.perf_counter()
        with torch.no_grad():
            x_hat = model(x0, g, generator=generator, **call)
        scores["seconds"] += [(time.perf_counter() - start) / len(batch)] * len(batch)
        scores["blocks"] += [g.evaluations / len(batch)] * len(batch)
        scores["iters"].append(model.forward_trace.iterations)
        scores["psnr"] += psnr(x_hat.clamp(0, 1), batch).tolist()
        scores["ssim"] += ssim(x_hat.clamp(0, 1), batch).tolist()
        scores["x0_psnr"] += psnr(x0.clamp(0, 1), batch).tolist()
        if properties:
            contraction.append(jacobian_norm(model, x_hat, g).max().item())
            if not model.online():
                try:
                    plain.append(plain_solve(model, x0, g, generator=generator)[1].converged)
                except NonContractiveError:
                    plain.append(False)
    model.train(was_training)
    result = {key: sum(v) / len(v) for key, v in scores.items()}
    if properties:
        result.update(contraction=max(contraction), plain_converged=all(plain) if plain else None)
    return result
