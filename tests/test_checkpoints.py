"""The weights manifest: sha256 checks, clear errors naming the file and the command, round trips."""

import json
import shutil

import pytest
import torch

from oder_edu import checkpoints
from oder_edu.checkpoints import CheckpointError

COMMAND = "oder-edu train denoiser --out x.pt --steps 7 --seed 3"


def _save(tmp_path, name="net"):
    state = {"config": {"width": 4}, "state_dict": {"w": torch.arange(6.0).reshape(2, 3)}}
    path = tmp_path / f"{name}.pt"
    torch.save(state, path)
    checkpoints.record(name, path, COMMAND, seed=3, metrics={"psnr": 30.5}, extra={"sigma_range": [0, 0.2]},
                       seconds=12.34)
    return state, path


def test_record_then_load_round_trips(tmp_path):
    state, path = _save(tmp_path)
    entry = json.loads((tmp_path / "MANIFEST.json").read_text())["net"]
    assert entry["file"] == "net.pt" and entry["sha256"] == checkpoints.sha256(path)
    assert entry["command"] == COMMAND and entry["seed"] == 3 and entry["seconds"] == 12.3
    assert entry["metrics"] == {"psnr": 30.5} and entry["sigma_range"] == [0, 0.2]
    assert entry["torch"] == torch.__version__ and entry["date"]
    loaded = checkpoints.load_state("net", directory=tmp_path)
    assert loaded["config"] == state["config"]
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"])


def test_record_keeps_other_entries(tmp_path):
    _save(tmp_path, "a")
    _save(tmp_path, "b")
    assert set(checkpoints.read_manifest(tmp_path)) == {"a", "b"}


def test_missing_file_names_file_and_command(tmp_path):
    _, path = _save(tmp_path)
    path.unlink()
    with pytest.raises(CheckpointError) as info:
        checkpoints.load_state("net", directory=tmp_path)
    assert str(path) in str(info.value) and COMMAND in str(info.value) and "missing" in str(info.value)


def test_missing_entry_is_a_clear_error(tmp_path):
    _save(tmp_path)
    with pytest.raises(CheckpointError, match=r"no weights named 'other'.*recorded: net"):
        checkpoints.load_state("other", directory=tmp_path)


def test_record_of_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoints.record("x", tmp_path / "nope.pt", COMMAND, 0, {})


def test_pickled_code_is_refused_even_with_matching_sha(tmp_path):
    # weights_only=True: a checkpoint holding an arbitrary Python object is not unpickled.
    path = tmp_path / "evil.pt"
    torch.save({"object": CheckpointError("not a tensor")}, path)
    checkpoints.record("evil", path, COMMAND, 0, {})
    with pytest.raises(CheckpointError, match="cannot load"):
        checkpoints.load_state("evil", directory=tmp_path)


def test_shipped_weights_load_and_fit_the_budget():
    manifest = checkpoints.read_manifest()
    assert "dncnn" in manifest
    total = 0
    for name, entry in manifest.items():
        path = checkpoints.weights_dir() / entry["file"]
        assert checkpoints.sha256(path) == entry["sha256"], name
        assert entry["command"].startswith("oder-edu train ")
        total += path.stat().st_size
    assert total < 5e6
    state = checkpoints.load_state("dncnn")
    assert set(state) == {"config", "state_dict"}


def test_corrupted_shipped_weights_name_file_and_command(tmp_path, monkeypatch):
    entry = checkpoints.read_manifest()["dncnn"]
    shutil.copy(checkpoints.weights_dir() / "MANIFEST.json", tmp_path / "MANIFEST.json")
    copy = tmp_path / entry["file"]
    data = bytearray((checkpoints.weights_dir() / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte inside a tensor
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        checkpoints.load_state("dncnn", directory=tmp_path)
    message = str(info.value)
    assert str(copy) in message and entry["command"] in message and "corrupted" in message

    # load_denoiser goes through the same check.
    from oder_edu.denoisers import load_denoiser

    monkeypatch.setattr(checkpoints, "weights_dir", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_denoiser("dncnn", device="cpu")
    copy.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_denoiser("dncnn", device="cpu")
