"""Plug-and-Play priors: a denoiser D(·, σ) in place of a proximal operator.

- PnP proximal gradient (PnP-ISTA / PnP-FISTA; Kamilov, Mansour, Wohlberg, IEEE SPL 2017;
  review: Kamilov, Bouman, Buzzard, Wohlberg, IEEE Signal Process. Mag. 2023):
  x⁺ = D(s − γ∇g(s), σ), with an optional online minibatch gradient (Sun, Wohlberg,
  Kamilov, IEEE TCI 2019).
- PnP-ADMM (Venkatakrishnan, Bouman, Wohlberg, GlobalSIP 2013; Chan, Wang, Elgendy,
  IEEE TCI 2017): alternate the data prox, the denoiser and a dual update.
"""

from __future__ import annotations

import torch

from ..physics import Blur, Denoising, MultiCoilMRI
from .classical import conjugate_gradient
from .red import denoise
from .state import gradient_oracle, iterate, momentum, setup
from .step import check_number, step_size


def pnp_pgd(
    A,
    y: torch.Tensor,
    D,
    *,
    sigma: float,
    gamma: float | None = None,
    accelerate: bool = False,
    batch_ratio: float = 1.0,
    sampler="uniform",
    x0: torch.Tensor | None = None,
    max_iter: int = 100,
    tol: float = 0.0,
    generator: torch.Generator | None = None,
):
    """Stream PnP proximal-gradient iterates x_{k+1} = D(s_k − γ∇g(s_k), σ).

    ``accelerate=False``: PnP-ISTA (s_k = x_k); ``True``: PnP-FISTA (Nesterov extrapolation).
    ``gamma`` defaults to 1/L_g = 1/||A||² (``step_size(A)``). ``batch_ratio`` < 1 uses the
    online B/b-scaled minibatch gradient over blocks drawn by ``sampler`` from ``generator``
    (``state.blocks``). ``x0`` defaults to zeros. No objective (a denoiser is in general no
    proximal operator of any function).
    """
    g, x0 = setup(A, y, x0)
    sigma = check_number("sigma", sigma)
    if not callable(D):
        raise TypeError(f"D must be a denoiser callable D(x, sigma), got {type(D).__name__}")
    gamma = step_size(A).value if gamma is None else check_number("gamma", gamma, positive=True)
    oracle = gradient_oracle(g, batch_ratio, sampler, generator)

    def step(s):
        grad, blocks = oracle(s)
        return denoise(D, s - gamma * grad, sigma), blocks

    return iterate(
        momentum(step, x0, accelerate),
        x0,
        max_iter=max_iter,
        tol=tol,
        setting=f"γ = {gamma:.4g}",
        advice=lambda: f"try γ ≤ {step_size(A).value:.4g} = 1/L_g",
    )


def _centred_negation(n: int, device) -> torch.Tensor:
    """Index map of k -> -k on a centred (fftshifted) frequency axis of length n."""
    return (2 * (n // 2) - torch.arange(n, device=device)) % n


def _mri_single_coil(A) -> bool:
    """True for a one-coil MultiCoilMRI with a constant unit-modulus sensitivity, whose
    AᵀA on real images is diagonal in k-space (see ``data_prox``)."""
    if not isinstance(A, MultiCoilMRI) or A.num_blocks != 1:
        return False
    first = A.maps.flatten()[0]
    return bool((A.maps - first).abs().max() < 1e-12 and abs(first.abs().item() - 1.0) < 1e-12)


def data_prox(A, y: torch.Tensor, v: torch.Tensor, gamma: float, x_init=None, cg_iter: int = 20) -> torch.Tensor:
    """prox_{γg}(v) = argmin_x ½||Ax − y||² + 1/(2γ)||x − v||² = (AᵀA + I/γ)^{-1}(Aᵀy + v/γ).

    ``v``, result: ``[N, C, H, W]``; ``y``: ``[N, B, *block_shape]``. Closed forms where AᵀA
    is diagonal in a known basis, conjugate gradient otherwise:

    - ``Denoising`` (A = I): (γy + v)/(γ + 1);
    - ``Blur`` (AᵀA = F⁻¹|K|²F): F⁻¹[(conj(K)·Fy + Fv/γ) / (|K|² + 1/γ)];
    - single-coil ``MultiCoilMRI`` with a constant unit sensitivity: for real x,
      AᵀA x = Re(Fᴴ M F x) = Fᴴ M_s F x with M_s(k) = (M(k) + M(−k))/2, because the
      spectrum of a real image is conjugate-symmetric; so x = Re Fᴴ[F b / (M_s + 1/γ)],
      b = Aᵀy + v/γ;
    - anything else: ``cg_iter`` conjugate-gradient iterations started at ``x_init``
      (default ``v``; ADMM passes the previous x, a warm start).
    """
    A.check_image(v)
    A.check_measurement(y, A.num_blocks)
    if isinstance(A, Denoising):
        return (gamma * y[:, 0] + v) / (gamma + 1.0)
    if isinstance(A, Blur):
        K = A._buffer("transfer", v)
        numerator = K.conj() * torch.fft.rfft2(y[:, 0]) + torch.fft.rfft2(v) / gamma
        return torch.fft.irfft2(numerator / (K.abs().square() + 1.0 / gamma), s=v.shape[-2:])
    b = A.adjoint(y) + v / gamma
    if _mri_single_coil(A):
        M = A._buffer("mask", v)
        n, m = M.shape
        M_s = 0.5 * (M + M[_centred_negation(n, v.device)][:, _centred_negation(m, v.device)])
        d = (-2, -1)  # the operator's centred unitary FFT, F z = fftshift(fft2(ifftshift(z)))
        Fb = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(b, dim=d), norm="ortho"), dim=d)
        z = Fb / (M_s + 1.0 / gamma)
        return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(z, dim=d), norm="ortho"), dim=d).real
    normal = lambda x: A.adjoint(A.forward(x)) + x / gamma  # noqa: E731
    for k, x in enumerate(conjugate_gradient(normal, b, v if x_init is None else x_init), start=1):
        if k >= cg_iter:
            return x


def pnp_admm(
    A,
    y: torch.Tensor,
    D,
    *,
    sigma: float,
    gamma: float | None = None,
    cg_iter: int = 20,
    x0: torch.Tensor | None = None,
    max_iter: int = 100,
    tol: float = 0.0,
):
    """Stream PnP-ADMM (Chan, Wang, Elgendy, IEEE TCI 2017, with ρ = 1/γ):

        x_{k+1} = prox_{γg}(z_k − u_k)         (``data_prox``)
        z_{k+1} = D(x_{k+1} + u_k, σ)
        u_{k+1} = u_k + x_{k+1} − z_{k+1}

    The state's ``x`` is z_k, the denoised iterate. ``gamma`` (the data prox's step, 1/ρ)
    defaults to 1/L_g = 1/||A||², the scale of the other solvers' steps; any γ > 0 is a
    valid ADMM penalty, and a larger γ trusts the data more: on ill-conditioned problems
    such as sparse-view CT, γ ≈ 100/L_g works far better (``oder-edu demo`` uses it).
    ``x0`` (default zeros) starts z; u starts at 0. ``cg_iter``: conjugate-gradient
    iterations of the data step where it has no closed form.
    """
    g, x0 = setup(A, y, x0)
    sigma = check_number("sigma", sigma)
    if not callable(D):
        raise TypeError(f"D must be a denoiser callable D(x, sigma), got {type(D).__name__}")
    gamma = step_size(A).value if gamma is None else check_number("gamma", gamma, positive=True)
    if isinstance(cg_iter, bool) or not isinstance(cg_iter, int) or cg_iter < 1:
        raise ValueError(f"cg_iter must be an integer >= 1, got {cg_iter!r}")

    def updates():
        x, z, u = x0, x0, torch.zeros_like(x0)
        while True:
            x = data_prox(A, y, z - u, gamma, x_init=x, cg_iter=cg_iter)
            z = denoise(D, x + u, sigma)
            u = u + x - z
            yield z, {}

    return iterate(
        updates(),
        x0,
        max_iter=max_iter,
        tol=tol,
        setting=f"γ = {gamma:.4g} (ρ = 1/γ), σ = {sigma:.4g}",
        advice=lambda: f"try a smaller σ or γ ≤ {step_size(A).value:.4g} = 1/L_g",
    )
