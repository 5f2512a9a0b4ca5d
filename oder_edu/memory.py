"""Measured tensor memory: the peak of live tensor bytes while a block of code runs.

On CUDA the caching allocator knows the answer (``max_memory_allocated`` after
``reset_peak_memory_stats``). On the CPU neither ``tracemalloc`` nor the process RSS sees
torch tensors faithfully, so ``PeakTensorMemory`` counts them itself: a
``TorchDispatchMode`` sees every tensor an operator returns; each new storage adds its
size to a running total, and a ``weakref.finalize`` on the storage subtracts it when the
storage is freed. The maximum of that total is the true peak of tensor bytes allocated
inside the block (tensors that existed before the block are not counted).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class _StorageCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()  # data pointers of storages being tracked
        self._known: set[int] = set()  # storages alive before any op here (never counted)

    def _track(self, t: torch.Tensor) -> None:
        if t.device.type != "cpu" or t.is_sparse or t.layout != torch.strided:
            return
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in self._seen:
            return
        nbytes = storage.nbytes()
        self._seen.add(ptr)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, ptr, nbytes)

    def _release(self, ptr: int, nbytes: int) -> None:
        if ptr in self._seen:
            self._seen.discard(ptr)
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs or {}))[0]
            if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type == "cpu"
        }
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            # A view or an in-place result shares an input's storage: nothing new.
            if isinstance(t, torch.Tensor) and (
                t.layout != torch.strided or t.untyped_storage().data_ptr() not in inputs
            ):
                self._track(t)
        return out


class PeakTensorMemory:
    """Context manager measuring the peak tensor memory allocated inside its block.

    >>> with PeakTensorMemory() as mem:
    ...     y = torch.ones(1024, 1024) * 2      # 4 MiB each
    >>> mem.peak_bytes >= 4 * 2**20
    True

    ``device`` decides how: ``"cuda"`` (or a CUDA device) uses the allocator's peak above
    the baseline at entry; anything else counts CPU tensor storages as described above.
    ``peak_bytes`` is available after the block (and updated live during it on CPU).
    """

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.peak_bytes = 0
        self._mode: _StorageCounter | None = None

    @property
    def kind(self) -> str:
        return "cuda allocator peak" if self.device.type == "cuda" else "peak tensor memory"

    def __enter__(self) -> "PeakTensorMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._mode = _StorageCounter()
            self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._baseline
        else:
            self._mode.__exit__(*exc)
            self.peak_bytes = self._mode.peak

    @property
    def live_bytes(self) -> int:
        """CPU only: bytes allocated inside the block that are still alive."""
        return self._mode.live if self._mode is not None else 0


def saved_activation_bytes(fn, *args, **kwargs) -> int:
    """Bytes of the distinct storages that autograd saves for backward while ``fn`` runs.

    Uses ``torch.autograd.graph.saved_tensors_hooks``; a storage saved by several
    operations (or through views) is counted once. Returns the byte count; the result of
    ``fn`` is discarded.
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t.layout == torch.strided:
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args, **kwargs)
    return sum(storages.values())
