"""An instrumented operator for the checks: a ``MatrixOperator`` that records what an answer asked of it, so a
check can tell a right value computed the intended way from the same value reached another way (all B blocks
instead of the b in S; the package's own ``A.norm()`` instead of a power iteration)."""

from __future__ import annotations

import torch

from ..physics import MatrixOperator


class RecordingMatrix(MatrixOperator):
    """A ``MatrixOperator`` whose products record their block set in ``used`` (None: all blocks), through the
    public methods or a data term alike, and whose ``norm()`` calls are counted in ``norm_calls``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used: list[torch.Tensor | None] = []
        self.norm_calls = 0

    def clear(self) -> None:
        """Forget what was recorded (before running an answer)."""
        self.used.clear()
        self.norm_calls = 0

    def _forward(self, x, blocks):
        self.used.append(blocks)
        return super()._forward(x, blocks)

    def _adjoint(self, y, blocks):
        self.used.append(blocks)
        return super()._adjoint(y, blocks)

    def norm(self, *args, **kwargs) -> float:
        self.norm_calls += 1
        used = list(self.used)
        try:
            return super().norm(*args, **kwargs)
        finally:
            self.used[:] = used  # the package's own power iteration is not the answer's products

    def block_sets(self) -> list[tuple[int, ...] | None]:
        """Every recorded block set, sorted, as a tuple (None: all blocks)."""
        return [None if S is None else tuple(sorted(S.tolist())) for S in self.used]

    def outside(self, allowed) -> list[tuple[int, ...] | None]:
        """The recorded block sets that are not subsets of ``allowed`` (None, all blocks, counts as outside)."""
        allowed = set(allowed)
        return [S for S in self.block_sets() if S is None or not set(S) <= allowed]


def only_blocks(A: RecordingMatrix, blocks, name: str) -> str | None:
    """None when every product ``name`` asked of ``A`` stayed inside ``blocks``; else what a student is told: the
    value may be right, but a minibatch method that touches all B blocks saves nothing."""
    outside = A.outside(blocks.tolist() if torch.is_tensor(blocks) else blocks)
    if not outside:
        return None
    which = (f"all B = {A.num_blocks} blocks" if None in outside
             else f"blocks outside S = {sorted(blocks.tolist() if torch.is_tensor(blocks) else blocks)}")
    return (f"your value is right, but {name} evaluated {which}: the point of a minibatch is to touch only the b "
            f"blocks in S. Pass `blocks` to A.forward and A.adjoint instead of computing everything and slicing.")
