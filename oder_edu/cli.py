"""The ``oder-edu`` command.

``COMMANDS`` names each command's module in ``oder_edu.commands``, imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

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
}


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oder-edu", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}  # "bench" -> its subcommands
    for name, (module, help_text) in COMMANDS.items():
        words = name.split()
        if len(words) == 2 and words[0] not in groups:
            group = sub.add_parser(words[0], help=f"{words[0]} commands")
            groups[words[0]] = group.add_subparsers(dest="target", metavar="TARGET", required=True)
        p = (groups[words[0]] if len(words) == 2 else sub).add_parser(words[-1], help=help_text)
        p.set_defaults(module=f"oder_edu.commands.{module}")
        if argv[: len(words)] == words:  # only the command being run imports its module
            importlib.import_module(f"oder_edu.commands.{module}").add_arguments(p)
    return parser


def command_line(args: argparse.Namespace) -> str:
    """The command being run, to record beside its results: ``oder-edu`` and the arguments
    as typed, or (when ``main`` was called from Python) an equivalent line rebuilt from ``args``."""
    words = [args.command] + ([args.target] if getattr(args, "target", None) else [])
    if sys.argv[1:1 + len(words)] == words:
        return "oder-edu " + shlex.join(sys.argv[1:])
    line = ["oder-edu", *words]
    for key, value in vars(args).items():
        if key in ("command", "target", "module") or value is None or value is False:
            continue
        values = [] if value is True else list(map(str, value)) if isinstance(value, (list, tuple)) else [str(value)]
        line += [f"--{key.replace('_', '-')}", *values]
    return shlex.join(line)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "module", None) is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(args.module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
