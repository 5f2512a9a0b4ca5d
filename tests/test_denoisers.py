"""Denoisers: the DnCNN interface and its certified Lipschitz bound, TV as an exact prox,
Gaussian smoothing, loading by name or path (checked kind and device), the shipped weights and
the quality bar against TV.

The shipped-weights tests (``load_denoiser("dncnn")``, ``"dncnn_small"``) need the files that
``oder-edu train denoiser`` writes into oder_edu/weights."""

import pytest
import torch
import torch.nn.functional as F

from oder_edu import checkpoints
from oder_edu.denoisers import (
    ClassicalDenoiser, DnCNN, gaussian_denoise, gradient, gradient_adjoint, load_denoiser, total_variation,
    tv_denoise, tv_objective,
)
from oder_edu.denoisers.dncnn import operator_norm_bound
from oder_edu.denoisers.pretrained import from_config
from oder_edu.metrics import psnr
from oder_edu.phantoms import validation_phantoms
from oder_edu.train.denoiser import VALIDATION_SIGMAS, best_tv_psnr, denoise_psnr

pytestmark = pytest.mark.usefixtures("one_thread")


def _noisy(x, sigma, seed=0):
    return x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)


@pytest.fixture(scope="module")
def phantoms():
    return validation_phantoms(8, 64)


# --- DnCNN interface -----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 17, 23), (3, 1, 32, 40)])
def test_dncnn_any_size_and_residual(shape):
    torch.manual_seed(0)
    D = DnCNN().eval()
    x = torch.rand(shape)
    out = D(x, 0.1)
    assert out.shape == x.shape
    assert torch.allclose(D.residual(x, 0.1), x - out, atol=1e-6)
    per_image = torch.full((shape[0],), 0.1)
    assert torch.allclose(D(x, per_image), out, atol=1e-6)
    # sigma really enters the network
    assert not torch.allclose(D(x, 0.0), D(x, 0.2))


def test_dncnn_two_channels_and_float64():
    D = DnCNN(channels=2, depth=3, width=8).double()
    x = torch.rand(2, 2, 16, 16, dtype=torch.float64)
    assert D(x, torch.tensor([0.0, 0.2])).dtype == torch.float64


@pytest.mark.parametrize(
    "sigma, error, match",
    [
        (-0.1, ValueError, ">= 0"),
        (float("nan"), ValueError, "finite"),
        (float("inf"), ValueError, "finite"),
        (torch.tensor([0.1, 0.1, 0.1]), ValueError, r"shape \[2\]"),
        (torch.tensor([[0.1], [0.1]]), ValueError, r"shape \[2\]"),
        ("0.1", TypeError, "float or a tensor"),
        (True, TypeError, "float or a tensor"),
    ],
)
def test_dncnn_rejects_bad_sigma(sigma, error, match):
    D = DnCNN(depth=2, width=4)
    with pytest.raises(error, match=match):
        D(torch.rand(2, 1, 8, 8), sigma)


def test_dncnn_rejects_bad_images():
    D = DnCNN(depth=2, width=4)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        D(torch.rand(1, 8, 8), 0.1)
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        D(torch.rand(1, 3, 8, 8), 0.1)
    with pytest.raises(TypeError, match="floating-point"):
        D(torch.ones(1, 1, 8, 8, dtype=torch.int64), 0.1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        D(torch.full((1, 1, 8, 8), float("nan")), 0.1)
    with pytest.raises(ValueError, match="float64"):
        D(torch.rand(1, 1, 8, 8, dtype=torch.float64), 0.1)


# --- Lipschitz bound ----------------------------------------------------------------


def _conv_norm(conv_weight, size=48, iterations=40):
    """||conv|| on size x size images with zero padding, by power iteration on conv^T conv."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, conv_weight.shape[1], size, size, generator=gen, dtype=torch.float64)
    for _ in range(iterations):
        y = F.conv_transpose2d(F.conv2d(x, conv_weight, padding=1), conv_weight, padding=1)
        x = y / y.norm()
    return F.conv2d(x, conv_weight, padding=1).norm().item()


def test_operator_norm_bound_is_an_upper_bound_close_to_the_true_norm():
    """operator_norm_bound: the l2(Z²) norm from a frequency grid divided by cos(π/grid)²: above
    the norm on any finite image (power iteration, 48²), within the grid's gap, and exact for a
    kernel whose symbol peaks on the grid (the identity: norm 1)."""
    torch.manual_seed(2)
    for shape in ((8, 2, 3, 3), (4, 4, 3, 3), (1, 8, 3, 3)):
        w = torch.randn(shape, dtype=torch.float64)
        bound = operator_norm_bound(w).item()
        assert _conv_norm(w) <= bound <= _conv_norm(w) / torch.cos(torch.tensor(torch.pi / 16)).item() ** 2 * 1.05
    identity = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    identity[0, 0, 1, 1] = 1.0
    assert operator_norm_bound(identity, grid=64).item() == pytest.approx(1 / torch.cos(torch.tensor(torch.pi / 64)).item() ** 2)


def test_lipschitz_bound_is_a_tight_product_of_layer_norms():
    """lipschitz_bound = Π_l ||conv_l|| (the first layer restricted to the image channel: σ's
    channel does not depend on x), each from operator_norm_bound: above and close to the product
    of the layers' norms measured by power iteration."""
    torch.manual_seed(1)
    D = DnCNN(depth=4, width=8).eval()
    convs = [m for m in D.body if isinstance(m, torch.nn.Conv2d)]
    weights = [c.weight.detach().double() for c in convs]
    weights[0] = weights[0][:, :1]  # the sigma channel does not depend on x
    product = 1.0
    for w in weights:
        product *= _conv_norm(w)
    bound = D.lipschitz_bound()
    # Power iteration gives each layer's norm on 48^2 images from below; the bound is the
    # l2(Z^2) norm plus the grid's worst-case gap, so it is above and close.
    assert product <= bound <= 1.25 * product
    with torch.no_grad():  # the σ channel's weights do not enter the bound
        convs[0].weight[:, 1:] *= 100
    assert D.lipschitz_bound() == pytest.approx(bound, rel=1e-12)
    with pytest.raises(ValueError, match="grid"):
        D.lipschitz_bound(grid=2)


def _briefly_trained(phantoms, steps=15):
    """A DnCNN after a few Adam steps, so the bound is tested on a non-trivial residual."""
    torch.manual_seed(0)
    D = DnCNN(depth=5, width=16)
    optimizer = torch.optim.Adam(D.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    clean = phantoms[:4, :, :32, :32]
    for _ in range(steps):
        noise = 0.1 * torch.randn(clean.shape, generator=gen)
        loss = (D.residual(clean + noise, 0.1) - noise).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return D.eval()


def test_local_lipschitz_estimates_never_exceed_the_certified_bound(phantoms):
    """Difference quotients of R near and far, and the local Jacobian norm ||J_R(x)||₂ (power
    iteration on JᵀJ by jvp/vjp) of a trained network, at several σ: all below lipschitz_bound(),
    which certifies every σ and image size."""
    D = _briefly_trained(phantoms)
    bound = D.lipschitz_bound()
    x = _noisy(phantoms[:1], 0.1)
    ratios = []
    for sigma in (0.0, 0.2):
        R = lambda z: D.residual(z, sigma).detach()  # noqa: E731,B023
        for scale in (1e-2, 1e-1, 1.0):
            z = _noisy(x, scale, seed=5)
            ratios.append(((R(x) - R(z)).norm() / (x - z).norm()).item())
        residual = lambda z: D.residual(z, sigma)  # noqa: E731,B023
        _, vjp = torch.func.vjp(residual, x)
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
        for _ in range(10):
            _, jv = torch.func.jvp(residual, (x,), (v / v.norm(),))
            v = vjp(jv)[0].detach()
        v = v / v.norm()
        ratios.append(torch.func.jvp(residual, (x,), (v,))[1].norm().item())  # ||J v|| for the top v
    assert max(ratios) <= bound
    assert max(ratios) > 0.05  # the network is not trivially flat, so the check has teeth


def test_the_bound_follows_training():
    """The bound is computed from the weights in use: training changes it (it is not a stored
    number), and it stays finite and positive."""
    torch.manual_seed(0)
    before = DnCNN(depth=5, width=16).lipschitz_bound()
    after = _briefly_trained(validation_phantoms(4, 32)).lipschitz_bound()
    assert 0 < before != after > 0


# --- TV ------------------------------------------------------------------------------


def test_gradient_adjoint_is_the_adjoint():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    p = torch.randn(2, 3, 2, 9, 11, generator=gen, dtype=torch.float64)
    assert torch.allclose((gradient(x) * p).sum(), (x * gradient_adjoint(p)).sum())


def test_tv_denoise_is_the_prox_and_matches_skimage(phantoms):
    from skimage.restoration import denoise_tv_chambolle

    lam = 0.1
    v = _noisy(phantoms[:1].double(), 0.1)
    x = tv_denoise(v, lam, num_iter=1000)
    # skimage's denoise_tv_chambolle(image, weight) minimizes 1/2 ||x - v||^2 + weight TV(x)
    # with the same forward differences: weight = lam.
    reference = denoise_tv_chambolle(v[0, 0].numpy(), weight=lam, eps=1e-10, max_num_iter=5000)
    reference = torch.from_numpy(reference)[None, None]
    assert (x - reference).abs().max() < 1e-3
    objective = tv_objective(x, v, lam).item()
    assert objective <= tv_objective(reference, v, lam).item() + 1e-3
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        nearby = x + 1e-2 * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        assert objective < tv_objective(nearby, v, lam).item()


def test_tv_denoise_per_image_lam_and_zero(phantoms):
    v = _noisy(phantoms[:2], 0.1)
    both = tv_denoise(v, torch.tensor([0.0, 0.1]), num_iter=50)
    assert torch.equal(both[0], v[0])  # lam = 0 is the identity
    assert torch.allclose(both[1:], tv_denoise(v[1:], 0.1, num_iter=50), atol=1e-6)
    assert (total_variation(both[1:]) < total_variation(v[1:])).all()


def test_tv_denoise_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        tv_denoise(torch.rand(1, 1, 8, 8), -1.0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        tv_denoise(torch.rand(8, 8), 0.1)
    with pytest.raises(ValueError, match="num_iter"):
        tv_denoise(torch.rand(1, 1, 8, 8), 0.1, num_iter=-3)


# --- Gaussian --------------------------------------------------------------------------


def test_gaussian_denoise_basic_properties():
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(gaussian_denoise(x, 0.0), x)
    constant = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(gaussian_denoise(constant, 0.2), constant)
    smoothed = gaussian_denoise(x, torch.tensor([0.0, 0.2]))
    assert torch.allclose(smoothed[0], x[0]) and total_variation(smoothed[1:]) < total_variation(x[1:])
    with pytest.raises(ValueError, match="finite"):
        gaussian_denoise(x, float("nan"))


def test_gaussian_strength_mapping_is_near_the_best_std(phantoms):
    for sigma in (0.05, 0.1, 0.2):
        y = _noisy(phantoms, sigma)
        mapped = psnr(gaussian_denoise(y, sigma), phantoms).mean().item()
        best = max(psnr(gaussian_denoise(y, sigma, std=s), phantoms).mean().item()
                   for s in (0.3, 0.5, 0.7, 0.9, 1.2, 1.5, 2.0))
        assert mapped > best - 0.5, (sigma, mapped, best)


# --- loading by name or path ----------------------------------------------------------


def test_a_saved_denoiser_loads_from_its_path_and_denoises_identically(tmp_path):
    """save_state + load_denoiser(path): the architecture comes from the stored config, the
    weights from the state dict; the loaded net is in eval mode and gives the same output."""
    torch.manual_seed(0)
    net = DnCNN(depth=3, width=8, sigma_range=(0.0, 0.1)).eval()
    path = checkpoints.save_state(tmp_path / "mine.pt", "denoiser", net.config(), net, {"note": 1})
    loaded = load_denoiser(str(path), device="cpu")
    assert isinstance(loaded, DnCNN) and not loaded.training
    assert loaded.config() == net.config() == {"architecture": "dncnn", "channels": 1, "depth": 3, "width": 8,
                                               "sigma_range": [0.0, 0.1]}
    x = torch.rand(2, 1, 12, 12)
    assert torch.equal(loaded(x, 0.05), net(x, 0.05))
    assert from_config(net.config()).config() == net.config()  # the config rebuilds the architecture


@pytest.mark.parametrize("device, error, match", [
    ("gpu", ValueError, "not a device name"),
    (5, TypeError, "device name such as 'cpu'"),
    ("cuda:99", ValueError, "not available|CUDA device"),
])
def test_load_denoiser_refuses_unknown_devices(device, error, match):
    """The device is checked (device.as_device) before anything is loaded, for every name."""
    for name in ("gaussian", "tv"):
        with pytest.raises(error, match=match):
            load_denoiser(name, device=device)


def test_load_denoiser_refuses_cuda_when_it_is_unavailable():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match=r"device='cuda' is not available on this machine; available: .*cpu"):
        load_denoiser("gaussian", device="cuda")


def test_load_denoiser_unknown_name():
    with pytest.raises(checkpoints.CheckpointError, match="no weights named 'nope'"):
        load_denoiser("nope", device="cpu")


def test_classical_denoisers_share_the_interface():
    x = _noisy(validation_phantoms(2, 32, seed=9), 0.1)
    for name in ("tv", "gaussian"):
        D = load_denoiser(name, device="cpu")
        assert isinstance(D, ClassicalDenoiser) and not D.training
        out = D(x, 0.1)
        assert out.shape == x.shape and torch.allclose(D.residual(x, 0.1), x - out)
        assert psnr(out.clamp(0, 1), validation_phantoms(2, 32, seed=9)).mean() > psnr(x.clamp(0, 1), validation_phantoms(2, 32, seed=9)).mean()
        with pytest.raises(ValueError, match=">= 0"):
            D(x, -0.1)
    with pytest.raises(ValueError, match="kind must be one of 'tv', 'gaussian', 'bm3d'"):
        ClassicalDenoiser("nlm")


# --- shipped weights (written by `oder-edu train denoiser`) ------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_denoiser("dncnn", device="cpu")


def test_shipped_denoisers_load_and_match_their_manifest_entries():
    """dncnn and dncnn_small: sha256-checked files of kind "denoiser" whose architecture, parameter
    count, σ range and certified bound are what the manifest records."""
    manifest = checkpoints.read_manifest()
    for name, depth, width in (("dncnn", 7, 32), ("dncnn_small", 5, 16)):
        net = load_denoiser(name, device="cpu")
        entry = manifest[name]
        assert isinstance(net, DnCNN) and not net.training and (net.depth, net.width) == (depth, width)
        assert checkpoints.load_state(name)["kind"] == "denoiser"
        assert entry["parameters"] == sum(p.numel() for p in net.parameters())
        config = entry["config"]
        assert (config["depth"], config["width"]) == (depth, width)
        assert list(net.sigma_range) == [config["sigma_min"], config["sigma_max"]]
        assert entry["metrics"]["lipschitz_bound"] == pytest.approx(net.lipschitz_bound(), rel=1e-3)
        for rows in entry["metrics"]["validation"].values():
            assert rows["sigma"] == list(VALIDATION_SIGMAS)


def test_manifest_psnr_is_reproducible(shipped):
    """The recorded validation PSNR on the phantoms at σ = 0.1 is what the shipped file gives today."""
    rows = checkpoints.read_manifest()["dncnn"]["metrics"]["validation"]["phantoms"]
    recorded = rows["denoiser"][rows["sigma"].index(0.1)]
    assert denoise_psnr(shipped, validation_phantoms(8, 128), 0.1) == pytest.approx(recorded, abs=0.02)


def test_shipped_dncnn_beats_best_tv(shipped):
    """On held-out phantoms (neither the training nor the manifest's seed) at σ = 0.1 the shipped
    DnCNN beats TV at its best weight by at least 0.5 dB (dncnn_small, a quarter of its size,
    measures +0.8 dB here)."""
    images = validation_phantoms(8, 96, seed=7)
    dncnn = denoise_psnr(shipped, images, 0.1, seed=11)
    tv, lam = best_tv_psnr(images, 0.1, num_iter=150)
    assert dncnn >= tv + 0.5, f"DnCNN {dncnn:.2f} dB vs TV {tv:.2f} dB (lam = {lam})"


def test_shipped_dncnn_improves_every_sigma(shipped):
    images = validation_phantoms(4, 64, seed=8)
    for sigma in (0.025, 0.1, 0.2):
        noisy = psnr(_noisy(images, sigma, seed=3).clamp(0, 1), images).mean().item()
        assert denoise_psnr(shipped, images, sigma, seed=3) > noisy + 3


# --- procedural data -------------------------------------------------------------------


def test_phantoms_are_seeded_images_in_unit_range():
    from oder_edu import images as I
    from oder_edu import phantoms as P

    for make in (P.random_ellipses, P.random_cells, P.shepp_logan_variations, I.natural_crops, I.training_images):
        a = make(3, 32, torch.Generator().manual_seed(4))
        b = make(3, 32, torch.Generator().manual_seed(4))
        c = make(3, 32, torch.Generator().manual_seed(5))
        assert a.shape == (3, 1, 32, 32) and a.dtype == torch.float32
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.05
    sl = P.shepp_logan(48)
    assert sl.shape == (1, 1, 48, 48) and sl.max() <= 1 and sl.std() > 0.1
    # held-out data does not come from the training seed
    assert not torch.equal(P.validation_phantoms(2, 32), P.random_ellipses(2, 32, torch.Generator().manual_seed(0)))


def test_cells_are_sparse_samples_for_idt():
    """IDT's training and held-out images: cells on an empty background (mean near zero,
    most pixels exactly zero), unlike the body-filling CT phantoms."""
    from oder_edu import phantoms as P
    from oder_edu.deq import held_out
    from oder_edu.images import training_images
    from oder_edu.train.deq import training_mix

    cells = training_images(4, 64, torch.Generator().manual_seed(0), training_mix("idt"))
    body = training_images(4, 64, torch.Generator().manual_seed(0), training_mix("ct"))
    assert cells.mean() < 0.15 < body.mean()
    assert (cells == 0).float().mean() > 0.6 and cells.amax(dim=(1, 2, 3)).min() >= 0.4
    torch.testing.assert_close(held_out("idt", 3, 64), P.validation_phantoms(3, 64, cells=True), rtol=0, atol=0)
    assert not torch.equal(held_out("idt", 2, 64), P.random_cells(2, 64, torch.Generator().manual_seed(0)))
    # other apps: half validation phantoms, half held-out photographs (camera, coins)
    ct = held_out("ct", 4, 64)
    torch.testing.assert_close(ct[:2], P.validation_phantoms(2, 64), rtol=0, atol=0)
    assert ct.shape == (4, 1, 64, 64) and not torch.equal(ct[2:], P.validation_phantoms(4, 64)[2:])


def test_phantoms_reject_bad_arguments():
    from oder_edu import phantoms as P

    with pytest.raises(ValueError, match="n must be"):
        P.random_ellipses(0, 32, torch.Generator())
    from oder_edu.images import training_images

    with pytest.raises(ValueError, match="image_size"):
        training_images(2, 4, torch.Generator())
    with pytest.raises(ValueError, match="mix must map sources"):
        training_images(2, 16, torch.Generator(), {"photos": 1.0})
    with pytest.raises(TypeError, match="Generator"):
        P.random_ellipses(2, 32, 0)
