"""The physics base: block sets, samplers, conjugate gradient and power iteration, the data
term (its unbiased minibatch gradient, prox, Lipschitz constants), the closed forms of
Blur/Denoising and the base class's input checks.

What every operator must satisfy (adjoints, block order, dtypes, memory, norms, solve_normal,
bad shapes) is in ``test_operator_contract.py``; this file tests the base machinery itself on
``physics.MatrixOperator``, a dense matrix with exact references."""

import itertools
import math

import numpy as np
import pytest
import torch

from oder_edu.physics import (
    Blur,
    CyclicSampler,
    Denoising,
    LeastSquares,
    MatrixOperator,
    ParallelBeamCT,
    StratifiedSampler,
    UniformSampler,
    adjoint_error,
    as_blocks,
    batch_size_for,
    gaussian_kernel,
    make_sampler,
)
from oder_edu.physics.base import conjugate_gradient, lanczos, power_iteration

pytestmark = pytest.mark.usefixtures("one_thread")


def problem(num_blocks=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    A = MatrixOperator(torch.randn(num_blocks * 4, 9, generator=gen, dtype=torch.float64), (1, 3, 3), num_blocks)
    y = torch.randn(2, num_blocks, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64)
    return A, y, x


# --- block sets ---------------------------------------------------------------------------------------
def test_as_blocks_accepts_indices_in_any_integer_form():
    """None stays None (all blocks: operators then use their tables without copying); any
    integer form becomes a CPU LongTensor in the order given."""
    assert as_blocks(None, 4) is None
    assert torch.equal(as_blocks(2, 4), torch.tensor([2]))
    assert torch.equal(as_blocks([3, 0], 4), torch.tensor([3, 0]))  # order kept
    assert torch.equal(as_blocks(range(1, 3), 4), torch.tensor([1, 2]))
    assert torch.equal(as_blocks(np.array([1, 3]), 4), torch.tensor([1, 3]))
    out = as_blocks(torch.tensor([1, 2], dtype=torch.int32), 4)
    assert out.dtype == torch.long and torch.equal(out, torch.tensor([1, 2])) and out.device.type == "cpu"
    assert torch.equal(as_blocks([np.int64(3)], 4), torch.tensor([3]))


@pytest.mark.parametrize("blocks, error, phrase", [
    ([], ValueError, "empty"),
    (torch.tensor([], dtype=torch.long), ValueError, "empty"),
    ([1, 1], ValueError, "distinct"),
    ([4], IndexError, r"\[0, 4\)"),
    ([-1, 2], IndexError, "min -1"),
    (torch.tensor([0.0, 1.0]), TypeError, "integer"),
    (torch.tensor([True, False]), TypeError, "integer"),
    (torch.tensor([1 + 0j]), TypeError, "integer"),
    (torch.tensor([[0, 1]]), ValueError, "1-D"),
    (1.5, TypeError, "integer indices"),
    ("ab", TypeError, "integer indices"),
])
def test_as_blocks_rejects_bad_block_sets(blocks, error, phrase):
    with pytest.raises(error, match=phrase):
        as_blocks(blocks, 4)


# --- samplers ------------------------------------------------------------------------------------------
def test_batch_size_for():
    assert batch_size_for(180, 0.25) == 45
    assert batch_size_for(8, 0.01) == 1  # at least one block
    assert batch_size_for(8, 1.0) == 8
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"batch_ratio must lie in \(0, 1\]"):
            batch_size_for(8, bad)
    with pytest.raises(ValueError, match="batch_ratio must be finite"):
        batch_size_for(8, float("nan"))


def test_uniform_sampler_draws_distinct_sorted_blocks_reproducibly():
    s = UniformSampler(20, 5)
    draws = [s(torch.Generator().manual_seed(i)) for i in range(50)]
    for d in draws:
        assert d.dtype == torch.long and d.shape == (5,)
        assert torch.equal(d, d.sort().values) and d.unique().numel() == 5
        assert 0 <= d.min() and d.max() < 20
    assert torch.equal(s(torch.Generator().manual_seed(3)), draws[3])
    assert len({tuple(d.tolist()) for d in draws}) > 40


def test_uniform_sampler_draws_every_block_with_probability_b_over_B():
    """Chi-square test on 4000 draws of 3 of 12 blocks: counts ~ 1000 each."""
    s, gen = UniformSampler(12, 3), torch.Generator().manual_seed(0)
    counts = torch.zeros(12)
    for _ in range(4000):
        counts[s(gen)] += 1
    expected = 4000 * 3 / 12
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 31.3  # 99.9 % quantile of chi-square with 11 degrees of freedom


def test_stratified_sampler_uses_the_same_offsets_in_every_sector():
    s = StratifiedSampler(180, 45)  # 45 sectors of 4 angles, one offset each
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        d = s(gen)
        assert d.shape == (45,) and d.unique().numel() == 45
        offsets = d % 4
        assert (offsets == offsets[0]).all()
        assert torch.equal(d // 4, torch.arange(45))
        seen.add(int(offsets[0]))
    assert seen == {0, 1, 2, 3}
    two = StratifiedSampler(12, 6, num_sectors=3)(gen)  # 3 sectors of 4, two offsets each
    offsets = (two % 4).reshape(3, 2)
    assert (offsets == offsets[0]).all() and offsets[0].unique().numel() == 2


def test_stratified_sampler_needs_divisible_sizes():
    with pytest.raises(ValueError, match="divide"):
        StratifiedSampler(10, 3)
    with pytest.raises(ValueError, match="divide"):
        StratifiedSampler(12, 6, num_sectors=4)
    with pytest.raises(ValueError, match="num_sectors must be an integer >= 1"):
        StratifiedSampler(12, 6, num_sectors=0)


def test_cyclic_sampler_sweeps_all_blocks():
    s = CyclicSampler(10, 4)
    draws = [s().tolist() for _ in range(5)]
    assert draws[0] == [0, 1, 2, 3] and draws[1] == [4, 5, 6, 7] and draws[2] == [0, 1, 8, 9]
    assert sorted(set(itertools.chain(*draws[:3]))) == list(range(10))
    s = CyclicSampler(6, 2)
    assert sorted(itertools.chain(*[s().tolist() for _ in range(3)])) == list(range(6))


@pytest.mark.parametrize("cls", [UniformSampler, StratifiedSampler, CyclicSampler])
def test_samplers_reject_bad_sizes(cls):
    with pytest.raises(ValueError, match="num_blocks"):
        cls(0, 1)
    with pytest.raises(ValueError, match="batch_size"):
        cls(8, 0)
    with pytest.raises(ValueError, match="batch_size"):
        cls(8, 9)
    with pytest.raises(TypeError, match="integer"):
        cls(8, 2.5)
    with pytest.raises(TypeError, match="integer"):
        cls(8.0, 2)


def test_make_sampler():
    assert isinstance(make_sampler("uniform", 180, 0.25), UniformSampler)
    assert make_sampler("uniform", 180, 0.25).batch_size == 45
    s = make_sampler("stratified", 180, 0.3)  # 54 does not divide 180: nearest divisor 60
    assert isinstance(s, StratifiedSampler) and 180 % s.batch_size == 0 and s.batch_size == 60
    assert isinstance(make_sampler("cyclic", 8, 0.5), CyclicSampler)
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_sampler("random", 8, 0.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        make_sampler("uniform", 8, 0.0)


# --- the data term ---------------------------------------------------------------------------------------
def test_full_gradient_is_the_gradient_of_the_value():
    A, y, x = problem()
    g = LeastSquares(A, y)
    x = x.requires_grad_()
    (auto,) = torch.autograd.grad(g.value(x).sum(), x)
    torch.testing.assert_close(g.grad(x), auto)
    M = A.M.reshape(-1, 9)
    torch.testing.assert_close(g.grad(x).flatten(1), (x.flatten(1) @ M.T - y.flatten(1)) @ M)
    # norm() stops once power iteration changes by < 1e-6: accurate to ~1e-5 relative
    assert A.norm() ** 2 == pytest.approx(torch.linalg.matrix_norm(M, ord=2).item() ** 2, rel=1e-4)


def test_minibatch_gradient_is_the_scaled_gradient_of_the_minibatch_value():
    A, y, x = problem()
    g = LeastSquares(A, y)
    blocks = torch.tensor([4, 1])
    x = x.requires_grad_()
    (auto,) = torch.autograd.grad(g.value(x, blocks).sum(), x)
    torch.testing.assert_close(g.grad(x, blocks), auto)
    direct = 3.0 * A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)  # B / b = 6 / 2
    torch.testing.assert_close(g.grad(x, blocks), direct)


def test_minibatch_gradient_is_exactly_unbiased_over_all_subsets():
    """E_S[(B/b) sum_{i in S} A_i^T r_i] over all C(6, 2) equally likely subsets = full gradient."""
    A, y, x = problem()
    g = LeastSquares(A, y)
    subsets = list(itertools.combinations(range(6), 2))
    mean = sum(g.grad(x, list(s)) for s in subsets) / len(subsets)
    torch.testing.assert_close(mean, g.grad(x), rtol=1e-12, atol=1e-12)
    # the stratified sampler's sets (same offset in each of 3 sectors of 2) are equally likely too
    mean = sum(g.grad(x, [o, 2 + o, 4 + o]) for o in range(2)) / 2
    torch.testing.assert_close(mean, g.grad(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sampler", ["uniform", "stratified"])
def test_minibatch_gradient_is_unbiased_statistically(sampler):
    """Mean of 1500 minibatch gradients (CT, 24 angles, b/B = 1/4) vs the full gradient: every
    pixel's z-score stays below 4.5; the estimate without B/b fails the same test."""
    A = ParallelBeamCT(12, num_angles=24)
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(1, 1, 12, 12, generator=gen, dtype=torch.float64)
    g = LeastSquares(A, A.forward(truth))
    x = torch.rand(1, 1, 12, 12, generator=gen, dtype=torch.float64)
    draw = make_sampler(sampler, 24, 0.25)
    draws = torch.stack([g.grad(x, draw(gen)) for _ in range(1500)])
    full = g.grad(x)
    mean, err = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    support = err > 1e-9 * full.abs().max()  # pixels where the estimate varies at all
    z = ((mean - full) / err)[support]
    assert z.abs().max() < 4.5
    biased = ((mean / 4 - full) / (err / 4))[support]
    assert biased.abs().max() > 10


def test_data_term_checks_its_inputs():
    A, y, x = problem()
    with pytest.raises(ValueError, match=r"\[N, 6, 4\]"):
        LeastSquares(A, y[:, :5])
    bad = y.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        LeastSquares(A, bad)
    g = LeastSquares(A, y)
    with pytest.raises(ValueError, match="expects torch.float64"):
        g.grad(x.float())
    with pytest.raises(ValueError, match="meta"):
        g.grad(x.to("meta"))
    with pytest.raises(ValueError, match="batch"):
        g.grad(x[:1])
    with pytest.raises(TypeError, match="Tensor"):
        g.grad(x.tolist())
    with pytest.raises(ValueError, match="empty"):
        g.grad(x, [])
    with pytest.raises(ValueError, match="distinct"):
        g.grad(x, [2, 2])
    with pytest.raises(IndexError):
        g.value(x, [6])


def test_data_term_check_accepts_only_what_it_can_take():
    """``LeastSquares.check``: the operator's image shape, y's batch, real precision and device."""
    A, y, x = problem()
    g = LeastSquares(A, y)
    assert g.check(x) is None
    with pytest.raises(ValueError, match=r"image batch 1 does not match data batch 2"):
        g.check(x[:1])
    with pytest.raises(ValueError, match=r"the image is torch.float32 on cpu but the data term expects torch.float64"):
        g.check(x.float())
    with pytest.raises(ValueError, match=r"expects images of shape \[N, 1, 3, 3\]"):
        g.check(x[..., :2])
    with pytest.raises(TypeError, match="LeastSquares|BlockOperator"):
        LeastSquares("A", y)


# --- conjugate gradient and power iteration ---------------------------------------------------------------
def _spd(n=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return G @ G.T + 0.1 * torch.eye(n, dtype=torch.float64)


def test_conjugate_gradient_solves_each_image_in_at_most_n_iterations():
    """CG on an SPD 9x9 system per image (own step lengths per image): exact after 9 iterations,
    and an image whose residual is exactly 0 stops moving (no 0/0)."""
    H = _spd()
    apply = lambda x: (x.flatten(1) @ H).view_as(x)  # noqa: E731
    b = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = torch.linalg.solve(H, b.flatten(1).T).T.view_as(b)
    iterates = conjugate_gradient(apply, b, torch.zeros_like(b))
    xs = [next(iterates) for _ in range(12)]
    assert (xs[8] - exact).norm() < 1e-8 * exact.norm()
    assert all(torch.isfinite(x).all() for x in xs)  # iterations past convergence stay finite
    assert (xs[2] - exact).norm() > 1e-3 * exact.norm()  # not a one-step solve: the check has teeth
    # 2x = b: image 0 starts exactly at its solution (residual 0), image 1 is solved in one step
    start = torch.stack([b[0] / 2, torch.zeros_like(b[1])])
    iterates = conjugate_gradient(lambda x: 2 * x, b, start)
    for _ in range(3):
        x = next(iterates)
        assert torch.equal(x[0], b[0] / 2) and torch.allclose(x[1], b[1] / 2, rtol=1e-15, atol=0)


def test_power_iteration_finds_the_largest_eigenvalue_and_stops_early():
    H = _spd()
    apply = lambda x: (x.flatten(1) @ H).view_as(x)  # noqa: E731
    largest = torch.linalg.eigvalsh(H).max().item()
    assert power_iteration(apply, (1, 1, 3, 3), 2000, 1e-14) == pytest.approx(largest, rel=1e-9)
    calls = []
    power_iteration(lambda x: calls.append(1) or 2.0 * x, (1, 1, 3, 3), 100, 1e-6)
    assert len(calls) == 2  # the estimate is 2 at once; the second call confirms it
    assert power_iteration(lambda x: 0 * x, (1, 4), 100) == 0.0


def test_lanczos_finds_a_crowded_top_eigenvalue_where_power_iteration_stalls():
    """A PSD matrix whose top 40 eigenvalues lie within 1% of each other, like the JᵀJ of a trained DEQ map:
    Lanczos reaches the largest to 1e-9 with its eigenvector, per image of a batch, in far fewer products than
    power iteration needs to get within 1e-3; it stops at its tolerance, never rises above the true value, and
    a batch of one matrix twice gives the same answer twice."""
    gen = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(400, 400, generator=gen, dtype=torch.float64))[0]
    spectrum = torch.cat([1 - 0.01 * torch.rand(40, generator=gen, dtype=torch.float64),
                          0.5 * torch.rand(360, generator=gen, dtype=torch.float64)])
    H = Q @ torch.diag(spectrum) @ Q.T
    top = spectrum.max().item()
    apply = lambda x: (x.flatten(1) @ H).view_as(x)  # noqa: E731
    v0 = torch.randn(2, 1, 20, 20, generator=gen, dtype=torch.float64)
    theta, v, k = lanczos(apply, v0, max_iter=300, tol=1e-10)
    assert theta.tolist() == pytest.approx([top, top], rel=1e-9) and (theta <= top * (1 + 1e-12)).all()
    torch.testing.assert_close(apply(v), theta.view(-1, 1, 1, 1) * v, rtol=0, atol=1e-6)
    assert k < 300  # stopped by its tolerance
    x = v0[:1] / v0[:1].norm()
    for _ in range(k):  # power iteration with as many products
        x = apply(x) / apply(x).norm()
    assert (x * apply(x)).sum().item() < top - 1e-3
    loose = lanczos(apply, v0, max_iter=300, tol=1e-3)
    assert loose[2] < k and (loose[0] <= top).all()
    twice = lanczos(apply, v0[:1].expand(2, -1, -1, -1), max_iter=300, tol=1e-10)[0]
    assert twice[0].item() == pytest.approx(twice[1].item(), rel=1e-12)


# --- block norms, the minibatch constant, normal equations and the prox --------------------------------
def test_block_norms_and_the_minibatch_constant_follow_their_formula():
    """block_norms = ||A_i||₂ (dense reference); minibatch_lipschitz(b) = min((B/b)·L, B·max||A_i||²),
    and it bounds (B/b)||A_S||² for *every* S of size b (all 15 pairs of 6 blocks)."""
    A, y, _ = problem()
    L = torch.linalg.matrix_norm(A.matrix(), ord=2).item() ** 2
    blocks = torch.stack([torch.linalg.matrix_norm(A.M[i], ord=2) for i in range(6)])
    # power iteration with tol 1e-4 per block (1e-6 for the norm): estimates from below, close
    torch.testing.assert_close(A.block_norms(), blocks, rtol=1e-3, atol=0)
    for b in (1, 2, 3):
        expected = min(6 / b * L, 6 * blocks.max().item() ** 2)
        assert A.minibatch_lipschitz(b) == pytest.approx(expected, rel=1e-3)
        for S in itertools.combinations(range(6), b):
            true = 6 / b * torch.linalg.matrix_norm(A.M[list(S)].reshape(-1, 9), ord=2) ** 2
            assert true <= A.minibatch_lipschitz(b) * (1 + 1e-3)
    assert A.minibatch_lipschitz(6) == A.norm() ** 2 == pytest.approx(L, rel=1e-4)
    for bad, error in ((0, ValueError), (7, ValueError), (2.5, TypeError)):
        with pytest.raises(error, match="batch_size"):
            A.minibatch_lipschitz(bad)


def test_solve_normal_by_conjugate_gradient_is_exact_after_n_iterations():
    """The base class's solve_normal: CG on AᵀA + shift·I, exact after n = 9 iterations, warm start used."""
    A, _, x = problem()
    M, shift = A.matrix(), 0.3
    exact = torch.linalg.solve(M.T @ M + shift * torch.eye(9, dtype=torch.float64), x.flatten(1).T).T.view_as(x)
    assert (A.solve_normal(x, shift, num_iter=9) - exact).norm() < 1e-9 * exact.norm()
    assert (A.solve_normal(x, shift, num_iter=2) - exact).norm() > 1e-4 * exact.norm()
    assert (A.solve_normal(x, shift, x_init=exact, num_iter=1) - exact).norm() < 1e-12 * exact.norm()


@pytest.mark.parametrize("make", [lambda: Denoising(8, channels=2), lambda: Blur(gaussian_kernel(5, 1.0), 8, channels=2),
                                  lambda: Blur(torch.arange(6.0).reshape(2, 3), 8)])
def test_closed_form_solve_normal_is_exact_without_iterating(make):
    """Denoising (AᵀA = I) and Blur (AᵀA = F⁻¹|K|²F) solve the normal equations in closed form:
    exact with num_iter=1, where one CG step would not be."""
    A = make()
    n = A.image_shape
    b = torch.randn(2, *n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = A.solve_normal(b, 0.05, num_iter=1)
    residual = A.adjoint(A.forward(x)) + 0.05 * x - b
    assert residual.norm() < 1e-10 * b.norm()


def test_prox_is_the_minimizer_of_the_proximal_objective():
    """prox_{γg}(v) = argmin ½||Ax − y||² + 1/(2γ)||x − v||²: the gradient AᵀAx − Aᵀy + (x − v)/γ
    vanishes -- by CG for MatrixOperator (exact at cg_iter = n), in closed form for Blur."""
    A, y, v = problem()
    g = LeastSquares(A, y)
    x = g.prox(v, 0.7, cg_iter=9)
    assert (g.grad(x) + (x - v) / 0.7).norm() < 1e-9 * v.norm()
    assert (g.grad(g.prox(v, 0.7, cg_iter=1)) + (g.prox(v, 0.7, cg_iter=1) - v) / 0.7).norm() > 1e-4 * v.norm()
    blur = Blur(gaussian_kernel(5, 1.0), 12)
    gen = torch.Generator().manual_seed(5)
    v = torch.randn(2, 1, 12, 12, generator=gen, dtype=torch.float64)
    h = LeastSquares(blur, blur.forward(torch.rand(2, 1, 12, 12, generator=gen, dtype=torch.float64)))
    x = h.prox(v, 3.0, cg_iter=1)
    assert (h.grad(x) + (x - v) / 3.0).norm() < 1e-10 * v.norm()
    with pytest.raises(ValueError, match="gamma must be > 0"):
        g.prox(v[:, :, :3, :3], 0.0)
    with pytest.raises(ValueError, match="cg_iter"):
        g.prox(problem()[2], 1.0, cg_iter=0)
    with pytest.raises(ValueError, match="expects torch.float64"):
        g.prox(problem()[2].float(), 1.0)


# --- the base class's checks ------------------------------------------------------------------------------
def test_base_class_checks_images_and_measurements():
    A, y, x = problem()
    with pytest.raises(TypeError, match="Tensor"):
        A.forward(x.numpy())
    with pytest.raises(TypeError, match="MatrixOperator's image must be a real floating-point tensor"):
        A.forward(x.to(torch.complex128))
    with pytest.raises(TypeError, match="MatrixOperator's image must be a real floating-point tensor"):
        A.forward(x.to(torch.int32))
    with pytest.raises(ValueError, match=r"must have shape \[N, C, H, W\] with N >= 1, got \(1, 3, 3\)"):
        A.forward(x[0])
    with pytest.raises(ValueError, match=r"got \(2, 1, 3, 4\)"):
        A.forward(torch.zeros(2, 1, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[N, 2, 4\] for 2 block"):
        A.adjoint(y, [0, 1])
    with pytest.raises(TypeError, match="real floating-point measurements"):
        A.adjoint(y.to(torch.complex128))
    with pytest.raises(TypeError, match="Tensor"):
        A.adjoint(y.tolist())
    C = MatrixOperator(A.matrix().to(torch.complex128), (1, 3, 3), 6)
    with pytest.raises(TypeError, match="complex measurements"):
        C.adjoint(y)
    assert A.measurement_shape(2) == (2, 6, 4) and A.measurement_shape(1, [0, 3]) == (1, 2, 4)
    assert "num_blocks=6" in repr(A)


# --- MatrixOperator and the adjoint check -------------------------------------------------------------------
def test_matrix_operator_takes_the_blocks_or_the_whole_matrix():
    """``[B, m, n]`` or ``[B·m, n]`` with num_blocks give the same operator; a 2-D matrix alone is one block."""
    A, _, x = problem()
    same = MatrixOperator(A.M, (1, 3, 3))
    assert (same.num_blocks, same.block_shape, same.image_shape) == (6, (4,), (1, 3, 3))
    assert torch.equal(same.matrix(), A.matrix()) and A.matrix().shape == (24, 9)
    torch.testing.assert_close(A.forward(x), (x.flatten(1) @ A.matrix().T).reshape(2, 6, 4), rtol=1e-14, atol=0)
    torch.testing.assert_close(A.forward(x, [5, 2]), A.forward(x)[:, [5, 2]], rtol=1e-14, atol=0)
    one = MatrixOperator(A.matrix(), (1, 3, 3))
    assert one.num_blocks == 1 and one.block_shape == (24,)


def test_a_complex_matrix_is_real_linear_with_an_exact_adjoint():
    """For M complex, A x = M x (x real) and Aᵀy = Re(Mᴴ y): the adjoint for Re<., .>."""
    gen = torch.Generator().manual_seed(3)
    M = torch.randn(3, 4, 8, generator=gen, dtype=torch.complex128)
    A = MatrixOperator(M, (2, 2, 2))
    y = torch.randn(2, 3, 4, generator=gen, dtype=torch.complex128)
    assert A.complex_measurements and A.forward(torch.zeros(1, 2, 2, 2)).dtype == torch.complex64
    dense = M.reshape(12, 8)
    torch.testing.assert_close(A.adjoint(y).flatten(1), (y.reshape(2, 12) @ dense.conj()).real)
    assert adjoint_error(A) <= 1e-12 and adjoint_error(A, [2, 0]) <= 1e-12
    assert not MatrixOperator(M.real, (2, 2, 2)).complex_measurements


@pytest.mark.parametrize("matrix, image_shape, num_blocks, error, phrase", [
    (torch.zeros(6, 9), (1, 3, 3), 4, ValueError, "cannot split the 6 rows"),
    (torch.zeros(6, 9), (1, 4, 4), 3, ValueError, r"n = 9 columns cannot act on images \(1, 4, 4\)"),
    (torch.zeros(3, 2, 9), (1, 3, 3), 2, ValueError, "has 3 blocks, but num_blocks is 2"),
    (torch.zeros(9), (1, 3, 3), None, ValueError, r"\[B, m, n\] or \[B\*m, n\], got \(9,\)"),
    (torch.zeros(0, 9), (1, 3, 3), None, ValueError, "at least one block"),
    (torch.zeros(6, 9), (3, 3), 3, ValueError, r"\(C, H, W\)"),
    (torch.zeros(6, 9), 9, 3, TypeError, "image_shape must be a tuple"),
    (torch.zeros(6, 9, dtype=torch.long), (1, 3, 3), 3, TypeError, "floating point"),
    (torch.full((6, 9), float("nan")), (1, 3, 3), 3, ValueError, "NaN or Inf"),
    ([[1.0]], (1, 1, 1), None, TypeError, "torch.Tensor"),
    (torch.zeros(6, 9), (1, 3, 3), 0, ValueError, "num_blocks must be an integer >= 1"),
])
def test_matrix_operator_rejects_bad_shapes(matrix, image_shape, num_blocks, error, phrase):
    with pytest.raises(error, match=phrase):
        MatrixOperator(matrix, image_shape, num_blocks)


def test_adjoint_error_finds_an_adjoint_one_percent_off():
    class Scaled(MatrixOperator):
        def _adjoint(self, y, blocks):
            return 1.01 * super()._adjoint(y, blocks)

    A, _, _ = problem()
    assert adjoint_error(A) <= 1e-14 and adjoint_error(A, [3, 1], batch=1, seed=5) <= 1e-14
    assert adjoint_error(Scaled(A.M, (1, 3, 3))) == pytest.approx(0.01, rel=1e-9)
    with pytest.raises(TypeError, match="BlockOperator"):
        adjoint_error(A.matrix())


# --- Blur and Denoising ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [gaussian_kernel(9, 2.0), gaussian_kernel(4, 1.0),
                                    torch.arange(15.0).reshape(3, 5)])
def test_blur_adjoint_is_exact(kernel):
    A = Blur(kernel, image_size=16, channels=2)
    assert adjoint_error(A) <= 1e-10
    x = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = A.forward(x)
    assert y.shape == (1, 1, 2, 16, 16)
    M = A.forward(torch.eye(256, dtype=torch.float64).reshape(256, 1, 16, 16).repeat(1, 2, 1, 1))[:, 0, 0]
    sigma = torch.linalg.matrix_norm(M.reshape(256, 256), ord=2).item()
    assert A.norm() == pytest.approx(sigma, rel=1e-9)


def test_blur_is_a_circular_convolution_centred_on_the_kernel():
    kernel = torch.zeros(3, 3, dtype=torch.float64)
    kernel[1, 2] = 1.0  # shift by one column
    A = Blur(kernel, image_size=8)
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[0, 0, 2, 7] = 1.0
    y = A.forward(x)[:, 0]
    assert y[0, 0, 2, 0].item() == pytest.approx(1.0) and y.sum().item() == pytest.approx(1.0)
    assert A.forward(x.float()).dtype == torch.float32


def test_blur_rejects_bad_kernels():
    with pytest.raises(ValueError, match="no larger than 8x8"):
        Blur(torch.ones(9, 9), image_size=8)
    with pytest.raises(ValueError, match="2-D"):
        Blur(torch.ones(3), image_size=8)
    with pytest.raises(ValueError, match="NaN or Inf"):
        Blur(torch.tensor([[float("nan")]]), image_size=8)
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        Blur(torch.ones(1, 1), image_size=4, channels=0)
    with pytest.raises(ValueError, match="std must be > 0"):
        gaussian_kernel(5, 0.0)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        gaussian_kernel(0, 1.0)


def test_denoising_is_the_identity():
    A = Denoising(image_size=8, channels=3)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert torch.equal(A.forward(x)[:, 0], x) and A.forward(x).shape == (2, 1, 3, 8, 8)
    assert torch.equal(A.adjoint(A.forward(x)), x)
    assert adjoint_error(A) <= 1e-12
    assert A.norm() == 1.0 and A.num_blocks == 1
    with pytest.raises(IndexError):
        A.forward(x, [1])
    assert torch.equal(LeastSquares(A, A.forward(x)).grad(x), torch.zeros_like(x))
