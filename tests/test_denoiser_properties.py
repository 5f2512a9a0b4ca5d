"""The measurements of what RED's theory asks of a denoiser (``denoisers.properties``) against maps whose answers
are known: linear maps with dense matrices, a rotation, a symmetric contraction, a firmly nonexpansive average."""

import pytest
import torch

from oder_edu.denoisers import cocoercivity, jacobian_asymmetry, local_lipschitz, symmetric_min_eigenvalue


def _linear(M):
    """x -> M x on images [N, 1, 4, 4] (16 pixels), M [16, 16]."""
    return lambda x: (x.flatten(1) @ M.T).reshape(x.shape)


@pytest.fixture
def x():
    return torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_the_local_lipschitz_estimate_is_the_spectral_norm_of_the_jacobian(x):
    W = torch.randn(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) / 4
    f = lambda z: torch.tanh(z.flatten(1) @ W.T).reshape(z.shape)  # noqa: E731
    J = torch.autograd.functional.jacobian(f, x).reshape(16, 16)
    assert local_lipschitz(f, x, num_iter=200) == pytest.approx(torch.linalg.matrix_norm(J, ord=2).item(), rel=1e-6)


def test_asymmetry_is_zero_for_a_gradient_field_and_two_for_a_rotation(x):
    gen = torch.Generator().manual_seed(2)
    M = torch.randn(16, 16, generator=gen, dtype=torch.float64)
    assert jacobian_asymmetry(_linear(M + M.T), x, probes=8) < 1e-12  # symmetric: the gradient of ½xᵀMx
    K = M - M.T  # antisymmetric: an infinitesimal rotation
    assert jacobian_asymmetry(_linear(K), x, probes=8) == pytest.approx(2.0, rel=1e-12)  # J − Jᵀ = 2J
    exact = (torch.linalg.matrix_norm(M - M.T) / torch.linalg.matrix_norm(M)).item()
    assert jacobian_asymmetry(_linear(M), x, probes=400) == pytest.approx(exact, rel=0.15)


def test_the_smallest_eigenvalue_of_the_symmetric_part_comes_with_its_witness(x):
    gen = torch.Generator().manual_seed(3)
    Q = torch.linalg.qr(torch.randn(16, 16, generator=gen, dtype=torch.float64))[0]
    S = Q @ torch.diag(torch.linspace(-0.5, 1.0, 16, dtype=torch.float64)) @ Q.T
    K = torch.randn(16, 16, generator=gen, dtype=torch.float64) * 0.1
    M = S + (K - K.T)  # symmetric part S, smallest eigenvalue −0.5
    lam, v = symmetric_min_eigenvalue(_linear(M), x, num_iter=400)
    assert lam == pytest.approx(-0.5, abs=1e-3) and v.shape == x.shape
    assert lam == pytest.approx((v.flatten() @ M @ v.flatten()).item(), abs=1e-12)  # its Rayleigh quotient
    assert lam >= -0.5 - 1e-9  # never below the true value


def test_cocoercivity_ratios_on_pairs():
    gen = torch.Generator().manual_seed(4)
    a, b = (torch.randn(5, 1, 4, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    average = lambda z: 0.5 * z  # noqa: E731  firmly nonexpansive: <F a − F b, a − b> = 2 ||F a − F b||²
    assert torch.allclose(cocoercivity(average, a, b), torch.full((5,), 2.0, dtype=torch.float64))
    K = torch.randn(16, 16, generator=gen, dtype=torch.float64)
    rotation = _linear(K - K.T)  # monotone, yet cocoercive with no constant: every ratio is 0
    assert cocoercivity(rotation, a, b).abs().max() < 1e-12
    with pytest.raises(ValueError, match="same shape"):
        cocoercivity(average, a, b[:2])
