"""Multi-coil MRI: exact real-linear adjoint, FFT conventions, unitarity, coil maps, masks."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adjoint_check import adjoint_error
from oder_edu.physics import LeastSquares, MultiCoilMRI, birdcage_maps, cartesian_mask


def _random_blocks(num_blocks, seed):
    gen = torch.Generator().manual_seed(seed)
    b = int(torch.randint(1, num_blocks + 1, (1,), generator=gen))
    return torch.randperm(num_blocks, generator=gen)[:b]


@pytest.mark.parametrize("n", [16, 17])
@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_adjoint_is_vjp_for_random_block_sets(n, kind):
    A = MultiCoilMRI(n, num_coils=5, acceleration=2, mask=kind)
    assert adjoint_error(A) <= 1e-5
    for seed in range(3):
        assert adjoint_error(A, _random_blocks(5, seed), seed=seed) <= 1e-5


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


def test_forward_over_all_blocks_is_concatenation():
    A = MultiCoilMRI(16, num_coils=4, acceleration=2)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    parts = [A.forward(x, torch.tensor([c])) for c in range(4)]
    assert torch.equal(A.forward(x), torch.cat(parts, dim=1))
    y = A.forward(x)
    assert torch.allclose(A.adjoint(y), sum(A.adjoint(y[:, [c]], [c]) for c in range(4)), atol=1e-12)


def test_precision_follows_input():
    A = MultiCoilMRI(16, num_coils=2, acceleration=2)
    for real, cplx in ((torch.float32, torch.complex64), (torch.float64, torch.complex128)):
        x = torch.rand(1, 1, 16, 16, dtype=real)
        y = A.forward(x)
        assert y.dtype == cplx and y.shape == (1, 2, 16, 16)
        assert A.adjoint(y).dtype == real
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
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
    with pytest.raises(ValueError, match="'random' or 'equispaced'"):
        MultiCoilMRI(16, num_coils=2, mask="poisson")
    with pytest.raises(ValueError, match="centre lines"):
        cartesian_mask(64, 16, center_fraction=0.25)
    with pytest.raises(ValueError, match=r"maps must be a tensor of shape \[2, 16, 16\]"):
        MultiCoilMRI(16, num_coils=2, maps=torch.ones(3, 16, 16))
    with pytest.raises(ValueError, match="only 0 and 1"):
        MultiCoilMRI(16, num_coils=2, mask=torch.full((16, 16), 0.5))
    A = MultiCoilMRI(16, num_coils=2, acceleration=2)
    with pytest.raises(ValueError, match=r"\[N, 1, 16, 16\]"):
        A.forward(torch.rand(1, 2, 16, 16))
    with pytest.raises(TypeError, match="real floating-point image"):
        A.forward(torch.rand(1, 1, 16, 16, dtype=torch.complex64))
    with pytest.raises(TypeError, match="complex measurements"):
        A.adjoint(torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match="for 1 block"):
        A.adjoint(torch.rand(1, 2, 16, 16, dtype=torch.complex64), blocks=[0])
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        A.forward(torch.rand(1, 1, 16, 16), blocks=[2])


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
