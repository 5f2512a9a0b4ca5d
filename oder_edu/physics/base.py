"""Blocked linear forward models A = [A_1; ...; A_B] and the data term they define.

Shapes used everywhere in oder_edu:

- an image batch ``x`` is ``[N, C, H, W]`` (real, float32 or float64);
- a measurement ``y`` keeps the blocks along dim 1: ``[N, b, *block_shape]`` where
  ``b = len(blocks)`` (all ``B = num_blocks`` blocks when ``blocks`` is None);
- a block set ``blocks`` is a 1-D LongTensor of distinct indices in ``[0, B)``.

The data term of ODER (Liu et al., NeurIPS 2022) is
``g(x) = 1/2 sum_i ||A_i x - y_i||^2`` and its gradient ``sum_i A_i^T (A_i x - y_i)``.
"""

from __future__ import annotations

import torch

def as_blocks(blocks, num_blocks: int, device=None) -> torch.Tensor:
    """Validate a block set and return it as a 1-D LongTensor on ``device``.

    ``None`` means all blocks. Empty, duplicate, non-integer or out-of-range
    indices raise, because silently dropping or repeating a block would bias the
    minibatch gradient.
    """
    if blocks is None:
        return torch.arange(num_blocks, device=device)
    if not torch.is_tensor(blocks):
        try:
            blocks = torch.as_tensor(list(blocks) if not isinstance(blocks, int) else [blocks])
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"blocks must be a 1-D sequence of integer indices, got {blocks!r}") from None
    if blocks.numel() == 0:  # before the dtype check: an empty list becomes a float tensor
        raise ValueError(f"blocks is empty; expected at least one index in [0, {num_blocks})")
    if blocks.is_floating_point() or blocks.is_complex() or blocks.dtype == torch.bool:
        raise TypeError(f"blocks must hold integer indices, got dtype {blocks.dtype}")
    if blocks.ndim != 1:
        raise ValueError(f"blocks must be a 1-D index tensor, got shape {tuple(blocks.shape)}")
    lo, hi = int(blocks.min()), int(blocks.max())
    if lo < 0 or hi >= num_blocks:
        raise IndexError(f"block indices must lie in [0, {num_blocks}), got min {lo} and max {hi}")
    if torch.unique(blocks).numel() != blocks.numel():
        raise ValueError(f"blocks must be distinct, got {blocks.tolist()}")
    return blocks.to(device=device, dtype=torch.long)


class BlockOperator:
    """A linear operator split into ``num_blocks`` row blocks.

    Subclasses set ``num_blocks``, ``image_shape`` ``(C, H, W)``, ``block_shape`` and
    ``complex_measurements``, and implement ``_forward(x, blocks)`` and
    ``_adjoint(y, blocks)`` for already-validated inputs. The public ``forward``,
    ``adjoint`` and ``norm`` check shapes and dtypes so that nothing is silently
    broadcast. Operator buffers follow the device and dtype of the input.
    """

    num_blocks: int
    image_shape: tuple[int, int, int]
    block_shape: tuple[int, ...]
    complex_measurements: bool = False

    # --- public API -------------------------------------------------------------
    def forward(self, x: torch.Tensor, blocks=None) -> torch.Tensor:
        """``[N, C, H, W] -> [N, b, *block_shape]``: the rows A_i x for i in blocks."""
        self.check_image(x)
        return self._forward(x, as_blocks(blocks, self.num_blocks, x.device))

    def adjoint(self, y: torch.Tensor, blocks=None) -> torch.Tensor:
        """``[N, b, *block_shape] -> [N, C, H, W]``: sum over i in blocks of A_i^T y_i."""
        blocks = as_blocks(blocks, self.num_blocks, y.device if torch.is_tensor(y) else None)
        self.check_measurement(y, len(blocks))
        return self._adjoint(y, blocks)

    __call__ = forward

    def norm(self, num_iter: int = 100) -> float:
        """Spectral norm ||A||_2 by power iteration on A^T A (float64, seeded, cached).

        ``L = norm()**2`` is the Lipschitz constant of the gradient of g.
        """
        if getattr(self, "_norm", None) is None:
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(1, *self.image_shape, generator=gen, dtype=torch.float64)
            x /= x.norm()
            value = 0.0
            for _ in range(num_iter):
                z = self.adjoint(self.forward(x))
                value = z.norm().item()
                if value == 0.0:
                    break
                x = z / value
            self._norm = value**0.5
        return self._norm

    def measurement_shape(self, batch: int, blocks=None) -> tuple[int, ...]:
        b = self.num_blocks if blocks is None else len(blocks)
        return (batch, b, *self.block_shape)

    # --- checks -----------------------------------------------------------------
    def check_image(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not torch.is_tensor(x):
            raise TypeError(f"{name} expects a torch.Tensor image, got {type(x).__name__}")
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f"{name} expects a real floating-point image, got dtype {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(
                f"{name} expects images of shape [N, {', '.join(map(str, self.image_shape))}], "
                f"got {tuple(x.shape)}"
            )

    def check_measurement(self, y: torch.Tensor, b: int) -> None:
        name = type(self).__name__
        if not torch.is_tensor(y):
            raise TypeError(f"{name} expects a torch.Tensor measurement, got {type(y).__name__}")
        if self.complex_measurements and not y.is_complex():
            raise TypeError(f"{name} expects complex measurements, got dtype {y.dtype}")
        if not self.complex_measurements and (y.is_complex() or not y.is_floating_point()):
            raise TypeError(f"{name} expects real floating-point measurements, got dtype {y.dtype}")
        expected = (b, *self.block_shape)
        if y.ndim != len(expected) + 1 or tuple(y.shape[1:]) != expected:
            raise ValueError(
                f"{name} expects measurements of shape [N, {', '.join(map(str, expected))}] "
                f"for {b} block(s), got {tuple(y.shape)}"
            )

    def _buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The stored tensor ``name`` on ``like``'s device, in its precision (cached)."""
        base = getattr(self, name)
        dtype = base.dtype
        if base.is_complex():
            dtype = torch.complex128 if like.dtype in (torch.float64, torch.complex128) else torch.complex64
        elif base.is_floating_point():
            dtype = like.real.dtype if like.is_complex() else like.dtype
        cache = self.__dict__.setdefault("_buffers_cache", {})
        key = (name, like.device, dtype)
        if key not in cache:
            cache[key] = base.to(device=like.device, dtype=dtype)
        return cache[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_shape={self.image_shape}, num_blocks={self.num_blocks})"


def _check_same(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if x.device != y.device:
        raise ValueError(f"{what}: image is on {x.device} but data is on {y.device}")
    real = y.real.dtype if y.is_complex() else y.dtype
    if x.dtype != real:
        raise ValueError(f"{what}: image dtype {x.dtype} does not match data precision {real}")


class LeastSquares:
    """The data term g(x) = 1/2 sum_i ||A_i x - y_i||^2 of a blocked operator.

    ``grad(x)`` is the full gradient sum_i A_i^T (A_i x - y_i). ``grad(x, blocks)`` with a
    block set S of size b is the unbiased minibatch estimate used by online RED
    (Wu, Sun, Liu, Kamilov, ICCV Workshops 2019; Sun, Wohlberg, Kamilov, IEEE TCI 2019) and ODER (Liu et al., NeurIPS 2022):

        (B / b) * sum_{i in S} A_i^T (A_i x - y_i),

    whose expectation over a uniformly drawn S is the full gradient. (The ODER reference
    code omits the B/b factor and lets the learned gamma and tau absorb it.)
    """

    def __init__(self, A: BlockOperator, y: torch.Tensor):
        A.check_measurement(y, A.num_blocks)
        if not torch.isfinite(y).all():
            raise ValueError("measurements y contain NaN or Inf; expected finite data")
        self.A, self.y = A, y

    def residual(self, x: torch.Tensor, blocks=None) -> torch.Tensor:
        """``A_S x - y_S``, shape ``[N, b, *block_shape]``."""
        self.A.check_image(x)
        _check_same(x, self.y, "LeastSquares")
        if x.shape[0] != self.y.shape[0]:
            raise ValueError(f"image batch {x.shape[0]} does not match data batch {self.y.shape[0]}")
        if blocks is None:
            return self.A.forward(x) - self.y
        blocks = as_blocks(blocks, self.A.num_blocks, x.device)
        return self.A.forward(x, blocks) - self.y.index_select(1, blocks)

    def value(self, x: torch.Tensor, blocks=None) -> torch.Tensor:
        """g(x) per image, shape ``[N]`` (with ``blocks``: the same B/b scaling as ``grad``)."""
        blocks = None if blocks is None else as_blocks(blocks, self.A.num_blocks, x.device)
        r = self.residual(x, blocks)
        scale = 1.0 if blocks is None else self.A.num_blocks / blocks.numel()
        return 0.5 * scale * r.abs().square().flatten(1).sum(1)

    def grad(self, x: torch.Tensor, blocks=None) -> torch.Tensor:
        """Full gradient ``[N, C, H, W]``, or the unbiased (B/b) estimate over ``blocks``."""
        if blocks is None:
            return self.A.adjoint(self.residual(x))
        blocks = as_blocks(blocks, self.A.num_blocks, x.device)
        g = self.A.adjoint(self.residual(x, blocks), blocks)
        return g * (self.A.num_blocks / blocks.numel())

    def lipschitz(self) -> float:
        """L = ||A||^2, the Lipschitz constant of the full gradient."""
        return self.A.norm() ** 2
