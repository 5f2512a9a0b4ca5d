"""Training RED-DEQ / ODER: steps lower the loss, logs and checkpoints round-trip, a resumed
run equals an uninterrupted one, and bad configurations fail before any work is done."""

import csv
import json

import pytest
import torch

from oder_edu import cli
from oder_edu.physics import LeastSquares
from oder_edu.train import deq as train_deq


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = ["--app", "ct", "--image-size", "32", "--num-blocks", "24", "--pretrained", "none", "--depth", "3",
        "--width", "8", "--batch-size", "2", "--max-iter", "10", "--backward-max-iter", "10",
        "--val-images", "2", "--no-progress"]


def tiny_config(method="full", ratio=1.0):
    return {"app": "ct", "image_size": 32, "num_blocks": 24, "method": method, "batch_ratio": ratio,
            "resample": "call", "sampler": "uniform", "sigma": 0.05, "solver": "anderson",
            "backward": "unrolled" if method == "unrolled" else "implicit", "max_iter": 15, "tol": 1e-4,
            "backward_max_iter": 15, "backward_tol": 1e-4, "unroll_iter": 6, "snr_db": 50.0,
            "pretrained": None, "depth": 3, "width": 8, "tau_scale": 0.5}


def tiny_problem(seed=0):
    A = train_deq.make_operator("ct", 32, 24)
    gen = torch.Generator().manual_seed(seed)
    x = train_deq.training_batch("ct", 2, 32, gen)
    y = train_deq.simulate(A, x, 50.0, gen)
    return A, x, y, train_deq.initial_image("ct", A, y)


@pytest.mark.parametrize("method, ratio", [("full", 1.0), ("oder", 0.25), ("unrolled", 1.0)])
def test_a_few_steps_lower_the_loss(method, ratio):
    A, x, y, x0 = tiny_problem()
    g = LeastSquares(A, y)
    torch.manual_seed(0)
    model = train_deq.build_model(tiny_config(method, ratio), A)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss():  # on the training batch, the same block draw every time
        with torch.no_grad():
            return (model(x0, g, generator=torch.Generator().manual_seed(5)) - x).square().mean().item()

    before = loss()
    rows = [train_deq.train_step(model, optimizer, x, x0, g, torch.Generator().manual_seed(5)) for _ in range(6)]
    assert loss() < 0.9 * before
    assert all(r["peak_mib"] > 0 and r["forward_iters"] >= 1 for r in rows)
    assert all((r["backward_iters"] >= 1) == (method != "unrolled") for r in rows)


@pytest.mark.parametrize("app", ["mri", "idt"])
def test_every_app_takes_a_training_step(app):
    A = train_deq.make_operator(app, 16, 4)
    gen = torch.Generator().manual_seed(0)
    x = train_deq.training_batch(app, 2, 16, gen)
    y = train_deq.simulate(A, x, 40.0, gen)
    x0 = train_deq.initial_image(app, A, y)
    assert x0.shape == x.shape and x0.dtype == x.dtype
    config = {**tiny_config("oder", 0.5), "app": app, "image_size": 16, "num_blocks": 4, "tau_scale": 1.0}
    torch.manual_seed(0)
    model = train_deq.build_model(config, A)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    row = train_deq.train_step(model, optimizer, x, x0, LeastSquares(A, y), gen)
    assert row["loss"] > 0 and row["backward_iters"] >= 1
    assert all(p.grad is not None for p in model.parameters())


def test_weights_round_trip(tmp_path):
    A, x, y, x0 = tiny_problem()
    config = {**tiny_config("oder", 0.25)}
    torch.manual_seed(0)
    model = train_deq.build_model(config, A)
    with torch.no_grad():  # move gamma, tau and the network away from their initial values
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    config["denoiser"] = model.f.denoiser.config()
    train_deq.save_weights(tmp_path / "m.pt", model, config, {"val_psnr": 1.0})
    loaded = train_deq.load_model(tmp_path / "m.pt")
    assert loaded.batch_ratio == 0.25 and loaded.max_iter == 15
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    g = LeastSquares(A, y)
    model.eval()
    with torch.no_grad():
        expected = model(x0, g, generator=torch.Generator().manual_seed(1))
        got = loaded(x0, g, generator=torch.Generator().manual_seed(1))
    assert torch.equal(expected, got)


def test_command_logs_records_and_resumes(tmp_path):
    straight, first = tmp_path / "straight", tmp_path / "first"
    assert cli.main(["train", "deq", *TINY, "--method", "oder", "--steps", "3", "--log-dir", str(straight)]) == 0
    rows = list(csv.DictReader(open(straight / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert set(train_deq.LOG_COLUMNS) == set(rows[0])
    assert all(float(r["peak_mib"]) > 0 and int(r["forward_iters"]) > 0 and int(r["backward_iters"]) > 0
               for r in rows)
    summary = json.loads((straight / "log.json").read_text())
    manifest = json.loads((straight / "MANIFEST.json").read_text())["model"]
    assert manifest["command"].startswith("oder-edu train deq") and "--method oder" in manifest["command"]
    assert manifest["metrics"]["val_psnr"] > 0 and summary["metrics"] == manifest["metrics"]

    # Two steps, a checkpoint, then one more step from it: the same weights as three in a row.
    cli.main(["train", "deq", *TINY, "--method", "oder", "--steps", "2", "--checkpoint-every", "2",
              "--log-dir", str(first)])
    cli.main(["train", "deq", *TINY, "--method", "oder", "--steps", "3", "--log-dir", str(first),
              "--resume", str(first / "checkpoint.pt")])
    resumed = json.loads((first / "log.json").read_text())
    assert [r["step"] for r in resumed["rows"]] == [1, 2, 3]
    assert resumed["replicas"][0]["digest"] == summary["replicas"][0]["digest"]


@pytest.mark.parametrize("bad, message", [
    (["--ratio", "0"], "ratio"), (["--ratio", "1.5"], "ratio"), (["--method", "oder", "--ratio", "1"], "ratio"),
    (["--tau-scale", "0"], "tau-scale"), (["--tau-scale", "-1"], "tau-scale"), (["--sigma", "-0.1"], "sigma"),
    (["--steps", "0"], "steps"), (["--lr", "nan"], "lr"),
])
def test_bad_configuration_is_rejected(bad, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        cli.main(["train", "deq", *TINY, "--log-dir", str(tmp_path), *bad])
    assert not (tmp_path / "log.csv").exists()
