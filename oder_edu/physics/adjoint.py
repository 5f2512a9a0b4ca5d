"""The exactness check every blocked operator must pass: is ``A.adjoint`` the adjoint of ``A.forward``?

A dot test <Ax, w> = <x, Aᵀw> on one random pair alone is not enough: a back-projector can pass it to a
few digits while being several percent off the true adjoint on structured inputs. So ``adjoint_error``
compares Aᵀw with the vector-Jacobian product of the forward itself, in float64, which autograd
computes exactly for any differentiable forward: the same spirit as SCICO's ``linop.valid_adjoint``
and DeepInverse's ``adjointness_test``, which ship such a check with the operators for their users.
"""

from __future__ import annotations

import torch

from .. import checks
from .base import BlockOperator, as_blocks


def adjoint_error(A: BlockOperator, blocks=None, batch: int = 2, seed: int = 0, forward=None) -> float:
    """Relative error ||Aᵀ_S w − vjp(forward, w)|| / ||vjp|| for random x ``[batch, C, H, W]`` and w
    ``[batch, b, *block_shape]`` (standard normal, float64, drawn from ``seed``; w complex for complex
    measurements). An exact adjoint leaves float64 rounding only (the package's tests accept ≤ 1e-5, where
    FFTs and interpolation round); a wrong one is typically off by percent.

    Args:
        A: the operator.
        blocks: the block set S (None: all blocks).
        batch: images per test.
        seed: seeds the draws of x and w.
        forward: ``forward(x, blocks)``, default ``A.forward``; an operator whose autograd already runs
            through its own adjoint (so the VJP would compare Aᵀ with itself) passes an independent
            differentiable forward instead.

    For a real image and complex measurements autograd returns Re(Aᴴw), the adjoint of the real-linear
    map for the real inner product Re<., .>: what gradients of ½||Ax − y||² over real images need.
    """
    if not isinstance(A, BlockOperator):
        raise TypeError(f"A must be a BlockOperator, got {type(A).__name__}")
    blocks = as_blocks(blocks, A.num_blocks)
    batch = checks.integer("batch", batch, 1)
    gen = torch.Generator().manual_seed(checks.integer("seed", seed))
    x = torch.randn(batch, *A.image_shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (forward or A.forward)(x, blocks)
    if y.is_complex():
        w = torch.complex(torch.randn(y.shape, generator=gen, dtype=torch.float64),
                          torch.randn(y.shape, generator=gen, dtype=torch.float64))
    else:
        w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (vjp,) = torch.autograd.grad(y, x, w)
    adjoint = A.adjoint(w, blocks)
    return ((adjoint - vjp).norm() / vjp.norm()).item()
