"""The ``oder-edu`` command.

    oder-edu demo                      headless CT comparison (FBP, TV, PnP, RED, online RED)
    oder-edu bench physics|widgets|oder|notebooks [--out DIR]
    oder-edu train denoiser|deq ...    make the shipped weights
    oder-edu labs [--out DIR]          write student versions of the notebooks

Each command lives in its own module exposing ``add_arguments(parser)`` and ``main(args)``;
modules are imported only when their command runs, so ``oder-edu --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

COMMANDS = {
    "demo": ("oder_edu.demo", "reconstruct a sparse-view CT phantom five ways and print a table"),
    "labs": ("oder_edu.labs", "write student versions of the notebooks"),
    "bench physics": ("oder_edu.bench.physics", "forward/adjoint/gradient speed and memory"),
    "bench widgets": ("oder_edu.bench.widgets", "explorer responsiveness and iterations/s"),
    "bench oder": ("oder_edu.bench.oder", "ODER vs full DEQ: memory, time, accuracy"),
    "bench notebooks": ("oder_edu.bench.notebooks", "time and peak memory of each notebook"),
    "train denoiser": ("oder_edu.train.denoiser", "train the shipped DnCNN denoiser"),
    "train deq": ("oder_edu.train.deq", "train a RED-DEQ / ODER model"),
}


def _parser(argv: list[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(prog="oder-edu", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    chosen = None
    for name, (module, help_text) in COMMANDS.items():
        words = name.split()
        if len(words) == 1:
            p = sub.add_parser(words[0], help=help_text)
        else:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = g.add_subparsers(dest="target", metavar="TARGET", required=True)
            p = groups[words[0]].add_parser(words[1], help=help_text)
        p.set_defaults(module=module)
        # Only the command being run imports its module (to add its own options).
        if argv[: len(words)] == words:
            chosen = module
            add = getattr(importlib.import_module(module), "add_arguments", None)
            if add is not None:
                add(p)
    return parser, chosen


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
        line += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return shlex.join(line)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, _ = _parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "module", None) is None:
        parser.print_help()
        return 2
    result = importlib.import_module(args.module).main(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
