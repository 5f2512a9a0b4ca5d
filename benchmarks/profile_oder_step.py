"""Profile one RED-DEQ and one ODER (b/B = 1/4) training step on CUDA at the paper's CT setting.

For each: the step's wall time, the time the GPU spent in kernels and how many kernels it
launched (torch.profiler), the top kernels, and one R_theta application against one full
data gradient. It explains where ``oder-edu bench oder`` on a GPU spends a step (the bench's
setting: 512², 90 angles, 10 forward and 10 backward iterations). Run on a CUDA machine
from the repository root:

    PYTHONPATH=. python3 benchmarks/profile_oder_step.py

Its output on an H100 is kept in ``benchmarks/results/gpu/profile_oder_step.txt``.
"""

import functools

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from oder_edu.bench import median_ms
from oder_edu.deq import REDDEQ, make_prior
from oder_edu.physics import LeastSquares
from oder_edu.train.deq import initial_image, make_operator, simulate, train_step, training_batch


def main() -> None:
    device = torch.device("cuda")
    print(torch.cuda.get_device_name(device), torch.__version__)
    A = make_operator("ct", 512, 90)
    generator = torch.Generator().manual_seed(0)
    x = training_batch("ct", 1, 512, generator)
    y = simulate(A, x, 50.0, generator)
    x, y = x.to(device), y.to(device)
    x0, g = initial_image("ct", A, y), LeastSquares(A, y)
    L = A.norm() ** 2
    for ratio in (1.0, 0.25):
        torch.manual_seed(0)
        denoiser, scale = make_prior("dncnn")
        model = REDDEQ(denoiser, 0.05, gamma=1 / (1.1 * L), tau=0.1 * L * scale, batch_ratio=ratio, max_iter=10,
                       tol=0.0, backward_max_iter=10, backward_tol=0.0).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
        step = functools.partial(train_step, model, optimizer, x, x0, g, generator, measure_memory=False)
        print(f"\nb/B = {ratio:g}: step wall time {median_ms(step, repeat=10):.1f} ms (median of 10, no profiler)")
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e3
        print(f"under the profiler: {len(kernels)} kernels, {busy:.1f} ms of kernel time")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=32))
        with torch.no_grad(), torch.nn.utils.parametrize.cached():
            r_ms = median_ms(lambda: model.f.denoiser.residual(x0, 0.05), repeat=20)
            g_ms = median_ms(lambda: g.grad(x0), repeat=20)
        print(f"one R_theta application {r_ms:.2f} ms, one full data gradient A^T (A x - y) {g_ms:.2f} ms")


if __name__ == "__main__":
    main()
