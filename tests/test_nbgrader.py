"""The nbgrader round trip of the course labs, with nbgrader itself: ``oder-edu labs --format nbgrader`` writes
the course folder, ``nbgrader generate_assignment`` makes the release, and ``nbgrader autograde`` grades two
submissions of every lab: one solved (the instructor's answers typed into the released cells) scores full
marks, one handed in as released scores zero. The release holds no answer, and in it ``solution()`` gives none.

nbgrader 0.9.6 needs notebook<8 and jupyter-client<9: it lives in a venv of its own (the [nbgrader] extra,
through constraints.txt; tests/venvs.py), never in the usual or the Colab-like one."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

import venvs
from oder_edu import exercises
from oder_edu.commands.labs import BEGIN, END, HINT, has_solution

ROOT = Path(__file__).resolve().parent.parent
LABS = [p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
        if any(has_solution(c.source) for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")]
STUDENTS = ("solved", "empty")
# Every lab by default (CI); ODER_EDU_NBGRADER_LABS=01_inverse_problems,04_oder grades only those, for a quick run.
ONLY = [name for name in os.environ.get("ODER_EDU_NBGRADER_LABS", "").split(",") if name]
GRADED = [lab for lab in LABS if not ONLY or lab.stem in ONLY]
pytestmark = pytest.mark.slow


def _regions(source: str) -> list[list[str]]:
    """The lines of each solution region of ``source``, its hints left out."""
    blocks = re.findall(rf"^[ \t]*{re.escape(BEGIN)}\n(.*?)^[ \t]*{re.escape(END)}", source, re.S | re.M)
    return [[line for line in block.split("\n") if not HINT.match(line)] for block in blocks]


def _answer_lines(lab: Path) -> set[str]:
    """The lines that give an answer away: those of the lab's solution regions and of its exercises' full answers
    (``exercises.HINTS``), less blank lines, comments and lines the lab shows outside its regions anyway."""
    nb = nbformat.read(lab, as_version=4)
    answers, shown = set(), set()
    for cell in nb.cells:
        if cell.cell_type == "code" and has_solution(cell.source):
            answers |= {line.strip() for region in _regions(cell.source) for line in region}
            names = re.findall(r"\bcheck_(\w+)\(", cell.source)
            answers |= {line.strip() for name in names for line in exercises.HINTS[name].solution.splitlines()}
            outside = re.sub(rf"{re.escape(BEGIN)}.*?{re.escape(END)}", "", cell.source, flags=re.S)
            shown |= {line.strip() for line in outside.splitlines()}
        else:
            shown |= {line.strip() for line in cell.source.splitlines()}
    return {line for line in answers - shown if line and not line.startswith("#")}


def _run(python: Path, *args: str, cwd: Path) -> str:
    env = venvs.clean_env(ODER_EDU_DEVICE="cpu")
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"  # nbgrader runs the venv's `alembic`
    done = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def course(wheel, tmp_path_factory):
    """The course folder after generate_assignment and autograde of both submissions of every lab."""
    constraints = ROOT / "constraints.txt"
    python = venvs.venv("nbgrader", venvs.key(ROOT / "pyproject.toml", constraints), lambda py: venvs.pip(
        py, "install", "-q", "-c", str(constraints), f"oder-edu[nbgrader] @ {wheel.as_uri()}"))
    venvs.pip(python, "install", "-q", "--no-deps", "--force-reinstall", str(wheel))  # this commit's package
    root = tmp_path_factory.mktemp("nbgrader") / "course"
    _run(python, "-m", "oder_edu.cli", "labs", "--format", "nbgrader", "--notebooks", str(ROOT / "notebooks"),
         "--out", str(root), cwd=root.parent)
    for lab in GRADED:
        _run(python, "-m", "nbgrader", "generate_assignment", lab.stem, "--force", cwd=root)
        released = nbformat.read(root / "release" / lab.stem / lab.name, as_version=4)
        instructor = {c.metadata["nbgrader"]["grade_id"]: c for c in
                      nbformat.read(root / "source" / lab.stem / lab.name, as_version=4).cells}
        for student in STUDENTS:
            submission = nbformat.from_dict(json.loads(json.dumps(released)))
            if student == "solved":  # the student types the instructor's answers into the released cells
                for cell in submission.cells:
                    if cell.metadata.get("nbgrader", {}).get("solution"):
                        cell.source = re.sub(rf"^[ \t]*(?:{re.escape(BEGIN)}|{re.escape(END)})\n", "",
                                             instructor[cell.metadata["nbgrader"]["grade_id"]].source, flags=re.M)
            else:  # handed in as released, after asking for an answer
                submission.cells.append(nbformat.v4.new_code_cell(
                    "from oder_edu.exercises import HINTS, solution\nfor name in HINTS:\n    solution(name)"))
            folder = root / "submitted" / student / lab.stem
            folder.mkdir(parents=True)
            nbformat.write(submission, folder / lab.name)
        _run(python, "-m", "nbgrader", "autograde", lab.stem, "--force", cwd=root)
    _run(python, "-m", "nbgrader", "export", "--to", "grades.csv", cwd=root)
    return root


def test_every_lab_has_exercises_to_grade():
    assert [p.stem for p in LABS] == ["01_inverse_problems", "02_pnp_and_red", "03_deep_equilibrium", "04_oder",
                                      "05_applications"]
    assert GRADED, f"ODER_EDU_NBGRADER_LABS={','.join(ONLY)} names no lab"


def test_a_solved_submission_scores_full_marks_and_an_empty_one_zero(course):
    with open(course / "grades.csv") as f:
        grades = {(row["assignment"], row["student_id"]): row for row in csv.DictReader(f)}
    assert set(grades) == {(lab.stem, student) for lab in GRADED for student in STUDENTS}
    for lab in GRADED:
        tests = [c for c in nbformat.read(course / "source" / lab.stem / lab.name, as_version=4).cells
                 if c.metadata["nbgrader"]["grade"]]
        maximum = sum(c.metadata["nbgrader"]["points"] for c in tests)
        solved, empty = grades[lab.stem, "solved"], grades[lab.stem, "empty"]
        assert float(solved["max_score"]) == maximum >= 2
        assert float(solved["score"]) == maximum, f"{lab.stem}: the solved submission lost points"
        assert float(empty["score"]) == 0, f"{lab.stem}: the empty submission scored"


def test_the_released_labs_hold_no_answer(course):
    for lab in GRADED:
        released = nbformat.read(course / "release" / lab.stem / lab.name, as_version=4)
        text = "\n".join(c.source for c in released.cells)
        answers = _answer_lines(lab)
        assert len(answers) >= 3, f"{lab.stem}: found too few answer lines to check"
        leaked = sorted(line for line in answers if line in {l.strip() for l in text.splitlines()})
        assert not leaked, f"{lab.stem}: the release shows answer lines {leaked[:3]}"
        assert BEGIN not in text and END not in text
        solutions = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert solutions and all("raise NotImplementedError()" in c.source and "# Hint:" in c.source
                                 for c in solutions)
        # Every other cell is read-only in the release.
        locked = [c for c in released.cells if not c.metadata["nbgrader"]["solution"]]
        assert all(c.metadata.get("editable") is False and c.metadata.get("deletable") is False for c in locked)


def test_solution_gives_no_answer_in_a_graded_lab(course):
    """The empty submissions asked solution() for every exercise: the autograded notebooks show none."""
    for lab in GRADED:
        graded = nbformat.read(course / "autograded" / "empty" / lab.stem / lab.name, as_version=4)
        asked = "".join(o.get("text", "") for o in graded.cells[-1].outputs)
        assert asked.count("full answers are withheld") == len(exercises.HINTS)
        assert not [line for line in _answer_lines(lab) if line in asked]
