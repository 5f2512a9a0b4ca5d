"""Nothing lost on a full disk or a kill (issue #24): every file the package writes goes through
``oder_edu.files``; after any failed write every pre-existing file is byte-identical and no
temporary file is left, and a killed write's temporary is swept at the next start-up.

Three ways to fail a write: a simulated ENOSPC (the flush to disk raises; always runs), a real
full disk (a 1 MiB tmpfs in a private mount namespace, ``unshare -rm``; skipped where the machine
does not allow it) and SIGKILL in the middle of a save.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from oder_edu import checkpoints, cli, files
from oder_edu.commands import demo, labs, results

ROOT = Path(__file__).resolve().parent.parent


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path (temporary files included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if files.is_temporary(p.name) or p.name.endswith(".partial")]


# --- the helper ------------------------------------------------------------------------------------
def test_a_write_is_whole_with_the_mode_of_a_new_file(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = files.write_text(tmp_path / "a.json", "hello")
    assert path.read_text() == "hello" and path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    files.write_bytes(path, b"again")
    assert path.read_bytes() == b"again" and sorted(os.listdir(tmp_path)) == ["a.json", "plain"]


def test_no_overwrite_unless_asked(tmp_path):
    path = files.write_text(tmp_path / "a.json", "kept")
    with pytest.raises(FileExistsError, match=r"a.json exists; refusing to overwrite it"):
        files.write_text(path, "new", overwrite=False)
    with pytest.raises(FileExistsError, match="exists"):  # a file that appears while the new one is written
        with files.atomic_path(tmp_path / "b.json", overwrite=False) as temporary:
            temporary.write_text("mine")
            (tmp_path / "b.json").write_text("theirs")
    assert path.read_text() == "kept" and (tmp_path / "b.json").read_text() == "theirs"
    assert not temporaries(tmp_path)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("torch failed"), SystemExit(3)])
def test_any_error_removes_the_temporary_and_is_reraised(tmp_path, error):
    path = files.write_text(tmp_path / "a.json", "kept")
    with pytest.raises(type(error)):
        with files.atomic_path(path) as temporary:
            assert files.is_temporary(temporary.name) and temporary.parent == tmp_path
            temporary.write_text("half")
            raise error
    assert path.read_text() == "kept" and os.listdir(tmp_path) == ["a.json"]


def test_an_os_error_names_the_target_and_keeps_its_errno(tmp_path, monkeypatch):
    path = files.write_text(tmp_path / "a.json", "kept")
    monkeypatch.setattr(files, "_fsync", full_disk)
    with pytest.raises(OSError) as error:
        files.write_text(path, "new")
    assert error.value.errno == errno.ENOSPC
    assert str(error.value).endswith(f"cannot write {path}: No space left on device; {path} is unchanged")
    with pytest.raises(FileNotFoundError, match=r"cannot write .*missing/a.json: .*nothing was written"):
        files.write_text(tmp_path / "missing" / "a.json", "new")


# --- the sweep -------------------------------------------------------------------------------------
OURS = [".demo.png.k2j4h6g8.partial", ".dncnn.pt.abcd_123.partial", ".MANIFEST.json.zz9zz9zz.partial",
        "checkpoint.pt.partial", "log.json.partial", ".00_start_here.ipynb.partial", "oder.json.partial",
        "oder.md.partial", "model.log.partial", ".write-test"]
THEIRS = ["notes.partial", "data.partial", "report.pdf.partial", "demo.png", "checkpoint.pt", ".hidden",
          ".x.pt.partial.bak", "partial", "MANIFEST.json.lock"]


def test_the_sweep_removes_the_packages_temporaries_and_nothing_else(tmp_path):
    for name in OURS + THEIRS:
        (tmp_path / name).write_text(name)
    (tmp_path / "folder.json.partial").mkdir()  # a folder of a temporary's name is not a file
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "checkpoint.pt.partial").write_text("x")
    removed = files.sweep(tmp_path)
    assert sorted(p.name for p in removed) == sorted(OURS)
    assert sorted(os.listdir(tmp_path)) == sorted(THEIRS + ["folder.json.partial", "sub"])
    assert (tmp_path / "sub" / "checkpoint.pt.partial").exists()  # not recursive unless asked
    assert [p.name for p in files.sweep(tmp_path, recursive=True)] == ["checkpoint.pt.partial"]
    assert files.sweep(tmp_path / "none") == []


def test_the_sweep_leaves_a_temporary_that_a_running_writer_holds(tmp_path):
    with files.atomic_path(tmp_path / "w.pt") as temporary:
        temporary.write_bytes(b"being written")
        assert files.sweep(tmp_path) == [] and temporary.exists()
    assert (tmp_path / "w.pt").read_bytes() == b"being written" and os.listdir(tmp_path) == ["w.pt"]


def test_clean_partials_command(tmp_path, capsys):
    (tmp_path / "checkpoint.pt.partial").write_text("x")
    (tmp_path / "notes.partial").write_text("x")
    assert cli.main(["clean-partials", str(tmp_path)]) == 0
    assert "1 stale temporary file removed" in capsys.readouterr().out
    assert os.listdir(tmp_path) == ["notes.partial"]


def test_every_command_sweeps_its_output_folder_at_start_up(tmp_path):
    (tmp_path / "log.json.partial").write_text("x")
    results.check_out(tmp_path)
    assert os.listdir(tmp_path) == []


# --- a simulated full disk: the flush to disk fails ------------------------------------------------
def full_disk(fd):
    raise OSError(errno.ENOSPC, "No space left on device")


class Tiny(nn.Module):
    def __init__(self, value=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.full((64,), value))


def figure_inputs(size=64, flat=False):
    """``save_figure``'s arguments for one panel: noise (a large PNG) or a flat image (a small one, so
    that writing over it in place would run out of space part-way, as in issue #24)."""
    image = torch.full((1, 1, size, size), 0.5) if flat else torch.rand(
        1, 1, size, size, generator=torch.Generator().manual_seed(0))
    return [{"method": "FBP", "psnr": 20.0, "ssim": 0.5}], {"FBP": image}, image


def notebook_folder(folder: Path) -> Path:
    folder.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\ny = 2\n"
                                                                                "### END SOLUTION")]),
                   folder / "01_tiny.ipynb")
    return folder


WRITERS = {  # name -> (write over the existing files of ``folder``, what to create first)
    "figure": lambda d: demo.save_figure(*figure_inputs(), d / "keep.png"),
    "result": lambda d: results.write_results("oder", [{"a": 1.0}], argparse.Namespace(
        command="bench", target="oder", out=d), "caption"),
    "checkpoint": lambda d: checkpoints.save_state(d / "m.pt", "denoiser", {"v": 2}, Tiny(1.0), force=True),
    "manifest": lambda d: checkpoints.record("m", d / "m.pt", "oder-edu train ...", 0, {}, force=True),
    "notebook": lambda d: labs.write_student_versions(d.parent / "notebooks", d / "student", force=True),
}


def existing_files(folder: Path) -> None:
    """One file of each kind in ``folder``, as a user or an earlier run left them."""
    demo.save_figure(*figure_inputs(flat=True), folder / "keep.png")
    (folder / "oder.json").write_text('{"records": []}\n')
    (folder / "oder.md").write_text("# oder\n")
    checkpoints.save_state(folder / "m.pt", "denoiser", {"v": 1}, Tiny())
    checkpoints.record("m", folder / "m.pt", "oder-edu train ...", 0, {})
    labs.write_student_versions(notebook_folder(folder.parent / "notebooks"), folder / "student")


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_damages_no_existing_file_and_leaves_no_temporary(writer, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    existing_files(folder)
    before = digest(folder)
    monkeypatch.setattr(files, "_fsync", full_disk)
    with pytest.raises(OSError) as error:
        WRITERS[writer](folder)
    assert error.value.errno == errno.ENOSPC and "No space left on device" in str(error.value)
    assert digest(folder) == before and not temporaries(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EIO])
def test_the_demo_says_in_one_line_why_its_figure_was_not_written(code, tmp_path, monkeypatch, capsys):
    def fail(fd):
        raise OSError(code, os.strerror(code))

    figure = tmp_path / "keep.png"
    figure.write_bytes(b"an older figure")
    monkeypatch.setattr(files, "_fsync", fail)
    monkeypatch.delenv("ODER_EDU_DEBUG", raising=False)
    status = cli.main(["demo", "--out", str(figure), "--image-size", "16", "--num-blocks", "4", "--iterations", "1"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err == f"oder-edu demo: error: cannot write {figure}: {os.strerror(code)}; {figure} is unchanged\n"
    assert figure.read_bytes() == b"an older figure" and os.listdir(tmp_path) == ["keep.png"]


# --- a real full disk: a 1 MiB tmpfs in a private mount namespace ------------------------------------
FULL_DISK = textwrap.dedent("""
    import contextlib, errno, hashlib, io, json, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from tests import test_files as t
    from oder_edu import cli
    disk = Path(sys.argv[1])
    folder = disk / "out"
    folder.mkdir()
    t.existing_files(folder)
    before = t.digest(disk)
    with open(disk / "ballast", "wb", buffering=0) as f:  # fill the disk
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    before["ballast"] = hashlib.sha256((disk / "ballast").read_bytes()).hexdigest()
    outcome = {}
    for name, write in t.WRITERS.items():
        try:
            write(folder)
            outcome[name] = "written"
        except OSError as error:
            outcome[name] = f"OSError {error.errno}: {error}"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(["demo", "--out", str(folder / "keep.png"), "--image-size", "16", "--num-blocks", "4",
                           "--iterations", "1"])
    print(json.dumps({"outcome": outcome, "cli": [status, err.getvalue()], "same": t.digest(disk) == before,
                      "changed": sorted(k for k in set(before) | set(t.digest(disk))
                                        if before.get(k) != t.digest(disk).get(k)),
                      "temporaries": t.temporaries(disk)}))
""")


def private_tmpfs_works(mount_point: Path) -> bool:
    if sys.platform != "linux" or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$1"', "sh",
                            str(mount_point)], capture_output=True, timeout=60)
    return probe.returncode == 0


def test_a_real_full_disk_damages_no_existing_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not private_tmpfs_works(disk):
        pytest.skip("no private mount namespace here (unshare -rm and mount -t tmpfs); the simulated full disk "
                    "above still runs")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ODER_EDU_DEBUG": ""}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" -c "$3" '
                           '"$1" "$4"', "sh", str(disk), sys.executable, FULL_DISK, str(ROOT)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name, outcome in report["outcome"].items():
        assert outcome.startswith(f"OSError {errno.ENOSPC}: ") and "No space left on device" in outcome, (name, outcome)
    status, err = report["cli"]
    assert status == 1 and err.count("\n") == 1 and "No space left on device" in err and "keep.png" in err, err
    assert report["same"], f"changed by a failed write: {report['changed']}"
    assert report["temporaries"] == []


# --- killed in the middle of a save ------------------------------------------------------------------
KILLED = textwrap.dedent("""
    import sys, time
    from oder_edu import cli, files
    from oder_edu.train import denoiser as training

    saves = []

    def hang(fd):  # the run's resumable state is saved first, then the weights: stop in the weights' save
        saves.append(fd)
        if len(saves) == 2:  # the new weights are in the temporary file: stop here until killed
            print("saving", flush=True)
            time.sleep(600)

    files._fsync = hang
    training.validate = lambda model, **kwargs: {}  # the held-out comparison with TV takes minutes
    cli.main(["train", "denoiser", "--out", sys.argv[1], "--force", "--steps", "1", "--patch-size", "16",
              "--batch-size", "1", "--architecture", "dncnn", "--depth", "2", "--width", "2", "--no-progress"])
""")


def test_a_save_killed_midway_leaves_the_old_weights_and_the_next_start_up_sweeps(tmp_path):
    target = checkpoints.save_state(tmp_path / "dncnn.pt", "denoiser", {"v": 1}, Tiny())
    (tmp_path / "notes.partial").write_text("the user's")
    before = target.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(target)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "saving"
        stale = [p for p in tmp_path.iterdir() if files.is_temporary(p.name)]
        assert len(stale) == 1 and stale[0].name.startswith(".dncnn.pt.") and files.sweep(tmp_path) == []  # held
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == before and checkpoints.load_state(target)["config"] == {"v": 1}
    assert stale[0].exists()  # nothing could clean up after SIGKILL ...
    results.check_out(tmp_path)  # ... until the next command writing here starts
    assert sorted(os.listdir(tmp_path)) == ["dncnn.pt", "dncnn.run", "notes.partial"]  # .run: the run's state and log
