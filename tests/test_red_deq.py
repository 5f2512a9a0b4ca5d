"""RED-DEQ and ODER: the map is one RED step with the derived step γ = 1/(L + τ·L_R); implicit
gradients are exact for a fixed block set; the online model draws a fresh block set at every
application (forward and backward) and approaches the full fixed point on average; "call"
fixes one set per call; the measured Jacobian norm is the true one; models save and load.

A linear prior (``Smoothing``) on a 16² IDT problem in float64 keeps every quantity exact and
the file fast."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oder_edu import checkpoints
from oder_edu.deq import (ContractionPenalty, NonContractiveError, REDDEQ, ModelConfig, anderson, build,
                          forward_iteration, jacobian_norm, load_model, plain_solve, save, weakest_direction)
from oder_edu.physics import IntensityDiffractionTomography, LeastSquares, make_sampler

pytestmark = pytest.mark.usefixtures("one_thread")


class Smoothing(nn.Module):
    """A linear prior with residual R(x) = x − 0.5·blur(x) (a learnable 3x3 kernel, initially the
    box filter): R's eigenvalues lie in [0.5, 1.2], so the RED map with γ = 1/(L + τ) is a
    contraction whatever the null space of A."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64))

    def residual(self, x, sigma):
        return x - 0.5 * F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), self.weight)

    def forward(self, x, sigma):
        return x - self.residual(x, sigma)


@functools.lru_cache(maxsize=None)  # A.norm() runs an eigen-decomposition: build the problem once
def idt_problem(size=16, leds=8, seed=0):
    A = IntensityDiffractionTomography(size, num_leds=leds)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, size, size, generator=gen, dtype=torch.float64)
    y = A.forward(x) + 0.01 * torch.randn(2, leds, size, size, generator=gen, dtype=torch.float64)
    return A, x, LeastSquares(A, y)


def model(A, **options):
    settings = {"solver": forward_iteration, "max_iter": 500, "tol": 1e-10, **options}
    return REDDEQ(Smoothing(), sigma=0.0, tau=A.norm() ** 2, **settings)


def record_blocks(net):
    """Wrap net.draws so that the block set of every application of the map is recorded (None = all blocks)."""
    drawn, original = [], net.draws

    def draws(*args):
        inner = original(*args)
        return lambda: drawn.append(inner()) or drawn[-1]

    net.draws = draws
    return drawn


# --- the map and its step ------------------------------------------------------------------------------


def test_the_map_is_one_red_step_with_the_derived_step():
    """T(x) = x − γ(∇_S g(x) + τR(x)) with γ = 1/(L + τ·L_R): L = L_g for all blocks and the
    minibatch constant for S; γ is derived, not a parameter (only τ and the prior are learned)."""
    A, x, g = idt_problem()
    net = REDDEQ(Smoothing(), sigma=0.0, tau=2.0, lipschitz_R=3.0)
    tau = net.tau.item()
    assert tau == pytest.approx(2.0)
    blocks = torch.tensor([1, 5])
    gamma_S = 1 / (A.minibatch_lipschitz(2) + tau * 3.0)
    assert net.gamma(g, 2).item() == pytest.approx(gamma_S)
    assert net.gamma(g).item() == pytest.approx(1 / (A.norm() ** 2 + tau * 3.0))
    expected = x - gamma_S * (g.grad(x, blocks) + tau * net.denoiser.residual(x, 0.0))
    assert torch.allclose(net.red_map(g, 2)(x, blocks), expected)
    expected = x - net.gamma(g) * (g.grad(x) + tau * net.denoiser.residual(x, 0.0))
    assert torch.allclose(net.red_map(g)(x), expected)
    assert {n for n, _ in net.named_parameters()} == {"tau_theta", "denoiser.weight"}
    with pytest.raises(TypeError):
        REDDEQ(Smoothing(), sigma=0.0, tau=1.0, gamma=0.1)  # γ is no longer a parameter


def test_full_fixed_point_satisfies_the_red_equation():
    A, x, g = idt_problem()
    net = model(A)
    with torch.no_grad():
        z = net(torch.zeros_like(x), g)
    assert net.forward_trace.converged
    red = g.grad(z) + net.tau * net.denoiser.residual(z, 0.0)  # ∇g + τR = 0 at x*
    assert red.norm() / g.grad(torch.zeros_like(x)).norm() < 1e-8
    x_plain, trace = plain_solve(net, torch.zeros_like(x), g, max_iter=500, tol=1e-10)
    assert trace.converged and torch.allclose(x_plain, z, atol=1e-8)


def test_evaluation_solves_to_eval_tol_and_training_to_tol():
    """The test call (eval mode) stops at eval_tol within eval_max_iter maps, a training call at tol within
    max_iter; arguments of the call override both; the online iteration keeps its budget in both modes."""
    A, x, g = idt_problem()
    net = model(A, solver=anderson, max_iter=60, tol=1e-3, eval_max_iter=200, eval_tol=1e-9)
    x0 = torch.zeros_like(x)
    net.eval()
    with torch.no_grad():
        net(x0, g)
        tight = net.forward_trace
        net(x0, g, tol=1e-3)
        loose = net.forward_trace.iterations
    net.train()
    with torch.no_grad():
        net(x0, g)
    assert tight.converged and tight.residuals[-1] <= 1e-9 and tight.iterations > loose
    assert net.forward_trace.iterations == loose and net.forward_trace.residuals[-1] <= 1e-3
    online = model(A, batch_ratio=0.5, max_iter=7, tol=0.0, eval_max_iter=200, eval_tol=1e-9).eval()
    with torch.no_grad():
        online(x0, g, generator=torch.Generator().manual_seed(0))
    assert online.forward_trace.iterations == 7
    assert model(A).eval_tol == 1e-10 and model(A).eval_max_iter == 500  # default: the training ones


def test_a_non_contractive_model_raises_with_advice():
    """With L_R far below R's true constant the derived step is too long for τR: the solve stops
    with NonContractiveError instead of returning garbage."""
    A, x, g = idt_problem()
    net = REDDEQ(Smoothing(), sigma=0.0, tau=100 * A.norm() ** 2, lipschitz_R=1e-3, solver=forward_iteration,
                 max_iter=200)
    with pytest.raises(NonContractiveError, match="not contractive"):
        with torch.no_grad():
            net(torch.zeros_like(x), g)


# --- implicit gradients ------------------------------------------------------------------------------------


def _loss_gradients(net, x, g, backward_output):
    net.zero_grad()
    (backward_output - x).square().sum().backward()
    return torch.cat([p.grad.flatten() for p in (net.tau_theta, net.denoiser.weight)])


def _unrolled_gradients(net, x, g, blocks, iterations=300):
    """Backpropagation through ``iterations`` plain steps of T_S (S = ``blocks``) from zeros."""
    T = net.red_map(g, None if blocks is None else len(blocks))
    z = torch.zeros_like(x)
    for _ in range(iterations):
        z = T(z, blocks)
    return _loss_gradients(net, x, g, z)


@pytest.mark.parametrize("ratio, resample", [(1.0, "iteration"), (0.25, "call")])
def test_implicit_gradients_match_a_long_unrolled_run_for_a_fixed_block_set(ratio, resample):
    """For a fixed map (all blocks, or one S per call) the implicit gradient w.r.t. τ and the prior
    equals backpropagation through 300 unrolled steps of the same map (a contraction: the unrolled
    gradient converges to the implicit one). The data part of the backward VJP is applied
    explicitly, (B/b)A_SᵀA_S u, and the prior's through autograd: together they must be exact."""
    A, x, g = idt_problem()
    net = model(A, solver=anderson, tol=1e-12, backward_tol=1e-12, batch_ratio=ratio, resample=resample)
    out = net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(3))
    implicit = _loss_gradients(net, x, g, out)
    assert net.backward_trace.converged
    blocks = None if ratio == 1 else make_sampler("stratified", 8, ratio)(torch.Generator().manual_seed(3))
    unrolled = _unrolled_gradients(net, x, g, blocks)
    torch.testing.assert_close(implicit, unrolled, rtol=1e-6, atol=1e-9)


def test_jacobian_free_backprop_differs_from_the_implicit_gradient():
    A, x, g = idt_problem()
    grads = {}
    for backward in ("implicit", "jfb"):
        net = model(A, backward=backward)
        grads[backward] = _loss_gradients(net, x, g, net(torch.zeros_like(x), g))
        assert (net.backward_trace is None) == (backward == "jfb")
    assert torch.dot(grads["implicit"], grads["jfb"]) > 0  # a descent direction on this contraction
    assert not torch.allclose(grads["implicit"], grads["jfb"], rtol=1e-2)


def test_unrolled_backward_runs_exactly_unroll_iter_steps():
    A, x, g = idt_problem()
    net = model(A, backward="unrolled", unroll_iter=7)
    out = net(torch.zeros_like(x), g)
    assert net.forward_trace.iterations == 7 and out.requires_grad
    (out - x).square().sum().backward()
    assert net.tau_theta.grad is not None and net.denoiser.weight.grad is not None


# --- online ODER: fresh blocks; "call": one block set -------------------------------------------------------


def test_online_oder_draws_fresh_blocks_at_every_forward_and_backward_application():
    """resample="iteration": plain iteration (not the model's Anderson) with a new S at every
    application of T, and a new S at every step of the backward solve."""
    A, x, g = idt_problem()
    solver_calls = []

    def anderson_recorded(*args, **kwargs):
        solver_calls.append(1)
        return anderson(*args, **kwargs)

    net = model(A, solver=anderson_recorded, batch_ratio=0.25, max_iter=30, tol=0.0, backward_max_iter=20,
                backward_tol=0.0)
    drawn = record_blocks(net)
    out = net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(0))
    forward = len(drawn)
    assert forward == 30 + 1 and not solver_calls  # 30 iterations + the attached application
    (out - x).square().sum().backward()
    assert len(drawn) == forward + 20 and not solver_calls  # one draw per backward step
    assert all(len(S) == 2 for S in drawn)
    assert len({tuple(S.tolist()) for S in drawn}) == 4  # stratified: all four offsets occur
    assert net.forward_trace.iterations == 30 and net.backward_trace.iterations == 20


def test_call_resampling_fixes_one_block_set_per_call():
    """resample="call": every application in a call (forward, attached, backward) uses the same S;
    the map is then fixed, so the model's solver converges -- to x*_S, not x*."""
    A, x, g = idt_problem()
    net = model(A, solver=anderson, batch_ratio=0.25, resample="call", tol=1e-10)
    drawn = record_blocks(net)
    gen = torch.Generator().manual_seed(1)
    out = net(torch.zeros_like(x), g, generator=gen)
    (out - x).square().sum().backward()
    assert net.forward_trace.converged and net.backward_trace.converged
    assert len({tuple(S.tolist()) for S in drawn}) == 1 and len(drawn) > 3
    with torch.no_grad():
        full = net(torch.zeros_like(x), g, batch_ratio=1.0)
        assert drawn[-1] is None  # all blocks
        second = net(torch.zeros_like(x), g, generator=gen)
    assert len({tuple(S.tolist()) for S in drawn if S is not None}) == 2  # the next call draws a new S
    assert (out.detach() - full).norm() > 1e-3 * full.norm() and not torch.allclose(out.detach(), second)


def test_call_resampling_neighbourhood_shrinks_as_b_grows():
    """With one S per call the model returns x*_S, the solution on a b/B share of the data; its
    mean distance to the full x* shrinks as b grows and vanishes at b = B."""
    A, x, g = idt_problem()
    net = model(A, resample="call")
    with torch.no_grad():
        full = net(torch.zeros_like(x), g, batch_ratio=1.0)
        distances = []
        for ratio in (0.125, 0.25, 0.5, 1.0):
            gen = torch.Generator().manual_seed(1)
            errors = []
            for _ in range(4):
                z = net(torch.zeros_like(x), g, batch_ratio=ratio, generator=gen)
                assert net.forward_trace.converged  # one block set per call: T_S is a fixed contraction
                errors.append(((z - full).norm() / full.norm()).item())
            distances.append(sum(errors) / len(errors))
    assert distances[0] > distances[1] > distances[2] > distances[3]
    assert distances[3] < 1e-8 and distances[0] > 1e-3


def test_online_forward_approaches_the_full_fixed_point_on_average():
    """E_S[T_S] is the full map with the same γ: the online iterates hover around x*. The mean of
    independent online runs is much closer to x* than a single run (noise averages out), and a
    single run is close already."""
    A, x, g = idt_problem()
    net = model(A, batch_ratio=0.5, max_iter=150, tol=0.0)
    with torch.no_grad():
        full = net(torch.zeros_like(x), g, batch_ratio=1.0, max_iter=500)
        runs = [net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(seed)) for seed in range(8)]
    distance = lambda z: ((z - full).norm() / full.norm()).item()  # noqa: E731
    single = sum(distance(z) for z in runs) / len(runs)
    assert single < 0.2
    assert distance(sum(runs) / len(runs)) < 0.6 * single
    assert not net.forward_trace.converged  # a random map: the residual does not go to 0


def test_oder_backward_reaches_every_parameter():
    A, x, g = idt_problem()
    net = model(A, batch_ratio=0.25, max_iter=100, tol=1e-6, backward_max_iter=20)
    out = net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(0))
    (out - x).square().mean().backward()
    assert net.backward_trace is not None
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in net.parameters())


def test_online_backward_with_contractive_block_maps_is_not_reported_as_diverging():
    """Every J_S = I − γ((B/b)A_SᵀA_S + τJ_R) is a contraction here (||J_S|| ≈ 0.77 for all four
    stratified sets), so u_{k+1} = J_{S_k}ᵀu_k + v stays bounded by ||v||/(1 − 0.77) and hovers
    around u*: a backward solve of 200 steps must not raise NonContractiveError."""
    from oder_edu.physics.base import power_iteration

    A, x, g = idt_problem()
    net = model(A, batch_ratio=0.25, max_iter=100, tol=1e-6, backward_max_iter=200, backward_tol=1e-6)
    gamma, tau = net.gamma(g, 2).item(), net.tau.item()
    for offset in range(4):
        S = torch.tensor([offset, offset + 4])
        J = lambda u: u - gamma * (4 * A.adjoint(A.forward(u, S), S) + tau * net.denoiser.residual(u, 0.0))  # noqa: E731,B023
        assert power_iteration(lambda u: J(J(u)), (1, 1, 16, 16), 1000, 1e-10) ** 0.5 < 0.8  # noqa: B023
    out = net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(0))
    (out - x).square().mean().backward()
    assert net.backward_trace.iterations == 200


def test_the_online_step_is_derived_for_the_number_of_blocks_actually_drawn():
    """B = 8 angles at b/B = 0.75: the stratified sampler draws b = 4 (a divisor of 8), so the step
    must use the minibatch constant of b = 4 (larger than that of b = 6 on this operator)."""
    from oder_edu.physics import ParallelBeamCT

    A = ParallelBeamCT(16, num_angles=8)
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = LeastSquares(A, A.forward(x))
    assert A.minibatch_lipschitz(4) > A.minibatch_lipschitz(6)
    net = REDDEQ(Smoothing(), sigma=0.0, tau=1.0, batch_ratio=0.75, max_iter=2, tol=0.0)
    maps, red_map = [], net.red_map
    net.red_map = lambda g_, b=None: maps.append(red_map(g_, b)) or maps[-1]
    drawn = record_blocks(net)
    with torch.no_grad():
        net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(0))
    assert len(maps) == 1 and all(len(blocks) == 4 for blocks in drawn)
    assert maps[0].gamma.item() == pytest.approx(net.gamma(g, 4).item())


def test_the_minibatch_step_is_the_bound_or_the_full_maps():
    """``minibatch_step="bound"`` steps a minibatch map with 1/(L_b + τ), ``"full"`` with the full map's
    1/(L_g + τ); the full map's step is the same either way, and the variance-reduced call with the full step
    still reaches the full model's fixed point."""
    A, x, g = idt_problem()
    bound, full = (model(A, batch_ratio=0.25, minibatch_step=step, snapshot_every=2) for step in ("bound", "full"))
    L_b, L_g, tau = A.minibatch_lipschitz(A.num_blocks // 4), A.norm() ** 2, bound.tau.item()
    assert L_b > L_g
    assert bound.gamma(g, A.num_blocks // 4).item() == pytest.approx(1 / (L_b + tau))
    assert full.gamma(g, A.num_blocks // 4).item() == pytest.approx(1 / (L_g + tau))
    assert bound.gamma(g).item() == pytest.approx(full.gamma(g).item())
    full.eval()
    with torch.no_grad():
        reduced = full(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(0))
        exact = full(torch.zeros_like(x), g, batch_ratio=1.0)
    assert full.forward_trace.converged
    assert (reduced - exact).norm() <= 1e-3 * exact.norm()


# --- the measured contraction -----------------------------------------------------------------------------


def test_jacobian_norm_matches_the_dense_jacobian():
    """jacobian_norm = ||∂T/∂x||₂ per image (full-batch T with the model's γ): against the spectral
    norm of the dense Jacobian on a 6² problem, for a nonlinear prior (a small DnCNN)."""
    from oder_edu.denoisers import DnCNN

    torch.manual_seed(0)
    A = IntensityDiffractionTomography(6, num_leds=4)
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = LeastSquares(A, A.forward(x))
    net = REDDEQ(DnCNN(depth=3, width=4).double(), sigma=0.05, tau=0.5 * A.norm() ** 2)
    measured = jacobian_norm(net, x, g, num_iter=300)
    for n in range(2):
        T_n = net.red_map(LeastSquares(A, g.y[n : n + 1]))
        T = lambda z: T_n(z.view(1, 1, 6, 6)).flatten()  # noqa: E731,B023
        J = torch.autograd.functional.jacobian(T, x[n].flatten())
        # power iteration approaches from below; two close top singular values slow it down
        assert measured[n].item() == pytest.approx(torch.linalg.matrix_norm(J, ord=2).item(), rel=1e-4)


def test_the_weakest_direction_splits_the_contraction_into_data_and_prior():
    """weakest_direction: v is the top right singular vector of the dense Jacobian (σ = ||Jv|| = ||J||₂, the
    same as jacobian_norm), and ⟨v, Jv⟩ = 1 − data − prior with data = γ⟨v, AᵀA v⟩ and prior = γτ⟨v, J_R v⟩."""
    from oder_edu.denoisers import DnCNN

    torch.manual_seed(0)
    A = IntensityDiffractionTomography(6, num_leds=4)
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = LeastSquares(A, A.forward(x))
    net = REDDEQ(DnCNN(depth=3, width=4).double(), sigma=0.05, tau=0.5 * A.norm() ** 2)
    split = weakest_direction(net, x, g, num_iter=300, tol=1e-12)
    assert torch.allclose(split["sigma"], jacobian_norm(net, x, g, num_iter=300, tol=1e-12), rtol=1e-9)
    T_full = net.red_map(g)
    for n in range(2):
        T_n = net.red_map(LeastSquares(A, g.y[n : n + 1]))
        J = torch.autograd.functional.jacobian(lambda z: T_n(z.view(1, 1, 6, 6)).flatten(), x[n].flatten())  # noqa: B023
        v = split["v"][n].flatten()
        assert split["sigma"][n].item() == pytest.approx(torch.linalg.matrix_norm(J, ord=2).item(), rel=1e-8)
        assert abs(v @ torch.linalg.svd(J.T @ J)[0][:, 0]) == pytest.approx(1, abs=1e-6)  # the top singular vector
        assert (v @ J @ v).item() == pytest.approx(1 - split["data"][n].item() - split["prior"][n].item(), abs=1e-8)
        data = (T_full.gamma * (v.view(1, 1, 6, 6) * g.normal(v.view(1, 1, 6, 6).expand(2, -1, -1, -1))[n]).sum())
        assert split["data"][n].item() == pytest.approx(data.item(), rel=1e-9)
        assert split["seen"][n].item() == pytest.approx(data.item() / T_full.gamma.item() / A.norm() ** 2, rel=1e-9)
        assert split["gamma_tau"][n].item() == pytest.approx((T_full.gamma * T_full.tau).item(), rel=1e-12)


def test_the_contraction_penalty_measures_the_jacobian_norm_and_its_gradient_lowers_it():
    """ContractionPenalty: its estimate is jacobian_norm's; above the target it is
    weight·mean (norm − target)², and one gradient step on the prior's weights lowers the norm;
    below the target it is zero with no gradient."""
    from oder_edu.denoisers import DnCNN

    torch.manual_seed(0)
    A = IntensityDiffractionTomography(6, num_leds=4)
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = LeastSquares(A, A.forward(x))
    net = REDDEQ(DnCNN(depth=3, width=4).double(), sigma=0.05, tau=0.5 * A.norm() ** 2)
    measured = jacobian_norm(net, x, g, num_iter=300)

    penalty = ContractionPenalty(target=0.5, weight=2.0, num_iter=300)
    value, norms = penalty(net, x, g)
    assert norms == pytest.approx(measured[:1], rel=2e-3)  # at the first image; two close top singular values: slow power iteration
    assert value.item() == pytest.approx(2.0 * (norms - 0.5).clamp(min=0).square().mean().item(), rel=1e-6)
    lanczos_norms = ContractionPenalty(target=0.5, weight=2.0, num_iter=30, method="lanczos")(net, x, g)[1]
    assert lanczos_norms == pytest.approx(measured[:1], rel=1e-6)  # 30 Lanczos steps beat 300 power steps
    value.backward()
    # every weight of the prior moves the Jacobian (the last bias, a constant shift, does not); τ is a constant
    assert net.tau_theta.grad is None and all(p.grad is not None for n, p in net.named_parameters() if "weight" in n)
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is not None and p.grad.any():
                p -= 1e-2 * p.grad / p.grad.norm()
    assert jacobian_norm(net, x, g, num_iter=300).max() < measured.max()

    net.zero_grad()
    value, _ = ContractionPenalty(target=2.0)(net, x, g)
    value.backward()
    assert value.item() == 0 and all(p.grad is None or not p.grad.any() for p in net.parameters())


def test_the_contraction_penalty_holds_the_same_memory_whatever_its_power_iterations():
    """The power iteration's vectors are measured without a graph to the prior's weights, so its memory
    does not grow with ``num_iter`` (it did: every iteration kept its predecessors' graph, 13.6 MiB for one
    64² MRI image at 3 iterations, 2.7 MiB without), while the penalty still carries a gradient to θ."""
    from oder_edu.denoisers import DnCNN
    from oder_edu.memory import PeakTensorMemory

    torch.manual_seed(0)
    A = IntensityDiffractionTomography(32, num_leds=8)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    g = LeastSquares(A, A.forward(x))
    net = REDDEQ(DnCNN(depth=3, width=8), sigma=0.05, tau=0.5 * A.norm() ** 2)
    peaks = {}
    for num_iter in (1, 8):
        with PeakTensorMemory() as memory:
            value, _ = ContractionPenalty(target=1e-3, num_iter=num_iter)(net, x, g)
        peaks[num_iter] = memory.peak_bytes
        assert value.item() > 0 and value.requires_grad
    assert peaks[8] <= 1.05 * peaks[1]


def test_a_training_step_without_a_fixed_point_takes_no_step():
    """The implicit gradient is the gradient at a fixed point: a full-batch step whose forward
    solve stops short of tol raises NonContractiveError (the training loop skips the batch) and
    leaves the weights as they were; with the iterations to converge, the step is taken."""
    from oder_edu.deq import train_step

    A, x, g = idt_problem()
    x0 = A.adjoint(g.y) / A.norm() ** 2
    net = model(A, max_iter=2)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    with pytest.raises(NonContractiveError, match="did not reach tol in 2 iterations"):
        train_step(net, optimizer, x, x0, g, torch.Generator().manual_seed(0), measure_memory=False)
    assert all(torch.equal(b, p) for b, p in zip(before, net.parameters()))
    net = model(A)
    row = train_step(net, torch.optim.Adam(net.parameters(), lr=1e-2), x, x0, g, torch.Generator().manual_seed(0),
                     measure_memory=False)
    assert row["forward_iters"] < 500


# --- configuration, save and load -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [{"batch_ratio": 0.0}, {"batch_ratio": 1.5}, {"tau": 0.0}, {"tau": float("nan")},
                                 {"lipschitz_R": 0.0}, {"resample": "sometimes"}, {"sampler": "random"},
                                 {"backward": "exact"}, {"max_iter": 0}, {"backward_max_iter": 0},
                                 {"minibatch_step": "exact"}])
def test_bad_settings_raise(bad):
    options = {"sigma": 0.0, "tau": 1.0, **bad}
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[-1]):
        REDDEQ(Smoothing(), **options)


def test_bad_calls_raise():
    A, x, g = idt_problem()
    net = model(A)
    with pytest.raises(TypeError, match="LeastSquares"):
        net(torch.zeros_like(x), A)
    with pytest.raises(ValueError, match="resample"):
        net(torch.zeros_like(x), g, resample="never")
    with pytest.raises(TypeError, match="generator"):
        net(torch.zeros_like(x), g, generator=0)
    with pytest.raises(ValueError, match="expects torch.float64"):
        net(torch.zeros_like(x).float(), g)
    with pytest.raises(TypeError, match="denoiser must be an nn.Module"):
        REDDEQ(lambda x, s: x, sigma=0.0, tau=1.0)


def tiny_config(**options):
    return ModelConfig(**{"app": "idt", "image_size": 8, "num_blocks": 4, "pretrained": None, "depth": 2,
                          "width": 4, **options})


def test_save_then_load_round_trips(tmp_path):
    """save writes kind "red_deq", the config and the prior's architecture; load_model rebuilds the
    same model (weights, τ, settings) in eval mode with its config attached."""
    config = tiny_config(method="oder", batch_ratio=0.5, resample="call", max_iter=12)
    A = IntensityDiffractionTomography(8, num_leds=4)
    torch.manual_seed(0)
    net = build(config, A)
    assert net.tau.item() == pytest.approx(config.tau_over_L * A.norm() ** 2, rel=1e-6)
    with torch.no_grad():
        net.tau_theta += 0.3  # a trained τ, different from the initial one
    path = save(tmp_path / "model.pt", net, config, {"val_psnr": 30.0})
    loaded = load_model(path, device="cpu")
    assert not loaded.training and loaded.config == config
    assert (loaded.batch_ratio, loaded.resample, loaded.max_iter) == (0.5, "call", 12)
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    state = checkpoints.load_state(path)
    assert state["kind"] == "red_deq" and state["metrics"] == {"val_psnr": 30.0}
    assert state["config"]["prior"] == net.denoiser.config()
    with pytest.raises(checkpoints.CheckpointError, match="refusing to overwrite"):
        save(path, net, config)
    save(path, net, config, force=True)


def test_loading_the_wrong_kind_is_a_clear_error(tmp_path):
    from oder_edu.denoisers import DnCNN, load_denoiser

    denoiser = tmp_path / "denoiser.pt"
    checkpoints.save_state(denoiser, "denoiser", DnCNN(depth=2, width=4).config(), DnCNN(depth=2, width=4))
    with pytest.raises(checkpoints.CheckpointError, match=r"holds a 'denoiser' model, not a 'red_deq'.*load_denoiser"):
        load_model(denoiser)
    A = IntensityDiffractionTomography(8, num_leds=4)
    path = save(tmp_path / "model.pt", build(tiny_config(), A), tiny_config())
    with pytest.raises(checkpoints.CheckpointError, match=r"holds a 'red_deq' model, not a 'denoiser'.*deq.load_model"):
        load_denoiser(str(path), device="cpu")


@pytest.mark.parametrize("bad, error", [({"method": "oder"}, ValueError), ({"method": "full", "batch_ratio": 0.5}, ValueError),
                                        ({"app": "xray"}, ValueError), ({"solver": "newton"}, ValueError),
                                        ({"depth": 0}, ValueError), ({"max_iter": 2.5}, TypeError),
                                        ({"image_size": 4}, ValueError), ({"minibatch_step": "half"}, ValueError)])
def test_model_config_refuses_inconsistent_settings(bad, error):
    with pytest.raises(error):
        tiny_config(**bad)


# --- the shipped checkpoints' configs ---------------------------------------------------------------------


def test_every_shipped_model_loads_with_the_config_its_manifest_records():
    """A renamed ModelConfig field must not load a shipped checkpoint with a default in its place: every
    field of the loaded config equals the manifest's record (read under today's names), and an unknown
    key is refused."""
    from dataclasses import asdict

    from oder_edu.checkpoints import read_manifest
    from oder_edu.deq import ModelConfig, load_model
    from oder_edu.deq.model import ADDED, RENAMED

    shipped = {name: entry for name, entry in read_manifest().items() if "model" in entry}
    assert shipped, "no RED-DEQ checkpoint in the manifest"
    defaults = asdict(ModelConfig())
    for name, entry in shipped.items():
        recorded = {RENAMED.get(key, key): value for key, value in entry["model"].items()}
        loaded = asdict(load_model(name, "cpu").config)
        assert set(loaded) - set(recorded) <= ADDED, name  # only fields added since, at their defaults:
        assert loaded == {**{key: defaults[key] for key in ADDED}, **recorded}, name
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"app": "ct", "tau_over_l": 0.1})
