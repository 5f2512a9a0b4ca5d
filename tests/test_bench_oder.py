"""``oder-edu bench oder``: ratios, the cost model F + P·b/B, and a small run end to end; the
checkpoint columns (test_psnr, test_contraction, online ...) on the shipped models."""

import json

import pytest

from oder_edu import checkpoints
from oder_edu.cli import main as cli
from oder_edu.commands import bench_oder

COST_KEYS = {"app", "image_size", "num_blocks", "method", "ratio", "b", "train_step_ms", "train_peak_mib"}
MODEL_KEYS = {"time_vs_full", "time_fixed", "time_per_ratio", "time_floor", "time_predicted",
              "memory_vs_full", "memory_fixed", "memory_per_ratio", "memory_floor", "memory_predicted"}


def test_parse_ratios():
    assert bench_oder.parse_ratios("1/2, 1/3,0.125") == (0.5, 1 / 3, 0.125)
    for bad, message in (("1/0", "fractions"), ("half", "fractions"), ("1", r"\(0, 1\)"), ("0", r"\(0, 1\)")):
        with pytest.raises(ValueError, match=message):
            bench_oder.parse_ratios(bad)


def test_the_cost_model_recovers_a_fixed_and_a_per_block_part():
    rows = [{"app": "ct", "method": m, "ratio": r, "train_peak_mib": 40 + 80 * r, "train_step_ms": 100 + 300 * r}
            for m, r in (("unrolled", 1.0), ("full", 1.0), ("oder", 0.5), ("oder", 0.25))]
    rows[0]["train_peak_mib"] = 999.0  # the unrolled row is not part of the fit
    assert bench_oder.split_cost(rows, "train_peak_mib") == pytest.approx((40, 80))
    assert bench_oder.split_cost(rows[:2], "train_peak_mib") is None
    bench_oder.add_cost_model(rows)
    quarter = rows[3]
    assert quarter["memory_floor"] == pytest.approx(40 / 120, abs=1e-3)
    assert quarter["time_predicted"] == pytest.approx(175 / 400, abs=1e-3) == pytest.approx(quarter["time_vs_full"], abs=1e-3)


def test_a_small_run_writes_every_record(tmp_path, one_thread):
    assert cli(["bench", "oder", "--apps", "idt", "--image-size", "16", "--num-blocks", "16", "--ratios", "1/4,1/2",
                "--iterations", "2", "--repeat", "1", "--device", "cpu", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "oder.json").read_text())
    rows = {(r["method"], r["ratio"]): r for r in written["records"]}
    assert set(rows) == {("unrolled", 1.0), ("full", 1.0), ("oder", 0.25), ("oder", 0.5)}
    for (method, _), row in rows.items():
        assert COST_KEYS <= set(row) and row["num_blocks"] == 16 and row["train_step_ms"] > 0
        assert method == "unrolled" or MODEL_KEYS <= set(row)
        assert "test_psnr" not in row  # a custom setting is not the checkpoints': no scores
    assert rows[("oder", 0.25)]["b"] == 4 and "--image-size 16" in written["command"]
    with pytest.raises(ValueError, match="--ratios"):
        cli(["--debug", "bench", "oder", "--ratios", "2", "--out", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.skipif("oder_mri" not in checkpoints.read_manifest(), reason="no shipped MRI checkpoints")
def test_shipped_checkpoints_are_scored_with_their_measured_properties(tmp_path, one_thread):
    """Every column the course reads, on the cheapest app: online, all blocks, one S, contraction."""
    for method in ("full", "oder"):
        record = bench_oder.accuracy("mri", method, 0.25 if method == "oder" else 1.0, 1, 20, "cpu")
        assert record["test_checkpoint"] and record["test_psnr"] > 20 and 0 < record["test_contraction"]
        assert isinstance(record["test_plain_converged"], bool)
    assert {"test_psnr_all_blocks", "test_psnr_online", "test_psnr_one_S"} <= set(record)
