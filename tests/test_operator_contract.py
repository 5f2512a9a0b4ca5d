"""The block-operator contract, run over every operator of the package (one list of factories):
exact adjoints for random block sets, per-block concatenation in the order asked, dtypes that
follow the input, subsets that never cost more memory than the full call, the norms, the
normal-equation solve, and clear errors for bad input. A new operator gets all of it by being
added to OPERATORS."""

import math

import pytest
import torch

from oder_edu.memory import PeakTensorMemory
from oder_edu.physics import (Blur, Denoising, IntensityDiffractionTomography, LeastSquares, MatrixOperator,
                              MultiCoilMRI, ParallelBeamCT, gaussian_kernel)
from oder_edu.physics.base import power_iteration


def random_matrix(*shape, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


OPERATORS = {
    "denoising": lambda: Denoising(12),
    "blur": lambda: Blur(gaussian_kernel(5, 1.0), 12),
    "ct": lambda: ParallelBeamCT(12, num_angles=10),
    "ct-wide-detector": lambda: ParallelBeamCT(11, num_angles=7, num_detectors=19),
    "mri": lambda: MultiCoilMRI(12, num_coils=6, acceleration=2),
    "idt": lambda: IntensityDiffractionTomography(12, num_leds=8),
    "idt-absorption": lambda: IntensityDiffractionTomography(12, num_leds=6, absorption=True),
    "matrix": lambda: MatrixOperator(random_matrix(12, 16), (1, 4, 4), num_blocks=6),
    "matrix-complex": lambda: MatrixOperator(random_matrix(5, 3, 18, dtype=torch.complex128), (2, 3, 3)),
}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=list(OPERATORS), scope="module")
def A(request):
    return OPERATORS[request.param]()


def image(A, n=2, dtype=torch.float64, seed=0):
    return torch.randn(n, *A.image_shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def measurement(A, b, n=2, dtype=torch.float64, seed=1):
    shape = (n, b, *A.block_shape)
    gen = torch.Generator().manual_seed(seed)
    if A.complex_measurements:
        return torch.complex(torch.randn(shape, generator=gen, dtype=dtype), torch.randn(shape, generator=gen, dtype=dtype))
    return torch.randn(shape, generator=gen, dtype=dtype)


def subsets(A):
    B = A.num_blocks
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(2))
    return [None, perm[: max(1, B // 2)], perm[:1], perm.flip(0)]


def inner(a, b):
    return (a.conj() * b).real.sum() if a.is_complex() else (a * b).sum()


def test_adjoint_is_the_vector_jacobian_product_of_the_forward(A):
    """<A_S x, y> = <x, A_Sᵀ y> and A_Sᵀ y = the VJP of x -> A_S x, for random block sets S
    (float64). For CT, whose autograd runs through its own adjoint, test_physics_ct compares
    with the independent scatter path."""
    for blocks in subsets(A):
        b = A.num_blocks if blocks is None else len(blocks)
        x, y = image(A), measurement(A, b)
        Ax, ATy = A.forward(x, blocks), A.adjoint(y, blocks)
        assert torch.allclose(inner(Ax, y), inner(x, ATy), rtol=1e-10, atol=1e-10)
        x_ = x.clone().requires_grad_()
        (vjp,) = torch.autograd.grad(inner(A.forward(x_, blocks), y), x_)
        assert torch.allclose(vjp, ATy, rtol=1e-9, atol=1e-10)


def test_forward_returns_a_new_tensor_that_the_data_term_may_change(A):
    """``_forward`` never hands back a view of its input (``BlockOperator``): the data term subtracts y_S from
    A_S x in place, which must leave x, y and the operator's tables as they were."""
    from oder_edu.physics import LeastSquares

    for blocks in subsets(A):
        x = image(A)
        y = A.forward(image(A, seed=3))
        data = LeastSquares(A, y)
        x_before, y_before, Ax_before = x.clone(), y.clone(), A.forward(x)
        S = None if blocks is None else torch.as_tensor(blocks)
        assert A._forward(x, S).untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
        residual = data._residual(x, S)
        assert torch.equal(x, x_before) and torch.equal(y, y_before)
        assert torch.equal(A.forward(x), Ax_before)  # the tables too
        expected = Ax_before - y if S is None else (Ax_before - y)[:, S]
        torch.testing.assert_close(residual, expected)


def test_blocks_come_back_in_the_order_asked_and_concatenate(A):
    x = image(A)
    full = A.forward(x)
    for blocks in subsets(A)[1:]:
        assert torch.allclose(A.forward(x, blocks), full[:, blocks], atol=1e-12)
    one_by_one = torch.cat([A.forward(x, [i]) for i in range(A.num_blocks)], dim=1)
    assert torch.allclose(one_by_one, full, atol=1e-12)


def test_a_subset_adjoint_is_the_adjoint_of_the_zero_filled_measurement(A):
    blocks = subsets(A)[1]
    y = measurement(A, len(blocks))
    filled = torch.zeros_like(measurement(A, A.num_blocks))
    filled[:, blocks] = y
    assert torch.allclose(A.adjoint(y, blocks), A.adjoint(filled), atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_follow_the_input(A, dtype):
    x = image(A, dtype=dtype)
    y = A.forward(x)
    expected = {torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype] if A.complex_measurements else dtype
    assert y.dtype == expected and A.adjoint(y).dtype == dtype


def test_a_minibatch_never_costs_more_memory_than_the_full_batch(A):
    """Peak tensor memory of forward, adjoint and gradient on a block subset <= the full call's
    (plus the index set's own bookkeeping, a few bytes per block)."""
    x = image(A, 1, torch.float32)
    y = A.forward(x)
    g = LeastSquares(A, y)
    if A.num_blocks == 1:
        pytest.skip("one block: no proper subset")
    blocks = subsets(A)[1]
    measured = {None: y, "subset": y[:, blocks]}
    calls = {"forward": lambda S: A.forward(x, S), "adjoint": lambda S: A.adjoint(measured[S if S is None else "subset"], S),
             "grad": lambda S: g.grad(x, S)}
    for name, call in calls.items():
        peaks = []
        for S in (None, blocks):
            call(S)  # warm-up: caches are filled once, outside the measurement
            with PeakTensorMemory() as memory:
                call(S)
            peaks.append(memory.peak_bytes)
        assert peaks[1] <= peaks[0] + 64 * len(blocks), f"{name}: subset peak {peaks[1]} B > full peak {peaks[0]} B"


def test_norm_is_cached_per_request_and_agrees_with_the_matrix(A):
    """norm(num_iter) keyed on what was asked (a cheap first call must not pin later answers)."""
    rough, exact = A.norm(num_iter=1), A.norm(num_iter=500, tol=1e-12)
    assert A.norm(num_iter=500, tol=1e-12) == exact and A.norm(num_iter=1) == rough
    M = torch.stack([A.forward(e[None].reshape(1, *A.image_shape)).flatten()
                     for e in torch.eye(math.prod(A.image_shape), dtype=torch.float64)], dim=1)
    if M.is_complex():  # a real-linear map into C^m: the real matrix [Re M; Im M]
        M = torch.view_as_real(M).permute(0, 2, 1).reshape(-1, M.shape[1])
    assert exact == pytest.approx(torch.linalg.matrix_norm(M, ord=2).item(), rel=1e-6)


def test_the_minibatch_constant_bounds_every_minibatch_gradient(A):
    """(B/b)||A_S||² <= A.minibatch_lipschitz(b) for the sets drawn; with b = B it is L_g."""
    B = A.num_blocks
    assert A.minibatch_lipschitz(B) == pytest.approx(A.norm() ** 2)
    b = max(1, B // 2)
    bound = A.minibatch_lipschitz(b)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        S = torch.randperm(B, generator=gen)[:b]
        normal = lambda v: A.adjoint(A.forward(v, S), S)  # noqa: E731
        assert B / b * power_iteration(normal, (1, *A.image_shape), 300, 1e-10) <= bound * (1 + 1e-6)
    assert all(A.block_norms() <= A.norm() * (1 + 1e-6))


def test_solve_normal_solves_the_normal_equations(A):
    b, shift = image(A), 0.7
    x = A.solve_normal(b, shift, num_iter=400)
    residual = A.adjoint(A.forward(x)) + shift * x - b
    assert residual.norm() <= 1e-8 * b.norm()


def test_bad_inputs_are_refused_with_the_expected_shape(A):
    x = image(A)
    with pytest.raises(ValueError, match="expects images of shape"):
        A.forward(x[..., :-1])
    with pytest.raises(TypeError, match="floating-point"):
        A.forward(x.long())
    with pytest.raises(ValueError, match="expects measurements of shape"):
        A.adjoint(A.forward(x)[..., :-1])
    with pytest.raises(IndexError, match=r"\[0, "):
        A.forward(x, [A.num_blocks])
    with pytest.raises(ValueError, match="distinct"):
        A.forward(x, [0, 0])
    with pytest.raises(ValueError, match="empty"):
        A.forward(x, [])
    with pytest.raises(TypeError, match="integer"):
        A.forward(x, torch.tensor([0.5]))
