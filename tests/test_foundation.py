"""Device selection, metrics and measured memory (issue: Foundation)."""

import math

import numpy as np
import pytest
import torch

from oder_edu.device import available_devices, default_device
from oder_edu.memory import PeakTensorMemory, saved_activation_bytes
from oder_edu.metrics import psnr, ssim

MiB = 2**20


# --- device -----------------------------------------------------------------------
def test_default_device_prefers_best_available(monkeypatch):
    monkeypatch.delenv("ODER_EDU_DEVICE", raising=False)
    assert default_device().type == available_devices()[0]
    assert available_devices()[-1] == "cpu"


def test_device_override(monkeypatch):
    monkeypatch.setenv("ODER_EDU_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu7", "banana"])
def test_device_override_unknown_names_available(monkeypatch, name):
    monkeypatch.setenv("ODER_EDU_DEVICE", name)
    with pytest.raises(ValueError, match="available: .*cpu"):
        default_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_device_override_unavailable_cuda(monkeypatch):
    monkeypatch.setenv("ODER_EDU_DEVICE", "cuda")
    with pytest.raises(ValueError, match="not available on this machine; available: .*cpu"):
        default_device()


# --- metrics ----------------------------------------------------------------------
def test_psnr_matches_definition_per_image():
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 1, 16, 16, generator=gen)
    noise = torch.tensor([0.1, 0.01, 0.001]).view(3, 1, 1, 1)
    x = ref + noise  # constant error: MSE = noise**2
    expected = -20 * torch.log10(noise.flatten().double())
    assert torch.allclose(psnr(x, ref), expected, atol=1e-4)
    assert psnr(x, ref, data_range=2.0)[0].item() == pytest.approx(expected[0].item() + 20 * math.log10(2), abs=1e-4)


def test_psnr_ssim_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\).*\(1, 1, 8, 9\)"):
        psnr(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 8\).*\(1, 1, 8, 8\)"):
        ssim(torch.zeros(2, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_ssim_delegates_to_skimage():
    from skimage.data import camera
    from skimage.metrics import structural_similarity

    ref = torch.from_numpy(camera()[::4, ::4] / 255.0)
    noisy = (ref + 0.1 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    want = structural_similarity(noisy.numpy(), ref.numpy(), data_range=1.0)
    got = ssim(noisy[None, None], ref[None, None])
    assert got.shape == (1,)
    assert got.item() == pytest.approx(want, rel=1e-12)
    assert ssim(ref[None, None], ref[None, None]).item() == pytest.approx(1.0)


# --- memory -----------------------------------------------------------------------
def test_peak_matches_analytic_size():
    n = 512 * 512  # float32: 1 MiB per tensor
    with PeakTensorMemory() as mem:
        a = torch.ones(n)
        b = a * 2  # 2 MiB live
        c = a + b  # 3 MiB live: the peak
        del b, c
        d = a * 3  # back to 2 MiB
    assert mem.peak_bytes == pytest.approx(3 * MiB, rel=0.05)
    del a, d


def test_no_grad_loop_peak_stays_flat():
    def run(iterations):
        x = torch.zeros(256, 256)
        with PeakTensorMemory() as mem, torch.no_grad():
            for _ in range(iterations):
                x = 0.5 * x + 1.0
        return mem.peak_bytes

    assert run(5) > 0
    assert run(200) == run(5)


def _unrolled(k):
    w = torch.full((256, 256), 0.5, requires_grad=True)
    x = torch.ones(256, 256)
    with PeakTensorMemory() as mem:
        for _ in range(k):
            x = torch.tanh(w * x)
    return mem.peak_bytes


def test_unrolled_steps_grow_linearly():
    p4, p8, p16 = _unrolled(4), _unrolled(8), _unrolled(16)
    step = 256 * 256 * 4
    # Each differentiable step keeps its output (and tanh's saved result) alive.
    assert p16 - p8 == pytest.approx(2 * (p8 - p4), rel=0.05)
    assert (p8 - p4) / 4 >= step


def test_saved_activation_bytes_counts_unique_storages():
    w = torch.randn(128, 128, requires_grad=True)
    x = torch.randn(128, 128, requires_grad=True)

    def fn():
        h = w @ x  # saves w and x
        return (h * h).sum()  # saves h (once, though used twice)

    assert saved_activation_bytes(fn) == pytest.approx(3 * 128 * 128 * 4, rel=0.05)
