"""Fixed-point solvers: they reach the fixed point, Anderson is faster, divergence is caught
(``algorithms.iterate``'s rule, raised as NonContractiveError), arguments are checked strictly."""

import pytest
import torch

from oder_edu.deq import NonContractiveError, anderson, forward_iteration, nesterov


pytestmark = pytest.mark.usefixtures("one_thread")

SOLVERS = (forward_iteration, anderson, nesterov)


def affine_map(d=20, rho=0.9, low=0.0, batch=3, seed=0, dtype=torch.float64):
    """f(z) = M z + c, M symmetric with eigenvalues in [low, rho], and its fixed point.

    With low >= 0, f is a gradient step z - (grad of a convex quadratic), the setting in
    which Nesterov's momentum is guaranteed to converge."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=dtype))
    M = Q @ torch.diag(torch.linspace(low, rho, d, dtype=dtype)) @ Q.T
    c = torch.randn(batch, d, generator=gen, dtype=dtype)
    z_star = torch.linalg.solve(torch.eye(d, dtype=dtype) - M, c.T).T
    return (lambda z: z @ M.T + c), c, z_star


@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_reaches_the_fixed_point(solver):
    f, c, z_star = affine_map(low=0.0 if solver is nesterov else -0.9)
    z, trace = solver(f, torch.zeros_like(c), max_iter=2000, tol=1e-10)
    assert trace.converged and trace.iterations == len(trace.residuals)
    assert trace.residuals[-1] <= 1e-10
    assert torch.allclose(z, z_star, atol=1e-8)


@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_keeps_image_shapes(solver):
    x = torch.rand(2, 1, 8, 8)
    z, trace = solver(lambda z: 0.5 * z + x, torch.zeros_like(x), max_iter=200, tol=1e-5)
    assert z.shape == x.shape and trace.converged
    assert torch.allclose(z, 2 * x, atol=1e-4)


def test_anderson_needs_fewer_iterations_than_plain_iteration():
    f, c, _ = affine_map(rho=0.95)
    _, plain = forward_iteration(f, torch.zeros_like(c), max_iter=2000, tol=1e-8)
    _, accelerated = anderson(f, torch.zeros_like(c), max_iter=2000, tol=1e-8, m=5)
    assert plain.converged and accelerated.converged
    assert accelerated.iterations < plain.iterations / 3


def test_nesterov_accelerates_a_gradient_step():
    # f(z) = z - (1/L) grad h for the ill-conditioned quadratic h = 1/2 z^T H z - c^T z.
    d = 30
    H = torch.diag(torch.logspace(-3, 0, d, dtype=torch.float64))
    c = torch.ones(2, d, dtype=torch.float64)

    def f(z):
        return z - (z @ H - c)

    _, plain = forward_iteration(f, torch.zeros_like(c), max_iter=5000, tol=1e-6)
    _, accelerated = nesterov(f, torch.zeros_like(c), max_iter=5000, tol=1e-6)
    assert accelerated.converged and accelerated.iterations < plain.iterations / 3


def test_trace_reports_non_convergence():
    f, c, _ = affine_map(rho=0.99)
    z, trace = forward_iteration(f, torch.zeros_like(c), max_iter=5, tol=1e-12)
    assert trace.iterations == 5 and not trace.converged


@pytest.mark.parametrize("solver", [forward_iteration, nesterov])
def test_a_growing_residual_is_detected(solver):
    c = torch.ones(2, 4)
    with pytest.raises(NonContractiveError, match="not contractive"):
        solver(lambda z: 1.5 * z + c, torch.zeros_like(c), max_iter=200, tol=1e-6)


def test_anderson_is_a_root_finder_and_catches_non_finite_values():
    # On an affine map Anderson acts like GMRES on (I - M) z = c: it finds the fixed point
    # of an expanding map that plain iteration cannot reach ...
    c = torch.ones(2, 4, dtype=torch.float64)
    z, trace = anderson(lambda z: 1.5 * z + c, torch.zeros_like(c), max_iter=50, tol=1e-10)
    assert trace.converged and torch.allclose(z, -2 * c)
    # ... and a map that blows up still ends with a clear error.
    with pytest.raises(NonContractiveError, match="not contractive"):
        anderson(lambda z: z * float("inf") + 1, c, max_iter=10)


def test_solvers_share_the_iterate_residual_and_return_a_solver_trace():
    """The trace's residuals are max_n ||f(z)_n − z_n|| / ||f(z)_n|| (``algorithms.iterate``)."""
    from oder_edu.algorithms import SolverTrace

    f, c, _ = affine_map()
    z0 = torch.zeros_like(c)
    for solver in SOLVERS:
        _, trace = solver(f, z0, max_iter=3, tol=0.0)
        assert isinstance(trace, SolverTrace) and trace.iterations == 3
        assert trace.residuals[0] == 1.0  # first step from zeros, for every solver
    _, trace = forward_iteration(f, c, max_iter=1, tol=0.0)
    assert trace.residuals[0] == pytest.approx(((f(c) - c).norm(dim=1) / f(c).norm(dim=1)).max().item(), rel=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("max_iter, error", [(2.7, TypeError), ("5", TypeError), (True, TypeError),
                                             (0, ValueError), (-1, ValueError)])
def test_max_iter_is_checked_strictly(solver, max_iter, error):
    """No silent int(): 2.7, '5' and True are the wrong kind, 0 the wrong value."""
    c = torch.ones(2, 4)
    with pytest.raises(error, match="max_iter must be an integer"):
        solver(lambda z: 0.5 * z, c, max_iter=max_iter)


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_non_finite_start_or_tolerance_is_refused(solver):
    c = torch.ones(2, 4)
    with pytest.raises(ValueError, match="z0 contains NaN or Inf"):
        solver(lambda z: 0.5 * z, torch.full((2, 4), float("nan")))
    with pytest.raises(ValueError, match="tol must be"):
        solver(lambda z: 0.5 * z, c, tol=-1e-3)
    with pytest.raises(ValueError, match="tol must be finite"):
        solver(lambda z: 0.5 * z, c, tol=float("nan"))
    with pytest.raises(TypeError, match="z0 must be a floating-point tensor"):
        solver(lambda z: 0.5 * z, torch.ones(0, 4))


def test_numpy_integers_are_accepted_as_iteration_counts():
    np = pytest.importorskip("numpy")
    z, trace = anderson(lambda z: 0.5 * z + 1, torch.zeros(1, 3), max_iter=np.int64(50), m=np.int32(3), tol=1e-8)
    assert trace.converged and torch.allclose(z, torch.full((1, 3), 2.0))


def test_bad_arguments():
    c = torch.ones(2, 4)
    with pytest.raises(ValueError, match="max_iter"):
        anderson(lambda z: z, c, max_iter=0)
    with pytest.raises(TypeError, match="m must be an integer"):
        anderson(lambda z: z, c, m=2.5)
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        anderson(lambda z: z, c, m=0)
    with pytest.raises(ValueError, match="lam"):
        anderson(lambda z: z, c, lam=-1.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        anderson(lambda z: z, c, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        anderson(lambda z: z, c, beta=1.5)
    with pytest.raises(ValueError, match="the map must return a tensor of the input shape"):
        forward_iteration(lambda z: z[:1], c)
    with pytest.raises(TypeError, match="callable"):
        nesterov(None, c)
    with pytest.raises(TypeError, match="floating-point"):
        anderson(lambda z: z, torch.ones(2, 4, dtype=torch.long))
