"""``oder-edu labs --format nbgrader``: the nbgrader source folder, read without nbgrader (its round trip,
generate-assignment and autograde, is tests/test_nbgrader.py), and the solutions withheld in graded labs."""

import re
from pathlib import Path

import nbformat
import pytest

from oder_edu import cli, exercises
from oder_edu.commands.labs import BEGIN, END, has_solution, student_notebook, write_student_versions
from oder_edu.commands.labs_nbgrader import hints_above_regions, nbgrader_notebook
from oder_edu.exercises import _grading

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXERCISE = f"""import math
from oder_edu.exercises import check_psnr


def area(r):
    {BEGIN}
    # Hint: pi r squared.
    return math.pi * r**2
    {END}


area_ok = check_psnr(area)"""


def _tiny():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[md("# 09 · Tiny"), code("# Set-up cell\nx = 1"), code(EXERCISE),
                                         code("print(area(2.0) if area_ok else 0)")])
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="12.57")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _meta(cell):
    return cell.metadata["nbgrader"]


def test_each_exercise_becomes_a_solution_cell_and_an_autograded_test_cell():
    source, checks = nbgrader_notebook(_tiny(), "09_tiny", points=2)
    nbformat.validate(source)
    assert checks == ["check_psnr"]
    kinds = [(c.cell_type, _meta(c)["solution"], _meta(c)["grade"], _meta(c)["locked"]) for c in source.cells]
    assert kinds == [("markdown", False, False, True), ("code", False, False, True),  # read-only
                     ("code", False, False, True),  # withhold_solutions(), after the set-up cell
                     ("code", True, False, False),  # the exercise: the student's to edit
                     ("code", False, True, True),  # its autograded test
                     ("code", False, False, True)]
    assert "withhold_solutions()" in source.cells[2].source
    test = source.cells[4]
    assert _meta(test)["points"] == 2 and "points" not in _meta(source.cells[3])
    assert "from oder_edu.exercises import check_psnr\nassert check_psnr(area)" in test.source
    ids = [_meta(c)["grade_id"] for c in source.cells]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_\-]+", i) for i in ids)
    assert all(c.get("outputs", []) == [] for c in source.cells if c.cell_type == "code")


def test_hints_move_above_the_region_nbgrader_replaces():
    moved = hints_above_regions(EXERCISE)
    assert f"    # Hint: pi r squared.\n    {BEGIN}\n    return math.pi * r**2\n    {END}" in moved
    # What nbgrader's stub leaves (the region removed): the hint, then the student's stub.
    region = re.compile(rf"\n *{re.escape(BEGIN)}.*?{re.escape(END)}", re.S)
    assert "# Hint: pi r squared." in region.sub("\n    raise NotImplementedError()", moved)


def test_an_exercise_cell_without_its_check_is_refused():
    nb = _tiny()
    nb.cells[2].source = EXERCISE.replace("area_ok = check_psnr(area)", "")
    with pytest.raises(ValueError, match="09_tiny, cell 2: an exercise cell must call its check"):
        nbgrader_notebook(nb, "09_tiny")
    with pytest.raises(ValueError, match="points"):
        nbgrader_notebook(_tiny(), "09_tiny", points=0)


def test_the_course_notebooks_convert_with_one_test_cell_per_exercise():
    for path in sorted(NOTEBOOKS.glob("0[1-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        source, checks = nbgrader_notebook(nb, path.stem)
        nbformat.validate(source)
        assert len(checks) == student_notebook(nb, path.name)[1], path.name
        tests = [c for c in source.cells if _meta(c)["grade"]]
        assert [t.source.split("import ")[1].split("\n")[0] for t in tests] == checks
        solutions = [c for c in source.cells if _meta(c)["solution"]]
        assert len(solutions) == len(checks) and all(has_solution(c.source) for c in solutions)


def test_the_command_writes_an_nbgrader_course_folder(tmp_path, capsys):
    notebooks, out = tmp_path / "notebooks", tmp_path / "course"
    notebooks.mkdir()
    nbformat.write(_tiny(), notebooks / "09_tiny.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), notebooks / "00_plain.ipynb")
    argv = ["labs", "--format", "nbgrader", "--notebooks", str(notebooks), "--out", str(out), "--points", "3"]
    assert cli.main(argv) == 0
    assert "09_tiny.ipynb  (1 exercise)" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "nbgrader_config.py", "source/09_tiny/09_tiny.ipynb"]  # 00 has no exercises: no assignment
    config = (out / "nbgrader_config.py").read_text()
    assert "c.Execute.timeout = 600" in config and 'course_id = "oder-edu"' in config
    written = nbformat.read(out / "source/09_tiny/09_tiny.ipynb", as_version=4)
    assert [_meta(c).get("points") for c in written.cells if _meta(c)["grade"]] == [3]
    # A second run refuses to overwrite; --force replaces the labs and keeps the instructor's config.
    (out / "nbgrader_config.py").write_text("c = get_config()  # mine\n")
    assert cli.main(argv) == 2 and "refusing to overwrite" in capsys.readouterr().err
    assert cli.main(argv + ["--force"]) == 0
    assert (out / "nbgrader_config.py").read_text() == "c = get_config()  # mine\n"


def test_nothing_to_grade_is_an_error(tmp_path):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), tmp_path / "a.ipynb")
    with pytest.raises(ValueError, match="nothing for nbgrader to grade"):
        write_student_versions(tmp_path, tmp_path / "out", format="nbgrader")


@pytest.fixture
def withheld(monkeypatch):
    monkeypatch.setattr(_grading, "_withheld", [])
    monkeypatch.setattr(_grading, "_failures", {})
    monkeypatch.delenv("ODER_EDU_WITHHOLD_SOLUTIONS", raising=False)


def test_withheld_solutions_print_no_answer_and_are_not_offered(withheld, capsys):
    answer = exercises.HINTS["psnr"].solution.strip().splitlines()[-1].strip()
    exercises.solution("psnr")
    assert answer in capsys.readouterr().out  # the self-study default: printed on request
    exercises.withhold_solutions()
    exercises.solution("psnr")
    out = capsys.readouterr().out
    assert answer not in out and "withheld" in out
    wrong = lambda x, ref: (x - ref).square().mean()  # noqa: E731 - one number for the batch
    assert not exercises.check_psnr(wrong) and not exercises.check_psnr(wrong)
    out = capsys.readouterr().out
    assert "Closer:" in out and "solution(" not in out


def test_the_environment_variable_withholds_them_in_every_kernel(withheld, monkeypatch, capsys):
    monkeypatch.setenv("ODER_EDU_WITHHOLD_SOLUTIONS", "1")
    exercises.solution("landweber")
    assert "withheld" in capsys.readouterr().out
