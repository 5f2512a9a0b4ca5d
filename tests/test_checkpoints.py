"""Weights are data: ``{"kind", "config", "state_dict", "metrics"}`` files, saved atomically and
never over an existing file unasked, recorded in a locked manifest with their sha256, and loaded
by manifest name or path only after the sha256 check -- every failure a CheckpointError that
names the file and the command that regenerates it.

Everything here works in tmp_path (the manifest-name lookup is pointed there with monkeypatch);
nothing touches the shipped oder_edu/weights folder."""

import contextlib
import json
import os
import threading

import pytest
import torch
from torch import nn

from oder_edu import checkpoints
from oder_edu.checkpoints import CheckpointError

COMMAND = "oder-edu train denoiser --out x.pt --steps 7 --seed 3"


class Tiny(nn.Module):
    def __init__(self, value=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.arange(6.0).reshape(2, 3) + value)


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """tmp_path as the package's weights folder (where manifest names are looked up)."""
    monkeypatch.setattr(checkpoints, "weights_dir", lambda: tmp_path)
    return tmp_path


def _save(directory, name="net", kind="denoiser", value=0.0):
    path = checkpoints.save_state(directory / f"{name}.pt", kind, {"width": 4}, Tiny(value), {"psnr": 30.5})
    checkpoints.record(name, path, COMMAND, seed=3, metrics={"psnr": 30.5}, extra={"sigma_range": [0, 0.2]},
                       seconds=12.34)
    return path


# --- save, record, load --------------------------------------------------------------------------


def test_save_record_then_load_round_trips(weights):
    path = _save(weights)
    entry = json.loads((weights / "MANIFEST.json").read_text())["net"]
    assert entry["file"] == "net.pt" and entry["sha256"] == checkpoints.sha256(path)
    assert entry["bytes"] == path.stat().st_size
    assert entry["command"] == COMMAND and entry["seed"] == 3 and entry["seconds"] == 12.3
    assert entry["metrics"] == {"psnr": 30.5} and entry["sigma_range"] == [0, 0.2]
    assert entry["torch"] == torch.__version__ and entry["date"]
    for source in ("net", path, str(path)):  # a manifest name, a Path, a str path
        state = checkpoints.load_state(source, kind="denoiser")
        assert set(state) == {"kind", "config", "state_dict", "metrics"}
        assert state["kind"] == "denoiser" and state["config"] == {"width": 4} and state["metrics"] == {"psnr": 30.5}
        assert torch.equal(state["state_dict"]["w"], Tiny().w.detach())


def test_saved_weights_are_float32_cpu_copies(tmp_path):
    """save_state stores float32 CPU tensors whatever the model's dtype (a float64 model loads
    back into a fresh float32 one); metrics default to {}."""
    path = checkpoints.save_state(tmp_path / "m.pt", "red_deq", {}, Tiny().double())
    state = checkpoints.load_state(path)
    assert state["state_dict"]["w"].dtype == torch.float32 and state["metrics"] == {}
    assert state["kind"] == "red_deq"


def test_an_unrecorded_path_loads_without_a_sha_check(tmp_path):
    """A .pt file with no manifest entry beside it (a user's own training run) loads directly."""
    path = checkpoints.save_state(tmp_path / "own.pt", "denoiser", {"a": 1}, Tiny())
    assert checkpoints.load_state(path)["config"] == {"a": 1}


def test_record_keeps_other_entries_and_rerecording_the_same_file_is_fine(weights):
    _save(weights, "a")
    _save(weights, "b")
    assert set(checkpoints.read_manifest(weights)) == {"a", "b"}
    checkpoints.record("a", weights / "a.pt", COMMAND, 3, {})  # same file, same sha: no force needed
    assert not list(weights.glob("*.partial"))


def test_record_refuses_to_replace_another_files_entry_unless_forced(weights):
    _save(weights, "net")
    other = checkpoints.save_state(weights / "other.pt", "denoiser", {}, Tiny(1.0))
    with pytest.raises(CheckpointError, match=r"already records 'net' for another file; refusing to replace it"):
        checkpoints.record("net", other, COMMAND, 0, {})
    assert checkpoints.read_manifest(weights)["net"]["file"] == "net.pt"
    checkpoints.record("net", other, COMMAND, 0, {}, force=True)
    assert checkpoints.read_manifest(weights)["net"]["file"] == "other.pt"


def test_parallel_records_do_not_lose_entries(weights):
    """The manifest is locked while read, changed and written: eight threads recording eight
    entries at once leave all eight."""
    paths = [checkpoints.save_state(weights / f"n{i}.pt", "denoiser", {}, Tiny(i)) for i in range(8)]
    threads = [threading.Thread(target=checkpoints.record, args=(f"n{i}", p, COMMAND, i, {})) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(checkpoints.read_manifest(weights)) == {f"n{i}" for i in range(8)}


def test_record_of_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoints.record("x", tmp_path / "nope.pt", COMMAND, 0, {})


# --- never overwrite, always atomic ---------------------------------------------------------------


def test_save_refuses_to_overwrite_unless_forced(tmp_path):
    path = checkpoints.save_state(tmp_path / "m.pt", "denoiser", {"v": 1}, Tiny())
    with pytest.raises(CheckpointError, match="exists; refusing to overwrite it"):
        checkpoints.save_state(path, "denoiser", {"v": 2}, Tiny(1.0))
    assert checkpoints.load_state(path)["config"] == {"v": 1}
    checkpoints.save_state(path, "denoiser", {"v": 2}, Tiny(1.0), force=True)
    assert checkpoints.load_state(path)["config"] == {"v": 2}
    with pytest.raises(ValueError, match="kind must be one of"):
        checkpoints.save_state(tmp_path / "n.pt", "widget", {}, Tiny())


def test_a_failure_during_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    """torch.save writes half a file, then fails (a full disk, an interrupt): the forced save
    raises, the old file is byte-for-byte unchanged and loads, and no temporary file is left."""
    path = checkpoints.save_state(tmp_path / "m.pt", "denoiser", {"v": 1}, Tiny())
    before = path.read_bytes()

    def partial_save(obj, target):  # a path, or the buffer files.save_torch serializes into
        with open(target, "wb") if isinstance(target, (str, os.PathLike)) else contextlib.nullcontext(target) as f:
            f.write(before[: len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", partial_save)
    with pytest.raises(OSError, match="No space left"):
        checkpoints.save_state(path, "denoiser", {"v": 2}, Tiny(1.0), force=True)
    monkeypatch.undo()
    assert path.read_bytes() == before and checkpoints.load_state(path)["config"] == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]
    with pytest.raises(OSError):  # and a first save that fails leaves nothing behind
        monkeypatch.setattr(checkpoints.torch, "save", partial_save)
        checkpoints.save_state(tmp_path / "new.pt", "denoiser", {}, Tiny())
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_saved_files_get_the_permissions_of_any_new_file(tmp_path):
    """A weight file and the manifest are shipped in the package: after save_state and record they
    must carry the mode a plain new file gets under the current umask (e.g. 0644), not 0600."""
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    expected = plain.stat().st_mode & 0o777
    path = checkpoints.save_state(tmp_path / "m.pt", "denoiser", {}, Tiny())
    checkpoints.record("m", path, COMMAND, 0, {})
    assert path.stat().st_mode & 0o777 == expected
    assert (tmp_path / "MANIFEST.json").stat().st_mode & 0o777 == expected


# --- every failure is a clear CheckpointError ------------------------------------------------------


def test_missing_entry_is_a_clear_error(weights):
    _save(weights)
    with pytest.raises(CheckpointError, match=r"no weights named 'other'.*recorded: net"):
        checkpoints.load_state("other")


def test_missing_file_names_file_and_command(weights):
    path = _save(weights)
    path.unlink()
    with pytest.raises(CheckpointError) as info:
        checkpoints.load_state("net")
    assert str(path) in str(info.value) and COMMAND in str(info.value) and "missing" in str(info.value)
    with pytest.raises(CheckpointError, match="no weight file at"):
        checkpoints.load_state(path)


def test_an_entry_without_sha256_is_refused(weights):
    path = _save(weights)
    manifest = checkpoints.read_manifest(weights)
    del manifest["net"]["sha256"]
    (weights / "MANIFEST.json").write_text(json.dumps(manifest))
    for source in ("net", path):
        with pytest.raises(CheckpointError, match=r"records no sha256 for net.pt; regenerate it with:\n    " + COMMAND):
            checkpoints.load_state(source)


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_a_changed_or_truncated_file_names_file_and_command(weights, damage):
    path = _save(weights)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF  # one byte inside a tensor
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data += b"\0"
    path.write_bytes(bytes(data))
    for source in ("net", path):
        with pytest.raises(CheckpointError) as info:
            checkpoints.load_state(source)
        message = str(info.value)
        assert str(path) in message and "corrupted or was changed" in message
        assert message.endswith(f"regenerate it with:\n    {COMMAND}")

    from oder_edu.denoisers import load_denoiser  # the loaders go through the same check

    with pytest.raises(CheckpointError, match="corrupted"):
        load_denoiser("net", device="cpu")


def test_an_unreadable_unrecorded_file_is_a_checkpoint_error(tmp_path):
    path = checkpoints.save_state(tmp_path / "own.pt", "denoiser", {}, Tiny())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"cannot load .*own.pt"):
        checkpoints.load_state(path)


def test_the_wrong_kind_is_refused_with_the_right_loader_named(weights):
    _save(weights, "deq", kind="red_deq")
    _save(weights, "den", kind="denoiser")
    with pytest.raises(CheckpointError, match=r"holds a 'red_deq' model, not a 'denoiser': deq.load_model loads it"):
        checkpoints.load_state("deq", kind="denoiser")
    with pytest.raises(CheckpointError, match=r"holds a 'denoiser' model, not a 'red_deq': load_denoiser loads it"):
        checkpoints.load_state("den", kind="red_deq")
    assert checkpoints.load_state("deq")["kind"] == "red_deq"  # no kind asked: any kind


def test_a_file_in_the_old_format_is_refused(weights):
    """A torch file without kind/config/state_dict (the format before this one) is refused by name."""
    path = weights / "old.pt"
    torch.save({"config": {"width": 4}, "state_dict": {"w": torch.zeros(2)}}, path)
    checkpoints.record("old", path, COMMAND, 0, {})
    with pytest.raises(CheckpointError, match="is not an oder-edu weight file"):
        checkpoints.load_state("old")


def test_pickled_code_is_refused_even_with_matching_sha(weights):
    # weights_only=True: a checkpoint holding an arbitrary Python object is not unpickled.
    path = weights / "evil.pt"
    torch.save({"object": CheckpointError("not a tensor")}, path)
    checkpoints.record("evil", path, COMMAND, 0, {})
    with pytest.raises(CheckpointError, match="cannot load"):
        checkpoints.load_state("evil")


def test_a_broken_manifest_and_bad_sources_are_clear_errors(weights):
    (weights / "MANIFEST.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        checkpoints.read_manifest()
    with pytest.raises(TypeError, match="manifest name or a path"):
        checkpoints.load_state(3)
    assert checkpoints.read_manifest(weights / "empty") == {}
