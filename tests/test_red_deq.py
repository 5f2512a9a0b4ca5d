"""RED-DEQ and ODER: the map is the RED step, ODER's fixed point approaches the full one as
b grows, bad settings fail clearly, and a trained denoiser survives spectral normalization."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from oder_edu.denoisers import DnCNN
from oder_edu.deq import DEQ, NonContractiveError, REDDEQ, forward_iteration, spectral_normalize
from oder_edu.physics import IntensityDiffractionTomography, LeastSquares


pytestmark = pytest.mark.usefixtures("one_thread")


class Smoothing(nn.Module):
    """A linear prior with residual R(x) = x - 0.5 blur(x): eigenvalues in [0.5, 1], so the
    RED map is a contraction for a small enough step, whatever the null space of A."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64))

    def residual(self, x, sigma):
        return x - 0.5 * F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), self.weight)


@functools.lru_cache(maxsize=None)  # A.norm() runs power iteration: build the problem once
def idt_problem(size=16, leds=8, seed=0):
    A = IntensityDiffractionTomography(size, num_leds=leds)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, size, size, generator=gen, dtype=torch.float64)
    y = A.forward(x) + 0.01 * torch.randn(2, leds, size, size, generator=gen, dtype=torch.float64)
    return A, x, LeastSquares(A, y)


def model(A, **options):
    L = A.norm() ** 2
    # gamma = 1/(4L): safe for the full gradient and for minibatch gradients whose
    # (B/b)-scaled Lipschitz constant stays below 3L on this problem.
    settings = {"solver": forward_iteration, "max_iter": 500, "tol": 1e-9, **options}
    return REDDEQ(Smoothing(), sigma=0.0, gamma=0.25 / L, tau=L, **settings)


def test_the_map_is_one_red_step():
    A, x, g = idt_problem()
    net = model(A)
    blocks = torch.tensor([1, 5, 6])
    T = net.f(x, g, blocks)
    expected = x - net.f.gamma * (g.grad(x, blocks) + net.f.tau * net.f.denoiser.residual(x, 0.0))
    assert torch.allclose(T, expected)
    assert isinstance(net, DEQ) and {n for n, _ in net.named_parameters()} >= {"f.log_gamma", "f.log_tau"}


def test_full_fixed_point_satisfies_the_red_equation():
    A, x, g = idt_problem()
    net = model(A)
    with torch.no_grad():
        z = net(torch.zeros_like(x), g)
    assert net.forward_trace.converged
    red = g.grad(z) + net.f.tau * net.f.denoiser.residual(z, 0.0)  # grad g + tau R = 0 at x*
    assert red.norm() / g.grad(torch.zeros_like(x)).norm() < 1e-6


def test_oder_neighbourhood_shrinks_as_b_grows():
    A, x, g = idt_problem()
    net = model(A)
    with torch.no_grad():
        full = net(torch.zeros_like(x), g)
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
    assert distances[3] < 1e-6 and distances[0] > 1e-3


def test_oder_fresh_blocks_every_iteration_stays_near_the_full_fixed_point():
    A, x, g = idt_problem()
    net = model(A, batch_ratio=0.5, resample="iteration", max_iter=200)
    with torch.no_grad():
        full = net(torch.zeros_like(x), g, batch_ratio=1.0)
        z = net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(0))
    assert net.forward_trace.iterations == 200 and not net.forward_trace.converged  # a random map
    assert (z - full).norm() / full.norm() < 0.2


def test_oder_backward_reaches_every_parameter():
    A, x, g = idt_problem()
    net = model(A, batch_ratio=0.25, max_iter=200, tol=1e-6)
    out = net(torch.zeros_like(x), g, generator=torch.Generator().manual_seed(0))
    (out - x).square().mean().backward()
    assert net.backward_trace is not None and net.backward_trace.converged
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("bad", [{"batch_ratio": 0.0}, {"batch_ratio": 1.5}, {"gamma": 0.0},
                                 {"gamma": -1.0}, {"tau": 0.0}, {"tau": float("nan")},
                                 {"resample": "sometimes"}, {"sampler": "random"}])
def test_bad_settings_raise(bad):
    options = {"sigma": 0.0, "gamma": 1e-3, "tau": 1.0, **bad}
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[-1]):
        REDDEQ(Smoothing(), **options)


def test_a_too_large_step_is_reported_with_a_safe_one():
    A, x, g = idt_problem()
    L = A.norm() ** 2
    net = REDDEQ(Smoothing(), sigma=0.0, gamma=5.0 / L, tau=L, solver=forward_iteration, max_iter=200)
    with pytest.raises(NonContractiveError, match=r"not contractive.*safe step"):
        with torch.no_grad():
            net(torch.zeros_like(x), g)


def test_spectral_normalization_keeps_a_trained_residual_up_to_a_factor():
    torch.manual_seed(0)
    net = DnCNN(1, depth=4, width=8)
    x = torch.rand(2, 1, 16, 16)
    before = net.residual(x, 0.1)
    scale = spectral_normalize(net.eval())
    after = net.residual(x, 0.1)
    assert net.spectral_norm and scale > 0
    assert torch.allclose(after * scale, before, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="already parametrized"):
        spectral_normalize(net)


def test_spectral_norm_weights_are_computed_once_per_call():
    # In training mode a spectral-normalized conv re-runs power iteration at every access;
    # inside one DEQ call the map must not change, or the solve stalls at that noise.
    A, x, g = idt_problem()
    denoiser = DnCNN(1, depth=3, width=4, spectral_norm=True).double().train()
    calls = []
    for conv in (m for m in denoiser.modules() if isinstance(m, nn.Conv2d)):
        conv.parametrizations.weight[0].register_forward_hook(lambda *_: calls.append(1))
    L = A.norm() ** 2
    net = REDDEQ(denoiser, sigma=0.05, gamma=0.01 / L, tau=0.1 * L, max_iter=5, tol=0.0)
    net(torch.zeros_like(x), g).sum().backward()
    assert net.forward_trace.iterations == 5 and net.backward_trace.iterations >= 1
    assert len(calls) == 3  # once per convolution, not once per iteration
    assert denoiser.body[0].parametrizations.weight.original.grad is not None
