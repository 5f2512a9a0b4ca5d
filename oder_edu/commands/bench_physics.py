"""``oder-edu bench physics``: speed and memory of the blocked forward models.

For each operator (``problems.make_operator``) and each torch thread count: forward, adjoint,
full gradient and minibatch gradient at b/B = 1/4 (``UniformSampler``), medians of repeated
runs on one float32 image; the memory the operator holds; the peak tensor memory of one full
and one minibatch gradient; and for CT scikit-image's ``radon`` on the same image and angles.
The small cases show the per-call overhead (validation once per call).
"""

from __future__ import annotations

import os

import torch

from .. import checks
from ..cli import command_line
from ..timing import median_ms
from .results import DEFAULT_OUT, check_out, write_results

CASES = [("ct", 128, 90), ("ct", 128, 180), ("ct", 256, 90), ("ct", 256, 180), ("ct", 512, 90),
         ("mri", 128, 8), ("mri", 64, 32), ("idt", 128, 64), ("idt", 64, 256),
         ("ct", 64, 4), ("mri", 32, 4), ("idt", 32, 4)]
QUICK_CASES = [("ct", 16, 8), ("mri", 16, 2), ("idt", 16, 4)]


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny cases, few repeats (for tests)")
    parser.add_argument("--device", default=None, help="torch device (default: oder_edu.device.default_device())")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch CPU thread counts, one record each (default: torch's choice, then 1)")


def stored_bytes(A) -> int:
    """Bytes of the distinct tensor storages an operator object holds (attributes, dicts,
    lists; a sparse CSR tensor counts its index and value arrays, views counted once)."""
    storages: dict[tuple, int] = {}

    def visit(value):
        if torch.is_tensor(value) and value.layout == torch.sparse_csr:
            visit([value.crow_indices(), value.col_indices(), value.values()])
        elif torch.is_tensor(value):
            s = value.untyped_storage()
            storages[(value.device, s.data_ptr())] = s.nbytes()
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)

    for value in vars(A).values():
        visit(value)
    return sum(storages.values())


def measure(kind: str, image_size: int, num_blocks: int, device: torch.device, repeat: int, warmup: int) -> dict:
    from ..memory import PeakTensorMemory
    from ..phantoms import shepp_logan
    from ..physics import LeastSquares, UniformSampler, batch_size_for
    from ..problems import make_operator

    A = make_operator(kind, image_size, num_blocks)
    truth = shepp_logan(image_size)
    x = truth.to(device).expand(1, *A.image_shape).contiguous()
    y = A.forward(x)
    g = LeastSquares(A, y)
    x = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
    quarter = UniformSampler(A.num_blocks, batch_size_for(A.num_blocks, 0.25))(torch.Generator().manual_seed(0))
    timing = {"repeat": repeat, "warmup": warmup}
    record = {
        "operator": type(A).__name__, "image_size": image_size, "num_blocks": A.num_blocks,
        "threads": torch.get_num_threads(),
        "forward_ms": median_ms(lambda: A.forward(x), **timing),
        "adjoint_ms": median_ms(lambda: A.adjoint(y), **timing),
        "grad_full_ms": median_ms(lambda: g.grad(x), **timing),
        "grad_quarter_ms": median_ms(lambda: g.grad(x, quarter), **timing),
    }
    peaks = {}
    for name, blocks in (("full", None), ("quarter", quarter)):
        with PeakTensorMemory(device) as mem:
            g.grad(x, blocks)
        peaks[name] = mem.peak_bytes / 2**20
    record.update(operator_mib=stored_bytes(A) / 2**20, grad_full_peak_mib=peaks["full"],
                  grad_quarter_peak_mib=peaks["quarter"],
                  quarter_over_full=record["grad_quarter_ms"] / record["grad_full_ms"])
    if kind == "ct":
        from skimage.transform import radon

        image, theta = truth[0, 0].numpy(), A.angles.numpy()
        record["skimage_radon_ms"] = median_ms(lambda: radon(image, theta, circle=False),
                                               repeat=max(1, repeat // 2), warmup=min(1, warmup))
    return record


def main(args) -> int:
    from ..device import as_device

    device = as_device(args.device)
    check_out(args.out)
    for threads in args.threads or []:
        checks.integer("--threads", threads, 1)
    default_threads = torch.get_num_threads()
    cases = QUICK_CASES if args.quick else CASES
    repeat, warmup = (2, 0) if args.quick else (7, 2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    records = []
    for threads in dict.fromkeys(args.threads or [default_threads, 1]):
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
    write_results("physics", records, args.out, caption, command_line(args))
    return 0
