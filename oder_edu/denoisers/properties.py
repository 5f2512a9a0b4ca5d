"""What the convergence theory of RED asks of a denoiser, measured at given images with automatic
differentiation (J v by forward mode, ``torch.func.jvp``; Jᵀu by reverse mode, ``torch.func.vjp``), never
forming the Jacobian J = ∂f/∂x (a 128×128 image has a 16384×16384 one).

- ``local_lipschitz``: ||J||₂ at x by power iteration on JᵀJ (von Mises 1929), a lower bound on f's
  Lipschitz constant.
- ``jacobian_asymmetry``: ||J − Jᵀ||_F / ||J||_F by random probes (Hutchinson, Commun. Stat. 1990:
  E||M v||² = ||M||_F² for v with independent standard normal entries). RED's residual R is the gradient of a
  function only if its Jacobian is symmetric (Reehorst & Schniter, IEEE TCI 2019).
- ``symmetric_min_eigenvalue``: the smallest eigenvalue of the symmetric part ½(J + Jᵀ), by power
  iteration on c·I − ½(J + Jᵀ); R is monotone near x only if it is ≥ 0, and a witness v with vᵀJv < 0
  certifies that it is not.
- ``cocoercivity``: for pairs (x, z), the ratio <f(x) − f(z), x − z> / ||f(x) − f(z)||²; f is β-cocoercive
  exactly when every pair's ratio is ≥ β (Bauschke & Combettes 2017, def. 4.10), and RED's averagedness
  argument with L_R = 1 needs β = 1 for R, i.e. D firmly nonexpansive.

Every function takes ``f: [N, C, H, W] -> [N, C, H, W]`` (no gradient is kept) and works per batch (one number
for the whole batch, its images taken as one vector) unless it says otherwise; probes come from a seeded
generator, so a notebook's numbers repeat.
"""

from __future__ import annotations

import torch
from torch.func import jvp, vjp

from .. import checks


def _probe(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A standard normal tensor shaped like ``x`` (drawn on the CPU from ``generator``, then moved)."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _linearized(f, x: torch.Tensor):
    """``(J, Jt)``: v -> J v and u -> Jᵀu for the Jacobian of ``f`` at ``x`` (one forward pass kept for Jᵀ)."""
    x = x.detach()
    _, pullback = vjp(f, x)
    return (lambda v: jvp(f, (x,), (v,))[1].detach()), (lambda u: pullback(u)[0].detach())


def local_lipschitz(f, x: torch.Tensor, num_iter: int = 20, seed: int = 0) -> float:
    """||∂f/∂x||₂ at ``x`` ``[N, C, H, W]``: ``num_iter`` power iterations on JᵀJ from a seeded random unit
    vector, then ||J v||. A lower bound on the Lipschitz constant of f (one point, a converging estimate)."""
    num_iter = checks.integer("num_iter", num_iter, 1)
    J, Jt = _linearized(f, x)
    v = _probe(x, torch.Generator().manual_seed(checks.integer("seed", seed)))
    v = v / v.norm()
    for _ in range(num_iter):
        w = Jt(J(v))
        v = w / w.norm()
    return J(v).norm().item()


def jacobian_asymmetry(f, x: torch.Tensor, probes: int = 16, seed: int = 0) -> float:
    """||J − Jᵀ||_F / ||J||_F at ``x``, estimated from ``probes`` standard normal vectors v:
    Σ||J v − Jᵀv||² / Σ||J v||². 0 for a symmetric Jacobian (a gradient field), 2 — its largest value — for an
    antisymmetric one (a rotation); the estimate's relative spread is about √(2/probes) per norm."""
    probes = checks.integer("probes", probes, 1)
    J, Jt = _linearized(f, x)
    generator = torch.Generator().manual_seed(checks.integer("seed", seed))
    difference = total = 0.0
    for _ in range(probes):
        v = _probe(x, generator)
        Jv = J(v)
        difference += (Jv - Jt(v)).square().sum().item()
        total += Jv.square().sum().item()
    return (difference / total) ** 0.5


def symmetric_min_eigenvalue(f, x: torch.Tensor, num_iter: int = 50, shift: float | None = None,
                             seed: int = 0) -> tuple[float, torch.Tensor]:
    """``(λ, v)``: an estimate of the smallest eigenvalue of S = ½(J + Jᵀ) at ``x`` and its unit vector ``v``
    (shaped like x), by ``num_iter`` power iterations on c·I − S with c = ``shift`` (default
    ``local_lipschitz(f, x)``, which bounds ||S||). λ = vᵀJv (= vᵀSv) is a Rayleigh quotient, so it is never below
    the true smallest eigenvalue: a negative λ is a certificate — a direction in which f is not monotone."""
    num_iter = checks.integer("num_iter", num_iter, 1)
    c = local_lipschitz(f, x, seed=seed) if shift is None else checks.number("shift", shift, positive=True)
    J, Jt = _linearized(f, x)
    v = _probe(x, torch.Generator().manual_seed(checks.integer("seed", seed) + 1))
    v = v / v.norm()
    for _ in range(num_iter):
        w = c * v - 0.5 * (J(v) + Jt(v))
        v = w / w.norm()
    return (v * J(v)).sum().item(), v


def cocoercivity(f, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``[N]``: <f(x_n) − f(z_n), x_n − z_n> / ||f(x_n) − f(z_n)||² for each pair of images (x_n, z_n). f is
    β-cocoercive only if every ratio is ≥ β; a negative one means f is not even monotone there."""
    if x.shape != z.shape:
        raise ValueError(f"x and z must have the same shape, got {tuple(x.shape)} and {tuple(z.shape)}")
    with torch.no_grad():
        df, dx = (f(x) - f(z)).flatten(1), (x - z).flatten(1)
    return (df * dx).sum(1) / df.square().sum(1)
