"""Data parallelism for the training loops: the same script under ``torchrun``.

``torchrun --nproc_per_node=K -m oder_edu.cli train deq ...`` starts K processes and sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. Each process holds a replica of the model and
trains on its own images; ``DistributedDataParallel`` averages the gradients across
processes during ``backward()``, so every replica takes the same optimizer step and the
replicas stay identical (``parameter_digest`` lets a test check that bit for bit). The
backend is gloo on the CPU and NCCL on CUDA. Without torchrun every function here is a
no-op and training runs in one process.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes started by torchrun (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "cpu") -> tuple[int, int]:
    """Join the process group when launched by torchrun; returns ``(rank, world_size)``."""
    if world_size() == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def device_for(device: str) -> torch.device:
    """``device``; under torchrun a CUDA device becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
    device = torch.device(device)
    if device.type == "cuda" and world_size() > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` inside a process group, else ``model`` itself."""
    if not (dist.is_available() and dist.is_initialized()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def gather(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    objects = [None] * dist.get_world_size()
    dist.all_gather_object(objects, obj)
    return objects


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (``obj`` itself in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    objects = [obj]
    dist.broadcast_object_list(objects, src=0)
    return objects[0]


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 of the bytes of every parameter and buffer, in ``state_dict`` order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cleanup() -> None:
    """Leave the process group together: without the barrier a rank that finishes early
    tears down its gloo connections while rank 0 still writes results, and can abort."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
