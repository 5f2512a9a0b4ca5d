"""The physics base: block sets, samplers, the data term's (unbiased) gradient, Blur/Denoising
adjoints and the base class's input checks."""

import itertools
import math

import numpy as np
import pytest
import torch

from adjoint_check import adjoint_error
from oder_edu.physics import (
    BlockOperator,
    Blur,
    CyclicSampler,
    Denoising,
    LeastSquares,
    ParallelBeamCT,
    StratifiedSampler,
    UniformSampler,
    as_blocks,
    batch_size_for,
    gaussian_kernel,
    make_sampler,
)


class Rows(BlockOperator):
    """A dense real matrix split into row blocks: every quantity has an exact reference."""

    def __init__(self, matrix: torch.Tensor, num_blocks: int, size: int = 3):
        self.M = matrix.reshape(num_blocks, -1, size * size)  # [B, m, n]
        self.num_blocks, self.image_shape, self.block_shape = num_blocks, (1, size, size), (self.M.shape[1],)

    def _forward(self, x, blocks):
        M = self._buffer("M", x).index_select(0, blocks)
        return torch.einsum("bmn,Nn->Nbm", M, x.flatten(1))

    def _adjoint(self, y, blocks):
        M = self._buffer("M", y).index_select(0, blocks)
        return torch.einsum("bmn,Nbm->Nn", M, y).reshape(y.shape[0], *self.image_shape)


class ComplexRows(Rows):
    complex_measurements = True


def problem(num_blocks=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    A = Rows(torch.randn(num_blocks * 4, 9, generator=gen, dtype=torch.float64), num_blocks)
    y = torch.randn(2, num_blocks, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64)
    return A, y, x


# --- block sets ---------------------------------------------------------------------------------------
def test_as_blocks_accepts_indices_in_any_integer_form():
    assert torch.equal(as_blocks(None, 4), torch.arange(4))
    assert torch.equal(as_blocks(2, 4), torch.tensor([2]))
    assert torch.equal(as_blocks([3, 0], 4), torch.tensor([3, 0]))  # order kept
    assert torch.equal(as_blocks(range(1, 3), 4), torch.tensor([1, 2]))
    assert torch.equal(as_blocks(np.array([1, 3]), 4), torch.tensor([1, 3]))
    out = as_blocks(torch.tensor([1, 2], dtype=torch.int32), 4)
    assert out.dtype == torch.long and torch.equal(out, torch.tensor([1, 2]))


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
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            batch_size_for(8, bad)


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
    with pytest.raises(ValueError, match="divide"):
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
    assert g.lipschitz() == pytest.approx(torch.linalg.matrix_norm(M, ord=2).item() ** 2, rel=1e-6)


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
    with pytest.raises(ValueError, match="dtype"):
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


# --- the base class's checks ------------------------------------------------------------------------------
def test_base_class_checks_images_and_measurements():
    A, y, x = problem()
    with pytest.raises(TypeError, match="Tensor"):
        A.forward(x.numpy())
    with pytest.raises(TypeError, match="real floating-point image"):
        A.forward(x.to(torch.complex128))
    with pytest.raises(TypeError, match="real floating-point image"):
        A.forward(x.to(torch.int32))
    with pytest.raises(ValueError, match=r"\[N, 1, 3, 3\].*got \(1, 3, 3\)"):
        A.forward(x[0])
    with pytest.raises(ValueError, match=r"got \(2, 1, 3, 4\)"):
        A.forward(torch.zeros(2, 1, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[N, 2, 4\] for 2 block"):
        A.adjoint(y, [0, 1])
    with pytest.raises(TypeError, match="real floating-point measurements"):
        A.adjoint(y.to(torch.complex128))
    with pytest.raises(TypeError, match="Tensor"):
        A.adjoint(y.tolist())
    C = ComplexRows(A.M.reshape(-1, 9), 6)
    with pytest.raises(TypeError, match="complex measurements"):
        C.adjoint(y)
    assert A.measurement_shape(2) == (2, 6, 4) and A.measurement_shape(1, [0, 3]) == (1, 2, 4)
    assert "num_blocks=6" in repr(A)


def test_base_class_buffers_follow_the_input_dtype():
    A, y, x = problem()
    assert A.forward(x.float()).dtype == torch.float32
    assert A.forward(x).dtype == torch.float64
    assert A.adjoint(y.float()).dtype == torch.float32
    assert adjoint_error(A, [5, 0, 3]) <= 1e-12


def test_norm_is_cached_and_right():
    A, _, _ = problem()
    value = A.norm()
    M = A.M.reshape(-1, 9)
    assert value == pytest.approx(torch.linalg.matrix_norm(M, ord=2).item(), rel=1e-6)
    A.M = A.M * 2  # the cache is not recomputed
    assert A.norm() == value


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
    with pytest.raises(ValueError, match="image_size"):
        Blur(torch.ones(1, 1), image_size=4, channels=0)
    with pytest.raises(ValueError, match="size >= 1 and std > 0"):
        gaussian_kernel(5, 0.0)


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
