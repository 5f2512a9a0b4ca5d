"""``oder-edu bench physics``: time and memory of each blocked forward model's forward, adjoint and
full and minibatch gradients, per torch thread count (see benchmarks/README.md)."""

from __future__ import annotations

import functools
import os

import torch
from skimage.transform import radon

from ..device import as_device
from ..memory import PeakTensorMemory
from ..phantoms import shepp_logan
from ..physics import LeastSquares, UniformSampler, batch_size_for
from ..problems import make_operator
from ..timing import median_ms
from .results import add_bench_arguments, check_out, thread_counts, write_results

CASES = [("ct", 128, 90), ("ct", 128, 180), ("ct", 256, 90), ("ct", 256, 180), ("ct", 512, 90),
         ("mri", 128, 8), ("mri", 64, 32), ("idt", 128, 64), ("idt", 64, 256),
         ("ct", 64, 4), ("mri", 32, 4), ("idt", 32, 4)]
QUICK_CASES = [("ct", 16, 8), ("mri", 16, 2), ("idt", 16, 4)]


def add_arguments(parser) -> None:
    add_bench_arguments(parser, device=True, threads=True)
    parser.add_argument("--quick", action="store_true", help="tiny cases, few repeats (for tests)")


def stored_bytes(A) -> int:
    """Bytes of the distinct tensor storages in an operator's attributes, dicts, lists and tuples
    (views counted once; a sparse CSR tensor by its index and value arrays)."""
    storages: dict[tuple, int] = {}

    def visit(value):
        if torch.is_tensor(value) and value.layout == torch.sparse_csr:
            value = [value.crow_indices(), value.col_indices(), value.values()]
        if torch.is_tensor(value):
            storage = value.untyped_storage()
            storages[(value.device, storage.data_ptr())] = storage.nbytes()
        elif isinstance(value, (dict, list, tuple)):
            for item in value.values() if isinstance(value, dict) else value:
                visit(item)

    visit(vars(A))
    return sum(storages.values())


def measure(kind: str, image_size: int, num_blocks: int, device: torch.device, repeat: int, warmup: int) -> dict:
    A = make_operator(kind, image_size, num_blocks)
    truth = shepp_logan(image_size)
    x = truth.to(device).expand(1, *A.image_shape).contiguous()
    y = A.forward(x)
    g = LeastSquares(A, y)
    x = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
    quarter = UniformSampler(A.num_blocks, batch_size_for(A.num_blocks, 0.25))(torch.Generator().manual_seed(0))
    ms = functools.partial(median_ms, repeat=repeat, warmup=warmup)
    record = {"operator": type(A).__name__, "image_size": image_size, "num_blocks": A.num_blocks,
              "threads": torch.get_num_threads(), "forward_ms": ms(lambda: A.forward(x)),
              "adjoint_ms": ms(lambda: A.adjoint(y)), "grad_full_ms": ms(lambda: g.grad(x)),
              "grad_quarter_ms": ms(lambda: g.grad(x, quarter)), "operator_mib": stored_bytes(A) / 2**20}
    for name, blocks in (("full", None), ("quarter", quarter)):
        with PeakTensorMemory(device) as mem:
            g.grad(x, blocks)
        record[f"grad_{name}_peak_mib"] = mem.peak_bytes / 2**20
    record["quarter_over_full"] = record["grad_quarter_ms"] / record["grad_full_ms"]
    if kind == "ct":
        image, theta = truth[0, 0].numpy(), A.angles.numpy()
        record["skimage_radon_ms"] = median_ms(lambda: radon(image, theta, circle=False),
                                               repeat=max(1, repeat // 2), warmup=min(1, warmup))
    return record


def main(args) -> int:
    device = as_device(args.device, "--device")
    check_out(args.out)
    counts, default_threads = thread_counts(args.threads), torch.get_num_threads()
    cases, repeat, warmup = (QUICK_CASES, 2, 0) if args.quick else (CASES, 7, 2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    records = []
    for threads in counts:
        torch.set_num_threads(threads)
        for kind, size, blocks in cases:
            record = measure(kind, size, blocks, device, repeat, warmup)
            records.append(record)
            print(f"{record['operator']} {size}² B={blocks}, {threads} threads: forward {record['forward_ms']:.2f} ms, "
                  f"adjoint {record['adjoint_ms']:.2f} ms", flush=True)
    torch.set_num_threads(default_threads)
    caption = (f"Medians of {repeat} runs after {warmup} warm-ups, one float32 image on {device}, one record per "
               f"torch thread count (1-minute load average {load:.1f} at the start). grad_quarter: b/B = 1/4 "
               f"uniform blocks, B/b scaling included; *_peak_mib: peak tensor memory of one gradient.")
    write_results("physics", records, args, caption)
    return 0
