"""Blocked linear forward models A = [A_1; ...; A_B] and the data term they define.

Shapes: images ``[N, C, H, W]`` (real); measurements ``[N, b, *block_shape]``, row j from block
``blocks[j]`` (b = B = ``num_blocks`` when ``blocks`` is None); a block set is a 1-D LongTensor of
distinct indices in ``[0, B)``. A call on a subset allocates at most what the full call does
(``tests/test_operator_contract.py``); NaN and Inf pass through, and every consumer rejects them.
"""

from __future__ import annotations

import numbers
from functools import partial

import torch

from .. import checks


def as_blocks(blocks, num_blocks: int) -> torch.Tensor | None:
    """None (all blocks) or a 1-D CPU LongTensor (no device sync); empty, duplicate, non-integer or
    out-of-range indices raise, since dropping or repeating a block would bias the minibatch gradient."""
    if blocks is None:
        return None
    if not torch.is_tensor(blocks):
        try:
            single = isinstance(blocks, numbers.Integral)  # numpy integers too
            blocks = torch.as_tensor([blocks] if single else list(blocks))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"blocks must be a 1-D sequence of integer indices, got {blocks!r}") from None
    if blocks.numel() == 0:  # before the dtype check: an empty list becomes a float tensor
        raise ValueError(f"blocks is empty; expected at least one index in [0, {num_blocks})")
    if blocks.is_floating_point() or blocks.is_complex() or blocks.dtype == torch.bool:
        raise TypeError(f"blocks must hold integer indices, got dtype {blocks.dtype}")
    if blocks.ndim != 1:
        raise ValueError(f"blocks must be a 1-D index tensor, got shape {tuple(blocks.shape)}")
    blocks = blocks.to("cpu", torch.long)
    values = blocks.tolist()
    low, high = min(values), max(values)
    if low < 0 or high >= num_blocks:
        raise IndexError(f"block indices must lie in [0, {num_blocks}), got min {low} and max {high}")
    if len(set(values)) != len(values):
        raise ValueError(f"blocks must be distinct, got {values}")
    return blocks


def count(blocks: torch.Tensor | None, num_blocks: int) -> int:
    return num_blocks if blocks is None else blocks.numel()


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image inner products <a_n, b_n>, shape ``[N, 1, 1, 1]``."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(apply, b: torch.Tensor, x0: torch.Tensor):
    """Endless CG iterates x_1, x_2, ... for ``apply(x) = b``, ``apply`` symmetric PSD (Hestenes & Stiefel,
    J. Res. Natl. Bur. Stand. 1952); one system per image of ``[N, C, H, W]``, zero residuals stay put."""
    x = x0
    r = b - apply(x)
    p = r
    rr = dot(r, r)
    tiny = torch.finfo(rr.dtype).tiny
    while True:
        Ap = apply(p)
        pAp = dot(p, Ap)
        alpha = torch.where(pAp > 0, rr / pAp.clamp_min(tiny), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_next = dot(r, r)
        p = r + torch.where(rr > 0, rr_next / rr.clamp_min(tiny), 0.0) * p
        rr = rr_next
        yield x


def power_iteration(apply, shape, num_iter: int = 100, tol: float = 1e-6) -> float:
    """Largest eigenvalue of a symmetric PSD ``apply`` on ``shape`` (float64, seeded), to relative ``tol``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x /= x.norm()
    value = 0.0
    for _ in range(num_iter):
        z = apply(x)
        previous, value = value, z.norm().item()
        if value == 0.0 or abs(value - previous) <= tol * value:
            break
        x = z / value
    return value


def lanczos(apply, v0: torch.Tensor, max_iter: int = 200, tol: float = 1e-6):
    """The largest eigenvalue θ of a symmetric PSD ``apply`` for each image of ``v0`` ``[N, ...]``, and its
    eigenvector: ``(theta [N] float64, v [N, ...] unit vectors in v0's dtype, iterations)``.

    The Lanczos process from ``v0`` (Lanczos 1950; Golub & Van Loan, *Matrix Computations*, ch. 10): k products
    span a Krylov space, and the top eigenvalue of the k×k tridiagonal matrix they build (a Ritz value) is the
    best estimate that space holds -- a lower bound that rises to θ far faster than power iteration's, which
    uses only the last vector: where the top of the spectrum is crowded (the Jacobians of trained DEQ maps, whose
    near-null directions contract nearly alike) power iteration needs hundreds of products per digit. Vectors
    are kept in float64 and reorthogonalized against all earlier ones, twice (without it they lose orthogonality
    and the tridiagonal matrix invents eigenvalues above θ). Stops when every image's top Ritz pair has residual
    ||apply(v) − θ v|| = |β_k s_k| <= ``tol``·θ, or after ``max_iter`` products."""
    shape, n = v0.shape, v0.shape[0]
    inner = lambda a, b: (a * b).sum(1)  # noqa: E731
    q = v0.reshape(n, -1).double()
    dimension = q.shape[1]  # a Krylov space cannot grow past it
    basis, alphas, betas = [q / inner(q, q).sqrt()[:, None]], [], []
    for k in range(1, max_iter + 1):
        w = apply(basis[-1].to(v0.dtype).view(shape)).reshape(n, -1).double()
        alphas.append(inner(basis[-1], w))
        for _ in range(2):
            for b in basis:
                w = w - inner(b, w)[:, None] * b
        beta = inner(w, w).sqrt()
        tridiagonal = torch.diag_embed(torch.stack(alphas, 1))
        if betas:
            off = torch.stack(betas, 1)
            tridiagonal = tridiagonal + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        values, vectors = torch.linalg.eigh(tridiagonal)
        theta, s = values[:, -1], vectors[:, :, -1]  # [N], [N, k]
        converged = (beta * s[:, -1]).abs() <= tol * theta.abs()
        if k == max_iter or k == dimension or bool(converged.all()):
            v = (s[:, :, None] * torch.stack(basis, 1)).sum(1)
            return theta, (v / inner(v, v).sqrt()[:, None]).to(v0.dtype).view(shape), k
        betas.append(beta)
        basis.append(w / beta.clamp_min(torch.finfo(w.dtype).tiny)[:, None])  # β = 0: an invariant space, a new start


class BlockOperator:
    """A linear map from images ``image_shape`` (C, H, W) to ``num_blocks`` blocks of ``block_shape``.
    Subclasses implement ``_forward(x, blocks)`` and ``_adjoint(y, blocks)`` for validated inputs, each
    returning a new tensor (never a view of its input: ``LeastSquares`` forms A_S x − y_S in place), and
    ``solve_normal`` where AᵀA has a closed form; tables follow the input's device and dtype (``_buffer``)."""

    complex_measurements: bool = False

    def __init__(self, num_blocks: int, image_shape: tuple[int, int, int], block_shape: tuple[int, ...]):
        self.num_blocks, self.image_shape, self.block_shape = num_blocks, image_shape, block_shape

    def forward(self, x: torch.Tensor, blocks=None) -> torch.Tensor:
        """``[N, C, H, W] -> [N, b, *block_shape]``: the rows A_i x for i in blocks."""
        self.check_image(x)
        return self._forward(x, as_blocks(blocks, self.num_blocks))

    def adjoint(self, y: torch.Tensor, blocks=None) -> torch.Tensor:
        """``[N, b, *block_shape] -> [N, C, H, W]``: the sum over i in blocks of A_i^T y_i."""
        blocks = as_blocks(blocks, self.num_blocks)
        self.check_measurement(y, count(blocks, self.num_blocks))
        return self._adjoint(y, blocks)

    __call__ = forward

    def _normal(self, x: torch.Tensor, blocks: torch.Tensor | None = None) -> torch.Tensor:  # A_SᵀA_S x
        return self._adjoint(self._forward(x, blocks), blocks)

    def solve_normal(self, b: torch.Tensor, shift: float, x_init: torch.Tensor | None = None,
                     num_iter: int = 20) -> torch.Tensor:
        """``(AᵀA + shift·I)^{-1} b``: ``num_iter`` CG iterations from ``x_init`` (default ``b / shift``)."""
        shift = checks.number("shift", shift, positive=True)
        normal = lambda x: self._normal(x) + shift * x  # noqa: E731
        for k, x in enumerate(conjugate_gradient(normal, b, b / shift if x_init is None else x_init), start=1):
            if k >= num_iter:
                return x

    def norm(self, num_iter: int = 100, tol: float = 1e-6) -> float:
        """||A||_2 by power iteration on AᵀA (cached); ``norm()**2`` is L_g, the Lipschitz constant of ∇g."""
        cache = self.__dict__.setdefault("_norms", {})
        key = (checks.integer("num_iter", num_iter, 1), checks.number("tol", tol, minimum=0))
        if key not in cache:
            cache[key] = power_iteration(self._normal, (1, *self.image_shape), *key) ** 0.5
        return cache[key]

    def block_norms(self) -> torch.Tensor:
        """``[B]``: ||A_i||_2 for every block (power iteration per block, cached)."""
        if getattr(self, "_block_norms", None) is None:
            shape = (1, *self.image_shape)
            values = [power_iteration(partial(self._normal, blocks=torch.tensor([i])), shape, 100, 1e-4) ** 0.5
                      for i in range(self.num_blocks)]
            self._block_norms = torch.tensor(values, dtype=torch.float64)
        return self._block_norms

    def minibatch_lipschitz(self, batch_size: int) -> float:
        """``min((B/b)·||A||², B·max_i ||A_i||²)`` bounds the Lipschitz constant of (B/b)·A_SᵀA_S for every
        |S| = b, as ||A_S|| <= ||A|| and ||A_SᵀA_S|| <= b·max_i ||A_i||²; L_g when b = B."""
        b = checks.integer("batch_size", batch_size, 1, self.num_blocks)
        L = self.norm() ** 2
        if b == self.num_blocks:
            return L
        return min(self.num_blocks / b * L, self.num_blocks * float(self.block_norms().max()) ** 2)

    def measurement_shape(self, batch: int, blocks=None) -> tuple[int, ...]:
        return (checks.integer("batch", batch, 1), count(as_blocks(blocks, self.num_blocks), self.num_blocks),
                *self.block_shape)

    def check_image(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        checks.image_batch(f"{name}'s image", x)
        if tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"{name} expects images of shape [N, {', '.join(map(str, self.image_shape))}], "
                             f"got {tuple(x.shape)}")

    def check_measurement(self, y: torch.Tensor, b: int) -> None:
        name = type(self).__name__
        if not torch.is_tensor(y):
            raise TypeError(f"{name} expects a torch.Tensor measurement, got {type(y).__name__}")
        if y.is_complex() != self.complex_measurements or not (y.is_complex() or y.is_floating_point()):
            kind = "complex" if self.complex_measurements else "real floating-point"
            raise TypeError(f"{name} expects {kind} measurements, got dtype {y.dtype}")
        expected = (b, *self.block_shape)
        if y.ndim != len(expected) + 1 or tuple(y.shape[1:]) != expected or y.shape[0] == 0:
            raise ValueError(f"{name} expects measurements of shape [N, {', '.join(map(str, expected))}] "
                             f"for {b} block(s), got {tuple(y.shape)}")

    def _buffer(self, name: str, like: torch.Tensor, conj: bool = False) -> torch.Tensor:
        """The stored tensor ``name`` on ``like``'s device and precision, physically conjugated if ``conj`` (cached)."""
        base = getattr(self, name)
        dtype = base.dtype
        if base.is_complex():
            dtype = torch.complex128 if like.dtype in (torch.float64, torch.complex128) else torch.complex64
        elif base.is_floating_point():
            dtype = like.real.dtype if like.is_complex() else like.dtype
        cache = self.__dict__.setdefault("_buffers_cache", {})
        key = (name, conj, like.device, dtype)
        if key not in cache:
            table = base.to(device=like.device, dtype=dtype)
            cache[key] = table.conj_physical() if conj else table
        return cache[key]

    def _rows(self, name: str, like: torch.Tensor, blocks: torch.Tensor | None, conj: bool = False,
              channel: int | None = None) -> torch.Tensor:
        """The per-block table ``name`` (``[:, channel]`` if given) at ``blocks``; no copy for all blocks."""
        table = self._buffer(name, like, conj)
        table = table if channel is None else table[:, channel]
        return table if blocks is None else table.index_select(0, blocks.to(table.device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_shape={self.image_shape}, num_blocks={self.num_blocks})"


class LeastSquares:
    """The data term g(x) = 1/2 sum_i ||A_i x - y_i||^2. ``grad(x, blocks)`` over S, |S| = b, is the unbiased
    minibatch gradient (B / b) * sum_{i in S} A_i^T (A_i x - y_i) of online RED (Wu, Sun, Liu, Kamilov,
    ICCV Workshops 2019; Sun, Wohlberg, Kamilov, IEEE TCI 2019) and ODER (Liu et al., NeurIPS 2022), when
    each block is drawn with probability b/B; the authors' CT code gets B/b from π/(2·len θ_S).

    ``evaluations`` counts the block evaluations that ``grad`` and ``normal`` have made: A_i and A_iᵀ applied
    once each to one image counts one (a call on N images over b blocks adds N·b). It is the cost of a method
    in the unit ODER saves, independent of the machine. ``chunk`` (full
    calls only) sums over groups of that many blocks, so at most ``chunk`` blocks' worth of measurements
    is held at once -- what a variance-reduced method's snapshot needs to stay within a minibatch's memory."""

    def __init__(self, A: BlockOperator, y: torch.Tensor):
        if not isinstance(A, BlockOperator):
            raise TypeError(f"A must be a BlockOperator, got {type(A).__name__}")
        A.check_measurement(y, A.num_blocks)
        self.A, self.y = A, checks.finite("measurements y", y)
        self.evaluations = 0

    def check(self, x: torch.Tensor) -> None:
        self.A.check_image(x)
        real = self.y.real.dtype if self.y.is_complex() else self.y.dtype
        if x.device != self.y.device or x.dtype != real:
            raise ValueError(f"the image is {x.dtype} on {x.device} but the data term expects {real} on "
                             f"{self.y.device} (y's precision and device)")
        if x.shape[0] != self.y.shape[0]:
            raise ValueError(f"image batch {x.shape[0]} does not match data batch {self.y.shape[0]}")

    def _residual(self, x: torch.Tensor, blocks: torch.Tensor | None) -> torch.Tensor:
        """A_S x - y_S: y_S is taken after A_S x and subtracted in place (A_S x is a new tensor: ``BlockOperator``),
        so that a subset holds at most two of its b blocks' measurements at once, as the full call holds A x and y."""
        r = self.A._forward(x, blocks)
        return r.sub_(self.y if blocks is None else self.y.index_select(1, blocks.to(self.y.device)))

    def _blocks(self, x: torch.Tensor, blocks) -> torch.Tensor | None:
        self.check(x)
        return as_blocks(blocks, self.A.num_blocks)

    def value(self, x: torch.Tensor, blocks=None) -> torch.Tensor:
        """g(x) per image, ``[N]`` (with ``blocks``: the same B/b scaling as ``grad``)."""
        blocks = self._blocks(x, blocks)
        return 0.5 * self._scale(blocks) * self._residual(x, blocks).abs().square().flatten(1).sum(1)

    def _scale(self, blocks: torch.Tensor | None) -> float:  # B/b: makes a minibatch estimate unbiased
        return self.A.num_blocks / count(blocks, self.A.num_blocks)

    def grad(self, x: torch.Tensor, blocks=None, chunk: int | None = None) -> torch.Tensor:
        """Full gradient ``[N, C, H, W]`` (in groups of ``chunk`` blocks, if given), or the unbiased (B/b)
        estimate over ``blocks``."""
        return self._apply(lambda S: self.A._adjoint(self._residual(x, S), S), x, blocks, chunk)

    def normal(self, v: torch.Tensor, blocks=None, chunk: int | None = None) -> torch.Tensor:
        """The Hessian of g applied to ``v`` ``[N, C, H, W]``: AᵀA v, or its unbiased estimate
        (B/b) A_SᵀA_S v over ``blocks`` -- the data part of every linearization of a gradient step
        (the Jacobian of ∇_S g; g is quadratic, so it does not depend on the point)."""
        return self._apply(lambda S: self.A._normal(v, S), v, blocks, chunk)

    def _apply(self, over, x: torch.Tensor, blocks, chunk: int | None) -> torch.Tensor:
        """``over(S)`` = Σ_{i∈S} (…)_i for all blocks (S None, or summed chunk by chunk) or B/b times it for S."""
        blocks = self._blocks(x, blocks)
        self.evaluations += count(blocks, self.A.num_blocks) * x.shape[0]
        if blocks is not None:
            return over(blocks) * self._scale(blocks)
        if chunk is None or checks.integer("chunk", chunk, 1) >= self.A.num_blocks:
            return over(None)
        return sum(over(S) for S in torch.arange(self.A.num_blocks).split(chunk))

    def prox(self, v: torch.Tensor, gamma: float, x_init: torch.Tensor | None = None,
             cg_iter: int = 20) -> torch.Tensor:
        """prox_{γg}(v) = (AᵀA + I/γ)^{-1}(Aᵀy + v/γ) by ``A.solve_normal`` (``cg_iter`` CG steps from
        ``x_init``, default ``v``)."""
        self.check(v)
        gamma = checks.number("gamma", gamma, positive=True)
        if getattr(self, "_Aty", None) is None:
            self._Aty = self.A._adjoint(self.y, None)
        return self.A.solve_normal(self._Aty + v / gamma, 1.0 / gamma, v if x_init is None else x_init,
                                   checks.integer("cg_iter", cg_iter, 1))
