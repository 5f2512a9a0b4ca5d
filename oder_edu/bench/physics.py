"""``oder-edu bench physics``: speed and memory of the blocked forward models.

For each operator: forward, adjoint, full gradient and minibatch gradient at b/B = 1/4
(``UniformSampler``) as medians of repeated runs on one float32 image; the memory the
operator itself holds (its stored tensors); the peak tensor memory of one full gradient;
and for CT the time of scikit-image's ``radon`` on the same image and angles, measured in
the same run. Targets (DESIGN.md, issue 3), on a 2-core CPU: CT 128²/180 forward +
adjoint <= 20 ms, 256²/180 <= 120 ms; >= 20x faster than skimage's radon forward;
grad_quarter / grad_full <= 0.35; the 512²/90 operator holds <= 1 GB.
"""

from __future__ import annotations

import os

import torch

from . import DEFAULT_OUT, median_ms, write_results

CASES = [("ct", 128, 90), ("ct", 128, 180), ("ct", 256, 90), ("ct", 256, 180), ("ct", 512, 90),
         ("mri", 128, 8), ("idt", 128, 64)]
QUICK_CASES = [("ct", 16, 8), ("mri", 16, 2), ("idt", 16, 4)]


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny cases, few repeats (for tests)")
    parser.add_argument("--device", default=None, help="torch device (default: oder_edu.device.default_device())")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core)")


def make_operator(kind: str, image_size: int, num_blocks: int):
    """The operator of one case: CT with ``num_blocks`` angles, MRI coils or IDT LEDs."""
    if kind == "ct":
        from ..physics.ct import ParallelBeamCT

        return ParallelBeamCT(image_size, num_angles=num_blocks)
    if kind == "mri":
        from ..physics.mri import MultiCoilMRI

        return MultiCoilMRI(image_size=image_size, num_coils=num_blocks, acceleration=4)
    if kind == "idt":
        from ..physics.idt import IntensityDiffractionTomography

        return IntensityDiffractionTomography(image_size=image_size, num_leds=num_blocks)
    raise ValueError(f"unknown operator kind {kind!r}")


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


def phantom(image_size: int) -> torch.Tensor:
    """Shepp-Logan phantom ``[1, 1, n, n]`` (float32, scikit-image's bundled data), zero
    outside the inscribed circle."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    image = torch.from_numpy(resize(shepp_logan_phantom(), (image_size, image_size), anti_aliasing=True))
    # zero outside the inscribed circle, as skimage's radon(circle=True) requires
    r = torch.arange(image_size) - image_size // 2
    image[r[:, None] ** 2 + r[None, :] ** 2 > (image_size // 2) ** 2] = 0
    return image.float()[None, None]


def measure(kind: str, image_size: int, num_blocks: int, device: torch.device, repeat: int, warmup: int) -> dict:
    from ..memory import PeakTensorMemory
    from ..physics import LeastSquares, UniformSampler, batch_size_for

    A = make_operator(kind, image_size, num_blocks)
    truth = phantom(image_size)
    x = truth.to(device).expand(1, *A.image_shape).contiguous()
    y = A.forward(x)
    g = LeastSquares(A, y)
    x = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
    sampler = UniformSampler(A.num_blocks, batch_size_for(A.num_blocks, 0.25))
    gen = torch.Generator().manual_seed(0)
    timing = {"repeat": repeat, "warmup": warmup}
    record = {
        "operator": type(A).__name__,
        "image_size": image_size,
        "num_blocks": A.num_blocks,
        "forward_ms": median_ms(lambda: A.forward(x), **timing),
        "adjoint_ms": median_ms(lambda: A.adjoint(y), **timing),
        "grad_full_ms": median_ms(lambda: g.grad(x), **timing),
        "grad_quarter_ms": median_ms(lambda: g.grad(x, sampler(gen).to(device)), **timing),
    }
    with PeakTensorMemory(device) as mem:
        g.grad(x)
    record["operator_mib"] = stored_bytes(A) / 2**20
    record["peak_mib"] = mem.peak_bytes / 2**20
    record["quarter_over_full"] = record["grad_quarter_ms"] / record["grad_full_ms"]
    if kind == "ct":
        from skimage.transform import radon

        image, theta = truth[0, 0].numpy(), A.angles.numpy()
        record["skimage_radon_ms"] = median_ms(lambda: radon(image, theta, circle=True),
                                               repeat=max(1, repeat // 2), warmup=min(1, warmup))
        record["radon_speedup"] = record["skimage_radon_ms"] / record["forward_ms"]
    return record


def main(args) -> int:
    from ..device import default_device

    device = torch.device(args.device) if args.device else default_device()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    quick = getattr(args, "quick", False)
    cases = QUICK_CASES if quick else CASES
    repeat, warmup = (2, 0) if quick else (7, 2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    records = []
    for kind, size, blocks in cases:
        record = measure(kind, size, blocks, device, repeat, warmup)
        records.append(record)
        print(f"{record['operator']} {size}² B={blocks}: forward {record['forward_ms']:.2f} ms, "
              f"adjoint {record['adjoint_ms']:.2f} ms", flush=True)
    caption = (
        f"Medians of {repeat} runs after {warmup} warm-up runs, one float32 image on {device} with "
        f"{torch.get_num_threads()} torch threads (1-minute load average {load:.1f} at the start). "
        "grad_quarter draws b/B = 1/4 blocks with UniformSampler and includes the B/b scaling. "
        "operator_mib: the operator's stored tensors; peak_mib: peak tensor memory of one full "
        "gradient (PeakTensorMemory). skimage_radon_ms: skimage.transform.radon(circle=True) "
        "on the same float32 image and angles, in the same run. Targets on a 2-core "
        "CPU: CT 128²/180 forward + adjoint <= 20 ms, 256²/180 <= 120 ms, radon_speedup >= 20, "
        "quarter_over_full <= 0.35, 512²/90 operator <= 1024 MiB."
    )
    command = "oder-edu bench physics" + (" --quick" if quick else "")
    if getattr(args, "threads", None):
        command += f" --threads {args.threads}"
    write_results("physics", records, args.out, caption, command=command)
    return 0
