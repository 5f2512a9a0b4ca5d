"""``oder-edu bench oder``: the ratio parser, the grid widening and cost fit helpers, the training curves and
time-to-accuracy read from a log, and a small run of every part on the cheapest shipped app."""

import json

import pytest

from oder_edu import checkpoints
from oder_edu.cli import main as cli
from oder_edu.commands import bench_oder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_parse_ratios():
    assert bench_oder.parse_ratios("1/2, 1/3,0.125") == (0.5, 1 / 3, 0.125)
    for bad, message in (("1/0", "fractions"), ("half", "fractions"), ("1", r"\(0, 1\)"), ("0", r"\(0, 1\)")):
        with pytest.raises(ValueError, match=message):
            bench_oder.parse_ratios(bad)


def test_time_to_accuracy_is_read_from_the_training_logs(tmp_path, monkeypatch):
    """P = full DEQ's last validation PSNR − 0.3 dB; each method's first validation row at or above P gives its
    seconds and blocks, and their ratios to full DEQ's."""
    logs = {"deq_ct_full": [(10, 1.0, 100, 30.0), (20, 2.0, 200, 31.0), (30, 3.0, 300, 31.5)],
            "oder_ct": [(10, 0.5, 40, 30.5), (20, 1.0, 80, 31.3), (30, 1.5, 120, 31.4)],
            "unrolled_ct": [(10, 0.2, 50, 29.0), (20, 0.4, 100, 29.5)]}
    manifest = {}
    for name, rows in logs.items():
        lines = ["step,train_seconds,train_blocks,val_psnr"] + [",".join(map(str, r)) for r in rows]
        (tmp_path / f"{name}.log.csv").write_text("\n".join(lines) + "\n")
        manifest[name] = {"log": f"{name}.log.csv", "model": {"snapshot_every": 4}}
    monkeypatch.setattr(checkpoints, "weights_dir", lambda: tmp_path)
    monkeypatch.setattr(checkpoints, "read_manifest", lambda directory=None: manifest)
    rows = bench_oder.training_rows("ct")
    reach = {r["variant"]: r for r in rows if r["part"] == "time_to_P"}
    assert reach["full"]["P"] == pytest.approx(31.2)
    assert (reach["full"]["seconds_to_P"], reach["full"]["blocks_to_P"]) == (3.0, 300)
    assert (reach["oder"]["seconds_to_P"], reach["oder"]["seconds_vs_full"]) == (1.0, pytest.approx(1 / 3, abs=1e-3))
    assert reach["unrolled"]["seconds_to_P"] is None and reach["unrolled"]["final_val_psnr"] == 29.5
    assert len([r for r in rows if r["part"] == "training"]) == 8


@pytest.mark.skipif("oder_idt" not in checkpoints.read_manifest(), reason="no shipped IDT checkpoints")
def test_every_timed_step_uses_the_operator_training_would_have_set_up(monkeypatch):
    """Training builds one operator and computes its norms (the steps' constants) in step 1; a fresh operator per
    timed batch would charge that set-up to whichever method's step runs first on it (it did: full DEQ's)."""
    operators = []

    def step(model, optimizer, x, x0, data, generator, measure, penalty):
        operators.append(data.A)
        return {"seconds": 0.1, "peak_mib": 1.0, "blocks": 1, "forward_iters": 1, "backward_iters": 1}

    monkeypatch.setattr(bench_oder, "train_step", step)
    rows = bench_oder.step_rows("idt", (0.25,), 2, "cpu")
    assert {r["variant"] for r in rows} == {"unrolled", "full", "oder", "oder-online"}
    assert len(operators) == 4 * (2 + 2) and len({id(A) for A in operators}) == 1


@pytest.mark.slow
@pytest.mark.skipif("oder_idt" not in checkpoints.read_manifest(), reason="no shipped IDT checkpoints")
def test_a_small_run_writes_every_part(tmp_path):
    """Every part on IDT (the cheapest shipped setting): the step of every method as trained, the map costs and
    their fit, the test curves and default calls, the training curves, the accuracy with its properties."""
    assert cli(["bench", "oder", "--apps", "idt", "--ratios", "1/4", "--repeat", "1", "--test-images", "1",
                "--device", "cpu", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "oder.json").read_text())
    parts = {}
    for r in written["records"]:
        parts.setdefault(r["part"], []).append(r)
    steps = {r["variant"]: r for r in parts["step"]}
    assert {"full", "oder", "oder-online", "unrolled"} <= set(steps)
    assert all(r["train_step_ms"] > 0 and r["train_peak_mib"] > 0 and r["train_step_blocks"] > 0 for r in steps.values())
    assert steps["oder"]["b"] == 64 and steps["oder"]["train_step_blocks"] < steps["full"]["train_step_blocks"]
    assert steps["oder"]["memory_vs_full"] == pytest.approx(steps["oder"]["train_peak_mib"] / steps["full"]["train_peak_mib"], abs=1e-3)
    assert {r["ratio"] for r in parts["map"]} == {1.0, 0.25}
    for r in parts["map"]:  # timings vary with the machine's load: the test checks the fit, not the figures
        assert r["map_ms"] > 0 and r["maps_per_sample"] >= 1
        F, P = r["fixed_ms"], r["per_ratio_ms"]
        assert F + P * r["ratio"] == pytest.approx(r["map_ms"], abs=0.02)  # two ratios: the line meets both
        rounding = 5e-4 + 5e-3 * (abs(F) + abs(P)) / (F + P) ** 2  # floor to 3 decimals, F and P to 2
        assert r["floor"] == pytest.approx(F / (F + P), abs=rounding)
    defaults = {r["variant"]: r for r in parts["test"] if r["budget"] == "default"}
    assert set(defaults) == {"full", "oder", "oder-online"} and all(r["psnr"] > 20 for r in defaults.values())
    assert {r["variant"] for r in parts["training"]} >= {"full", "oder"} and parts["time_to_P"]
    accuracy = {r["variant"]: r for r in parts["accuracy"]}
    assert 0 < accuracy["full"]["test_contraction"] and "psnr_4x_budget_tol0" in accuracy["full"]
    assert "psnr_move_1x_4x" in accuracy["oder"] and "test_psnr_one_S" in accuracy["oder"]
    with pytest.raises(ValueError, match="--ratios"):
        cli(["--debug", "bench", "oder", "--ratios", "2", "--out", str(tmp_path)])
