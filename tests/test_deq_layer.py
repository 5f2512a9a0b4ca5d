"""The DEQ layer: implicit gradients are exact (gradcheck, unrolled-to-convergence), JFB
and unrolled backward work, and no memory is held by the hook."""

import gc
import weakref

import pytest
import torch
from torch import nn

from oder_edu.deq import DEQ, anderson, forward_iteration, unrolled


pytestmark = pytest.mark.usefixtures("one_thread")

D = 6


def contraction(seed=0, dtype=torch.float64):
    """f(z, x, W) = tanh(z W^T + x) with ||W||_2 = 0.8: a contraction in z."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(D, D, generator=gen, dtype=dtype)
    W = 0.8 * W / torch.linalg.matrix_norm(W, 2)
    x = torch.randn(3, D, generator=gen, dtype=dtype)
    return W, x


def f(z, x, W):
    return torch.tanh(z @ W.T + x)


@pytest.mark.parametrize("solver", [anderson, forward_iteration])
def test_implicit_backward_passes_gradcheck(solver):
    """Implicit gradients w.r.t. the map's inputs x and W equal finite differences of the solve."""
    W, x = contraction()
    layer = DEQ(f, solver=solver, max_iter=400, tol=1e-13)
    z0 = torch.zeros(3, D, dtype=torch.float64)
    inputs = (x.requires_grad_(), W.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, W: layer(z0, x, W), inputs, check_undefined_grad=False)


def test_an_undefined_incoming_gradient_passes_through_the_implicit_hook():
    """autograd hands a tensor hook None for an undefined gradient (gradcheck's undefined-grad
    check does exactly that); the hook must pass it on instead of solving u = Jᵀu + None."""
    W, x = contraction()
    layer = DEQ(f, max_iter=400, tol=1e-13)
    z0 = torch.zeros(3, D, dtype=torch.float64)
    inputs = (x.requires_grad_(), W.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, W: layer(z0, x, W), inputs, check_undefined_grad=True)


def test_implicit_gradient_matches_unrolled_to_convergence():
    W, x = contraction(seed=1)
    W.requires_grad_()
    target = torch.randn(3, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z0 = torch.zeros(3, D, dtype=torch.float64)

    layer = DEQ(f, solver=anderson, max_iter=200, tol=1e-10)
    (layer(z0, x, W) - target).square().sum().backward()
    implicit = W.grad.clone()
    assert layer.forward_trace.converged and layer.backward_trace.converged
    W.grad = None
    z, _ = unrolled(lambda z: f(z, x, W), z0, 100)
    (z - target).square().sum().backward()
    cosine = torch.nn.functional.cosine_similarity(implicit.flatten(), W.grad.flatten(), dim=0)
    assert cosine >= 0.99
    assert torch.allclose(implicit, W.grad, rtol=1e-6, atol=1e-8)


def test_jfb_is_a_descent_direction_and_differs_from_implicit():
    W, x = contraction(seed=3)
    W.requires_grad_()
    z0 = torch.zeros(3, D, dtype=torch.float64)
    grads = {}
    for backward in ("implicit", "jfb"):
        W.grad = None
        layer = DEQ(f, backward=backward, max_iter=200, tol=1e-10)
        layer(z0, x, W).sum().backward()
        grads[backward] = W.grad.clone()
        assert (layer.backward_trace is None) == (backward == "jfb")
    assert torch.dot(grads["implicit"].flatten(), grads["jfb"].flatten()) > 0
    assert not torch.allclose(grads["implicit"], grads["jfb"])


def test_module_map_parameters_get_gradients():
    torch.manual_seed(0)

    class Map(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(D, D)
            nn.init.normal_(self.linear.weight, std=0.05)

        def forward(self, z, x):
            return torch.tanh(self.linear(z) + x)

    layer = DEQ(Map(), max_iter=100, tol=1e-6)
    assert len(list(layer.parameters())) == 2
    layer(torch.zeros(4, D), torch.randn(4, D)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_unrolled_backward_runs_exactly_k_iterations():
    W, x = contraction()
    W.requires_grad_()
    layer = DEQ(f, backward="unrolled", unroll_iter=7)
    layer(torch.zeros(3, D, dtype=torch.float64), x, W).sum().backward()
    assert layer.forward_trace.iterations == 7 and W.grad is not None


def test_no_grad_returns_the_solution_and_frees_everything():
    W, x = contraction()
    layer = DEQ(f, max_iter=200, tol=1e-10)
    with torch.no_grad():
        z = layer(torch.zeros(3, D, dtype=torch.float64), x, W)
    assert not z.requires_grad and torch.allclose(z, f(z, x, W), atol=1e-9)
    # With autograd on, the hook must not keep the output alive (no reference cycle).
    z = layer(torch.zeros(3, D, dtype=torch.float64), x, W.requires_grad_())
    ref = weakref.ref(z)
    del z
    gc.collect()
    assert ref() is None


def test_bad_configuration():
    with pytest.raises(ValueError, match="backward must be one of"):
        DEQ(f, backward="exact")
    with pytest.raises(TypeError, match="callable"):
        DEQ(3)
    with pytest.raises(TypeError, match="backward_solver must be a callable"):
        DEQ(f, backward_solver="anderson")


@pytest.mark.parametrize("name", ["max_iter", "backward_max_iter", "unroll_iter"])
@pytest.mark.parametrize("value, error", [(0, ValueError), (-2, ValueError), (2.7, TypeError), ("5", TypeError),
                                          (True, TypeError)])
def test_iteration_counts_are_checked_not_coerced(name, value, error):
    """0 is an error, not 'use the default' (the old ``int(x or default)``); 2.7, '5' and True
    are the wrong kind, not silently truncated."""
    with pytest.raises(error, match=f"{name} must be an integer"):
        DEQ(f, **{name: value})


@pytest.mark.parametrize("name", ["tol", "backward_tol"])
def test_tolerances_are_checked(name):
    with pytest.raises(ValueError, match=f"{name} must be a number >= 0"):
        DEQ(f, **{name: -1e-3})
    with pytest.raises(ValueError, match=f"{name} must be finite"):
        DEQ(f, **{name: float("nan")})


def test_backward_settings_default_to_the_forward_ones():
    import numpy as np

    layer = DEQ(f, max_iter=np.int64(30), tol=np.float32(1e-3))
    assert (layer.max_iter, layer.backward_max_iter, layer.unroll_iter) == (30, 30, 30)
    assert layer.tol == layer.backward_tol == pytest.approx(1e-3) and type(layer.max_iter) is int
    assert layer.backward_solver is layer.solver is anderson
    layer = DEQ(f, solver=forward_iteration, max_iter=30, backward_max_iter=7, backward_tol=0.0, unroll_iter=3)
    assert (layer.backward_max_iter, layer.backward_tol, layer.unroll_iter) == (7, 0.0, 3)
    assert "solver=forward_iteration" in repr(layer)


def test_backward_uses_its_own_solver_and_budget():
    """The backward solve runs backward_solver with backward_max_iter / backward_tol."""
    W, x = contraction()
    W.requires_grad_()
    calls = []

    def recording(g, z0, max_iter, tol):
        calls.append((max_iter, tol))
        return forward_iteration(g, z0, max_iter=max_iter, tol=tol)

    layer = DEQ(f, solver=anderson, backward_solver=recording, max_iter=100, tol=1e-10, backward_max_iter=9,
                backward_tol=0.0)
    layer(torch.zeros(3, D, dtype=torch.float64), x, W).sum().backward()
    assert calls == [(9, 0.0)] and layer.backward_trace.iterations == 9
