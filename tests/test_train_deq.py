"""Training RED-DEQ / ODER: steps lower the loss for every method and app, the command logs,
records and resumes (a resumed run equals an uninterrupted one), never overwrites weights
unasked, and bad configurations fail before any work is done; the recipe recorded for each shipped
model still takes the first step its shipped log records."""

import csv
import json

import pytest
import torch

from oder_edu import cli
from oder_edu.checkpoints import read_manifest, weights_dir
from oder_edu.deq import ModelConfig, build, load_model, save, train_step
from oder_edu.images import training_images
from oder_edu.physics import LeastSquares
from oder_edu.problems import initial_image, make_operator, simulate
from oder_edu.deq import NonContractiveError
from oder_edu.train import deq as train_deq
from oder_edu.train.deq import LOG_COLUMNS, MAX_SKIPPED, TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--app", "ct", "--image-size", "32", "--num-blocks", "24", "--pretrained", "none", "--depth", "3",
        "--width", "8", "--batch-size", "2", "--max-iter", "10", "--tol", "1e-2", "--backward-max-iter", "10",
        "--val-images", "2", "--no-progress"]


def tiny(method="full", ratio=1.0, app="ct", size=32, blocks=24, **options):
    settings = {"pretrained": None, "depth": 3, "width": 8, "max_iter": 15, "tol": 1e-3, "backward_max_iter": 15,
                "unroll_iter": 6}
    return ModelConfig(app=app, image_size=size, num_blocks=blocks, method=method, batch_ratio=ratio,
                       **(settings | options))


def tiny_problem(app="ct", size=32, blocks=24, seed=0):
    A = make_operator(app, size, blocks)
    gen = torch.Generator().manual_seed(seed)
    x = training_images(2, size, gen)
    y = simulate(A, x, 40.0, gen)
    return A, x, y, initial_image(A, y)


@pytest.mark.parametrize("method, ratio, resample, snapshots", [
    ("full", 1.0, "iteration", 0), ("oder", 0.25, "iteration", 4), ("oder", 0.25, "iteration", 0),
    ("oder", 0.25, "call", 0), ("unrolled", 1.0, "iteration", 0)])
def test_a_few_steps_lower_the_loss(method, ratio, resample, snapshots):
    A, x, y, x0 = tiny_problem()
    g = LeastSquares(A, y)
    torch.manual_seed(0)
    # the variance-reduced and one-S maps are solved to tol (the implicit gradient needs its fixed point):
    # a looser tol for the untrained network, whose minibatch maps contract slowly
    settles = method == "oder" and (snapshots or resample == "call")
    model = build(tiny(method, ratio, resample=resample, snapshot_every=snapshots,
                       **({"max_iter": 60, "tol": 1e-2} if settles else {})), A)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss():  # on the training batch, the same block draws every time
        with torch.no_grad():
            return (model(x0, g, generator=torch.Generator().manual_seed(5)) - x).square().mean().item()

    before = loss()
    rows = [train_step(model, optimizer, x, x0, g, torch.Generator().manual_seed(5)) for _ in range(6)]
    assert loss() < 0.98 * before
    assert all(r["peak_mib"] > 0 and r["forward_iters"] >= 1 for r in rows)
    assert all((r["backward_iters"] >= 1) == (method != "unrolled") for r in rows)


@pytest.mark.parametrize("app", ["mri", "idt"])
def test_every_app_takes_a_training_step(app):
    A, x, y, x0 = tiny_problem(app, 16, 4)
    assert x0.shape == x.shape and x0.dtype == x.dtype
    torch.manual_seed(0)
    model = build(tiny("oder", 0.5, app, 16, 4, snapshot_every=0), A)  # online: no tolerance to reach
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    row = train_step(model, optimizer, x, x0, LeastSquares(A, y), torch.Generator().manual_seed(0))
    assert row["loss"] > 0 and row["backward_iters"] >= 1
    assert all(p.grad is not None for p in model.parameters())


def test_weights_round_trip_and_are_never_overwritten_unasked(tmp_path):
    A, x, y, x0 = tiny_problem()
    config = tiny("oder", 0.25)
    torch.manual_seed(0)
    model = build(config, A)
    with torch.no_grad():  # move τ and the network away from their initial values
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save(tmp_path / "m.pt", model, config, {"val_psnr": 1.0})
    with pytest.raises(Exception, match="refusing to overwrite"):
        save(tmp_path / "m.pt", build(config, A), config)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config == config and loaded.batch_ratio == 0.25 and loaded.max_iter == 15
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    g = LeastSquares(A, y)
    model.eval()
    with torch.no_grad():
        expected = model(x0, g, generator=torch.Generator().manual_seed(1))
        got = loaded(x0, g, generator=torch.Generator().manual_seed(1))
    assert torch.equal(expected, got)


def test_command_logs_records_and_resumes(tmp_path, interrupt_draw):
    """The log has a row per step with every column; the manifest entry records the command, the test
    metrics, the recipe and the segments; a run interrupted (Ctrl-C while drawing step 3's batch) and
    resumed ends with the same weights as a run that never stopped, each step logged once."""
    straight, first = tmp_path / "straight", tmp_path / "first"
    args = [*TINY, "--method", "oder", "--steps", "4", "--validate-every", "2"]
    assert cli.main(["train", "deq", *args, "--log-dir", str(straight)]) == 0
    rows = list(csv.DictReader(open(straight / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and set(LOG_COLUMNS) == set(rows[0])
    assert all(int(r["forward_iters"]) > 0 and int(r["backward_iters"]) > 0 and int(r["blocks"]) > 0 for r in rows)
    assert [bool(r["val_psnr"]) for r in rows] == [False, True, False, True]
    assert float(rows[-1]["train_seconds"]) == pytest.approx(sum(float(r["seconds"]) for r in rows), rel=1e-3)
    assert int(rows[-1]["train_blocks"]) == sum(int(r["blocks"]) for r in rows)
    entry = json.loads((straight / "MANIFEST.json").read_text())["model"]
    assert json.loads((straight / "log.json").read_text()) == entry
    assert entry["command"].startswith("oder-edu train deq") and "--method oder" in entry["command"]
    assert entry["metrics"]["val_psnr"] > 0 and entry["metrics"]["best_step"] in (2, 4)
    assert 0 < entry["metrics"]["test_contraction"] and isinstance(entry["metrics"]["plain_converged"], bool)
    assert entry["data"]["mix"] and entry["model"]["method"] == "oder" and entry["steps"] == 4

    interrupt_draw(3)
    try:
        cli.main(["train", "deq", *args, "--save-every", "1e-9", "--log-dir", str(first)])
    except KeyboardInterrupt:
        pass
    interrupt_draw(None)
    assert not (first / "model.pt").exists()
    assert cli.main(["train", "deq", *args, "--log-dir", str(first), "--resume"]) == 0
    resumed = json.loads((first / "log.json").read_text())
    assert [int(r["step"]) for r in csv.DictReader(open(first / "log.csv"))] == [1, 2, 3, 4]
    assert [(s["first_step"], s["last_step"]) for s in resumed["segments"]] == [(1, 2), (3, 4)]
    assert resumed["seconds"] == pytest.approx(sum(s["seconds"] for s in resumed["segments"]), abs=0.2)
    a, b = torch.load(straight / "model.pt", weights_only=True), torch.load(first / "model.pt", weights_only=True)
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0)


def test_a_diverging_batch_is_skipped_and_counted_and_a_run_of_them_stops_with_advice(tmp_path, monkeypatch):
    real, calls = train_deq.train_step, []

    def sometimes_diverging(*args):
        calls.append(len(calls) + 1)
        if calls[-1] in diverging:
            raise NonContractiveError("iterates diverged")
        return real(*args)

    monkeypatch.setattr(train_deq, "train_step", sometimes_diverging)
    diverging = {2}
    result = train_deq.run(tiny(tol=1e-2), TrainConfig(steps=3, val_images=2, memory_every=0), tmp_path / "a")
    assert result["skipped"] == 1
    rows = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 3]

    calls.clear()
    diverging = set(range(1, MAX_SKIPPED + 1))
    with pytest.raises(NonContractiveError, match="in a row diverged.*--tau-over-L"):
        train_deq.run(tiny(), TrainConfig(steps=MAX_SKIPPED + 2, val_images=2, memory_every=0), tmp_path / "b")


def test_full_and_oder_training_pays_the_contraction_penalty_on_its_own_map(tmp_path):
    """The penalty's estimate is logged for full DEQ and ODER (not unrolled), and ODER's penalty touches
    only b blocks: a step of ODER evaluates fewer blocks than a step of full DEQ."""
    config = TrainConfig(steps=2, val_images=2, memory_every=0, contraction=0.01)  # the hinge is active
    blocks = {}
    for method, ratio in (("full", 1.0), ("oder", 0.25)):
        train_deq.run(tiny(method, ratio, tol=1e-2), config, tmp_path / method)
        rows = list(csv.DictReader(open(tmp_path / method / "log.csv")))
        assert all(0 < float(r["contraction"]) < 2 for r in rows)
        blocks[method] = sum(int(r["blocks"]) for r in rows) / sum(int(r["forward_iters"]) + int(r["backward_iters"])
                                                                   for r in rows)
    assert blocks["oder"] < 0.7 * blocks["full"]  # per iteration: b + B/m against B
    train_deq.run(tiny("unrolled"), config, tmp_path / "unrolled")
    assert all(r["contraction"] == "" for r in csv.DictReader(open(tmp_path / "unrolled" / "log.csv")))


def test_the_recipe_names_its_contraction_control():
    """TrainConfig.penalty: none at weight 0; three power iterations by default; k Lanczos steps with
    ``--contraction-lanczos k`` -- the same object for training and ``bench oder``."""
    assert TrainConfig(contraction_weight=0).penalty() is None
    power = TrainConfig(contraction=0.97, contraction_weight=2.0).penalty()
    assert (power.target, power.weight, power.num_iter, power.method) == (0.97, 2.0, 3, "power")
    lanczos = TrainConfig(contraction_lanczos=20).penalty()
    assert (lanczos.num_iter, lanczos.method) == (20, "lanczos")


def test_the_command_refuses_to_overwrite_weights_before_training(tmp_path, capsys):
    out = tmp_path / "kept.pt"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="exists; pass --force"):
        cli.main(["--debug", "train", "deq", *TINY, "--steps", "1", "--log-dir", str(tmp_path), "--out", str(out)])
    assert out.read_bytes() == b"precious" and not (tmp_path / "log.csv").exists()


@pytest.mark.parametrize("bad, message", [
    (["--ratio", "0"], "ratio"), (["--ratio", "1.5"], "ratio"), (["--method", "oder", "--ratio", "1"], "ratio"),
    (["--tau-over-L", "0"], "tau_over_L"), (["--tau-init", "-1"], "tau_over_L"), (["--sigma", "-0.1"], "sigma"),
    (["--steps", "0"], "steps"), (["--lr", "nan"], "lr"), (["--num-blocks", "0"], "num_blocks"),
    (["--save-every", "0"], "save_every"), (["--max-iter", "0"], "max_iter"), (["--snapshot-every", "-1"], "snapshot_every"),
    (["--contraction", "0"], "contraction"), (["--contraction-weight", "-1"], "contraction_weight"),
    (["--warmup", "-1"], "warmup"), (["--contraction-lanczos", "-1"], "contraction_lanczos"),
])
def test_bad_configuration_is_rejected(bad, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        cli.main(["--debug", "train", "deq", *TINY, "--log-dir", str(tmp_path), *bad])
    assert not (tmp_path / "log.csv").exists()


SHIPPED = sorted(name for name, entry in read_manifest().items() if entry.get("log"))  # the DEQ, ODER, unrolled models


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_is_made_by_its_recorded_recipe(name, tmp_path):
    """The recipe the manifest records for a shipped model (its model and training configurations), run today for
    one step, logs the first row of the model's shipped log: the same loss, solves, τ, penalty estimate and peak
    memory. A change to the data, the model, the solvers or the contraction control that alters that step -- so
    that the recorded command would train another model, or the shipped log describes code that is gone -- fails
    here: retrain the model. The tolerances admit rounding only (an operator that sums in another order)."""
    entry = read_manifest()[name]
    with open(weights_dir() / entry["log"]) as f:
        shipped = next(csv.DictReader(f))
    assert shipped["step"] == "1", f"{name}: its log starts at step {shipped['step']}"
    train = TrainConfig(**(entry["training"] | {"steps": 1, "val_images": 1}))
    train_deq.run(ModelConfig(**entry["model"]), train, tmp_path)
    with open(tmp_path / "log.csv") as f:
        today = next(csv.DictReader(f))
    assert today["step"] == "1"
    tolerances = {"loss": {"rel": 1e-3}, "psnr": {"abs": 0.01}, "tau_over_L": {"rel": 1e-4}, "peak_mib": {"rel": 1e-3},
                  "forward_iters": {"abs": 1}, "backward_iters": {"abs": 2}, "contraction": {"abs": 1e-3}}
    for column, tolerance in tolerances.items():
        if column == "contraction" and not shipped[column]:  # unrolled: no penalty
            assert not today[column]
        else:
            assert float(today[column]) == pytest.approx(float(shipped[column]), **tolerance), column
