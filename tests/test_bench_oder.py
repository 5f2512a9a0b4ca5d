"""``oder-edu bench oder``: the record keys the issue names, ratios, and the cost split."""

import json
import math

import pytest

from oder_edu.bench import oder
from oder_edu.cli import main as cli

KEYS = {"app", "image_size", "num_blocks", "method", "ratio", "train_step_ms", "train_peak_mib",
        "forward_iters", "backward_iters", "test_psnr", "test_ssim"}


def test_parse_ratios():
    assert oder.parse_ratios("1/2, 1/3,0.125") == (0.5, 1 / 3, 0.125)
    for bad, message in (("1/0", "fractions"), ("half", "fractions"), ("1", r"\(0, 1\)"), ("0", r"\(0, 1\)")):
        with pytest.raises(ValueError, match=message):
            oder.parse_ratios(bad)


def test_split_cost_recovers_a_fixed_and_a_per_block_part():
    rows = [{"app": "ct", "method": m, "ratio": r, "train_peak_mib": 40 + 80 * r}
            for m, r in (("full", 1.0), ("oder", 0.5), ("oder", 0.25), ("unrolled", 1.0))]
    rows[-1]["train_peak_mib"] = 999.0  # the unrolled row is not part of the fit
    fixed, per_ratio = oder.split_cost(rows, "ct", "train_peak_mib")
    assert fixed == pytest.approx(40) and per_ratio == pytest.approx(80)
    assert oder.split_cost(rows[:1], "ct", "train_peak_mib") is None


def test_small_run_writes_every_record(tmp_path, one_thread):
    code = cli(["bench", "oder", "--apps", "ct", "--cost-size", "32", "--cost-blocks", "16", "--ratios", "1/4",
                "--iters", "2", "--repeat", "1", "--test-images", "1", "--online-iters", "20", "--device", "cpu",
                "--out", str(tmp_path)])
    assert code == 0
    written = json.loads((tmp_path / "oder.json").read_text())
    rows = {(r["method"], r["ratio"]): r for r in written["records"]}
    assert set(rows) == {("unrolled", 1.0), ("full", 1.0), ("oder", 0.25)}
    for row in rows.values():
        assert KEYS <= set(row) and row["num_blocks"] == 16 and row["train_step_ms"] > 0
    # the shipped checkpoints are tested at their own size: ODER with its own b/B and with all blocks
    quarter = rows[("oder", 0.25)]
    assert quarter["test_checkpoint"] == "oder_ct_q" and quarter["test_psnr"] > 30
    assert quarter["test_psnr_all_blocks"] > quarter["test_psnr"] - 1
    # online testing halves the learned step until the random map stops diverging
    assert quarter["test_psnr_online"] > 25 and math.log2(quarter["online_gamma_ratio"]) in range(-30, 1)
    # a quarter of the angles never keeps more memory than all of them (no table copies saved)
    assert quarter["train_peak_mib"] <= rows[("full", 1.0)]["train_peak_mib"]
    assert "ODER at b/B = 1/4 vs full DEQ" in written["caption"]
    with pytest.raises(ValueError, match="--ratios"):
        cli(["bench", "oder", "--ratios", "2", "--out", str(tmp_path)])
