"""``algorithms.iterate``: the one residual, the one divergence rule and the momentum shared by
every solver of ``algorithms`` and ``deq``.

- Residual: ``max_n ||T(s)_n − s_n|| / ||T(s)_n||`` at the point s the map was applied to.
- Divergence: non-finite values, or the step ``||T(s) − s||`` grown GROWTH = 10 times over its
  smallest value so far *while* the iterate has grown SCALE = 2 times over its starting size
  (the larger of ||x0|| and ||x1||). Each condition alone misfires; the tests below show an
  iteration where each one holds on its own and no alarm is raised, and slow divergence caught.
- Momentum: FISTA's extrapolation, restarted (t = 1) when the step points back or reverses.
"""

import math
import warnings

import pytest
import torch

from oder_edu.algorithms import NonContractiveError, SolverTrace, State, fista_tv, red
from oder_edu.algorithms import iterate as it
from oder_edu.deq import forward_iteration, nesterov
from oder_edu.physics import Blur, MultiCoilMRI, add_noise_snr, gaussian_kernel

pytestmark = pytest.mark.usefixtures("one_thread")


def affine(eigenvalues, batch=1, seed=0, offset=True):
    """T(x) = x* + M (x − x*), M symmetric with the given eigenvalues (its first eigenvector is
    ``v``), and the fixed point x* (zero without ``offset``). Rows of ``[N, d]`` are the images."""
    gen = torch.Generator().manual_seed(seed)
    d = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    M = Q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ Q.T
    x_star = torch.randn(batch, d, generator=gen, dtype=torch.float64) if offset else torch.zeros(batch, d, dtype=torch.float64)
    return (lambda x: (x - x_star) @ M.T + x_star), x_star, Q[:, 0]


def states_of(T, x0, max_iter=100, tol=0.0, accelerate=False):
    return list(it.stream(it.fixed_point_updates(lambda s: (T(s), {}), x0, accelerate), x0, max_iter, tol,
                          lambda: "advice"))


# --- the residual -----------------------------------------------------------------------------------


def test_residual_is_the_worst_image_relative_step_at_the_point_the_map_saw():
    """For every state, residual = max over images of ||T(s)_n − s_n|| / ||T(s)_n||, computed at
    s (the extrapolated point with momentum, not the previous iterate), and state.x = T(s)."""
    T, _, _ = affine([0.9, 0.5, -0.3, 0.1], batch=3)
    for accelerate in (False, True):
        seen = []
        step = lambda s: (seen.append(s) or T(s), {})  # noqa: E731
        x0 = torch.zeros(3, 4, dtype=torch.float64)
        states = list(it.stream(it.fixed_point_updates(step, x0, accelerate), x0, 12, 0.0, lambda: ""))
        assert len(states) == len(seen) == 12
        for state, s in zip(states, seen):
            Ts = T(s)
            expected = ((Ts - s).norm(dim=1) / Ts.norm(dim=1)).max().item()
            assert state.residual == pytest.approx(expected, rel=1e-12)
            assert torch.equal(state.x, Ts)
        if accelerate:  # momentum really moved the point away from the last iterate
            assert any(not torch.equal(s, state.x) for s, state in zip(seen[1:], states))


def test_residual_is_one_from_zeros_zero_at_a_fixed_point_and_the_worst_image_counts():
    T, x_star, _ = affine([0.5, 0.2], batch=2)
    assert states_of(T, torch.zeros_like(x_star), max_iter=1)[0].residual == 1.0
    warm = states_of(T, x_star, max_iter=1)[0].residual
    assert warm < 1e-15
    # image 0 at its fixed point, image 1 from zeros: the batch reports image 1's residual
    mixed = torch.stack([x_star[0], torch.zeros_like(x_star[1])])
    assert states_of(T, mixed, max_iter=1)[0].residual == 1.0


def test_the_deq_solvers_and_unrolled_report_the_same_residual():
    """One definition everywhere: the first residual of forward_iteration equals the stream's."""
    T, x_star, _ = affine([0.8, 0.3, -0.5], batch=2)
    x0 = torch.randn(x_star.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = [s.residual for s in states_of(T, x0, max_iter=5)]
    _, trace = forward_iteration(T, x0, max_iter=5, tol=0.0)
    assert trace.residuals == pytest.approx(expected, rel=1e-12)
    from oder_edu.deq import unrolled

    _, trace = unrolled(T, x0, 5)
    assert trace.residuals == pytest.approx(expected, rel=1e-12)


# --- stopping and bookkeeping ---------------------------------------------------------------------


def test_stream_stops_at_max_iter_or_at_the_first_residual_below_tol():
    T, x_star, _ = affine([0.5, 0.25])
    x0 = torch.zeros_like(x_star)
    states = states_of(T, x0, max_iter=7)
    assert [s.iteration for s in states] == list(range(1, 8))
    assert all(isinstance(s, State) and not s.diverged and s.message == "" for s in states)
    states = states_of(T, x0, max_iter=1000, tol=1e-6)
    assert states[-1].residual < 1e-6 and all(s.residual >= 1e-6 for s in states[:-1])
    with pytest.raises(ValueError, match="max_iter"):
        states_of(T, x0, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        states_of(T, x0, tol=-1.0)
    with pytest.raises(TypeError, match="max_iter"):
        states_of(T, x0, max_iter=2.5)


def test_seconds_count_only_the_time_spent_inside_the_solver(monkeypatch):
    """A fake clock: each map application takes 1 s, the caller spends 100 s between states;
    ``state.seconds`` must add up the solver's seconds only."""
    clock = [0.0]
    monkeypatch.setattr(it.time, "perf_counter", lambda: clock[0])

    def step(s):
        clock[0] += 1.0
        return 0.5 * s + 1.0, {}

    x0 = torch.zeros(1, 3, dtype=torch.float64)
    seconds = []
    for state in it.stream(it.fixed_point_updates(step, x0), x0, 5, 0.0, lambda: ""):
        seconds.append(state.seconds)
        clock[0] += 100.0  # the caller draws a plot
    assert seconds == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_objective_is_evaluated_on_each_state_and_updates_run_without_autograd():
    weight = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    x0 = torch.ones(1, 2, dtype=torch.float64)
    updates = it.fixed_point_updates(lambda s: (weight * s, {}), x0)
    states = list(it.stream(updates, x0, 3, 0.0, lambda: "", objective=lambda x: x.sum().item()))
    assert [s.objective for s in states] == [1.0, 0.5, 0.25]
    assert not any(s.x.requires_grad for s in states)


def test_apply_refuses_a_map_that_changes_the_shape():
    x = torch.zeros(2, 3)
    assert torch.equal(it.apply(lambda z: z + 1, x), x + 1)
    with pytest.raises(ValueError, match=r"the map must return a tensor of the input shape \(2, 3\), got \(1, 3\)"):
        it.apply(lambda z: z[:1], x)
    with pytest.raises(ValueError, match="got float"):
        it.apply(lambda z: 1.0, x)


def test_solve_returns_the_trace_and_solver_trace_prints_its_summary():
    T, x_star, _ = affine([0.5, -0.4, 0.1])
    x, trace = it.solve(it.fixed_point_updates(lambda s: (T(s), {}), torch.zeros_like(x_star)),
                        torch.zeros_like(x_star), 500, 1e-10)
    assert trace.converged and trace.iterations == len(trace.residuals) and trace.residuals[-1] < 1e-10
    assert torch.allclose(x, x_star, atol=1e-9)
    assert "converged=True" in repr(trace) and "iterations=" in repr(trace)
    assert repr(SolverTrace()) == "SolverTrace(iterations=0, converged=False, residual=n/a)"
    _, short = it.solve(it.fixed_point_updates(lambda s: (T(s), {}), torch.zeros_like(x_star)),
                        torch.zeros_like(x_star), 3, 1e-10)
    assert short.iterations == 3 and not short.converged


# --- momentum and restart ----------------------------------------------------------------------------


def test_momentum_follows_fista_and_restarts_when_the_step_points_against_the_progress():
    """With prescribed steps d_k (T(s) = s + d_k) of 1, 1/2, 1/4 along one direction the
    extrapolation weights are FISTA's (t_k − 1)/t_{k+1} = 0, 0.28, 0.43. The fourth step, −0.05,
    points back while momentum still carries the iterate forward (x_4 − x_3 > 0): the gradient
    restart sets t = 1, so the next weight is 0 and then 0.28 again (the later steps keep the
    fourth's direction, so nothing restarts). Without acceleration there is no extrapolation."""
    sizes = [1.0, 0.5, 0.25, -0.05, -0.04, -0.02]
    direction = torch.tensor([[1.0, 0.0]], dtype=torch.float64)

    def run(accelerate):
        points, k = [], iter(sizes)

        def step(s):
            points.append(s)
            return s + next(k) * direction, {}

        x0 = torch.zeros(1, 2, dtype=torch.float64)
        states = list(it.stream(it.fixed_point_updates(step, x0, accelerate), x0, len(sizes), 0.0, lambda: ""))
        xs = [x0] + [s.x for s in states]
        # s_{k} = x_k + beta_k (x_k − x_{k−1}): recover beta_k from the points the map saw
        return [((points[k] - xs[k]).norm() / (xs[k] - xs[k - 1]).norm()).item() for k in range(1, len(sizes))]

    t = [1.0]
    for _ in range(3):
        t.append((1 + math.sqrt(1 + 4 * t[-1] ** 2)) / 2)
    fista = [(t[0] - 1) / t[1], (t[1] - 1) / t[2], (t[2] - 1) / t[3]]
    assert run(True) == pytest.approx([fista[0], fista[1], fista[2], 0.0, fista[1]], abs=1e-12)
    assert run(False) == [0.0] * 5


def test_momentum_converges_faster_on_an_ill_conditioned_gradient_step():
    """On a gradient step of an ill-conditioned quadratic (T's eigenvalues 1 − λ_i(H) in [0, 1),
    FISTA's setting) momentum needs far fewer iterations than plain iteration."""
    T, x_star, _ = affine(torch.logspace(-3, 0, 20).neg().add(1).tolist())
    x0 = torch.zeros_like(x_star)
    plain, fast = states_of(T, x0, 5000, 1e-6), states_of(T, x0, 5000, 1e-6, accelerate=True)
    assert fast[-1].residual < 1e-6 and len(fast) < len(plain) / 3
    assert (fast[-1].x - x_star).norm() < 1e-2 * x_star.norm()  # residual / (1 − 0.999) at most


def test_restart_keeps_momentum_converging_on_a_mildly_oscillating_contraction():
    """Eigenvalue −0.5 (outside FISTA's setting): momentum alone amplifies the oscillating mode
    (characteristic root −1.7 at weight 0.5); the restart keeps the iteration converging."""
    T, x_star, _ = affine([-0.5, 0.9, 0.2])
    states = states_of(T, torch.zeros_like(x_star), 3000, 1e-10, accelerate=True)
    assert states[-1].residual < 1e-10 and not states[-1].diverged
    assert torch.allclose(states[-1].x, x_star, atol=1e-8)


def test_restart_keeps_momentum_converging_on_a_strongly_oscillating_contraction():
    """iterate's docstring: the restart "stops momentum from feeding an oscillation elsewhere".
    T(x) = −0.9 (x − 1) + 1 is a contraction (plain iteration converges); with momentum it must too."""
    T = lambda x: -0.9 * (x - 1.0) + 1.0  # noqa: E731
    x0 = torch.zeros(1, 1, dtype=torch.float64)
    assert states_of(T, x0, 3000, 1e-10)[-1].residual < 1e-10
    states = states_of(T, x0, 3000, 1e-10, accelerate=True)
    assert not states[-1].diverged and states[-1].residual < 1e-10


# --- the divergence rule --------------------------------------------------------------------------------


def test_a_slowly_diverging_iteration_is_caught_once_the_iterate_has_doubled():
    """Spectral radius 1.02, started at the fixed point x* displaced by 1 % along the unstable
    eigenvector: the step grows 10x after ~116 iterations while the iterate has barely moved
    (no alarm yet: a growing step alone is not divergence), and the alarm comes as soon as the
    iterate has doubled -- long before it has grown 10x."""
    T, x_star, v = affine([1.02, 0.5, -0.4, 0.3])
    x0 = x_star + 0.01 * x_star.norm() * v
    states = states_of(T, x0, max_iter=5000)
    last = states[-1]
    assert last.diverged and len(states) < 5000
    assert "iterates diverged at iteration" in last.message and "the step grew" in last.message
    assert last.message.endswith("advice")
    start = max(x0.norm().item(), states[0].x.norm().item())
    assert it.SCALE * start < last.x.norm().item() < 3 * start  # caught at 2x, not 10x
    steps = [(s.x - p).norm().item() for s, p in zip(states[1:], [st.x for st in states[:-1]])]
    first_tenfold = next(k for k, s in enumerate(steps) if s > it.GROWTH * min(steps[: k + 1]))
    assert first_tenfold < len(states) - 50  # the step grew 10x long before the alarm


def test_divergence_of_a_linear_map_through_zero_is_caught_when_the_step_has_grown_tenfold():
    """Through x* = 0 the step (M − I)x is proportional to the iterate, so the step rule only
    fires once the iterate has grown about GROWTH times (here: just over 10x); it does fire."""
    T, x_star, v = affine([1.02, 0.5], offset=False)
    x0 = v[None]
    states = states_of(T, x0, max_iter=5000)
    assert states[-1].diverged and len(states) < 200
    assert states[-1].x.norm().item() < 11 * x0.norm().item()


def test_no_alarm_for_a_warm_start_at_a_fixed_point():
    """T(x) = Mx + c started at x* = (I − M)^{-1}c as computed: the steps are rounding noise, which
    can grow 10x over the smallest one, but the iterate does not grow, so nothing is reported."""
    gen = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    M = Q @ torch.diag(torch.tensor([0.9, -0.5, 0.3, 0.99], dtype=torch.float64)) @ Q.T
    c = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    x_star = torch.linalg.solve(torch.eye(4, dtype=torch.float64) - M, c.T).T
    T = lambda x: x @ M.T + c  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = states_of(T, x_star, max_iter=300)
    assert len(states) == 300 and not any(s.diverged for s in states)
    steps = [s.residual for s in states]
    assert 0 < max(steps) < 1e-13 and max(steps) > it.GROWTH * min(steps)  # the step condition alone held


def test_a_big_first_jump_then_convergence_is_not_divergence():
    """From zeros the iterate grows many times over ||x1|| while converging (the scale condition
    alone would fire); the step only shrinks, so nothing is reported."""
    T, x_star, _ = affine([0.95, 0.9])
    states = states_of(T, torch.zeros_like(x_star), max_iter=400)
    assert states[-1].x.norm() > 5 * states[0].x.norm()
    assert not any(s.diverged for s in states)


def test_non_finite_values_stop_the_stream_and_keep_the_last_finite_iterate():
    calls = []

    def step(s):
        calls.append(1)
        return (s * float("nan") if len(calls) == 4 else 0.5 * s + 1.0), {}

    x0 = torch.zeros(2, 3)
    states = list(it.stream(it.fixed_point_updates(step, x0), x0, 50, 0.0, lambda: "try less"))
    assert len(states) == 4 and states[-1].diverged and "non-finite values" in states[-1].message
    assert torch.equal(states[-1].x, states[2].x) and states[-1].objective is None
    assert states[-1].message.endswith("try less")


def test_iterate_warns_and_solve_raises_with_the_same_message():
    T, x_star, v = affine([1.5, 0.2])
    x0 = x_star + 0.01 * v
    updates = lambda: it.fixed_point_updates(lambda s: (T(s), {}), x0)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="diverged") as record:
        states = list(it.iterate(updates(), x0, max_iter=500, tol=0.0, setting="γ = 3",
                                 advice=lambda: "try γ ≤ 1"))
    assert states[-1].diverged and str(record[0].message) == states[-1].message
    assert states[-1].message.endswith("with γ = 3; try γ ≤ 1")
    with pytest.raises(NonContractiveError, match="the map is not contractive: reduce the step size"):
        it.solve(updates(), x0, 500, 0.0)
    with pytest.raises(NonContractiveError, match="not contractive"):
        nesterov(T, x0, max_iter=500, tol=0.0)
    assert issubclass(NonContractiveError, ValueError)


# --- no false alarms in real solvers -------------------------------------------------------------------


def test_a_converging_stochastic_iteration_raises_no_alarm():
    """Online RED from zeros at b/B = 1/4 on multi-coil MRI: the iterate grows ~4x over ||x1||
    and the minibatch steps jump around, yet no seed is reported as diverging."""
    from oder_edu.denoisers import load_denoiser
    from oder_edu.phantoms import shepp_logan

    A = MultiCoilMRI(32, num_coils=8, acceleration=4)
    y = add_noise_snr(A(shepp_logan(32)), 40.0, torch.Generator().manual_seed(0))
    D = load_denoiser("gaussian", device="cpu")
    tau = 0.01 * A.norm() ** 2
    for seed in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            states = list(red(A, y, D, sigma=0.05, tau=tau, batch_ratio=0.25, sampler="uniform", max_iter=200,
                              generator=torch.Generator().manual_seed(seed)))
        assert not any(s.diverged for s in states) and len(states) == 200
        assert max(s.x.norm() for s in states) > it.SCALE * states[0].x.norm()  # the scale condition held
        assert states[-1].residual < 0.01


def test_fista_from_zeros_on_a_blur_problem_raises_no_alarm():
    """FISTA-TV from zeros: momentum makes the step non-monotone, the iterate grows from 0, and
    the objective still falls far without any divergence report."""
    from oder_edu.phantoms import shepp_logan

    A = Blur(gaussian_kernel(7, 1.5), 32)
    clean = A(shepp_logan(32))
    y = clean + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = list(fista_tv(A, y, lam=0.002, max_iter=150, tv_iter=10))
    assert len(states) == 150 and not any(s.diverged for s in states)
    assert states[-1].objective < 0.3 * states[0].objective
