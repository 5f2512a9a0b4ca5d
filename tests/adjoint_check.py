"""The exactness check every blocked operator must pass (used by the physics tests).

A dot test <Ax, y> = <x, A^T y> alone is not enough: a back-projector can pass it to a
few digits while being several percent off the true adjoint on structured inputs. So we
compare A^T w with the vector-Jacobian product of ``forward`` itself, in float64.
"""

import torch


def adjoint_error(A, blocks=None, batch: int = 2, seed: int = 0, forward=None) -> float:
    """Relative error ||A^T w - vjp(forward, w)|| / ||vjp|| for random x, w (float64).

    ``forward(x, blocks)`` defaults to ``A.forward``; an operator whose autograd already
    uses its adjoint passes an independent differentiable forward instead.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *A.image_shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (forward or A.forward)(x, blocks)
    if y.is_complex():
        w = torch.complex(torch.randn(y.shape, generator=gen, dtype=torch.float64),
                          torch.randn(y.shape, generator=gen, dtype=torch.float64))
    else:
        w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    # For a real input and complex output, autograd returns Re(A^H w): the real-linear adjoint.
    (vjp,) = torch.autograd.grad(y, x, w)
    adj = A.adjoint(w, blocks)
    return ((adj - vjp).norm() / vjp.norm()).item()
