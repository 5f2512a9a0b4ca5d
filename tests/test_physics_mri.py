"""Multi-coil MRI: the real-linear adjoint, FFT conventions, unitarity, coil maps, masks, the
single-coil closed-form normal solve and the coil-wise minibatch constant.

Adjoints on random block sets, block order, dtypes, memory, norms and bad shapes are checked for
every operator in ``test_operator_contract.py``; the property test below adds random sizes
(odd and even) and both mask kinds."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from oder_edu.physics import BlockOperator, LeastSquares, MultiCoilMRI, adjoint_error, birdcage_maps, cartesian_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_blocks(num_blocks, seed):
    gen = torch.Generator().manual_seed(seed)
    b = int(torch.randint(1, num_blocks + 1, (1,), generator=gen))
    return torch.randperm(num_blocks, generator=gen)[:b]


def test_adjoint_is_the_real_linear_adjoint():
    # Re<A x, w> = <x, A^T w>: confirms that autograd's VJP for real x and complex output is
    # Re(A^H w), independently of autograd.
    A = MultiCoilMRI(20, num_coils=4, acceleration=3)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 20, 20, generator=gen, dtype=torch.float64)
    w = torch.randn(2, 4, 20, 20, 2, generator=gen, dtype=torch.float64)
    w = torch.view_as_complex(w)
    lhs = torch.vdot(A.forward(x).flatten(), w.flatten()).real
    rhs = torch.dot(x.flatten(), A.adjoint(w).flatten())
    assert abs(lhs - rhs) <= 1e-10 * abs(rhs)
    # and the complex adjoint A^H w itself is not real: dropping Re would be wrong
    x.requires_grad_(True)
    (vjp,) = torch.autograd.grad(A.forward(x), x, w)
    assert torch.allclose(vjp, A.adjoint(w), atol=1e-12)


@pytest.mark.parametrize("n", [16, 17])
def test_forward_matches_centred_orthonormal_fft(n):
    A = MultiCoilMRI(n, num_coils=3, acceleration=2, mask="equispaced")
    x = torch.randn(2, 1, n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dims = (-2, -1)
    coil_images = x * A.maps
    centred = torch.fft.fft2(torch.fft.ifftshift(coil_images, dim=dims), norm="ortho")
    expected = torch.fft.fftshift(centred, dim=dims)
    assert torch.allclose(A.forward(x), expected * A.mask, atol=1e-12)


def test_dc_sits_at_the_centre_of_k_space():
    n = 12
    A = MultiCoilMRI(n, num_coils=1, acceleration=1, maps=torch.ones(1, n, n))
    y = A.forward(torch.ones(1, 1, n, n, dtype=torch.float64))[0, 0]
    expected = torch.zeros(n, n, dtype=torch.complex128)
    expected[n // 2, n // 2] = n  # orthonormal DFT of a constant: sum / n
    assert torch.allclose(y, expected, atol=1e-12)


@pytest.mark.parametrize("maps", ["ones", "birdcage"])
def test_full_mask_is_unitary(maps):
    n = 16
    S = torch.ones(1, n, n, dtype=torch.complex128) if maps == "ones" else None
    A = MultiCoilMRI(n, num_coils=1 if maps == "ones" else 6, acceleration=1, maps=S)
    assert A.mask.min() == 1
    x = torch.randn(3, 1, n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = A.forward(x)
    assert torch.allclose(y.abs().square().sum((1, 2, 3)), x.square().sum((1, 2, 3)), rtol=1e-12)
    assert torch.allclose(A.adjoint(y), x, atol=1e-12)
    assert A.norm(num_iter=3) == pytest.approx(1.0, abs=1e-9)  # A^T A = I: exact at once


def test_birdcage_maps_unit_rss_and_coil_geometry():
    n, C = 32, 8
    S = birdcage_maps(n, C)
    assert S.shape == (C, n, n) and S.dtype == torch.complex128
    assert torch.allclose(S.abs().square().sum(0), torch.ones(n, n, dtype=torch.float64), atol=1e-12)
    # coil 0 sits at +x (right edge): it sees the right half more strongly than the left
    assert S[0, :, n // 2 :].abs().mean() > 1.5 * S[0, :, : n // 2].abs().mean()
    # coil C/4 sits at +y (rows grow downward in the array): the bottom half
    assert S[C // 4, n // 2 :, :].abs().mean() > 1.5 * S[C // 4, : n // 2, :].abs().mean()
    # maps carry a genuine spatial phase and differ between coils
    assert S.angle().std() > 0.5
    assert (S[0] - S[1]).abs().max() > 0.1


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("n, acceleration", [(128, 4), (128, 8), (96, 3), (65, 2.5), (32, 6)])
def test_mask_acceleration_and_centre(kind, n, acceleration):
    center_fraction = 0.08
    mask = cartesian_mask(n, acceleration, kind, center_fraction, seed=3)
    assert mask.shape == (n, n)
    assert ((mask == 0) | (mask == 1)).all()
    assert (mask == mask[:1]).all(), "whole phase-encode columns must be sampled"
    lines = mask[0]
    assert lines.sum() == round(n / acceleration)  # acceleration met to within rounding
    assert abs(n / lines.sum().item() - acceleration) <= acceleration**2 / n
    num_center = round(n * center_fraction)
    start = n // 2 - num_center // 2
    assert lines[start : start + num_center].all() and lines[n // 2] == 1


def test_random_masks_depend_on_seed_and_equispaced_are_even():
    a, b = cartesian_mask(128, 4, "random", seed=0), cartesian_mask(128, 4, "random", seed=1)
    assert not torch.equal(a, b)
    assert torch.equal(a, cartesian_mask(128, 4, "random", seed=0))
    lines = torch.nonzero(cartesian_mask(128, 4, "equispaced")[0]).flatten()
    start = 64 - round(128 * 0.08) // 2  # first centre line
    for side in (lines[lines < start], lines[lines >= start + round(128 * 0.08)]):
        gaps = torch.diff(side)
        assert gaps.max() - gaps.min() <= 1  # evenly spaced outside the centre, up to rounding


def test_single_precision_agrees_with_double():
    """The FFT shifts are folded into the maps and the mask as phase ramps (computed in float64,
    reduced mod n): in complex64 they must stay accurate to single precision."""
    A = MultiCoilMRI(16, num_coils=2, acceleration=2)
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(A.forward(x.float()).to(torch.complex128), A.forward(x), atol=1e-5)


def test_minibatch_gradient_is_unbiased_over_coils():
    A = MultiCoilMRI(16, num_coils=4, acceleration=2)
    gen = torch.Generator().manual_seed(5)
    x, x0 = (torch.randn(1, 1, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    g = LeastSquares(A, A.forward(x0))
    pairs = [torch.tensor([i, j]) for i in range(4) for j in range(i + 1, 4)]
    mean = sum(g.grad(x, p) for p in pairs) / len(pairs)  # exact expectation over all b=2 subsets
    assert torch.allclose(mean, g.grad(x), atol=1e-10)


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="num_coils"):
        MultiCoilMRI(16, num_coils=0)
    with pytest.raises(ValueError, match="image_size"):
        MultiCoilMRI(1, num_coils=2)
    with pytest.raises(ValueError, match="acceleration"):
        MultiCoilMRI(16, num_coils=2, acceleration=0.5)
    with pytest.raises(ValueError, match="mask kind must be one of 'random', 'equispaced'"):
        MultiCoilMRI(16, num_coils=2, mask="poisson")
    with pytest.raises(ValueError, match="centre lines"):
        cartesian_mask(64, 16, center_fraction=0.25)
    with pytest.raises(ValueError, match=r"maps must be a tensor of shape \[2, 16, 16\]"):
        MultiCoilMRI(16, num_coils=2, maps=torch.ones(3, 16, 16))
    with pytest.raises(ValueError, match="only 0 and 1"):
        MultiCoilMRI(16, num_coils=2, mask=torch.full((16, 16), 0.5))
    with pytest.raises(ValueError, match="would need about"):
        MultiCoilMRI(4096, num_coils=64)  # refused before allocating the maps
    with pytest.raises(ValueError, match="coil radius must exceed sqrt"):
        birdcage_maps(16, 4, radius=1.2)
    A = MultiCoilMRI(16, num_coils=2, acceleration=2)
    with pytest.raises(TypeError, match="real floating-point tensor"):
        A.forward(torch.rand(1, 1, 16, 16, dtype=torch.complex64))  # images are real
    with pytest.raises(TypeError, match="complex measurements"):
        A.adjoint(torch.rand(1, 2, 16, 16))  # k-space is complex


@pytest.mark.parametrize("n", [16, 15])
@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_single_coil_closed_form_solve_normal_is_exact(n, kind):
    """One coil with a constant unit-modulus map: for real x, AᵀA = Fᴴ M_s F with the mask
    symmetrized under k -> -k (a random even-size mask is not symmetric), so the solve is one
    FFT division: exact with num_iter=1, and equal to conjugate gradient run to convergence."""
    phase = torch.polar(torch.ones(1, n, n, dtype=torch.float64), torch.full((1, n, n), 0.7, dtype=torch.float64))
    A = MultiCoilMRI(n, num_coils=1, acceleration=2, mask=kind, maps=phase)
    b = torch.randn(2, 1, n, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = A.solve_normal(b, 0.3, num_iter=1)
    assert (A.adjoint(A.forward(x)) + 0.3 * x - b).norm() < 1e-10 * b.norm()
    cg = BlockOperator.solve_normal(A, b, 0.3, num_iter=300)
    assert (x - cg).norm() < 1e-9 * x.norm()
    assert A.solve_normal(b.float(), 0.3).dtype == torch.float32


@pytest.mark.parametrize("maps", ["two coils", "varying map", "scaled map"])
def test_solve_normal_falls_back_to_conjugate_gradient_without_a_closed_form(maps):
    """Several coils, a varying sensitivity or a map of modulus != 1: AᵀA is no Fourier
    multiplier, so solve_normal is CG (inexact after 1 iteration, exact after many)."""
    n = 12
    A = {"two coils": lambda: MultiCoilMRI(n, num_coils=2, acceleration=2),
         "varying map": lambda: MultiCoilMRI(n, num_coils=1, acceleration=2, maps=birdcage_maps(n, 1)),
         "scaled map": lambda: MultiCoilMRI(n, num_coils=1, acceleration=2, maps=2 * torch.ones(1, n, n))}[maps]()
    b = torch.randn(1, 1, n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(A.solve_normal(b, 0.3, num_iter=2), BlockOperator.solve_normal(A, b, 0.3, num_iter=2))
    x = A.solve_normal(b, 0.3, num_iter=200)
    assert (A.adjoint(A.forward(x)) + 0.3 * x - b).norm() < 1e-9 * b.norm()


def test_block_norms_are_the_peak_coil_sensitivities_and_bound_the_minibatch_constant():
    """With a full mask A_c = F S_c (F unitary), so ||A_c|| = max_p |S_c(p)|. Coils see their own
    part of the image, so for b = 1 the coil-wise bound B·max_c ||A_c||² is below (B/b)·||A||² and
    is the minibatch constant used."""
    A = MultiCoilMRI(24, num_coils=8, acceleration=1)
    peaks = A.maps.abs().flatten(1).amax(1)
    torch.testing.assert_close(A.block_norms(), peaks, rtol=1e-3, atol=0)
    assert A.norm() == pytest.approx(1.0, abs=1e-9)  # unit root-sum-of-squares, full mask
    coil_bound = 8 * A.block_norms().max().item() ** 2
    assert coil_bound < 8 * A.norm() ** 2 and A.minibatch_lipschitz(1) == pytest.approx(coil_bound)


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(4, 24),
    num_coils=st.integers(1, 6),
    acceleration=st.sampled_from([1, 2, 3]),
    kind=st.sampled_from(["random", "equispaced"]),
    seed=st.integers(0, 2**16),
)
def test_property_adjoint_and_blocks(n, num_coils, acceleration, kind, seed):
    A = MultiCoilMRI(n, num_coils, acceleration, mask=kind, center_fraction=0.25, seed=seed)
    blocks = _random_blocks(num_coils, seed)
    assert adjoint_error(A, blocks, seed=seed) <= 1e-5
    assert A.mask[0].sum() == max(1, round(n / acceleration))
    rss = birdcage_maps(n, num_coils).abs().square().sum(0).sqrt()
    assert torch.allclose(rss, torch.ones(n, n, dtype=torch.float64))
    x = torch.randn(1, 1, n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    full = A.forward(x)
    assert torch.equal(A.forward(x, blocks), full[:, blocks])
    assert math.isfinite(A.norm(num_iter=20)) and 0 < A.norm() <= 1 + 1e-9
