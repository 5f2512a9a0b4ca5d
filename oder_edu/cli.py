"""The ``oder-edu`` command.

``COMMANDS`` names each command's module in ``oder_edu.commands``, imported only when it runs.
Every command spells a concept one way (``--image-size``, ``--num-blocks``, ``--iterations``, ...);
``ALIASES`` keeps the older spellings working, hidden from ``--help``, because the shipped weights'
manifest and the bench results record the commands that made them.

An error the user can act on -- a bad argument value (``ValueError``, ``TypeError``), a file that
would be overwritten, a missing or corrupted file (``CheckpointError``), a full disk or a denied
permission (``OSError``) -- ends the command with one line on stderr and exit status 2 (usage:
the command line must change) or 1 (the run failed); ``--debug`` or ``ODER_EDU_DEBUG=1`` raises it
with its traceback instead. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

USAGE, RUNTIME = 2, 1  # exit statuses
COMMANDS = {
    "demo": ("demo", "reconstruct a sparse-view CT phantom five ways and print a table"),
    "labs": ("labs", "write student versions of the notebooks"),
    "bench physics": ("bench_physics", "forward/adjoint/gradient speed and memory"),
    "bench widgets": ("bench_widgets", "explorer responsiveness and iterations/s"),
    "bench oder": ("bench_oder", "ODER vs full DEQ: memory, time, accuracy"),
    "bench priors": ("bench_priors", "TV, PnP, RED and the DEQ/ODER checkpoints on real slices"),
    "bench notebooks": ("bench_notebooks", "time and peak memory of each notebook"),
    "train denoiser": ("train_denoiser", "train a DnCNN denoiser"),
    "train deq": ("train_deq", "train a RED-DEQ / ODER model"),
    "clean-partials": ("clean_partials", "remove the temporary files a killed or failed save left behind"),
}

# old spelling -> the one every command uses now (commands recorded with the old one still run)
ALIASES = {
    "--size": "--image-size",
    "--cost-size": "--image-size",
    "--angles": "--num-blocks",
    "--num-angles": "--num-blocks",
    "--cost-blocks": "--num-blocks",
    "--iters": "--iterations",
    "--source": "--notebooks",
    "--tau-init": "--tau-over-L",  # train deq's ModelConfig.tau_init until 2026-12 (it always meant τ/L_g)
}


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors on one line (the usage of ``train deq`` fills a screen)."""

    def error(self, message):
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_aliases(parser: argparse.ArgumentParser) -> None:
    """Accept the old spellings (``ALIASES``) of ``parser``'s flags, hidden from ``--help``: each
    stores into the canonical flag's ``dest`` (and leaves its default alone)."""
    for action in list(parser._actions):
        for old, new in ALIASES.items():
            if new in action.option_strings and old not in parser._option_string_actions:
                parser.add_argument(old, dest=action.dest, type=action.type, nargs=action.nargs,
                                    choices=action.choices, metavar=action.metavar, default=argparse.SUPPRESS,
                                    help=argparse.SUPPRESS)


def _add_debug(parser: argparse.ArgumentParser, default=False) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, show the Python traceback (also: ODER_EDU_DEBUG=1)")


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="oder-edu", description=__doc__.split("\n\n")[0])
    _add_debug(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}  # "bench" -> its subcommands
    for name, (module, help_text) in COMMANDS.items():
        words = name.split()
        if len(words) == 2 and words[0] not in groups:
            group = sub.add_parser(words[0], help=f"{words[0]} commands")
            groups[words[0]] = group.add_subparsers(dest="target", metavar="TARGET", required=True)
        p = (groups[words[0]] if len(words) == 2 else sub).add_parser(words[-1], help=help_text)
        p.set_defaults(module=f"oder_edu.commands.{module}")
        _add_debug(p, default=argparse.SUPPRESS)  # after the command too; not overriding one before it
        if _command_words(argv)[: len(words)] == words:  # only the command being run imports its module
            importlib.import_module(f"oder_edu.commands.{module}").add_arguments(p)
            _add_aliases(p)
    return parser


def _command_words(argv: list[str]) -> list[str]:
    """``argv`` without the global options before the command (``oder-edu --debug demo ...``)."""
    words = list(argv)
    while words and words[0] == "--debug":
        words.pop(0)
    return words


def command_line(args: argparse.Namespace) -> str:
    """The command being run, to record beside its results: ``oder-edu`` and the arguments
    as typed, or (when ``main`` was called from Python) an equivalent line rebuilt from ``args``."""
    words = [args.command] + ([args.target] if getattr(args, "target", None) else [])
    typed = [word for word in sys.argv[1:] if word != "--debug"]  # what was asked, not how errors show
    if typed[: len(words)] == words:
        return "oder-edu " + shlex.join(typed)
    line = ["oder-edu", *words]
    for key, value in vars(args).items():
        if key in ("command", "target", "module", "debug") or value is None or value is False:
            continue
        values = [] if value is True else list(map(str, value)) if isinstance(value, (list, tuple)) else [str(value)]
        line += [f"--{key.replace('_', '-')}", *values]
    return shlex.join(line)


def exit_status(error: BaseException) -> int | None:
    """``USAGE`` (2) for a value the command line must change, ``RUNTIME`` (1) for a run that failed
    on a file, the disk or the training; None for anything else (a bug: its traceback is shown)."""
    from .algorithms.iterate import NonContractiveError
    from .checkpoints import CheckpointError

    if isinstance(error, (CheckpointError, NonContractiveError)):
        return RUNTIME
    if isinstance(error, (ValueError, TypeError, FileExistsError)):
        return USAGE
    if isinstance(error, OSError):
        return RUNTIME
    return None


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (an ``OSError`` as 'PATH: reason')."""
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default ``sys.argv[1:]``); returns its exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "module", None) is None:
        parser.print_help()
        return USAGE
    debug = args.debug or os.environ.get("ODER_EDU_DEBUG", "") not in ("", "0")
    prog = " ".join(["oder-edu", args.command] + ([args.target] if getattr(args, "target", None) else []))
    try:
        return int(importlib.import_module(args.module).main(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        status = exit_status(error)
        if debug or status is None:
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
