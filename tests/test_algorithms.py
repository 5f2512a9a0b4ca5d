"""Solvers as streams: each decreases what it should, stops when told, fails safely.

Small problems (32² blur, 8-block random matrices, 16² MRI) keep the file fast; the CT
tests with the shipped DnCNN come last.
"""

import warnings

import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from oder_edu.algorithms import (
    State, conjugate_gradient, data_prox, fista_tv, gradient_descent, pnp_admm, pnp_pgd,
    red, red_step, step_size, tikhonov,
)
from oder_edu.physics import BlockOperator, Blur, Denoising, LeastSquares, MultiCoilMRI, gaussian_kernel


def phantom(n: int, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True), dtype=dtype)[None, None]


def smoother(x, sigma):
    """A linear denoiser with symmetric Jacobian, eigenvalues in [0, 1] (so L_R ≤ 1):
    x + w (Bx − x), B the circular [1, 2, 1]/4 binomial filter, w = σ / (σ + 0.05)."""
    b = lambda z, d: (torch.roll(z, 1, d) + 2 * z + torch.roll(z, -1, d)) / 4  # noqa: E731
    w = sigma / (sigma + 0.05)
    return x + w * (b(b(x, -1), -2) - x)


class Matrices(BlockOperator):
    """B random dense blocks A_i: [1, n, n] -> [m] (a generic multi-block operator)."""

    def __init__(self, n=8, num_blocks=8, m=12, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.image_shape, self.num_blocks, self.block_shape = (1, n, n), num_blocks, (m,)
        self.W = torch.randn(num_blocks, m, n * n, generator=gen, dtype=torch.float64) / n

    def _forward(self, x, blocks):
        return torch.einsum("bmk,nk->nbm", self._buffer("W", x)[blocks], x.flatten(1))

    def _adjoint(self, y, blocks):
        return torch.einsum("bmk,nbm->nk", self._buffer("W", y)[blocks], y).view(-1, *self.image_shape)


@pytest.fixture(scope="module")
def blur_problem():
    n = 32
    x = phantom(n)
    A = Blur(gaussian_kernel(7, 1.5), n)
    gen = torch.Generator().manual_seed(0)
    clean = A(x)
    y = clean + 0.01 * torch.randn(clean.shape, generator=gen)
    return A, y, x


@pytest.fixture(scope="module")
def blocks_problem():
    A = Matrices()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, *A.image_shape, generator=gen)
    return A, A(x), x


# --- each solver decreases what it should ------------------------------------------------
def test_gradient_descent_objective_is_monotone(blur_problem):
    A, y, _ = blur_problem
    states = list(gradient_descent(A, y, max_iter=30))
    f = [s.objective for s in states]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(f, f[1:])), f
    assert f[-1] < 0.2 * f[0]


def test_tikhonov_matches_the_closed_form(blur_problem):
    A, y, _ = blur_problem
    lam = 0.01
    states = list(tikhonov(A, y, lam=lam, max_iter=60))
    f = [s.objective for s in states]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(f, f[1:]))  # CG minimizes over growing Krylov spaces
    # (AᵀA + λI)^{-1} Aᵀy is the prox of g with γ = 1/λ at v = 0 (closed form for Blur).
    exact = data_prox(A, y, torch.zeros_like(states[-1].x), 1 / lam)
    assert (states[-1].x - exact).norm() / exact.norm() < 1e-3


def test_fista_tv_decreases_the_objective_faster_than_ista(blur_problem):
    A, y, x = blur_problem
    states = list(fista_tv(A, y, lam=0.002, max_iter=40, tv_iter=10))
    f = [s.objective for s in states]
    assert min(f) == pytest.approx(f[-1], rel=0.01) and f[-1] < 0.5 * f[0]
    ista = list(fista_tv(A, y, lam=0.002, max_iter=40, tv_iter=10, accelerate=False))
    assert f[-1] <= ista[-1].objective * (1 + 1e-3)  # momentum helps


@pytest.mark.parametrize("accelerate", [False, True])
def test_pnp_pgd_converges(blur_problem, accelerate):
    A, y, x = blur_problem
    states = list(pnp_pgd(A, y, smoother, sigma=0.05, accelerate=accelerate, max_iter=60))
    assert states[-1].residual < 1e-3 * states[1].residual
    assert all(s.objective is None and s.blocks is None for s in states)


def test_pnp_admm_and_pnp_pgd_agree_when_the_denoiser_is_a_prox(blur_problem):
    """``smoother`` is symmetric with eigenvalues in (0, 1], so it is the prox of the convex
    h(x) = ½xᵀ(W⁻¹ − I)x; with the same γ both PnP-PGD and PnP-ADMM (ρ = 1/γ) then
    minimize γg + h, so they must reach the same point."""
    A, y, x = blur_problem
    admm = list(pnp_admm(A, y, smoother, sigma=0.05, gamma=0.8, max_iter=80))
    pgd = list(pnp_pgd(A, y, smoother, sigma=0.05, gamma=0.8, accelerate=True, max_iter=200))
    assert admm[-1].residual < 1e-3 * admm[1].residual
    assert (admm[-1].x - pgd[-1].x).norm() < 1e-3 * pgd[-1].x.norm()


def test_pnp_admm_uses_conjugate_gradient_without_closed_form(blocks_problem):
    A, y, _ = blocks_problem
    states = list(pnp_admm(A, y, smoother, sigma=0.02, gamma=0.5, cg_iter=30, max_iter=40))
    assert states[-1].residual < 1e-3 * states[1].residual


@pytest.mark.parametrize("accelerate", [False, True])
def test_red_reaches_a_fixed_point(blur_problem, accelerate):
    A, y, _ = blur_problem
    tau, sigma = 0.2, 0.05
    states = list(red(A, y, smoother, sigma=sigma, tau=tau, accelerate=accelerate, max_iter=150))
    assert states[-1].residual < 1e-2 * states[1].residual
    x = states[-1].x
    # At a RED fixed point ∇g(x) + τ R(x) = 0 (Romano et al. 2017).
    first_order = LeastSquares(A, y).grad(x) + tau * (x - smoother(x, sigma))
    start = LeastSquares(A, y).grad(torch.zeros_like(x))
    assert first_order.norm() < 0.02 * start.norm()


def test_accelerated_red_is_faster(blur_problem):
    A, y, _ = blur_problem
    plain = list(red(A, y, smoother, sigma=0.05, tau=0.2, max_iter=60))
    fast = list(red(A, y, smoother, sigma=0.05, tau=0.2, accelerate=True, max_iter=60))
    assert fast[-1].residual < plain[-1].residual


# --- data step, CG and step size -------------------------------------------------------
def _cg_prox(A, y, v, gamma, num_iter=300):
    normal = lambda z: A.adjoint(A(z)) + z / gamma  # noqa: E731
    for k, z in enumerate(conjugate_gradient(normal, A.adjoint(y) + v / gamma, v), start=1):
        if k == num_iter:
            return z


@pytest.mark.parametrize("n", [16, 15])
def test_closed_form_data_steps_equal_conjugate_gradient(n):
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(2, 1, n, n, generator=gen, dtype=torch.float64)
    mri = MultiCoilMRI(n, num_coils=1, acceleration=2, maps=torch.ones(1, n, n, dtype=torch.complex128))
    for A in (Denoising(n), Blur(gaussian_kernel(5, 1.0), n), mri):
        x = torch.randn(2, 1, n, n, generator=gen, dtype=torch.float64)
        y = A(x)
        closed, iterative = data_prox(A, y, v, 0.7), _cg_prox(A, y, v, 0.7)
        assert (closed - iterative).norm() / iterative.norm() < 1e-8, type(A).__name__


def test_step_size_value_and_explanation(blur_problem):
    A, _, _ = blur_problem
    s = step_size(A, tau=0.5, lipschitz_R=2.0)
    assert s.value == pytest.approx(1 / (A.norm() ** 2 + 0.5 * 2.0))
    assert s.lipschitz_g == pytest.approx(A.norm() ** 2)
    assert f"{s.value:.4g}" in s.explain and s.explain.count(". ") == 0 and s.explain.endswith(".")
    assert step_size(A).value == pytest.approx(1 / A.norm() ** 2)


def test_red_step_is_differentiable_in_gamma_and_tau():
    """The DEQ map T(x) = x − γ(∇g(x) + τR(x)) reuses red_step with learnable γ, τ."""
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    grad = torch.rand_like(x)
    gamma = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out = red_step(x, grad, smoother, gamma, tau, 0.05)
    expected = x - 0.3 * (grad + 0.5 * (x - smoother(x, 0.05)))
    assert torch.allclose(out, expected)
    out.sum().backward()
    assert gamma.grad is not None and tau.grad is not None and gamma.grad != 0


# --- online RED ---------------------------------------------------------------------------
def test_online_red_step_is_unbiased(blocks_problem):
    """E_S[x_1] over the block draws equals the full-batch x_1 (B/b scaling applied)."""
    A, y, _ = blocks_problem
    x0 = torch.rand(2, *A.image_shape, generator=torch.Generator().manual_seed(5))
    kwargs = dict(sigma=0.05, tau=0.3, gamma=0.1, x0=x0, max_iter=1)
    full = next(red(A, y, smoother, **kwargs)).x
    gen = torch.Generator().manual_seed(0)
    draws = 1000
    total = torch.zeros_like(full)
    for _ in range(draws):
        state = next(red(A, y, smoother, batch_ratio=0.25, generator=gen, **kwargs))
        assert state.blocks.numel() == 2
        total += state.x
    mean_step, full_step = x0 - total / draws, x0 - full
    cosine = (mean_step * full_step).sum() / (mean_step.norm() * full_step.norm())
    assert cosine > 0.998
    assert (mean_step - full_step).norm() < 0.06 * full_step.norm()  # 2.6% measured; far off without B/b


def test_online_red_with_each_sampler_reaches_the_neighbourhood(blocks_problem):
    A, y, _ = blocks_problem
    full = list(red(A, y, smoother, sigma=0.05, tau=0.3, max_iter=300))[-1].x
    for sampler in ("uniform", "stratified", "cyclic"):
        gen = torch.Generator().manual_seed(0)
        states = list(red(A, y, smoother, sigma=0.05, tau=0.3, gamma=0.02, batch_ratio=0.5,
                          sampler=sampler, generator=gen, max_iter=300))
        assert (states[-1].x - full).norm() < 0.1 * full.norm(), sampler


def test_online_runs_are_reproducible(blocks_problem):
    A, y, _ = blocks_problem
    run = lambda: list(red(A, y, smoother, sigma=0.05, tau=0.3, batch_ratio=0.25, max_iter=5,  # noqa: E731
                           generator=torch.Generator().manual_seed(7)))
    a, b = run(), run()
    assert all(torch.equal(s.x, t.x) and torch.equal(s.blocks, t.blocks) for s, t in zip(a, b))


# --- stopping ----------------------------------------------------------------------------
def test_streams_stop_at_max_iter_and_at_tol(blur_problem):
    A, y, _ = blur_problem
    states = list(red(A, y, smoother, sigma=0.05, tau=0.2, max_iter=7))
    assert [s.iteration for s in states] == list(range(1, 8))
    assert all(isinstance(s, State) for s in states)
    assert all(a.seconds <= b.seconds for a, b in zip(states, states[1:]))
    assert states[0].residual == 1.0  # first step from zeros
    tol = 1e-3
    states = list(red(A, y, smoother, sigma=0.05, tau=0.2, tol=tol, max_iter=500))
    assert states[-1].residual < tol and all(s.residual >= tol for s in states[:-1])
    assert len(states) < 500


def test_restart_from_a_converged_image_does_not_alarm(blur_problem):
    A, y, _ = blur_problem
    last = list(pnp_pgd(A, y, smoother, sigma=0.05, max_iter=100))[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = list(pnp_pgd(A, y, smoother, sigma=0.05, x0=last.x, max_iter=20))
    assert states[0].residual < 1e-4 and not any(s.diverged for s in states)


def test_solvers_leave_autograd_alone(blur_problem):
    A, y, _ = blur_problem
    weight = torch.tensor(0.5, requires_grad=True)
    D = lambda x, sigma: weight * x  # noqa: E731  # a "learned" denoiser with a parameter
    for state in red(A, y, D, sigma=0.1, tau=0.2, max_iter=3):
        assert not state.x.requires_grad
        assert torch.is_grad_enabled()  # the caller's mode between iterations


# --- divergence guard ---------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["red", "red_online", "pnp", "gd", "fista_tv"])
def test_divergence_guard_at_ten_over_L(blocks_problem, solver):
    A, y, _ = blocks_problem
    tau = 0.3
    safe = step_size(A, tau if solver.startswith("red") else 0.0).value
    gamma = 10 * safe
    make = {
        "red": lambda: red(A, y, smoother, sigma=0.05, tau=tau, gamma=gamma, max_iter=200),
        "red_online": lambda: red(A, y, smoother, sigma=0.05, tau=tau, gamma=gamma, batch_ratio=0.25,
                                  generator=torch.Generator().manual_seed(0), max_iter=200),
        "pnp": lambda: pnp_pgd(A, y, smoother, sigma=0.05, gamma=gamma, max_iter=200),
        "gd": lambda: gradient_descent(A, y, gamma=gamma, max_iter=200),
        "fista_tv": lambda: fista_tv(A, y, lam=0.01, gamma=gamma, tv_iter=5, max_iter=200),
    }[solver]
    with pytest.warns(RuntimeWarning, match="diverged") as record:
        states = list(make())
    last = states[-1]
    assert last.diverged and not any(s.diverged for s in states[:-1])
    assert len(states) < 200
    assert f"γ = {gamma:.4g}" in last.message and f"γ ≤ {safe:.4g}" in last.message
    assert str(record[0].message) == last.message
    assert torch.isfinite(last.x).all()


def test_divergence_guard_catches_non_finite_iterates(blur_problem):
    A, y, _ = blur_problem
    calls = []

    def breaks_at_third_call(x, sigma):
        calls.append(1)
        return x * float("nan") if len(calls) == 3 else smoother(x, sigma)

    with pytest.warns(RuntimeWarning, match="non-finite"):
        states = list(red(A, y, breaks_at_third_call, sigma=0.05, tau=0.2, max_iter=50))
    assert len(states) == 3 and states[-1].diverged and torch.isfinite(states[-1].x).all()


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigma=-0.1), "sigma"), (dict(sigma=float("nan")), "sigma"),
        (dict(tau=-1.0), "tau"), (dict(tau=float("inf")), "tau"),
        (dict(gamma=0.0), "gamma"), (dict(gamma=-0.5), "gamma"), (dict(gamma=float("nan")), "gamma"),
        (dict(batch_ratio=0.0), "batch_ratio"), (dict(batch_ratio=1.5), "batch_ratio"),
        (dict(batch_ratio=float("nan")), "batch_ratio"),
        (dict(max_iter=0), "max_iter"), (dict(tol=-1.0), "tol"),
        (dict(x0=torch.zeros(2, 1, 9, 9)), r"\[N, 1, 8, 8\]"),
        (dict(x0=torch.zeros(3, 1, 8, 8)), "batch"),
        (dict(sampler="random"), "sampler"),
    ],
)
def test_bad_input_is_rejected_at_the_call(blocks_problem, kwargs, match):
    A, y, _ = blocks_problem
    args = dict(sigma=0.05, tau=0.3, max_iter=5) | kwargs
    with pytest.raises(ValueError, match=match):
        red(A, y, smoother, **args)  # no next(): the error comes at the call


def test_bad_input_for_the_other_solvers(blocks_problem):
    A, y, _ = blocks_problem
    with pytest.raises(ValueError, match="sigma"):
        pnp_pgd(A, y, smoother, sigma=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        pnp_admm(A, y, smoother, sigma=float("inf"))
    with pytest.raises(ValueError, match="lam"):
        tikhonov(A, y, lam=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        fista_tv(A, y, lam=0.1, gamma=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        gradient_descent(A, y, gamma=float("inf"))
    with pytest.raises(ValueError, match=r"shape \[N, 8, 12\]"):
        red(A, y[:, :4], smoother, sigma=0.05, tau=0.3)
    with pytest.raises(TypeError, match="sigma"):
        red(A, y, smoother, sigma="0.1", tau=0.3)
    with pytest.raises(TypeError, match="D must be"):
        red(A, y, None, sigma=0.1, tau=0.3)
    with pytest.raises(ValueError, match="input shape"):
        next(red(A, y, lambda x, s: x[..., :4], sigma=0.1, tau=0.3))


# --- sparse-view CT with the shipped DnCNN (the demo's setting, fewer iterations) ----------
@pytest.fixture(scope="module")
def ct_problem():
    from oder_edu.denoisers import load_denoiser
    from oder_edu.phantoms import shepp_logan
    from oder_edu.physics import ParallelBeamCT, add_noise_snr, fbp

    A = ParallelBeamCT(128, num_angles=60)
    x = shepp_logan(128)
    y = add_noise_snr(A(x), 40.0, torch.Generator().manual_seed(0))
    return A, y, x, load_denoiser("dncnn", device="cpu"), fbp(A, y)


def _red_ct(ct_problem, iterations=30, **kwargs):
    A, y, _, D, x0 = ct_problem
    return list(red(A, y, D, sigma=0.05, tau=100.0, accelerate=True, x0=x0, max_iter=iterations, **kwargs))[-1].x


@pytest.fixture(scope="module")
def red_ct(ct_problem):
    return _red_ct(ct_problem)


def test_pnp_and_red_beat_fbp_by_two_db_on_sparse_view_ct(ct_problem, red_ct):
    from oder_edu.metrics import psnr

    A, y, x, D, x0 = ct_problem
    pnp = list(pnp_admm(A, y, D, sigma=0.03, gamma=100 / A.norm() ** 2, cg_iter=5, x0=x0, max_iter=8))[-1].x
    baseline = psnr(x0, x).item()
    assert psnr(pnp, x).item() >= baseline + 2.0
    assert psnr(red_ct, x).item() >= baseline + 2.0


def test_online_red_at_a_quarter_of_the_angles_is_within_half_a_db(ct_problem, red_ct):
    from oder_edu.metrics import psnr

    _, _, x, _, _ = ct_problem
    online = _red_ct(ct_problem, batch_ratio=0.25, sampler="stratified", generator=torch.Generator().manual_seed(0))
    assert abs(psnr(online, x).item() - psnr(red_ct, x).item()) <= 0.5
