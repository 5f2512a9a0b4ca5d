"""The package's layers point one way (README.md, "Where things are"): physics <- denoisers <- algorithms <- deq <-
train; the commands (cli, oder_edu.commands) sit on top with the widgets and the notebooks.
Nothing in the library imports a command module or argparse, and no notebook does."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "oder_edu"
COMMANDS = ("oder_edu.cli", "oder_edu.commands")
# A layer may import only what lies below it (leaves: checks, device, metrics, memory, timing,
# phantoms, images, problems, checkpoints, files, results, physics).
FORBIDDEN = {
    "oder_edu.physics": ("oder_edu.denoisers", "oder_edu.algorithms", "oder_edu.deq", "oder_edu.train",
                         "oder_edu.widgets", "oder_edu.problems"),
    "oder_edu.denoisers": ("oder_edu.algorithms", "oder_edu.deq", "oder_edu.train", "oder_edu.widgets"),
    "oder_edu.algorithms": ("oder_edu.deq", "oder_edu.train", "oder_edu.widgets"),
    "oder_edu.deq": ("oder_edu.train", "oder_edu.widgets"),
    "oder_edu.train": ("oder_edu.widgets",),
    "oder_edu.problems": ("oder_edu.denoisers", "oder_edu.algorithms", "oder_edu.deq", "oder_edu.train",
                          "oder_edu.widgets"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` (module ``name``) imports, relative imports resolved."""
    tree = ast.parse(path.read_text())
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


LIBRARY = [p for p in sorted(PACKAGE.rglob("*.py")) if not module_name(p).startswith(COMMANDS)]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_imports_no_command_and_no_argparse(path):
    bad = {name for name in imports(path) if name == "argparse" or name.startswith(COMMANDS)}
    assert not bad, f"{module_name(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_layers_point_one_way(path):
    name = module_name(path)
    for layer, below in FORBIDDEN.items():
        if name == layer or name.startswith(layer + "."):
            bad = {i for i in imports(path) if any(i == b or i.startswith(b + ".") for b in below)}
            assert not bad, f"{name} (layer {layer}) imports {sorted(bad)} from above it"


def test_the_walk_resolves_relative_imports(tmp_path):
    """The checker itself can fail: relative imports of a command module and argparse are found."""
    sample = tmp_path / "x.py"
    sample.write_text("from ..cli import command_line\nfrom . import red_deq\nimport argparse\n")
    found = imports(sample, "oder_edu.deq.x")
    assert {"oder_edu.cli", "oder_edu.cli.command_line", "oder_edu.deq.red_deq", "argparse"} <= found


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_only_the_library(notebook):
    source = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    bad = {n for n in names if n == "argparse" or n.startswith(COMMANDS)}
    assert not bad, f"{notebook.name} imports {sorted(bad)}"
