"""One training step, evaluation and the measured properties of a RED-DEQ / ODER model.

- ``train_step``: one Adam step on mean ||x* − x||² (forward solve, backward, update), with its
  time, peak tensor memory and solver iterations;
- ``evaluate``: PSNR / SSIM on held-out images, with the model run as trained, with all blocks,
  or online;
- ``jacobian_norm``: ||∂T/∂x||₂ at given points by power iteration on JᵀJ -- what the course
  calls the model's measured contraction constant;
- ``plain_solve``: plain fixed-point iteration with the model's own step, to check that it
  converges without Anderson's help.
"""

from __future__ import annotations

import contextlib
import time

import torch

from .. import checks
from ..images import natural_crops
from ..memory import PeakTensorMemory
from ..metrics import psnr, ssim
from ..phantoms import VALIDATION_SEED, validation_phantoms
from ..physics import LeastSquares
from ..problems import APPS, initial_image, simulate
from .red_deq import REDDEQ
from .solvers import forward_iteration


def held_out(app: str, n: int, image_size: int) -> torch.Tensor:
    """``n`` validation images of ``app`` ``[n, 1, H, W]`` drawn with ``VALIDATION_SEED`` (never
    used for training): cell fields for IDT; otherwise half ``validation_phantoms`` and half
    patches of the held-out photographs (``images.NATURAL_HELD_OUT``)."""
    checks.choice("app", app, APPS)
    if app == "idt":
        return validation_phantoms(n, image_size, cells=True)
    k = n // 2
    parts = [validation_phantoms(n - k, image_size)]
    if k:
        parts.append(natural_crops(k, image_size, torch.Generator().manual_seed(VALIDATION_SEED), held_out=True))
    return torch.cat(parts)


def train_step(model, optimizer, x: torch.Tensor, x0: torch.Tensor, g: LeastSquares,
               generator: torch.Generator, measure_memory: bool = True) -> dict:
    """One Adam step on mean ||x* − x||²; returns the log row.

    ``model`` is the ``REDDEQ`` or its ``DistributedDataParallel`` wrapper. With
    ``measure_memory``, peak tensor memory is measured around the whole step; on the CPU that
    counter intercepts every tensor operation and slows the step, so its time is then not
    representative (``peak_mib`` is None without it).
    """
    deq = getattr(model, "module", model)
    checks.finite("the training images x", x)  # NaN targets would turn every weight into NaN
    memory = PeakTensorMemory(x.device) if measure_memory else contextlib.nullcontext()
    start = time.perf_counter()
    with memory:
        x_hat = model(x0, g, generator=generator)
        loss = (x_hat - x).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    forward, backward = deq.forward_trace, deq.backward_trace
    return {
        "loss": loss.item(), "psnr": psnr(x_hat.detach().clamp(0, 1), x).mean().item(), "seconds": seconds,
        "peak_mib": memory.peak_bytes / 2**20 if measure_memory else None,
        "forward_iters": forward.iterations, "forward_residual": forward.residuals[-1],
        "backward_iters": 0 if backward is None else backward.iterations,
        "backward_residual": None if backward is None else backward.residuals[-1],
        "tau": deq.tau.item(),
    }


def jacobian_norm(model: REDDEQ, x: torch.Tensor, g: LeastSquares, num_iter: int = 30) -> torch.Tensor:
    """``[N]``: ||∂T/∂x||₂ at each image of ``x`` for the full-batch map T, by ``num_iter``
    power iterations on JᵀJ with J v = v − γ(AᵀA v + τ J_R v) (``torch.func.jvp`` through the
    prior; the data part is linear) and Jᵀu likewise with ``torch.func.vjp``."""
    num_iter = checks.integer("num_iter", num_iter, 1)
    gamma, tau = model.gamma(g, 1.0).item(), model.tau.item()
    R = lambda z: model.denoiser.residual(z, model.sigma)  # noqa: E731
    normal = lambda v: g.A._adjoint(g.A._forward(v, None), None)  # noqa: E731
    _, pullback = torch.func.vjp(R, x)
    J = lambda v: v - gamma * (normal(v) + tau * torch.func.jvp(R, (x,), (v,))[1])  # noqa: E731
    Jt = lambda u: u - gamma * (normal(u) + tau * pullback(u)[0])  # noqa: E731
    per_image = lambda t: t.flatten(1).norm(dim=1).view(-1, *[1] * (t.ndim - 1))  # noqa: E731
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype).to(x.device)
    v = v / per_image(v)
    for _ in range(num_iter):
        w = Jt(J(v))
        v = w / per_image(w)
    return J(v).flatten(1).norm(dim=1).detach()


@torch.no_grad()
def plain_solve(model: REDDEQ, x0: torch.Tensor, g: LeastSquares, max_iter: int = 300, tol: float = 1e-4):
    """Plain iteration x_{k+1} = T(x_k) from ``x0`` with the model's own γ, full batch: ``(x, trace)``."""
    gamma = model.gamma(g, 1.0)
    return forward_iteration(lambda x: model.T(x, g, None, gamma), x0, max_iter=max_iter, tol=tol)


def evaluate(model: REDDEQ, A, images: torch.Tensor, snr_db: float, seed: int = VALIDATION_SEED + 1,
             batch_size: int = 4, properties: bool = False, **call) -> dict:
    """Mean PSNR / SSIM of ``model`` on ``images`` ``[n, 1, H, W]`` (eval mode, no autograd).

    Noise and block draws come from a generator seeded with ``seed``; ``call`` (``batch_ratio``,
    ``resample``, ``max_iter``) goes to the model. Also reports x0's PSNR and the mean forward
    iterations; with ``properties``, the largest ||∂T/∂x||₂ at the fixed points
    (``lipschitz``) and whether plain iteration from x0 with the model's own γ reaches a
    relative residual of 1e-4 within 300 iterations on every image (``plain_converged``).
    """
    batch_size = checks.integer("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    scores = {"psnr": [], "ssim": [], "x0_psnr": [], "iters": []}
    lipschitz, plain = [], []
    for batch in images.split(batch_size):
        y = simulate(A, batch, snr_db, generator)
        x0, g = initial_image(A, y), LeastSquares(A, y)
        with torch.no_grad():
            x_hat = model(x0, g, generator=generator, **call)
        scores["iters"].append(model.forward_trace.iterations)
        scores["psnr"] += psnr(x_hat.clamp(0, 1), batch).tolist()
        scores["ssim"] += ssim(x_hat.clamp(0, 1), batch).tolist()
        scores["x0_psnr"] += psnr(x0.clamp(0, 1), batch).tolist()
        if properties:
            x_plain, trace = plain_solve(model, x0, g)
            plain.append(trace.converged)
            lipschitz.append(jacobian_norm(model, x_plain, g).max().item())
    model.train(was_training)
    result = {key: sum(v) / len(v) for key, v in scores.items()}
    if properties:
        result.update(lipschitz=max(lipschitz), plain_converged=all(plain))
    return result
