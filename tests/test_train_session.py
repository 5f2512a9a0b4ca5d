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


def test_a_fine_tune_starts_from_its_parent_and_keeps_it_unless_it_improves(tmp_path):
    """``--init`` loads the parent's weights (step 0 of the log scores them), records the parent's sha256 in the
    manifest, and refuses weights of another shape or a σ range outside the parent's."""
    assert train(tmp_path, "parent", 4) == 0
    parent = torch.load(tmp_path / "parent.pt", weights_only=True)["state_dict"]
    assert train(tmp_path, "child", 2, "--init", tmp_path / "parent.pt", "--lr", 1e-30,
                 "--selection-sigmas", 0.03) == 0
    rows = log(tmp_path / "child.run" / "log.csv")
    assert [int(r["step"]) for r in rows] == [0, 1, 2] and rows[0]["selection_psnr"]
    child = torch.load(tmp_path / "child.pt", weights_only=True)["state_dict"]
    for key in parent:  # a learning rate of 1e-30 moves no weight: the child is its parent
        torch.testing.assert_close(child[key], parent[key], rtol=0, atol=1e-20)
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    assert manifest["child"]["parent"]["sha256"] == manifest["parent"]["sha256"]
    assert manifest["child"]["metrics"]["kept_step"] == 0  # no better score: the parent is kept
    assert manifest["child"]["config"]["selection_sigmas"] == [0.03]
    wider = [*TINY[:4], "--width", 8, *TINY[6:]]  # TINY with another width
    with pytest.raises(ValueError, match="not the --architecture dncnn"):
        cli.main([str(a) for a in ["train", "denoiser", "--out", tmp_path / "c2.pt", "--steps", 1, *wider,
                                   "--init", tmp_path / "parent.pt", "--debug"]])
    with pytest.raises(ValueError, match="fine-tune it within that range"):
        train(tmp_path, "c3", 1, "--init", tmp_path / "parent.pt", "--sigma-max", 0.5, "--debug")
