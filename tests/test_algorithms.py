"""Solvers as streams: each decreases what it should, stops when told, fails safely, and the
default step is one that converges (the minibatch constant online) -- or, when a given step
diverges, the warning names one that does.

Small problems (32² blur, 8-block random matrices, 32²/64² MRI) keep the file fast; the CT
tests with the shipped DnCNN come last. The residual, the divergence rule and the momentum
themselves are tested in ``test_iterate.py``.
"""

import re
import warnings

import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

import oder_edu.algorithms as algorithms
from oder_edu.algorithms import (
    REDMap, State, StepSize, fista_tv, gradient_descent, pnp_admm, pnp_pgd, red, red_update, step_size, tikhonov,
)
from oder_edu.algorithms.red import advice
from oder_edu.metrics import psnr
from oder_edu.physics import Blur, LeastSquares, MatrixOperator, MultiCoilMRI, add_noise_snr, gaussian_kernel
from oder_edu.physics.samplers import batch_size_for

pytestmark = pytest.mark.usefixtures("one_thread")


def phantom(n: int, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True), dtype=dtype)[None, None]


def smoother(x, sigma):
    """A linear denoiser with symmetric Jacobian, eigenvalues in [0, 1] (so L_R ≤ 1):
    x + w (Bx − x), B the circular [1, 2, 1]/4 binomial filter, w = σ / (σ + 0.05)."""
    b = lambda z, d: (torch.roll(z, 1, d) + 2 * z + torch.roll(z, -1, d)) / 4  # noqa: E731
    w = sigma / (sigma + 0.05)
    return x + w * (b(b(x, -1), -2) - x)


def matrices(n=8, num_blocks=8, m=12, seed=0):
    """B random dense blocks A_i: [1, n, n] -> [m] (a generic multi-block operator)."""
    gen = torch.Generator().manual_seed(seed)
    return MatrixOperator(torch.randn(num_blocks, m, n * n, generator=gen, dtype=torch.float64) / n, (1, n, n))


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
    A = matrices()
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
    exact = LeastSquares(A, y).prox(torch.zeros_like(states[-1].x), 1 / lam)
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


# --- step size ------------------------------------------------------------------------------
def test_step_size_value_and_explanation(blur_problem):
    """γ = 1/(L + τ·L_R) with L = ||A||²; the explanation quotes the value in one sentence."""
    A, _, _ = blur_problem
    s = step_size(A, tau=0.5, lipschitz_R=2.0)
    assert isinstance(s, StepSize) and float(s) == s.value
    assert s.value == pytest.approx(1 / (A.norm() ** 2 + 0.5 * 2.0))
    assert (s.data_lipschitz, s.tau, s.lipschitz_R, s.batch_size) == (A.norm() ** 2, 0.5, 2.0, A.num_blocks)
    assert f"{s.value:.4g}" in s.explain and "L_g = ||A||²" in s.explain
    assert s.explain.count(". ") == 0 and s.explain.endswith(".")
    assert step_size(A).value == pytest.approx(1 / A.norm() ** 2)


def test_online_step_size_uses_the_minibatch_constant():
    """For b/B < 1 the step is 1/(L_b + τ·L_R) with L_b = A.minibatch_lipschitz(b) >= L_g."""
    A = matrices()
    s = step_size(A, tau=0.3, batch_size=2)
    L_b = A.minibatch_lipschitz(2)
    assert L_b > A.norm() ** 2 and s.data_lipschitz == L_b and s.value == pytest.approx(1 / (L_b + 0.3))
    assert "minibatch constant at b = 2 of B = 8" in s.explain
    for bad in ({"tau": -1.0}, {"lipschitz_R": -1.0}, {"batch_size": 0}, {"batch_size": 9}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            step_size(A, **bad)


def test_the_default_steps_are_the_step_size(blocks_problem):
    """red and pnp_pgd default to step_size(A, τ, L_R, b), the online ones with the minibatch
    constant of the b their sampler draws; one iteration from x0 = 0 shows the γ used: x_1 = −γ ∇g(0)
    for RED with D(0) = 0."""
    A, y, _ = blocks_problem
    zero_prior = lambda x, sigma: x  # noqa: E731  (R = 0)
    g = LeastSquares(A, y)
    for ratio in (1.0, 0.25):
        gen = torch.Generator().manual_seed(0)
        state = next(red(A, y, zero_prior, sigma=0.1, tau=0.3, batch_ratio=ratio, generator=gen, max_iter=1))
        b = batch_size_for(A.num_blocks, ratio)
        assert (state.blocks is None) == (ratio == 1) and (ratio == 1 or len(state.blocks) == b)
        gamma = step_size(A, 0.3, 1.0, b).value
        expected = -gamma * g.grad(torch.zeros_like(state.x), state.blocks)
        assert torch.allclose(state.x, expected, rtol=1e-5, atol=1e-7)
        gen = torch.Generator().manual_seed(0)
        state = next(pnp_pgd(A, y, zero_prior, sigma=0.1, batch_ratio=ratio, generator=gen, max_iter=1))
        expected = -step_size(A, batch_size=b).value * g.grad(torch.zeros_like(state.x), state.blocks)
        assert torch.allclose(state.x, expected, rtol=1e-5, atol=1e-7)


def test_advice_proposes_the_bound_or_half_the_step():
    """Above the default bound the advice is the bound; within it (the denoiser is then not
    firmly nonexpansive) it is half of γ."""
    assert advice(0.1, 0.5, "1/L") == "try γ ≤ 0.1 = 1/L"
    within = advice(0.1, 0.08, "1/L")
    assert "try γ = 0.04" in within and "firmly nonexpansive" in within


def test_the_package_exports_the_new_vocabulary():
    assert set(algorithms.__all__) == {
        "State", "SolverTrace", "NonContractiveError", "StepSize", "step_size", "gradient_descent", "tikhonov",
        "fista_tv", "pnp_pgd", "pnp_admm", "red", "red_update", "REDMap", "denoise", "denoiser_residual"}
    assert not hasattr(algorithms, "data_prox") and not hasattr(algorithms, "conjugate_gradient")


def test_red_update_is_differentiable_in_gamma_and_tau():
    """The DEQ map T(x) = x − γ(∇g(x) + τR(x)) reuses red_update with learnable γ, τ."""
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    grad = torch.rand_like(x)
    gamma = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out = red_update(x, grad, x - smoother(x, 0.05), gamma, tau)
    expected = x - 0.3 * (grad + 0.5 * (x - smoother(x, 0.05)))
    assert torch.allclose(out, expected)
    out.sum().backward()
    assert gamma.grad is not None and tau.grad is not None and gamma.grad != 0


def test_the_red_map_and_its_linearization_agree_with_autograd(blocks_problem):
    """REDMap.linear is the JVP of the map (and, fed J_Rᵀu, its VJP): checked against autograd in float64,
    with the full data term and with a minibatch (the same S in map and linearization)."""
    A, y, _ = blocks_problem
    g = LeastSquares(A, y.double())
    R = lambda z: z - smoother(z, 0.05)  # noqa: E731
    T = REDMap(g, R, 0.07, 0.4)
    gen = torch.Generator().manual_seed(1)
    x, v, u = (torch.randn(2, *A.image_shape, generator=gen, dtype=torch.float64) for _ in range(3))
    for blocks in (None, torch.tensor([1, 5])):
        _, jvp = torch.func.jvp(lambda z: T(z, blocks), (x,), (v,))
        _, JR_v = torch.func.jvp(R, (x,), (v,))
        torch.testing.assert_close(T.linear(v, JR_v, blocks), jvp)
        _, pull = torch.func.vjp(lambda z: T(z, blocks), x)
        _, pull_R = torch.func.vjp(R, x)
        torch.testing.assert_close(T.linear(u, pull_R(u)[0], blocks), pull(u)[0])


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


@pytest.fixture(scope="module")
def mri_problem():
    """Multi-coil MRI at 64², 8 coils, 4x Cartesian undersampling, a Shepp-Logan truth at 40 dB,
    the Gaussian denoiser, x0 = Aᵀy."""
    from oder_edu.denoisers import load_denoiser
    from oder_edu.phantoms import shepp_logan

    A = MultiCoilMRI(64, num_coils=8, acceleration=4)
    x = shepp_logan(64)
    y = add_noise_snr(A(x), 40.0, torch.Generator().manual_seed(0))
    return A, y, x, load_denoiser("gaussian", device="cpu"), A.adjoint(y)


def _online_red(mri_problem, gamma=None, seed=0, max_iter=100):
    A, y, _, D, x0 = mri_problem
    return list(red(A, y, D, sigma=0.05, tau=0.01 * A.norm() ** 2, gamma=gamma, batch_ratio=0.25,
                    sampler="stratified", x0=x0, max_iter=max_iter, generator=torch.Generator().manual_seed(seed)))


def test_online_red_on_multicoil_mri_converges_with_the_default_step(mri_problem):
    """b/B = 1/4 (2 of 8 coils per iteration) with the default γ = 1/(L_b + τ), L_b the minibatch
    constant: no divergence warning, and the reconstruction beats x0 = Aᵀy by more than 2 dB."""
    A, _, x, _, x0 = mri_problem
    assert step_size(A, 0.01 * A.norm() ** 2, batch_size=2).data_lipschitz == A.minibatch_lipschitz(2) > A.norm() ** 2
    for seed in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            states = _online_red(mri_problem, seed=seed)
        assert len(states) == 100 and not any(s.diverged for s in states)
        assert all(s.blocks.numel() == 2 for s in states)
        assert psnr(states[-1].x, x).item() > psnr(x0, x).item() + 2.0
        assert states[-1].residual < states[0].residual


def test_online_red_divergence_advice_on_multicoil_mri_names_a_step_that_converges(mri_problem):
    """At γ = 2/(L_g + τ) -- twice the *full-batch* default, eight times the online one -- online
    RED diverges; the warning names the online default bound, and with it the run converges."""
    A, _, x, _, x0 = mri_problem
    gamma = 2 / (A.norm() ** 2 + 0.01 * A.norm() ** 2)
    with pytest.warns(RuntimeWarning, match="diverged") as record:
        states = _online_red(mri_problem, gamma=gamma)
    assert states[-1].diverged and len(states) < 100
    message = str(record[0].message)
    assert "with the minibatch constant L" in message
    step = named_step(message)
    assert step < gamma / 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = _online_red(mri_problem, gamma=step)
    assert not states[-1].diverged and psnr(states[-1].x, x).item() > psnr(x0, x).item() + 2.0


def test_advice_after_divergence_within_the_bound_halves_the_step(blocks_problem):
    """An expansive 'denoiser' (R(x) = −2x) makes RED diverge at its default step; the bound
    then cannot help, so the advice is half of the γ used."""
    A, y, _ = blocks_problem
    gamma = step_size(A, 1.0).value
    with pytest.warns(RuntimeWarning, match="firmly nonexpansive") as record:
        states = list(red(A, y, lambda x, sigma: 3 * x, sigma=0.1, tau=1.0, max_iter=500))
    assert states[-1].diverged
    assert named_step(str(record[0].message)) == pytest.approx(gamma / 2, rel=1e-3)



def test_the_default_online_step_uses_the_number_of_blocks_actually_drawn():
    """B = 8 angles at b/B = 0.75 with the stratified sampler: 4 blocks are drawn per iteration, so
    the default step must be 1/L_4 (the minibatch constant of b = 4), not 1/L_6 (smaller L)."""
    from oder_edu.physics import ParallelBeamCT

    A = ParallelBeamCT(16, num_angles=8)
    y = A.forward(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert A.minibatch_lipschitz(4) > A.minibatch_lipschitz(6)
    identity = lambda x, sigma: x  # noqa: E731  (R = 0: x_1 = −γ ∇_S g(0) shows γ)
    state = next(red(A, y, identity, sigma=0.1, tau=0.0, batch_ratio=0.75, sampler="stratified", max_iter=1))
    assert len(state.blocks) == 4
    expected = -LeastSquares(A, y).grad(torch.zeros_like(state.x), state.blocks) / A.minibatch_lipschitz(4)
    assert torch.allclose(state.x, expected, rtol=1e-9)


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
def named_step(message: str) -> float:
    """The step a divergence message proposes ("try γ ≤ 0.25 = ...", "try γ = 1/L_g = 0.5")."""
    match = re.search(r"try γ (?:≤|=) (?:1/L_g = )?([0-9.]+(?:e[+-]?[0-9]+)?)", message)
    assert match, message
    return float(match.group(1))


SOLVERS = {
    "red": lambda A, y, gamma: red(A, y, smoother, sigma=0.05, tau=0.3, gamma=gamma, max_iter=200),
    "red_online": lambda A, y, gamma: red(A, y, smoother, sigma=0.05, tau=0.3, gamma=gamma, batch_ratio=0.25,
                                          generator=torch.Generator().manual_seed(0), max_iter=200),
    "pnp": lambda A, y, gamma: pnp_pgd(A, y, smoother, sigma=0.05, gamma=gamma, max_iter=200),
    "gd": lambda A, y, gamma: gradient_descent(A, y, gamma=gamma, max_iter=200),
    "fista_tv": lambda A, y, gamma: fista_tv(A, y, lam=0.01, gamma=gamma, tv_iter=5, max_iter=200),
}


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_divergence_guard_at_ten_times_the_default_step_names_a_step_that_converges(blocks_problem, solver):
    """At 10x its default step every solver stops with one warning whose message quotes the γ used
    and names the default bound (the minibatch one online); run with that step, it converges."""
    A, y, _ = blocks_problem
    tau = 0.3 if solver.startswith("red") else 0.0
    safe = step_size(A, tau, batch_size=batch_size_for(A.num_blocks, 0.25) if solver == "red_online" else None).value
    gamma = 10 * safe
    with pytest.warns(RuntimeWarning, match="diverged") as record:
        states = list(SOLVERS[solver](A, y, gamma))
    last = states[-1]
    assert last.diverged and not any(s.diverged for s in states[:-1])
    assert len(states) < 200 and len(record) == 1
    assert f"γ = {gamma:.4g}" in last.message and named_step(last.message) == pytest.approx(safe, rel=1e-3)
    assert str(record[0].message) == last.message
    assert torch.isfinite(last.x).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = list(SOLVERS[solver](A, y, named_step(last.message)))
    assert len(states) == 200 and not states[-1].diverged and states[-1].residual < 0.05 * states[0].residual


def test_gradient_descent_above_two_over_L_is_told_to_use_one_over_L_and_then_converges(mri_problem):
    """Landweber converges for γ < 2/L_g; at 2.5/L_g it diverges, and the advice names 1/L_g,
    with which the objective decreases monotonically."""
    A, y, x, _, _ = mri_problem
    L = A.norm() ** 2
    with pytest.warns(RuntimeWarning, match="converges for γ < 2/L_g") as record:
        states = list(gradient_descent(A, y, gamma=2.5 / L, max_iter=300))
    assert states[-1].diverged and len(states) < 300
    step = named_step(str(record[0].message))
    assert step == pytest.approx(1 / L, rel=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = list(gradient_descent(A, y, gamma=step, max_iter=50))
    f = [s.objective for s in states]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(f, f[1:])) and f[-1] < 0.1 * f[0]


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
    with pytest.raises(ValueError, match=r"the denoiser D\(x, σ\) must return a tensor of the input shape"):
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


def test_online_red_at_a_quarter_of_the_angles_at_equal_data_cost_stays_close(ct_problem, red_ct):
    """15 of 60 angles per iteration with the default (minibatch-constant) step: 120 online
    iterations touch as much data as 30 full ones, run without a divergence warning, and land
    within 1.5 dB of the full run (measured with the shipped dncnn: 32.7 vs 33.7 dB, for seeds
    0-2) and far above FBP (25.3 dB)."""
    from oder_edu.metrics import psnr

    _, _, x, _, x0 = ct_problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        online = _red_ct(ct_problem, iterations=120, batch_ratio=0.25, sampler="stratified",
                         generator=torch.Generator().manual_seed(0))
    assert psnr(online, x).item() >= psnr(red_ct, x).item() - 1.5
    assert psnr(online, x).item() >= psnr(x0, x).item() + 5.0
