"""Intensity diffraction tomography: the physics of the transfer functions, the exact norms and
normal solve (AᵀA is diagonal in frequency), and the LED layouts.

Adjoints on random block sets, block order, dtypes, memory, norms and bad shapes are checked for
every operator in ``test_operator_contract.py`` (with and without absorption); the property test
below adds random sizes and LED counts."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from oder_edu.physics import BlockOperator, IntensityDiffractionTomography, adjoint_error, ring_leds
from oder_edu.physics.base import power_iteration

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_blocks(num_blocks, seed):
    gen = torch.Generator().manual_seed(seed)
    b = int(torch.randint(1, num_blocks + 1, (1,), generator=gen))
    return torch.randperm(num_blocks, generator=gen)[:b]


def _image(channels, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, n, n, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("n", [16, 17])
def test_forward_is_real_part_of_the_complex_transfer_model(n):
    # y_l = Re F^{-1}(H_re,l F de_re + H_im,l F de_im) with the unsymmetrized H on the DFT grid
    A = IntensityDiffractionTomography(n, num_leds=6, absorption=True)
    x = _image(2, n)
    H_re, H_im = A.transfer_functions()
    X = torch.fft.fft2(x)
    expected = torch.fft.ifft2(H_re * X[:, :1] + H_im * X[:, 1:]).real
    assert torch.allclose(A.forward(x), expected, atol=1e-12)


def test_transfer_function_symmetries():
    # H_re is purely imaginary and odd in u, H_im real and even (away from the unpaired
    # Nyquist row/column), so both take real images to real intensities.
    n = 17  # odd: every frequency has its mirror on the grid
    A = IntensityDiffractionTomography(n, num_leds=8)
    H_re, H_im = A.transfer_functions()
    mirror = lambda H: torch.roll(torch.flip(H, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))  # noqa: E731
    assert H_re.real.abs().max() == 0 and H_im.imag.abs().max() == 0
    assert torch.equal(mirror(H_re), -H_re) and torch.equal(mirror(H_im), H_im)
    assert H_re.abs().max() > 0


def test_mirrored_leds_flip_phase_contrast_and_keep_absorption():
    # LED at nu and at -nu: H_re changes sign, H_im does not (differential phase contrast).
    n = 24
    A = IntensityDiffractionTomography(n, led_na=[[0.35, 0.2], [-0.35, -0.2]], absorption=True)
    H_re, H_im = A.transfer_functions()
    assert torch.allclose(H_re[1], -H_re[0], atol=1e-12)
    assert torch.allclose(H_im[1], H_im[0], atol=1e-12)
    phase, absorb = _image(2, n), _image(2, n, seed=1)
    phase[:, 1] = 0
    absorb[:, 0] = 0
    y = A.forward(phase)
    assert torch.allclose(y[:, 0], -y[:, 1], atol=1e-12) and y.abs().max() > 1e-2
    y = A.forward(absorb)
    assert torch.allclose(y[:, 0], y[:, 1], atol=1e-12) and y.abs().max() > 1e-2


def test_uniform_sheet_obeys_linearized_beer_lambert():
    # A uniform absorber de_im = c attenuates by -k0 dz c / (n_m cos theta_l), the linearized
    # Beer-Lambert law along the oblique path; a uniform phase sheet leaves the intensity unchanged.
    n, c = 16, 0.01
    A = IntensityDiffractionTomography(n, num_leds=10, thickness=0.5, absorption=True)
    x = torch.zeros(1, 2, n, n, dtype=torch.float64)
    x[:, 1] = c
    cos_theta = torch.sqrt(1 - (A.led_na.norm(dim=1) / A.medium_index) ** 2)
    expected = -2 * math.pi / A.wavelength * A.thickness * c / (A.medium_index * cos_theta)
    assert torch.allclose(A.forward(x), expected[None, :, None, None].expand(1, 10, n, n), rtol=1e-12)
    x = torch.zeros(1, 2, n, n, dtype=torch.float64)
    x[:, 0] = c
    assert A.forward(x).abs().max() < 1e-15


def test_on_axis_led_sees_no_phase_and_band_limit():
    n = 32
    A = IntensityDiffractionTomography(n, led_na=[[0.0, 0.0], [0.5, 0.0]])
    assert A.forward(_image(1, n))[:, 0].abs().max() < 1e-14  # in-focus weak phase is invisible
    H_re, _ = A.transfer_functions()
    freq = torch.fft.fftfreq(n, d=A.pixel_size, dtype=torch.float64)
    radius = torch.hypot(freq[:, None], freq[None, :])
    band = (A.objective_na + 0.5) / A.wavelength  # |u| <= (NA_obj + NA_l) / lambda
    assert H_re[1][radius > band + 1e-9].abs().max() == 0
    assert H_re[1][radius < band].abs().max() > 0


def test_default_led_layout():
    A = IntensityDiffractionTomography()
    assert A.num_blocks == 64 and A.image_shape == (1, 128, 128)
    na = A.led_na.norm(dim=1)
    assert na.max() <= A.objective_na and na.min() > 0  # brightfield, no on-axis LED
    assert torch.unique(A.led_na.round(decimals=9), dim=0).shape[0] == 64
    # mirror symmetric: -nu_l is also an LED, for every l
    distance_to_mirror = (A.led_na[:, None] + A.led_na[None, :]).norm(dim=-1)
    assert distance_to_mirror.min(dim=1).values.max() < 1e-12
    assert torch.unique(na.round(decimals=9)).numel() == 4  # four rings
    for num_leds in (1, 2, 3, 5, 61, 64, 100):
        leds = ring_leds(num_leds, 0.5)
        assert leds.shape == (num_leds, 2) and leds.norm(dim=1).max() <= 0.5 + 1e-12
        assert leds.norm(dim=1).min() > 0
        assert torch.unique(leds.round(decimals=9), dim=0).shape[0] == num_leds
        unpaired = (leds[:, None] + leds[None, :]).norm(dim=-1).min(dim=1).values > 1e-12
        assert unpaired.sum() == num_leds % 2


def test_single_precision_agrees_with_double():
    A = IntensityDiffractionTomography(16, num_leds=4)
    x = _image(1, 16)
    assert torch.allclose(A.forward(x.float()).double(), A.forward(x), atol=1e-4)


def test_bad_input_raises_clearly():
    IDT = IntensityDiffractionTomography
    with pytest.raises(ValueError, match="num_leds"):
        IDT(16, num_leds=0)
    with pytest.raises(ValueError, match="brightfield"):
        IDT(16, illumination_na=0.7, objective_na=0.65)
    with pytest.raises(ValueError, match="brightfield"):
        IDT(16, led_na=[[0.6, 0.3]])
    with pytest.raises(ValueError, match="medium_index"):
        IDT(16, objective_na=1.4, medium_index=1.33)
    with pytest.raises(ValueError, match="wavelength"):
        IDT(16, wavelength=-0.5)
    with pytest.raises(ValueError, match=r"\[L, 2\]"):
        IDT(16, led_na=torch.zeros(3))
    with pytest.raises(ValueError, match="image_size"):
        IDT(0)
    with pytest.raises(ValueError, match="led_na contains NaN"):
        IDT(16, led_na=[[float("nan"), 0.0]])
    A = IDT(16, num_leds=4)
    with pytest.raises(ValueError, match=r"\[N, 1, 16, 16\]"):
        A.forward(torch.rand(1, 2, 16, 16))  # a phase-only operator given two channels
    with pytest.raises(TypeError, match="real floating-point measurements"):
        A.adjoint(torch.rand(1, 4, 16, 16, dtype=torch.complex64))  # intensities are real


@pytest.mark.parametrize("absorption", [False, True])
def test_norms_are_exact_per_frequency(absorption):
    """AᵀA is a C x C matrix per frequency, so ||A||² is its largest eigenvalue over frequencies and
    ||A_l||² = max over frequencies of Σ_c |H_lc|²: both equal power iteration run to convergence."""
    A = IntensityDiffractionTomography(12, num_leds=6, absorption=absorption)
    shape = (1, *A.image_shape)
    normal = lambda x: A.adjoint(A.forward(x))  # noqa: E731
    assert A.norm() ** 2 == pytest.approx(power_iteration(normal, shape, 3000, 1e-14), rel=1e-8)
    assert A.norm(num_iter=1) == A.norm()  # exact: no iteration count involved
    for l in (0, 3, 5):
        block = lambda x: A.adjoint(A.forward(x, [l]), [l])  # noqa: E731,B023
        assert A.block_norms()[l].item() ** 2 == pytest.approx(power_iteration(block, shape, 3000, 1e-14), rel=1e-6)


@pytest.mark.parametrize("n", [12, 13])
@pytest.mark.parametrize("absorption", [False, True])
def test_solve_normal_is_exact_per_frequency(n, absorption):
    """(AᵀA + shift·I)⁻¹ by one C x C solve per frequency: exact with num_iter=1, equal to CG
    run to convergence, and per image of the batch."""
    A = IntensityDiffractionTomography(n, num_leds=6, absorption=absorption)
    b = _image(A.image_shape[0], n, seed=3)
    x = A.solve_normal(b, 0.2, num_iter=1)
    assert (A.adjoint(A.forward(x)) + 0.2 * x - b).norm() < 1e-10 * b.norm()
    cg = BlockOperator.solve_normal(A, b, 0.2, num_iter=500)
    assert (x - cg).norm() < 1e-8 * x.norm()
    assert torch.allclose(A.solve_normal(b[1:], 0.2), x[1:], atol=1e-12)


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(4, 24),
    num_leds=st.integers(1, 16),
    absorption=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_adjoint_and_blocks(n, num_leds, absorption, seed):
    A = IntensityDiffractionTomography(n, num_leds=num_leds, absorption=absorption)
    blocks = _random_blocks(num_leds, seed)
    assert adjoint_error(A, blocks, seed=seed) <= 1e-5
    x = _image(A.image_shape[0], n, seed)
    assert torch.allclose(A.forward(x, blocks), A.forward(x)[:, blocks], atol=1e-12)
