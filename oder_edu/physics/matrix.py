"""A dense matrix as a blocked operator: every quantity has an exact reference (for teaching and tests).

A = [M_1; ...; M_B] with row blocks M_i ``[m, n]`` acting on images ``[N, C, H, W]`` with C·H·W = n
(flattened in row-major order): ``forward(x, S)`` is ``[N, b, m]``, row j holding M_{S_j} x, and
``adjoint(y, S)`` is Σ_j M_{S_j}ᵀ y_j. A complex matrix makes A real-linear Rⁿ -> Cᵐ; its adjoint for
the real inner product Re<., .> is Re(Σ_j M_{S_j}ᴴ y_j), as for ``MultiCoilMRI``.
"""

from __future__ import annotations

import math

import torch

from .. import checks
from .base import BlockOperator


class MatrixOperator(BlockOperator):
    """Row blocks M_i of a dense matrix as a ``BlockOperator``.

    Args:
        matrix: the blocks ``[B, m, n]``, or the whole matrix ``[B·m, n]`` split into ``num_blocks`` row
            blocks of m rows (one block when ``num_blocks`` is None); real or complex floating point
            (complex: ``complex_measurements = True``), finite. Kept as given (no copy): ``M`` ``[B, m, n]``
            is a view of it, cast to each input's device and precision when used (``_buffer``).
        image_shape: (C, H, W) with C·H·W = n.
        num_blocks: B for a 2-D ``matrix``; for a 3-D one None or its first dimension.

    Shapes: images ``[N, C, H, W]``, measurements ``[N, b, m]``; ``matrix()`` is ``[B·m, n]``.
    """

    def __init__(self, matrix: torch.Tensor, image_shape: tuple[int, int, int], num_blocks: int | None = None):
        if not torch.is_tensor(matrix):
            raise TypeError(f"matrix must be a torch.Tensor [B, m, n] or [B*m, n], got {type(matrix).__name__}")
        if not (matrix.is_floating_point() or matrix.is_complex()):
            raise TypeError(f"matrix must be real or complex floating point, got dtype {matrix.dtype}")
        try:
            image_shape = tuple(checks.integer("image_shape entries", s, 1) for s in image_shape)
        except TypeError:
            raise TypeError(f"image_shape must be a tuple (C, H, W) of integers, got {image_shape!r}") from None
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape}")
        n = math.prod(image_shape)
        if matrix.ndim == 3:
            if num_blocks is not None and checks.integer("num_blocks", num_blocks, 1) != matrix.shape[0]:
                raise ValueError(f"a matrix of shape {tuple(matrix.shape)} has {matrix.shape[0]} blocks, "
                                 f"but num_blocks is {num_blocks}")
            blocks = matrix
        elif matrix.ndim == 2:
            num_blocks = 1 if num_blocks is None else checks.integer("num_blocks", num_blocks, 1)
            if matrix.shape[0] % num_blocks:
                raise ValueError(f"cannot split the {matrix.shape[0]} rows of a {tuple(matrix.shape)} matrix "
                                 f"into {num_blocks} blocks of equal size")
            blocks = matrix.reshape(num_blocks, matrix.shape[0] // num_blocks, matrix.shape[1])
        else:
            raise ValueError(f"matrix must have shape [B, m, n] or [B*m, n], got {tuple(matrix.shape)}")
        if blocks.shape[2] != n:
            raise ValueError(f"a matrix with n = {blocks.shape[2]} columns cannot act on images {image_shape} "
                             f"(C·H·W = {n})")
        if 0 in blocks.shape:
            raise ValueError(f"matrix must have at least one block, row and column, got {tuple(matrix.shape)}")
        self.M = checks.finite("matrix", blocks)
        self.complex_measurements = blocks.is_complex()
        super().__init__(blocks.shape[0], image_shape, (blocks.shape[1],))

    # All blocks: one product with the whole matrix. A subset: block by block into the output, so that no
    # block is copied and a subset never allocates more than the full call (the contract of BlockOperator).
    def _forward(self, x, blocks):
        M = self._buffer("M", x)  # [B, m, n]; blocks is None (all) or a CPU LongTensor
        v = x.flatten(1).to(M.dtype)
        if blocks is None:
            return torch.einsum("bmn,Nn->Nbm", M, v)
        y = v.new_empty(x.shape[0], blocks.numel(), M.shape[1])
        for j, i in enumerate(blocks.tolist()):
            y[:, j] = v @ M[i].T
        return y

    def _adjoint(self, y, blocks):
        M = self._buffer("M", y, conj=self.complex_measurements)
        if blocks is None:
            x = torch.einsum("bmn,Nbm->Nn", M, y)
        else:
            x = y.new_zeros(y.shape[0], M.shape[2])
            for j, i in enumerate(blocks.tolist()):
                x.addmm_(y[:, j], M[i])
        return (x.real if x.is_complex() else x).reshape(y.shape[0], *self.image_shape)

    def matrix(self) -> torch.Tensor:
        """The whole matrix ``[B·m, n]``: the blocks stacked in order."""
        return self.M.reshape(-1, self.M.shape[-1])
