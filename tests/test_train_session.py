"""Resumable training (train.session): a run stopped and resumed takes exactly the steps and the data of a run
that never stopped, its log has each step once, and its manifest entry sums every segment's seconds."""

import csv
import json

import pytest
import torch

from oder_edu import cli
from oder_edu.checkpoints import CheckpointError
from oder_edu.train.session import Session

TINY = ["--architecture", "dncnn", "--depth", 2, "--width", 4, "--patch-size", 16, "--batch-size", 2,
        "--validate-every", 2, "--warmup", 1, "--no-progress", "--threads", 1]

pytestmark = pytest.mark.usefixtures("one_thread")


def train(tmp_path, name, steps, *extra):
    args = ["train", "denoiser", "--out", tmp_path / f"{name}.pt", "--steps", steps, *TINY, *extra]
    return cli.main([str(a) for a in args])


def log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_resumed_run_equals_a_run_that_never_stopped(tmp_path, interrupt_draw):
    """The same 5-step run, once straight and once interrupted (Ctrl-C while drawing step 4's batch) and
    resumed: identical weights, the same loss at every step, each step logged once, two segments."""
    assert train(tmp_path, "straight", 5) == 0
    interrupt_draw(4)
    try:
        assert train(tmp_path, "resumed", 5, "--save-every", 1e-9) == 130  # the command's Ctrl-C status
    except KeyboardInterrupt:
        pass
    interrupt_draw(None)
    assert not (tmp_path / "resumed.pt").exists()
    assert train(tmp_path, "resumed", 5, "--resume") == 0
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)["state_dict"]
    for key in straight:
        torch.testing.assert_close(straight[key], resumed[key], rtol=0, atol=0)
    rows = log(tmp_path / "resumed.run" / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in rows] == [r["loss"] for r in log(tmp_path / "straight.run" / "log.csv")]
    entry = json.loads((tmp_path / "MANIFEST.json").read_text())["resumed"]
    assert [(s["first_step"], s["last_step"]) for s in entry["segments"]] == [(1, 3), (4, 5)]
    assert "--resume" in entry["segments"][1]["command"] and "--resume" not in entry["command"]
    assert entry["seconds"] == pytest.approx(sum(s["seconds"] for s in entry["segments"]), abs=0.2)
    assert entry["steps"] == 5 and entry["metrics"]["kept_step"] in (2, 4, 5)


def test_a_killed_run_repeats_no_step_in_its_log(tmp_path):
    """Steps logged after the last save are taken again on resume: the log is cut back to the saved step."""
    session = Session(tmp_path, ("step", "loss"), "first")
    for step in (1, 2):
        session.log({"step": step, "loss": 0.5})
    session.checkpoint(lambda: {}, force=True)
    session.log({"step": 3, "loss": 0.4})  # then killed before the next save
    session.close()
    resumed = Session(tmp_path, ("step", "loss"), "second", resume=True)
    assert resumed.step == 2 and [int(r["step"]) for r in resumed.rows()] == [1, 2]
    resumed.log({"step": 3, "loss": 0.3})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in log(tmp_path / "log.csv")] == [("1", "0.5"), ("2", "0.5"), ("3", "0.3")]


def test_resuming_nothing_or_overwriting_a_run_is_refused(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="no state.pt"):
        Session(tmp_path / "empty", ("step",), "c", resume=True)
    Session(tmp_path / "run", ("step",), "c").close()
    with pytest.raises(CheckpointError, match="--resume"):
        Session(tmp_path / "run", ("step",), "c")
    assert train(tmp_path, "a", 2) == 0
    (tmp_path / "a.pt").unlink()
    assert train(tmp_path, "a", 3, "--resume", "--lr", "0.5") == 2
    assert "--resume continues a run with another lr" in capsys.readouterr().err
