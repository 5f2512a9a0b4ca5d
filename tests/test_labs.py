"""Student versions (``oder-edu labs``): solutions become hinted stubs, nothing else changes."""

import ast
from pathlib import Path

import nbformat
import pytest

from oder_edu import cli
from oder_edu.commands.labs import BEGIN, DEFAULT_HINT, END, has_solution, strip_solutions, student_notebook, write_student_versions

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
INSTRUCTOR = sorted(NOTEBOOKS.glob("*.ipynb"))

EXERCISE = f"""import math

def area(r):
    \"\"\"The area of a disc.\"\"\"
    {BEGIN}
    # Hint: pi r squared.
    # Hint: math.pi is there.
    return math.pi * r**2
    {END}

print(area(2.0))"""


def test_solution_becomes_an_indented_stub_with_the_hints():
    student = strip_solutions(EXERCISE)
    assert "math.pi * r**2" not in student and BEGIN not in student and END not in student
    assert "    # YOUR CODE HERE\n    raise NotImplementedError('Hint: pi r squared. math.pi is there.')" in student
    # Everything outside the region is kept verbatim.
    assert student.startswith('import math\n\ndef area(r):\n    """The area of a disc."""\n')
    assert student.endswith("\n\nprint(area(2.0))")
    namespace = {}
    exec(compile(student.replace("print(area(2.0))", ""), "<student>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="pi r squared"):
        namespace["area"](2.0)


def test_every_region_is_replaced_and_a_region_without_hint_gets_a_generic_one():
    source = f"{BEGIN}\nx = 1\n{END}\ny = 2\nif y:\n    {BEGIN}\n    z = 3\n    {END}"
    student = strip_solutions(source)
    assert student.count("raise NotImplementedError") == 2
    assert "x = 1" not in student and "z = 3" not in student and "y = 2" in student
    assert "    raise NotImplementedError('Hint: write your solution here.')" in student
    ast.parse(student)


def test_cell_without_markers_is_unchanged():
    source = "a = 1\n# a comment about solutions\nprint(a)"
    assert not has_solution(source)
    assert strip_solutions(source) == source


@pytest.mark.parametrize(
    "source, message",
    [
        (f"{BEGIN}\nx = 1", "never closed"),
        (f"x = 1\n{END}", "without a matching"),
        (f"{BEGIN}\n{BEGIN}\nx = 1\n{END}", "inside an open solution region"),
        (f"x = 1  {BEGIN}\n{END}", "must stand alone"),
    ],
)
def test_malformed_markers_are_rejected_with_their_place(source, message):
    with pytest.raises(ValueError, match=message) as error:
        strip_solutions(source, where="demo.ipynb, cell 3")
    assert "demo.ipynb, cell 3" in str(error.value)


def _tiny_notebook():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[
        md("# Tiny\nA disc."),
        code("radius = 2.0"),
        code(EXERCISE),
        code("assert radius == 2.0\nprint('after the exercise')"),
    ])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="old output")]
    nb.cells[1].execution_count = 7
    nb.cells[1].metadata["widgets"] = {"state": {}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_student_notebook_differs_only_in_exercise_cells():
    nb = _tiny_notebook()
    student, count = student_notebook(nb, "tiny.ipynb")
    nbformat.validate(student)
    assert count == 1
    assert [c.cell_type for c in student.cells] == [c.cell_type for c in nb.cells]
    assert student.cells[0].source == nb.cells[0].source and student.cells[3].source == nb.cells[3].source
    assert "raise NotImplementedError" in student.cells[2].source
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert "widgets" not in student.cells[1].metadata and "widgets" not in student.metadata
    assert nb.cells[1].outputs, "the instructor notebook passed in must not be modified"


def test_labs_command_writes_student_versions(tmp_path, capsys):
    source, out = tmp_path / "notebooks", tmp_path / "student"
    source.mkdir()
    nbformat.write(_tiny_notebook(), source / "01_tiny.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), source / "00_plain.ipynb")
    assert cli.main(["labs", "--notebooks", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "01_tiny.ipynb  (1 exercise)" in printed and "00_plain.ipynb  (0 exercises)" in printed
    student = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    assert "math.pi * r**2" not in student.cells[2].source
    assert nbformat.read(out / "00_plain.ipynb", as_version=4).cells[0].source == "1 + 1"


def test_labs_refuses_to_overwrite_or_to_run_on_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        write_student_versions(tmp_path, tmp_path / "out")
    nbformat.write(_tiny_notebook(), tmp_path / "a.ipynb")
    with pytest.raises(ValueError, match="would be overwritten"):
        write_student_versions(tmp_path, tmp_path)


def test_labs_never_overwrites_students_work_unless_forced(tmp_path, capsys):
    """A student's edited notebook in --out survives a second `oder-edu labs` (exit 2, one line)."""
    source, out = tmp_path / "notebooks", tmp_path / "student"
    source.mkdir()
    nbformat.write(_tiny_notebook(), source / "01_tiny.ipynb")
    assert cli.main(["labs", "--notebooks", str(source), "--out", str(out)]) == 0
    edited = nbformat.read(out / "01_tiny.ipynb", as_version=4)
    edited.cells[2].source = "def area(r):\n    return 3.14159 * r * r  # my answer"
    nbformat.write(edited, out / "01_tiny.ipynb")
    capsys.readouterr()
    assert cli.main(["labs", "--notebooks", str(source), "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert "my answer" in nbformat.read(out / "01_tiny.ipynb", as_version=4).cells[2].source
    assert cli.main(["labs", "--notebooks", str(source), "--out", str(out), "--force"]) == 0
    assert "my answer" not in nbformat.read(out / "01_tiny.ipynb", as_version=4).cells[2].source


def test_student_version_of_a_notebook_runs_top_to_bottom(tmp_path):
    """Executed in a real kernel: the unfinished exercise does not stop the later cells."""
    from nbclient import NotebookClient

    student, _ = student_notebook(_tiny_notebook())
    student.cells[2].source = student.cells[2].source.replace(
        "print(area(2.0))",
        "try:\n    area(2.0)\nexcept NotImplementedError as error:\n    print('stub:', error)",
    )
    NotebookClient(student, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in student.cells if c.cell_type == "code"]
    assert "stub: Hint: pi r squared." in texts[1]
    assert "after the exercise" in texts[2]


# --- the course's own notebooks ------------------------------------------------------------------
def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _python(source: str) -> str:
    """Cell source without IPython magics / shell lines, which ast cannot parse."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))


def _exercise_definitions(tree) -> tuple[set[str], dict[str, str]]:
    """(names an exercise cell defines at top level, {function: the name its check's result is
    assigned to}), the latter from the cell's `ok = check_x(fn)`."""
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    guards = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            call = node.value
            if (isinstance(call, ast.Call) and getattr(call.func, "id", "").startswith("check_") and call.args
                    and isinstance(call.args[0], ast.Name) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)):
                guards[call.args[0].id] = node.targets[0].id
    return defined, guards


def _guard(test) -> tuple[set[str], set[str]]:
    """(names that must be true in an if's body, names that must be true in its else) for the
    tests `ok`, `not ok` and `ok and ...`."""
    if isinstance(test, ast.Name):
        return {test.id}, set()
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and isinstance(test.operand, ast.Name):
        return set(), {test.operand.id}
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return {v.id for v in test.values if isinstance(v, ast.Name)}, set()
    return set(), set()


def _unguarded(node, guarded: dict, active: frozenset = frozenset()) -> set[str]:
    """The names of ``guarded`` ({name: the check result that must be true, or None: never})
    that ``node`` reads outside the body of an `if ok:` / `... if ok else ...` on their guard."""
    found = set()
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in guarded:
        if guarded[node.id] is None or guarded[node.id] not in active:
            found.add(node.id)
    if isinstance(node, (ast.If, ast.IfExp)):
        yes, no = _guard(node.test)
        found |= _unguarded(node.test, guarded, active)
        for child in node.body if isinstance(node.body, list) else [node.body]:
            found |= _unguarded(child, guarded, active | yes)
        for child in node.orelse if isinstance(node.orelse, list) else [node.orelse]:
            found |= _unguarded(child, guarded, active | no)
        return found
    for child in ast.iter_child_nodes(node):
        found |= _unguarded(child, guarded, active)
    return found


@pytest.mark.parametrize("path", INSTRUCTOR, ids=[p.name for p in INSTRUCTOR])
def test_course_student_versions_are_valid_and_runnable(path):
    """Each student notebook is valid, every code cell still parses, it differs from the
    instructor's only in exercise cells, and a later cell uses what an exercise defines only
    where the student version runs too: an exercise's check result (`ok`, a bool either way)
    anywhere, its function only under a guard on that result (`fn if ok else fallback`, or in
    the body of `if ok:`). A function of a later cell that calls the exercise's function is
    held to the same guard. So all non-exercise cells run in the student version as they do
    under nbval in the instructor version."""
    nb = nbformat.read(path, as_version=4)
    student, count = student_notebook(nb, path.name)
    nbformat.validate(student)
    guarded: dict[str, str | None] = {}  # name defined in an exercise -> the check result guarding it
    results: set[str] = set()
    for ours, theirs in zip(_code_cells(nb), _code_cells(student)):
        ast.parse(_python(theirs.source))
        if has_solution(ours.source):
            assert "raise NotImplementedError" in theirs.source
            assert DEFAULT_HINT not in theirs.source, f"{path.name}: an exercise without a '# Hint:' line"
            defined, guards = _exercise_definitions(ast.parse(_python(ours.source)))
            results |= set(guards.values())
            guarded |= {name: guards.get(name) for name in defined - set(guards.values())}
            continue
        assert theirs.source == ours.source
        tree = ast.parse(_python(ours.source))
        wrappers = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        changed = True
        while changed:  # a function that calls an exercise's function inherits its guard
            changed = False
            for function in wrappers:
                needs = {guarded[name] for name in _unguarded(function, guarded)}
                if function.name not in guarded and needs:
                    guarded[function.name] = needs.pop() if len(needs) == 1 else None
                    changed = True
        leaked = set()
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name in guarded):
                leaked |= _unguarded(node, guarded)
        assert not leaked, (f"{path.name}: a non-exercise cell uses {sorted(leaked)} outside a guard on the "
                            f"exercise's check result (`fn if ok else fallback`); the student version would fail there")
    assert (count > 0) == bool(guarded or results)


def test_the_guard_rule_accepts_guarded_uses_and_rejects_the_rest():
    guarded = {"landweber": "landweber_ok", "helper": None}

    def leaks(source):
        return _unguarded(ast.parse(source), guarded)

    assert not leaks("step = landweber if landweber_ok else gradient_descent")
    assert not leaks("if landweber_ok:\n    x = landweber(A, y, 1, 2)\nelse:\n    x = 0")
    assert not leaks("if not landweber_ok:\n    x = 0\nelse:\n    x = landweber(A, y, 1, 2)")
    assert not leaks("print('yours' if landweber_ok else 'ours')")
    assert leaks("x = landweber(A, y, 1, 2)") == {"landweber"}
    assert leaks("step = gradient_descent if landweber_ok else landweber") == {"landweber"}
    assert leaks("if other_ok:\n    landweber(A, y, 1, 2)") == {"landweber"}
    assert leaks("helper(1) if landweber_ok else 0") == {"helper"}  # defined in an exercise, never checked


def test_course_exercise_counts():
    """Notebooks 01-05 have 2-4 exercises each (00 has none)."""
    counts = {p.stem: student_notebook(nbformat.read(p, as_version=4), p.name)[1] for p in INSTRUCTOR}
    assert sorted(counts) == ["00_start_here", "01_inverse_problems", "02_pnp_and_red",
                              "03_deep_equilibrium", "04_oder", "05_applications"]
    for name, count in counts.items():
        assert count == 0 if name.startswith("00") else 2 <= count <= 4, f"{name} has {count} exercises"
