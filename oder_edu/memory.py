"""Measured tensor memory: the peak of live tensor bytes while a block of code runs.

On CUDA the caching allocator knows it (``max_memory_allocated`` after ``reset_peak_memory_stats``).
On the CPU neither ``tracemalloc`` nor the process RSS sees torch tensors faithfully, so a
``TorchDispatchMode`` sees every tensor an operator returns; each new storage adds its size to a
running total, and a ``weakref.finalize`` on the storage subtracts it when the storage is freed.
The maximum of that total is the peak of tensor bytes allocated inside the block (tensors that
existed before it are not counted).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage_ptr(t) -> int | None:
    """The data pointer of a CPU strided tensor's storage; None for anything else, including the
    wrappers of ``torch.func`` transforms, whose own storage is not accessible (the tensors they
    wrap are counted when they are made)."""
    if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.is_sparse or t.layout != torch.strided:
        return None
    try:
        return t.untyped_storage().data_ptr()
    except RuntimeError:
        return None


class _StorageCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()  # data pointers of storages being tracked

    def _track(self, t: torch.Tensor) -> None:
        ptr = _storage_ptr(t)
        if ptr is None or ptr == 0 or ptr in self._seen:
            return
        storage = t.untyped_storage()
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
        inputs = {_storage_ptr(t) for t in tree_flatten((args, kwargs or {}))[0]}
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if _storage_ptr(t) not in inputs:  # a view or an in-place result shares an input's storage
                self._track(t)
        return out


class PeakTensorMemory:
    """Context manager measuring the peak tensor memory allocated inside its block, in bytes
    (``peak_bytes``, set when the block ends): on a CUDA ``device`` the allocator's peak above its
    level at entry, anywhere else the CPU tensor storages counted as described above.

    >>> with PeakTensorMemory() as mem:
    ...     y = torch.ones(1024, 1024) * 2      # 4 MiB each
    >>> mem.peak_bytes >= 4 * 2**20
    True
    """

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.kind = "cuda allocator peak" if self.device.type == "cuda" else "peak tensor memory"
        self.peak_bytes = 0

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


def saved_activation_bytes(fn, *args, **kwargs) -> int:
    """Bytes of the distinct storages that autograd saves for backward while ``fn(*args, **kwargs)``
    runs (``torch.autograd.graph.saved_tensors_hooks``; a storage saved several times, or
    through views, counts once). The result of ``fn`` is discarded."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t.layout == torch.strided:
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args, **kwargs)
    return sum(storages.values())
