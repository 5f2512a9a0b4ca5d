"""``oder-edu labs``: student versions of the notebooks, each solution region replaced by a stub raising
``NotImplementedError("Hint: ...")`` with the region's hints, or with ``--format nbgrader`` an nbgrader course folder
(``labs_nbgrader``); both formats and their workflow: notebooks/README.md."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from .. import files

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HINT = re.compile(r"^\s*#\s*Hint:\s*(.*)$")
DEFAULT_HINT = "write your solution here."
FORMATS = ("student", "nbgrader")


def has_solution(source: str) -> bool:
    """True when a cell's source contains a solution region."""
    return BEGIN in source


def strip_solutions(source: str, where: str = "cell") -> str:
    """The student version of a code cell's ``source`` (``where``: its name in errors). An unclosed, unopened or
    nested region, or a marker not alone on its line, raises a ValueError: guessing could leak or delete code."""
    out: list[str] = []
    region: list[str] | None = None  # lines of the open solution region
    indent = ""
    for number, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        for marker in (BEGIN, END):
            if marker in line and stripped != marker:
                raise ValueError(f"{where}, line {number}: {marker!r} must stand alone on its line, got {line!r}")
        if stripped == BEGIN:
            if region is not None:
                raise ValueError(f"{where}, line {number}: {BEGIN!r} inside an open solution region")
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif stripped == END:
            if region is None:
                raise ValueError(f"{where}, line {number}: {END!r} without a matching {BEGIN!r}")
            hints = [m.group(1).strip() for m in map(HINT.match, region) if m]
            message = "Hint: " + (" ".join(hints) if hints else DEFAULT_HINT)
            out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({message!r})"]
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise ValueError(f"{where}: {BEGIN!r} is never closed by {END!r}")
    return "\n".join(out)


def student_notebook(notebook, name: str = "notebook"):
    """``(student, count)``: a copy of an nbformat notebook, solutions stripped, and its number of exercise cells."""
    student = copy.deepcopy(notebook)
    student.metadata.pop("widgets", None)
    count = 0
    for index, cell in enumerate(student.cells):
        cell.get("metadata", {}).pop("widgets", None)  # drop what running a notebook adds
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if has_solution(cell.source):
                cell.source = strip_solutions(cell.source, where=f"{name}, cell {index}")
                count += 1
    return student, count


def write_student_versions(source_dir, out_dir, force: bool = False, format: str = "student",
                           points: float = 1.0) -> list[tuple[Path, int]]:
    """Write every ``*.ipynb`` of ``source_dir`` as a student version to ``out_dir`` (each atomically,
    ``oder_edu.files``), or nothing if one is already there (a student's work) unless ``force``:
    ``[(path, exercise cells), ...]``. ``format="nbgrader"``: an nbgrader course folder instead, each lab's
    exercises worth ``points`` (``labs_nbgrader``); an ``nbgrader_config.py`` already there is kept."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    paths = sorted(source_dir.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {source_dir.resolve()}; pass --notebooks DIR")
    if out_dir.resolve() == source_dir.resolve():
        raise ValueError(f"--out must differ from --notebooks ({source_dir}); the instructor notebooks would be "
                         f"overwritten")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder; choose a folder for the student notebooks")
    if format == "nbgrader":
        from .labs_nbgrader import nbgrader_course

        students = nbgrader_course(paths, out_dir, points)  # all of them converted before the first is written
        if (out_dir / "nbgrader_config.py").exists():
            students = [s for s in students if s[0].name != "nbgrader_config.py"]  # the instructor's own
    else:
        students = []
        for path in paths:  # all of them converted before the first is written
            student, count = student_notebook(nbformat.read(path, as_version=4), path.name)
            nbformat.validate(student)
            text = nbformat.writes(student)
            students.append((out_dir / path.name, text if text.endswith("\n") else text + "\n", count))
    existing = [target for target, _, _ in students if target.exists()]
    if existing and not force:
        raise FileExistsError(f"{len(existing)} notebook(s) already in {out_dir} (e.g. {existing[0].name}), perhaps "
                              f"students' work; refusing to overwrite them (pass --force, or choose another --out)")
    for target, text, _ in students:
        target.parent.mkdir(parents=True, exist_ok=True)
        files.sweep(target.parent)  # what a killed earlier run left behind
        files.write_text(target, text, overwrite=force)
    return [(target, count) for target, _, count in students if target.suffix == ".ipynb"]


def add_arguments(parser) -> None:
    parser.add_argument("--notebooks", default="notebooks", help="folder of instructor notebooks (default: notebooks)")
    parser.add_argument("--out", default="student", help="folder for the student versions (default: student)")
    parser.add_argument("--force", action="store_true", help="replace notebooks already in --out")
    parser.add_argument("--format", choices=FORMATS, default="student",
                        help="student: notebooks with hinted stubs (default); nbgrader: an nbgrader course folder "
                             "(source/<lab>/, autograded test cells calling the course's checks)")
    parser.add_argument("--points", type=float, default=1.0, help="nbgrader: points per exercise (default: 1)")


def main(args) -> int:
    written = write_student_versions(args.notebooks, args.out, args.force, args.format, args.points)
    for path, count in written:
        print(f"{path}  ({count} exercise{'s' if count != 1 else ''})")
    if args.format == "nbgrader":
        print(f"an nbgrader course folder: in {args.out}, `nbgrader generate_assignment <lab>` makes the release "
              f"(notebooks/README.md)")
    return 0
