"""The ``oder-edu`` command: help lists every command; bad usage fails clearly."""

import subprocess
import sys

import pytest

from oder_edu.cli import COMMANDS, command_line, main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in {name.split()[0] for name in COMMANDS}:
        assert name in out


def test_bench_help_lists_targets(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        if name.startswith("bench "):
            assert name.split()[1] in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_fails():
    done = subprocess.run([sys.executable, "-m", "oder_edu.cli", "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_command_line_records_what_was_typed_or_an_equivalent(monkeypatch):
    import argparse

    args = argparse.Namespace(command="train", target="deq", module="oder_edu.train.deq", app="ct", steps=3,
                              resume=None, no_progress=True, fast=False)
    monkeypatch.setattr(sys, "argv", ["oder-edu", "train", "deq", "--steps", "3", "--app", "ct"])
    assert command_line(args) == "oder-edu train deq --steps 3 --app ct"
    monkeypatch.setattr(sys, "argv", ["python", "-c"])  # main() called from Python: rebuilt from args
    assert command_line(args) == "oder-edu train deq --app ct --steps 3 --no-progress"
