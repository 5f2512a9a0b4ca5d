"""``oder-edu labs --format nbgrader``: the notebooks as an nbgrader course folder (``source/<lab>/<lab>.ipynb``
and an ``nbgrader_config.py``), for instructors who release, collect and autograde with nbgrader.

In each lab (a notebook with exercises; 00 has none and stays a plain notebook):
- every exercise cell is a **solution** cell: its ``### BEGIN SOLUTION`` region (nbgrader's own markers)
  becomes nbgrader's stub when the assignment is generated; the region's ``# Hint:`` lines are moved
  above it, so the student still gets them;
- after it, one **autograded test** cell per check the exercise calls (``ok = check_x(fn)``), worth
  ``points``, asserting that the course's check passes: the checks are the grading tools;
- every other cell is **read-only** (nbgrader restores it when grading);
- a read-only cell after the set-up cell calls ``exercises.withhold_solutions()``: in a graded lab
  ``solution("…")`` prints no answer and the hints stop offering one.
The format and the workflow are in notebooks/README.md."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import nbformat

from .labs import BEGIN, END, HINT, has_solution, strip_solutions

SCHEMA = 3
CONFIG = '''# nbgrader's configuration for the oder-edu labs (written by `oder-edu labs --format nbgrader`).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "oder-edu"
# Autograding runs each notebook top to bottom; a cell may take longer than nbgrader's default 30 s.
c.Execute.timeout = 600
'''
WITHHOLD = ("# A graded lab (nbgrader): the exercises' full answers are withheld in this kernel; solution(\"…\")\n"
            "# says so instead of printing one. The checks and their hints work as usual.\n"
            "from oder_edu.exercises import withhold_solutions\n"
            "withhold_solutions()")


def _metadata(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {"schema_version": SCHEMA, "grade": grade, "solution": solution, "locked": locked, "task": False,
            "grade_id": grade_id}
    if grade:
        meta["points"] = points
    return meta


def hints_above_regions(source: str) -> str:
    """``source`` with each solution region's ``# Hint:`` lines moved just above its ``### BEGIN SOLUTION``:
    nbgrader replaces the whole region by its stub, and the hints are meant for the student."""
    out: list[str] = []
    region: list[str] | None = None
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            region, begin = [], line
        elif stripped == END:
            out += [l for l in region if HINT.match(l)] + [begin] + [l for l in region if not HINT.match(l)] + [line]
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    return "\n".join(out)


def checks_called(source: str, where: str) -> list[tuple[str, str]]:
    """``[(check, function), ...]`` of the exercise cell's top-level ``ok = check_<exercise>(function)`` lines."""
    tree = ast.parse("\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in source.split("\n")))
    found = []
    for node in tree.body:
        call = node.value if isinstance(node, (ast.Assign, ast.Expr)) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id.startswith("check_")
                and call.args and isinstance(call.args[0], ast.Name)):
            found.append((call.func.id, call.args[0].id))
    if not found:
        raise ValueError(f"{where}: an exercise cell must call its check, as in `ok = check_landweber(landweber)`")
    return found


def grading_cell_source(check: str, function: str, points: float) -> str:
    return (f"# Autograded test ({points:g} point{'' if points == 1 else 's'}): the course's check of `{function}` "
            f"must pass.\nfrom oder_edu.exercises import {check}\n"
            f"assert {check}({function}), \"{function} does not pass {check} yet: see the check's message above\"")


def nbgrader_notebook(notebook, lab: str, points: float = 1.0):
    """``(source, exercises)``: the nbgrader source version of instructor notebook ``lab`` (its stem), outputs
    and widget state stripped, and the names of its checks."""
    if not points > 0:
        raise ValueError(f"points must be > 0, got {points!r}")
    source = copy.deepcopy(notebook)
    source.metadata.pop("widgets", None)
    cells, checks = [], []
    for index, cell in enumerate(source.cells):
        cell.get("metadata", {}).pop("widgets", None)
        where = f"{lab}, cell {index}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell.cell_type == "code" and has_solution(cell.source):
            strip_solutions(cell.source, where)  # refuses malformed markers before nbgrader sees them
            called = checks_called(cell.source, where)
            cell.source = hints_above_regions(cell.source)
            cell.metadata["nbgrader"] = _metadata(f"{lab}-{called[0][0]}-answer", solution=True)
            cells.append(cell)
            for check, function in called:
                test = nbformat.v4.new_code_cell(grading_cell_source(check, function, points))
                test.metadata["nbgrader"] = _metadata(f"{lab}-{check}", grade=True, locked=True, points=points)
                cells.append(test)
                checks.append(check)
            continue
        cell.metadata["nbgrader"] = _metadata(f"{lab}-cell-{index}", locked=True)
        cells.append(cell)
        if index == 1:  # the set-up cell: the package is importable from here on
            withhold = nbformat.v4.new_code_cell(WITHHOLD)
            withhold.metadata["nbgrader"] = _metadata(f"{lab}-withhold-solutions", locked=True)
            cells.append(withhold)
    source.cells = cells
    if len(set(checks)) != len(checks):
        raise ValueError(f"{lab}: a check is called by two exercise cells: {sorted(checks)}")
    return source, checks


def nbgrader_course(paths: list[Path], out_dir: Path, points: float) -> list[tuple[Path, str, int]]:
    """``[(target, text, exercises), ...]`` for the labs among ``paths`` (notebooks without exercises are left
    out) and the course's ``nbgrader_config.py``; nothing is written here."""
    written = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if not any(c.cell_type == "code" and has_solution(c.source) for c in notebook.cells):
            continue
        lab = path.stem
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", lab):
            raise ValueError(f"{path.name}: nbgrader needs assignment names of letters, digits, _ and -")
        source, checks = nbgrader_notebook(notebook, lab, points)
        nbformat.validate(source)
        text = nbformat.writes(source)
        written.append((out_dir / "source" / lab / path.name, text if text.endswith("\n") else text + "\n",
                        len(checks)))
    if not written:
        raise ValueError("no notebook has exercises (### BEGIN SOLUTION regions): nothing for nbgrader to grade")
    return written + [(out_dir / "nbgrader_config.py", CONFIG, 0)]
