"""The ``oder-edu`` command: help lists every command; bad usage fails clearly."""

import argparse
import errno
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from oder_edu import cli
from oder_edu.cli import ALIASES, COMMANDS, command_line, main


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
    monkeypatch.setattr(sys, "argv", ["oder-edu", "--debug", "train", "deq", "--steps", "3", "--app", "ct", "--debug"])
    assert command_line(args) == "oder-edu train deq --steps 3 --app ct"
    monkeypatch.setattr(sys, "argv", ["python", "-c"])  # main() called from Python: rebuilt from args
    assert command_line(args) == "oder-edu train deq --app ct --steps 3 --no-progress"
    args.debug = True
    assert command_line(args) == "oder-edu train deq --app ct --steps 3 --no-progress"


# --- one spelling per concept (issue #19) ------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``oder-edu NAME`` (what ``oder-edu NAME --help`` prints)."""
    parser = cli._parser(name.split())
    for word in name.split():
        parser = parser._subparsers._group_actions[0].choices[word]
    return parser


def flags_of(name: str) -> set[str]:
    """The long flags ``oder-edu NAME --help`` shows."""
    return set(re.findall(r"(?<![\w-])--[a-zA-Z][a-zA-Z-]*", command_parser(name).format_help().split("options:")[1]))


@pytest.fixture(scope="module")
def shown_flags() -> dict[str, set[str]]:
    return {name: flags_of(name) for name in COMMANDS}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_only_the_canonical_spellings(name, shown_flags):
    """No old spelling in --help, and a flag is named after its destination (one name per concept)."""
    shown = shown_flags[name]
    assert "--debug" in shown and "--help" in shown
    assert not shown & set(ALIASES), f"oder-edu {name} --help shows old spellings {sorted(shown & set(ALIASES))}"
    for action in command_parser(name)._actions:
        visible = [o for o in action.option_strings if o.startswith("--") and action.help != argparse.SUPPRESS]
        for option in visible:
            if option not in ("--help", "--no-pretrained"):  # --no-pretrained clears --pretrained
                assert option == "--" + action.dest.replace("_", "-"), (name, option, action.dest)


def test_no_two_flags_across_commands_spell_one_concept(shown_flags):
    """The concepts that drifted between commands (issue #19) each have one spelling everywhere."""
    everywhere = set().union(*shown_flags.values())
    assert set(ALIASES.values()) <= everywhere
    synonyms = [{"--size", "--image-size"}, {"--angles", "--num-angles", "--num-blocks"},
                {"--iters", "--iterations"}, {"--source", "--notebooks"}]
    for family in synonyms:
        assert len(family & everywhere) == 1, family & everywhere


def test_every_recorded_command_still_parses():
    """The weights' manifest and the bench results record commands typed with the old spellings."""
    recorded = [entry["command"] for entry in json.loads((ROOT / "oder_edu/weights/MANIFEST.json").read_text()).values()]
    recorded += [json.loads(p.read_text())["command"] for p in sorted((ROOT / "benchmarks/results").rglob("*.json"))]
    assert len(recorded) > 10
    for command in recorded:
        words = shlex.split(command)
        assert words[0] == "oder-edu", command
        args = cli._parser(words[1:]).parse_args(words[1:])
        assert args.module.startswith("oder_edu.commands."), command


@pytest.mark.parametrize("old, new", [
    (["demo", "--size", "32", "--angles", "8"], ["demo", "--image-size", "32", "--num-blocks", "8"]),
    (["bench", "widgets", "--num-angles", "16"], ["bench", "widgets", "--num-blocks", "16"]),
    (["bench", "oder", "--cost-size", "64", "--cost-blocks", "9"], ["bench", "oder", "--image-size", "64", "--num-blocks", "9"]),
    (["bench", "priors", "--iters", "5"], ["bench", "priors", "--iterations", "5"]),
    (["labs", "--source", "nb"], ["labs", "--notebooks", "nb"]),
    (["bench", "notebooks", "--source", "nb"], ["bench", "notebooks", "--notebooks", "nb"]),
])
def test_an_old_spelling_gives_the_namespace_of_the_canonical_flag(old, new):
    assert cli._parser(old).parse_args(old) == cli._parser(new).parse_args(new)


def test_an_old_spelling_leaves_the_default_alone():
    argv = ["demo"]
    args = cli._parser(argv).parse_args(argv)
    assert (args.image_size, args.num_blocks) == (128, 60)


# --- errors: one line, an exit status, a traceback only with --debug ------------------------------
def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "oder_edu.cli", *args], capture_output=True, text=True,
                          env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}, cwd=ROOT)


def test_a_bad_argument_is_one_line_and_status_2_from_the_real_command():
    done = run("demo", "--iterations", "-1", env={"ODER_EDU_DEBUG": None})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "oder-edu demo: error: --iterations must be an integer >= 1, got -1\n"


def test_a_runtime_error_is_one_line_and_status_1(tmp_path):
    done = run("labs", "--notebooks", str(tmp_path), "--out", str(tmp_path / "s"), env={"ODER_EDU_DEBUG": None})
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"oder-edu labs: error: no notebooks (*.ipynb) in {tmp_path}")


@pytest.mark.parametrize("how", [["--debug", "demo"], ["demo", "--debug"], ["demo"]])
def test_debug_shows_the_traceback(how):
    done = run(*how, "--iterations", "-1", env={"ODER_EDU_DEBUG": "1" if how == ["demo"] else None})
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "ValueError: --iterations must be an integer >= 1, got -1" in done.stderr


def test_an_argparse_error_is_one_line():
    done = run("train", "deq", "--steps", "many")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "argument --steps: invalid int value: 'many'" in done.stderr and "--help" in done.stderr


def test_exit_status_by_kind_of_error():
    from oder_edu.algorithms.iterate import NonContractiveError
    from oder_edu.checkpoints import CheckpointError

    assert cli.exit_status(ValueError("x")) == cli.exit_status(TypeError("x")) == cli.USAGE == 2
    assert cli.exit_status(FileExistsError("x")) == cli.USAGE
    for runtime in (CheckpointError("x"), NonContractiveError("x"), FileNotFoundError("x"), PermissionError("x"),
                    OSError(errno.ENOSPC, "No space left on device")):
        assert cli.exit_status(runtime) == cli.RUNTIME == 1
    assert cli.exit_status(RuntimeError("a bug")) is None and cli.exit_status(KeyError("a bug")) is None
    assert cli.one_line(OSError(errno.ENOSPC, "No space left on device", "x.png")) == "x.png: No space left on device"
    assert cli.one_line(CheckpointError("cannot load w.pt;\n    oder-edu train ...")) == \
        "cannot load w.pt; oder-edu train ..."


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys, tmp_path):
    import oder_edu.commands.clean_partials as command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "main", interrupted)
    monkeypatch.delenv("ODER_EDU_DEBUG", raising=False)
    assert main(["clean-partials", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "oder-edu clean-partials: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "clean-partials", str(tmp_path)])
