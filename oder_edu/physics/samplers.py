"""Block samplers: ``blocks = sampler(generator)`` draws the index set S of one iteration, a sorted
1-D LongTensor of ``sampler.batch_size`` (b) distinct indices in ``[0, num_blocks)``; pass a
``torch.Generator`` for reproducible draws. A sampler is made once per stream and is where b lives:
step sizes (``BlockOperator.minibatch_lipschitz(b)``) and reports read it from there."""

from __future__ import annotations

import torch

from .. import checks


def batch_size_for(num_blocks: int, batch_ratio: float) -> int:
    """b = round(ratio * B), at least 1; ``batch_ratio`` must lie in (0, 1]."""
    num_blocks = checks.integer("num_blocks", num_blocks, 1)
    ratio = checks.ratio("batch_ratio", batch_ratio)
    return max(1, min(num_blocks, round(ratio * num_blocks)))


def _check(num_blocks, batch_size) -> tuple[int, int]:
    num_blocks = checks.integer("num_blocks", num_blocks, 1)
    return num_blocks, checks.integer("batch_size", batch_size, 1, num_blocks)


class UniformSampler:
    """b of B blocks uniformly without replacement: every block has probability b/B,
    so (B/b) sum_{i in S} A_i^T r_i is an unbiased estimate of the full gradient."""

    def __init__(self, num_blocks: int, batch_size: int):
        self.num_blocks, self.batch_size = _check(num_blocks, batch_size)

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randperm(self.num_blocks, generator=checks.generator(generator))[: self.batch_size].sort().values


class StratifiedSampler:
    """The same random offsets in each of ``num_sectors`` contiguous sectors of equal length (default
    ``batch_size``, one offset per sector), as the ODER reference code draws CT angles: they stay
    spread over the half circle. Each block still has probability b/B (unbiased). ``num_sectors``
    must divide both ``num_blocks`` and ``batch_size``."""

    def __init__(self, num_blocks: int, batch_size: int, num_sectors: int | None = None):
        num_blocks, batch_size = _check(num_blocks, batch_size)
        num_sectors = batch_size if num_sectors is None else checks.integer("num_sectors", num_sectors, 1)
        if num_blocks % num_sectors or batch_size % num_sectors:
            raise ValueError(f"num_sectors={num_sectors} must divide both num_blocks={num_blocks} "
                             f"and batch_size={batch_size}")
        self.num_blocks, self.batch_size, self.num_sectors = num_blocks, batch_size, num_sectors

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:
        length = self.num_blocks // self.num_sectors
        per_sector = self.batch_size // self.num_sectors
        offsets = torch.randperm(length, generator=checks.generator(generator))[:per_sector]
        starts = torch.arange(self.num_sectors) * length
        return (starts[:, None] + offsets[None, :]).flatten().sort().values


class CyclicSampler:
    """Deterministic sweep: consecutive calls return blocks [0, b), [b, 2b), ... modulo B
    (incremental methods; biased for any single draw, exact over a full cycle when b
    divides B). Stateful; the generator is checked and ignored."""

    def __init__(self, num_blocks: int, batch_size: int):
        self.num_blocks, self.batch_size = _check(num_blocks, batch_size)
        self.start = 0

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:
        checks.generator(generator)
        blocks = (self.start + torch.arange(self.batch_size)) % self.num_blocks
        self.start = (self.start + self.batch_size) % self.num_blocks
        return blocks.sort().values


SAMPLERS = {"uniform": UniformSampler, "stratified": StratifiedSampler, "cyclic": CyclicSampler}


def make_sampler(kind: str, num_blocks: int, batch_ratio: float):
    """The sampler ``kind`` ('uniform', 'stratified', 'cyclic') for b/B = ``batch_ratio``; b, worked out
    here once, is its ``batch_size``: ``batch_size_for(B, ratio)``, and for 'stratified' the divisor of
    B nearest to it (the smaller one on a tie), so its sectors tile the blocks."""
    checks.choice("sampler", kind, tuple(SAMPLERS))
    b = batch_size_for(num_blocks, batch_ratio)
    if kind == "stratified" and num_blocks % b:
        b = min((d for d in range(1, num_blocks + 1) if num_blocks % d == 0), key=lambda d: (abs(d - b), d))
    return SAMPLERS[kind](num_blocks, b)


class CustomSampler:
    """A user's ``draw(generator) -> blocks`` with the b it is declared to draw (``batch_size``): what
    step sizes are computed from. The blocks of each draw are checked where they are used."""

    def __init__(self, draw, num_blocks: int, batch_size: int):
        self.draw = checks.function("sampler", draw, "generator -> blocks, or a name")
        self.num_blocks, self.batch_size = _check(num_blocks, batch_size)

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.draw(generator)


def online_sampler(sampler, num_blocks: int, batch_ratio: float):
    """What an online method draws its blocks with, or None for the full gradient: ``sampler`` is a
    name for ``make_sampler`` (None when ``batch_ratio`` is 1) or a callable ``generator -> blocks``,
    taken to draw ``batch_size_for(B, batch_ratio)`` blocks (``CustomSampler``)."""
    batch_ratio = checks.ratio("batch_ratio", batch_ratio)
    if isinstance(sampler, str):
        sampler = make_sampler(sampler, num_blocks, batch_ratio)  # checks the name, also at ratio 1
        return None if batch_ratio == 1 else sampler
    return CustomSampler(sampler, num_blocks, batch_size_for(num_blocks, batch_ratio))
