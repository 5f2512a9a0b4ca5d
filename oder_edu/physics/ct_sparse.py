"""The CPU forward model of ``ParallelBeamCT`` and its adjoint: sparse matrix products.

The matrix. Give every angle ``num_detectors + 2`` rows, one per padded detector bin
(``ct.ParallelBeamCT``: one padding bin on each side collects what falls off the
detector). Then A is a ``[B (d + 2), n²]`` matrix with exactly two entries per
(angle, pixel) pair: ``1 - w`` in the row of the pixel's lower bin ``i`` and ``w`` in row
``i + 1``, where ``i`` and ``w`` are the operator's ``bin_index`` and ``bin_weight``. The
rows of an angle a form A_a, and A_S x is (A_a x for a in S), cut to the unpadded bins.

Storage: compressed sparse rows (CSR), 16 bytes per (angle, pixel) pair for A and 16 for
the adjoint's matrices.

- ``ForwardMatrix``: A sorted by row. ``col`` int32 ``[B, 2 n²]``: the pixel of each entry;
  ``val`` float32 ``[B, 2 n²]``: its weight. Angle a's entries fill row a, sorted by matrix
  row (a CSR invariant). ``crow`` int32 ``[B, d + 3]``: where each of angle a's rows starts
  within row a of ``col``/``val``, so that A_a is a view of one row of each array;
  ``full_crow`` int32 ``[B (d + 2) + 1]``: the same offsets for the whole matrix, which is
  then a view of the whole of ``col`` and ``val``.
- ``AdjointMatrices``: every A_aᵀ, ``[n², d + 2]``, whose row p holds pixel p's two weights
  -- the pixel-driven tables themselves, interleaved, so they need no sort: ``col`` int32
  ``[B, 2 n²]`` (i, i + 1 per pixel), ``val`` float32 ``[B, 2 n²]`` (1 - w, w), and one
  ``crow`` for all angles (two entries per row).

int32 suffices: ``ct.ParallelBeamCT`` refuses operators over 8 GiB, so the
``2 B n²`` entries stay far below 2^31.

Why it is faster. ``scatter_add`` (the forward model on other devices) adds each
pixel's two shares into bins that many pixels share, so on the CPU it runs element by
element on one thread. Sorted by row, the same products become one dot product per
detector bin over that bin's own entries: a matrix-vector product that reads 8 bytes per
entry in order and splits the rows between threads without write conflicts (Intel MKL's
sparse BLAS in PyTorch's CPU builds). It is several times faster than ``scatter_add`` on
one thread and scales with threads. The adjoint of several images is the same kind of
product with A_aᵀ, one pass per angle that reads each pixel's two bins and adds them into
the pixel: measured at 128², 360 angles, 4 images, it takes 12.9 ms on one thread and 8.2
on two, where reading the bins back with one ``index_select`` per angle and adding them in
two further passes took 28.6 and 30.9. For one image that pass is the faster
(``ct.ParallelBeamCT``).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch


class ForwardMatrix(NamedTuple):
    """A in CSR form (arrays as in the module docstring) and its matrix views."""

    crow: torch.Tensor
    full_crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    # (dtype, angle) -> CSR view: A_angle, or the whole matrix for angle None. At most
    # B + 1 entries per dtype; the float64 ones share one float64 copy of ``val``.
    views: dict

    @classmethod
    def build(cls, bin_index: torch.Tensor, bin_weight: torch.Tensor, num_detectors: int) -> "ForwardMatrix":
        """The CSR arrays from the pixel-driven tables ``bin_index`` int32 ``[B, P]`` (lower
        padded bin, in ``[0, d]``) and ``bin_weight`` float32 ``[B, P]`` (upper-bin share w).

        Each angle's entries are laid out in pixel order, (1 - w, w) per pixel, then
        stably sorted by matrix row (NumPy's radix sort for 16-bit keys, linear time), so
        that columns stay sorted within rows.
        """
        num_angles, pixels = bin_index.shape
        rows = num_detectors + 2
        crow = torch.empty(num_angles, rows + 1, dtype=torch.int32)
        col = torch.empty(num_angles, 2 * pixels, dtype=torch.int32)
        val = torch.empty(num_angles, 2 * pixels, dtype=torch.float32)
        key_type = np.int16 if rows <= np.iinfo(np.int16).max else np.int32
        entry_pixel = np.repeat(np.arange(pixels, dtype=np.int32), 2)  # [p0, p0, p1, p1, ...]
        step = max(1, 2**17 // pixels)  # angles per pass: temporaries of a few MiB
        for start in range(0, num_angles, step):
            stop = min(num_angles, start + step)
            index, weight = bin_index[start:stop].numpy(), bin_weight[start:stop].numpy()
            keys = np.empty((stop - start, 2 * pixels), dtype=key_type)
            keys[:, 0::2], keys[:, 1::2] = index, index + 1
            values = np.empty((stop - start, 2 * pixels), dtype=np.float32)
            values[:, 0::2], values[:, 1::2] = 1 - weight, weight
            order = np.argsort(keys, axis=1, kind="stable")
            col[start:stop] = torch.from_numpy(entry_pixel[order])
            val[start:stop] = torch.from_numpy(np.take_along_axis(values, order, axis=1))
            # entries per matrix row: one bincount over all angles of the pass, rows offset per angle
            counts = np.bincount((keys + rows * np.arange(stop - start)[:, None]).ravel(),
                                 minlength=(stop - start) * rows).reshape(stop - start, rows)
            crow[start:stop, 0] = 0
            crow[start:stop, 1:] = torch.from_numpy(counts.cumsum(1, dtype=np.int32))
        # Angle a's entries start at a * 2P in the flattened arrays.
        starts = torch.arange(num_angles, dtype=torch.int32)[:, None] * (2 * pixels)
        full_crow = torch.cat([(crow[:, :-1] + starts).reshape(-1),
                               torch.tensor([num_angles * 2 * pixels], dtype=torch.int32)])
        return cls(crow, full_crow, col, val, {})

    def matrix(self, dtype: torch.dtype, angle: int | None = None) -> torch.Tensor:
        """A_angle ``[d + 2, P]``, or all of A ``[B (d + 2), P]`` for ``angle=None``, as a
        CSR tensor of views (values in ``dtype``; cached)."""
        key = (dtype, angle)
        if key not in self.views:
            num_angles, per_angle = self.col.shape
            rows, pixels = self.crow.shape[1] - 1, per_angle // 2
            if angle is None:
                arrays = self.full_crow, self.col.view(-1), self.val.view(-1).to(dtype)
                shape = (num_angles * rows, pixels)
            else:
                values = self.matrix(dtype).values()  # one converted copy for all angles
                arrays = self.crow[angle], self.col[angle], values[angle * per_angle:(angle + 1) * per_angle]
                shape = (rows, pixels)
            self.views[key] = _csr(*arrays, shape)
        return self.views[key]

    def project(self, x: torch.Tensor, blocks: torch.Tensor | None) -> torch.Tensor:
        """``A_S x``: ``[N, 1, n, n] -> [N, b, d]`` for float32/float64 CPU images.

        All angles in order: one product with the whole matrix. Any other block set: one product per angle,
        written straight into its rows of the result, so that a subset allocates nothing but its b rows (no
        copies of the tables, no per-call matrices). One image: matrix-vector products (about 4x faster than
        one-column matrix products). Several: products with the images as the columns of a dense matrix, zero-
        padded to a multiple of 4 columns, where MKL's sparse-dense product is fastest (measured at 128², 90 of
        360 angles: 2.4 ms for 4 images, 4.1 for 3, 4.1 for 2 -- and 6.2 ms for 4 images one vector at a time).
        """
        batch, rows = x.shape[0], self.crow.shape[1] - 1
        angles = None if blocks is None else blocks.tolist()
        if angles == list(range(self.col.shape[0])):
            angles = None
        count = self.col.shape[0] if angles is None else len(angles)
        images = x.reshape(batch, -1)  # [N, P]
        if batch == 1:
            out = x.new_empty(count, rows)
            if angles is None:
                torch.mv(self.matrix(x.dtype), images[0], out=out.view(-1))
            else:
                for row, angle in zip(out, angles):
                    torch.mv(self.matrix(x.dtype, angle), images[0], out=row)
            return out[None, :, 1:-1].contiguous()
        columns = _columns(images.T)  # [P, N rounded up to a multiple of 4]
        out = x.new_empty(count, rows, columns.shape[1])
        if angles is None:  # the matrix is read once for all N images
            torch.mm(self.matrix(x.dtype), columns, out=out.flatten(0, 1))
        else:
            for block, angle in zip(out, angles):
                torch.mm(self.matrix(x.dtype, angle), columns, out=block)
        return out[:, 1:-1, :batch].permute(2, 0, 1).contiguous()  # drop the padding bins and columns


class AdjointMatrices(NamedTuple):
    """Every A_aᵀ in CSR form (arrays as in the module docstring) and its matrix views."""

    crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor
    bins: int  # d + 2, the columns of every A_aᵀ
    values: dict  # dtype -> ``val`` in that dtype (one copy for all angles)
    views: dict  # (dtype, angle) -> CSR view of A_angleᵀ

    @classmethod
    def build(cls, bin_index: torch.Tensor, bin_weight: torch.Tensor, num_detectors: int) -> "AdjointMatrices":
        """The CSR arrays from the pixel-driven tables ``bin_index`` int32 ``[B, P]`` (lower padded bin, in
        ``[0, d]``) and ``bin_weight`` float32 ``[B, P]`` (upper-bin share w): pixel p's row is (1 - w at
        column i, w at column i + 1), already sorted."""
        num_angles, pixels = bin_index.shape
        col = torch.empty(num_angles, pixels, 2, dtype=torch.int32)  # filled in place: no temporaries
        col[..., 0], col[..., 1] = bin_index, bin_index
        col[..., 1] += 1
        val = torch.empty(num_angles, pixels, 2, dtype=torch.float32)
        val[..., 1] = bin_weight
        val[..., 0] = bin_weight
        val[..., 0].neg_().add_(1)  # 1 - w, exact: w lies on a 2^-24 grid
        crow = torch.arange(0, 2 * pixels + 1, 2, dtype=torch.int32)
        col, val = col.view(num_angles, 2 * pixels), val.view(num_angles, 2 * pixels)
        return cls(crow, col, val, num_detectors + 2, {torch.float32: val}, {})

    def matrix(self, dtype: torch.dtype, angle: int) -> torch.Tensor:
        """A_angleᵀ ``[P, d + 2]`` as a CSR tensor of views (values in ``dtype``; cached)."""
        key = (dtype, angle)
        if key not in self.views:
            if dtype not in self.values:
                self.values[dtype] = self.val.to(dtype)
            self.views[key] = _csr(self.crow, self.col[angle], self.values[dtype][angle],
                                   (self.crow.numel() - 1, self.bins))
        return self.views[key]

    def back_project(self, y: torch.Tensor, blocks: torch.Tensor | None) -> torch.Tensor:
        """``A_Sᵀ y``: ``[N, b, d] -> [N, P]`` for float32/float64 CPU measurements of several images, one
        product per angle added into the result, the images as the columns of a dense matrix zero-padded to a
        multiple of 4 (as ``ForwardMatrix.project``). Temporaries: y with its padding bins (b/B of the full
        call's) and the result."""
        batch = y.shape[0]
        angles = range(self.col.shape[0]) if blocks is None else blocks.tolist()
        rows = _columns(y.permute(1, 2, 0), pad=1)  # [b, d + 2, N rounded up to a multiple of 4]
        out = y.new_zeros(self.crow.numel() - 1, rows.shape[-1])
        for row, angle in zip(rows, angles):
            out.addmm_(self.matrix(y.dtype, angle), row)
        return out[:, :batch].T.contiguous()


def _columns(columns: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """``columns`` ``[..., R, N]`` copied into zeros ``[..., R + 2 pad, N']`` (``pad`` zero rows before and after),
    N rounded up to a multiple of 4: MKL's sparse-dense product is fastest there (``ForwardMatrix.project``)."""
    *lead, rows, batch = columns.shape
    out = columns.new_zeros(*lead, rows + 2 * pad, -(-batch // 4) * 4)
    out[..., pad:pad + rows, :batch] = columns
    return out


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor of the given arrays (views, not copies), their invariants not rechecked."""
    with warnings.catch_warnings():  # torch warns once that sparse CSR is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)
