"""Each exercise check accepts the notebook's reference solution and rejects the student
stub and typical wrong answers, with a hint aimed at the mistake; hints come in tiers and the
full answer only on request (``exercises.solution``)."""

import ast
import itertools
import re
from pathlib import Path

import nbformat
import pytest
import torch

from oder_edu import exercises
from oder_edu.commands.labs import has_solution, strip_solutions
from oder_edu.physics import LeastSquares

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHECKS = sorted(name.removeprefix("check_") for name in dir(exercises) if name.startswith("check_"))


def _exercise_cells():
    cells = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and has_solution(cell.source):
                cells.append(pytest.param(cell.source, id=f"{path.stem}-cell{index}"))
    return cells


def _checked_name(source: str) -> str:
    names = re.findall(r"\bcheck_(\w+)\(", source)
    assert len(names) == 1, f"an exercise cell must call exactly one check, found {names}"
    return names[0]


@pytest.fixture(autouse=True)
def _fresh_hint_tiers():
    """Every test starts at the first hint tier (the counts are module state, as in a kernel)."""
    exercises.reset()
    yield
    exercises.reset()


@pytest.mark.parametrize("source", _exercise_cells())
def test_notebook_solution_passes_and_student_stub_gets_the_hint(source, capsys):
    """Exercise cells are self-contained (imports, the function, its check), so each runs
    here on its own: as written (the instructor's solution) and as the student gets it."""
    name = _checked_name(source)
    exec(compile(source, "<instructor>", "exec"), {})
    assert f"✓ {name}: correct." in capsys.readouterr().out
    exec(compile(strip_solutions(source), "<student>", "exec"), {})  # must not raise
    out = capsys.readouterr().out
    assert f"✗ {name}: not implemented yet" in out and "Hint:" in out


@pytest.mark.parametrize("source", _exercise_cells())
def test_exercise_cell_assigns_the_check_result_instead_of_echoing_it(source):
    """The cell ends with `ok = check_x(fn)`: it prints one ✓/✗ line (no True/False echo), and a
    later cell can use the student's function under the guard `fn if ok else fallback`."""
    last = ast.parse(source).body[-1]
    assert (isinstance(last, ast.Assign) and len(last.targets) == 1 and isinstance(last.targets[0], ast.Name)
            and isinstance(last.value, ast.Call) and getattr(last.value.func, "id", "").startswith("check_")), \
        f"the exercise cell should end with `<name>_ok = check_{_checked_name(source)}(...)`, not {ast.unparse(last)!r}"


def test_every_check_is_used_by_one_notebook_exercise():
    used = sorted(_checked_name(p.values[0]) for p in _exercise_cells())
    assert used == CHECKS


# --- typical wrong answers, each recognised ------------------------------------------------------
def _power_norm(A, num_iter):  # ||A||, not its square
    return torch.linalg.matrix_norm(A.matrix(), ord=2).item()


def _landweber(sign=-1.0, extra=0):
    def landweber(A, y, gamma, num_iter):
        x = torch.zeros(y.shape[0], *A.image_shape, dtype=y.dtype)
        for _ in range(num_iter + extra):
            x = x + sign * gamma * A.adjoint(A.forward(x) - y)
        return x
    return landweber


def _power_by_the_package(A, num_iter):  # the package's answer, not a power iteration
    return A.norm() ** 2


def _minibatch_all_blocks(A, y, x, blocks):  # the right value, from all B blocks computed and sliced
    residual = torch.zeros_like(y)
    residual[:, blocks] = (A.forward(x) - y)[:, blocks]
    return A.num_blocks / len(blocks) * A.adjoint(residual)


def _oder_all_blocks(x, A, y, D, gamma, tau, sigma, blocks):
    return x - gamma * (_minibatch_all_blocks(A, y, x, blocks) + tau * (x - D(x, sigma)))


def _lipschitz_J_only(R, x, num_iter):  # power iteration on J alone: an eigenvalue's modulus, not ||J||
    from torch.func import jvp

    v = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0))
    for _ in range(num_iter):
        w = jvp(R, (x,), (v / v.norm(),))[1]
        v = w
    return jvp(R, (x,), (v / v.norm(),))[1].norm().item()


def _minibatch_unscaled(A, y, x, blocks):
    return A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)


def _expected_unscaled(A, y, x, b):
    subsets = [torch.tensor(S) for S in itertools.combinations(range(A.num_blocks), b)]
    return sum(A.adjoint(A.forward(x, S) - y[:, S], S) for S in subsets) / len(subsets)


def _minibatch_integer_division(A, y, x, blocks):  # B // b: a wrong scale whenever b does not divide B
    return A.num_blocks // len(blocks) * A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)


def _expected_integer_division(A, y, x, b):
    subsets = [torch.tensor(S) for S in itertools.combinations(range(A.num_blocks), b)]
    return sum(A.num_blocks // b * A.adjoint(A.forward(x, S) - y[:, S], S) for S in subsets) / len(subsets)


def _lipschitz_squared(R, x, num_iter):
    J = torch.autograd.functional.jacobian(R, x).reshape(x.numel(), x.numel())
    return torch.linalg.matrix_norm(J, ord=2).item() ** 2


def _fixed_point_no_stop(f, z0, max_iter, tol):
    z, residuals = z0, []
    for _ in range(max_iter):
        fz = f(z)
        residuals.append(((fz - z).norm() / fz.norm()).item())
        z = fz
    return z, residuals


def _anderson_unnormalized(G):
    return torch.linalg.solve(G @ G.T, torch.ones(len(G), dtype=G.dtype))


def _oder_unscaled(x, A, y, D, gamma, tau, sigma, blocks):
    grad = A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)
    return x - gamma * (grad + tau * (x - D(x, sigma)))


def _oder_integer_division(x, A, y, D, gamma, tau, sigma, blocks):
    grad = A.num_blocks // len(blocks) * A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)
    return x - gamma * (grad + tau * (x - D(x, sigma)))


def _subset_solution(scaled=True, all_blocks=False, integer=False):
    """The minimizer of (B/b)·½||A_S x − y_S||² + (μ/2)||x||², optionally without B/b, with B // b
    or over all blocks."""
    def subset_fixed_point(A, y, blocks, mu):
        blocks = torch.arange(A.num_blocks) if all_blocks else blocks
        scale = (A.num_blocks // len(blocks) if integer else A.num_blocks / len(blocks)) if scaled else 1.0
        n = A.matrix().shape[1]
        M = A.matrix().reshape(A.num_blocks, -1, n)[blocks].reshape(-1, n)
        rhs = scale * y[:, blocks].reshape(y.shape[0], -1) @ M
        x = torch.linalg.solve(scale * M.T @ M + mu * torch.eye(n, dtype=M.dtype), rhs.T).T
        return x.reshape(y.shape[0], *A.image_shape)
    return subset_fixed_point


WRONG = {
    "power_iteration": [(_power_norm, "but L = ||A||²"), (_power_by_the_package, "you called A.norm()")],
    "landweber": [(_landweber(+1.0), "uphill"), (_landweber(extra=1), "one step too few or too many")],
    "psnr": [
        (lambda x, ref: 20 * torch.log10(1 / (x - ref).square().mean(dim=(1, 2, 3))), "20 log10"),
        (lambda x, ref: 10 * torch.log10(1 / (x - ref).square().mean()), "one number for a batch"),
        (lambda x, ref: 10 * torch.log10(1 / (x - ref).square().sum(dim=(1, 2, 3))), "summed"),
    ],
    "red_update": [
        (lambda x, g, D, gamma, tau, s: x - gamma * (g + tau * (D(x, s) - x)), "R(x) = x − D(x, σ)"),
        (lambda x, g, D, gamma, tau, s: x - gamma * (g + (x - D(x, s))), "weight τ"),
    ],
    "minibatch_gradient": [(_minibatch_unscaled, "without the factor B/b"),
                           (_minibatch_integer_division, "integer division"),
                           (_minibatch_all_blocks, "evaluated all B = 7 blocks")],
    "lipschitz_estimate": [(_lipschitz_squared, "its root"), (_lipschitz_J_only, "iterate JᵀJ")],
    "fixed_point_iteration": [
        (lambda f, z0, max_iter, tol: (f(z0), [1.0]), "not the fixed point"),
        (_fixed_point_no_stop, "stop as soon as"),
    ],
    "implicit_backward": [
        (lambda vjp, v, max_iter, tol: v, "Jacobian-free backprop"),
        (lambda vjp, v, max_iter, tol: vjp(v) + v, "one iteration"),
    ],
    "anderson_weights": [
        (_anderson_unnormalized, "normalize them"),
        (lambda G: torch.full((len(G),), 1.0 / len(G), dtype=G.dtype), "the minimum"),
    ],
    "expected_minibatch_gradient": [(_expected_unscaled, "needs the factor B/b"),
                                    (_expected_integer_division, "integer division"),
                                    (lambda A, y, x, b: A.adjoint(A.forward(x) - y), "used 0 of the 35 block sets")],
    "oder_map": [(_oder_unscaled, "lacks the factor B/b"), (_oder_integer_division, "integer division"),
                 (_oder_all_blocks, "evaluated all B = 7 blocks")],
    "subset_fixed_point": [
        (_subset_solution(scaled=False), "without the factor B/b"),
        (_subset_solution(integer=True), "integer division"),
        (_subset_solution(scaled=False, all_blocks=True), "full-data solution x*"),
    ],
    "add_noise_snr": [
        (lambda y, snr, gen: y + y.norm() / y.numel() ** 0.5 * 10 ** (-snr / 10)
         * torch.randn(y.shape, generator=gen, dtype=y.dtype), "not /10"),
        (lambda y, snr, gen: y + y.norm() / y.numel() ** 0.5 * 10 ** (-snr / 20)
         * torch.randn(y.shape, dtype=y.dtype), "draw the noise from `generator`"),
        (lambda y, snr, gen: torch.full_like(y, float("nan")), "not finite"),  # not "differ": NaN ≠ NaN
    ],
    "window": [
        (lambda hu, c, w: (hu - (c - w / 2)) / w, "clip to [0, 1]"),
        (lambda hu, c, w: ((hu - c) / w).clamp(0, 1), "center − width/2"),
    ],
}


def test_every_check_has_typical_wrong_answers():
    assert sorted(WRONG) == CHECKS


def test_the_reference_subset_solution_passes(capsys):
    """The wrong answers above are built from a correct solver: with B/b over S it passes."""
    assert exercises.check_subset_fixed_point(_subset_solution()) is True
    assert "✓ subset_fixed_point: correct." in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, wrong, phrase", [(n, w, p) for n, cases in sorted(WRONG.items()) for w, p in cases]
)
def test_typical_wrong_answer_is_rejected_with_a_specific_hint(name, wrong, phrase, capsys):
    assert getattr(exercises, f"check_{name}")(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {name}:") and phrase in out, out


def test_a_crashing_answer_is_reported_not_raised(capsys):
    def broken(A, num_iter):
        return A.forward(torch.zeros(3))  # wrong shape: the operator raises

    assert exercises.check_power_iteration(broken) is False
    out = capsys.readouterr().out
    assert "your function raised ValueError" in out and "must have shape [N, C, H, W]" in out
    assert "return A.forward(torch.zeros(3))" in out  # the student's own line, not the library's


def test_passing_a_result_instead_of_the_function_is_a_type_error():
    with pytest.raises(TypeError, match="your function itself"):
        exercises.check_psnr(torch.tensor([30.0]))


# --- hint tiers: diagnosis and idea, then a closer nudge, the full answer only on request ---------
def _giveaways(name: str) -> list[str]:
    """The lines of the full answer that would give it away (its code, not imports or the def line)."""
    lines = (line.strip() for line in exercises.HINTS[name].solution.splitlines())
    return [line for line in lines if len(line) > 12 and not line.startswith(("import ", "from ", "def ", "#"))]


def test_every_check_has_hint_tiers_and_a_solution():
    assert sorted(exercises.HINTS) == CHECKS
    for name, hints in exercises.HINTS.items():
        assert hints.idea and hints.steps and _giveaways(name), name


@pytest.mark.parametrize("name", CHECKS)
def test_hints_are_tiered_and_the_solution_comes_only_on_request(name, capsys):
    check, wrong = getattr(exercises, f"check_{name}"), WRONG[name][0][0]
    assert check(wrong) is False
    first = capsys.readouterr().out
    assert exercises.HINTS[name].idea in first and exercises.HINTS[name].steps not in first
    assert check(wrong) is False
    second = capsys.readouterr().out
    assert second.startswith(first) and len(second) > len(first), "a second miss must add to the first hints"
    assert exercises.HINTS[name].steps in second and f'solution("{name}")' in second
    for out in (first, second):
        assert not [line for line in _giveaways(name) if line in out], f"a hint gives the answer away:\n{out}"
    exercises.solution(name)
    revealed = capsys.readouterr().out
    assert all(line in revealed for line in _giveaways(name))


@pytest.mark.parametrize("name", CHECKS)
def test_the_revealed_solution_passes_its_check(name, capsys):
    namespace = {}
    exec(compile(exercises.HINTS[name].solution, f"<solution {name}>", "exec"), namespace)
    function = [node.name for node in ast.parse(exercises.HINTS[name].solution).body
                if isinstance(node, ast.FunctionDef)][-1]
    assert getattr(exercises, f"check_{name}")(namespace[function]) is True
    assert capsys.readouterr().out == f"✓ {name}: correct.\n"


def test_solution_names_the_exercises_when_asked_for_an_unknown_one(capsys):
    exercises.solution("check_landweber")  # the check's name works too
    assert "def landweber" in capsys.readouterr().out
    with pytest.raises(ValueError, match="power_iteration"):
        exercises.solution("landwebber")


@pytest.mark.parametrize(
    "name, wrong",
    [("minibatch_gradient", _minibatch_integer_division), ("expected_minibatch_gradient", _expected_integer_division),
     ("oder_map", _oder_integer_division), ("subset_fixed_point", _subset_solution(integer=True))],
)
def test_integer_division_B_over_b_fails_every_minibatch_check(name, wrong, capsys):
    """The checks use B = 7, b = 3: `B // b` = 2 is not B/b = 2.33, and the diagnosis says so."""
    assert getattr(exercises, f"check_{name}")(wrong) is False
    assert "B // b = 7 // 3 = 2" in capsys.readouterr().out


def _returning(value):
    return lambda *args, **kwargs: value


@pytest.mark.parametrize("name", CHECKS)
@pytest.mark.parametrize("value, phrase", [(None, "returned None"), ("42", "returned a str")])
def test_nothing_or_the_wrong_type_is_told_plainly(name, value, phrase, capsys):
    assert getattr(exercises, f"check_{name}")(_returning(value)) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {name}:") and phrase in out and "raised" not in out, out


def test_an_unfinished_stub_gets_its_own_hint_and_is_not_counted(capsys):
    def power_iteration(A, num_iter=50):
        raise NotImplementedError("Hint: the stub's own nudge.")

    for _ in range(3):
        assert exercises.check_power_iteration(power_iteration) is False
        out = capsys.readouterr().out
        assert "not implemented yet" in out and "Hint: the stub's own nudge." in out
        assert exercises.HINTS["power_iteration"].idea not in out
        assert not [line for line in _giveaways("power_iteration") if line in out]
    assert exercises.check_power_iteration(_power_norm) is False  # the first real miss: first tier
    assert "Closer:" not in capsys.readouterr().out


def test_a_stub_without_a_message_gets_the_idea(capsys):
    def landweber(A, y, gamma, num_iter):
        raise NotImplementedError

    assert exercises.check_landweber(landweber) is False
    out = capsys.readouterr().out
    assert "not implemented yet" in out and exercises.HINTS["landweber"].idea in out


def test_expected_minibatch_gradient_sees_which_block_sets_were_drawn(capsys):
    """The check's operator records the block sets of every product, through A or the data term: ∇g(x) itself
    has the right value, so it is told apart only by the sets it (never) used."""
    def through_the_data_term(A, y, x, b):
        subsets = [torch.tensor(S) for S in itertools.combinations(range(A.num_blocks), b)]
        return sum(LeastSquares(A, y).grad(x, S) for S in subsets) / len(subsets)

    def one_set_for_show(A, y, x, b):
        A.forward(x, [0, 1, 2])
        return A.adjoint(A.forward(x) - y)

    assert exercises.check_expected_minibatch_gradient(through_the_data_term) is True
    assert capsys.readouterr().out == "✓ expected_minibatch_gradient: correct.\n"
    assert exercises.check_expected_minibatch_gradient(one_set_for_show) is False
    assert "used 1 of the 35 block sets S of size b = 3" in capsys.readouterr().out


def test_reset_and_solution_take_only_exercise_names():
    with pytest.raises(TypeError, match=r"reset expects the name of an exercise.*got 42 \(int\)"):
        exercises.reset(42)
    with pytest.raises(ValueError, match="no exercise named 'landwebber'"):
        exercises.reset("landwebber")
    with pytest.raises(TypeError, match="solution expects the name of an exercise"):
        exercises.solution(exercises.check_psnr)
    assert exercises.reset("check_landweber") is None and exercises.reset() is None


def test_reset_starts_the_tiers_again(capsys):
    exercises.check_landweber(_landweber(+1.0))
    exercises.check_landweber(_landweber(+1.0))
    assert "Closer:" in capsys.readouterr().out
    exercises.reset("landweber")
    exercises.check_landweber(_landweber(+1.0))
    assert "Closer:" not in capsys.readouterr().out


# --- the wrong answers the course's reviews named, each rejected ----------------------------------
@pytest.mark.parametrize("name, wrong, phrase", [
    ("expected_minibatch_gradient", lambda A, y, x, b: A.adjoint(A.forward(x) - y), "used 0 of the 35 block sets"),
    ("minibatch_gradient", _minibatch_all_blocks, "touch only the b blocks in S"),
    ("oder_map", _oder_all_blocks, "touch only the b blocks in S"),
    ("power_iteration", _power_by_the_package, "A.norm()"),
    ("lipschitz_estimate", _lipschitz_J_only, "largest eigenvalue in modulus"),
])
def test_the_named_wrong_answers_are_rejected(name, wrong, phrase, capsys):
    """The plain full gradient for the expected minibatch gradient (issue 23), the right minibatch values computed
    from all B blocks, the package's own A.norm() for the power iteration, and a power iteration on J alone."""
    assert getattr(exercises, f"check_{name}")(wrong) is False
    assert phrase in capsys.readouterr().out


# --- every exercise feeds a later cell --------------------------------------------------------------


def _exercise_functions(source: str) -> set[str]:
    return {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def _loads(source: str) -> set[str]:
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))
    return {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _feeding_cases():
    cases = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        for index, cell in enumerate(cells):
            if not has_solution(cell.source):
                continue
            for function in sorted(_exercise_functions(cell.source)):
                later = [c.source for c in cells[index + 1:] if not has_solution(c.source)]
                cases.append(pytest.param(function, later, id=f"{path.stem}-{function}"))
    return cases


@pytest.mark.parametrize("function, later", _feeding_cases())
def test_every_exercise_solution_is_used_by_a_later_cell(function, later):
    """00 promises that later cells use the student's function once it passes: some later (non-exercise) code
    cell reads it (test_labs checks that it does so only behind its check's result, with a fallback)."""
    assert any(function in _loads(source) for source in later), f"no later cell uses {function}"


# --- predict-then-explain questions -----------------------------------------------------------------
def test_questions_grade_numbers_and_choices_and_never_stop_on_an_open_one(capsys):
    measured = {"ct": 1.1, "mri": 3.0}
    assert exercises.grade_prediction("minibatch_constant", None, measured) is None
    assert capsys.readouterr().out.startswith("? minibatch_constant: no prediction written")
    assert exercises.grade_prediction("minibatch_constant", {"ct": 1.0, "mri": 3.2}, measured) is True
    assert capsys.readouterr().out.startswith("✓ minibatch_constant")
    assert exercises.grade_prediction("minibatch_constant", {"ct": 4.0, "mri": 3.2}, measured) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ minibatch_constant") and "off by more than 25%" in out and "Why:" in out
    assert exercises.grade_choice("time_per_iteration", None) is None
    assert exercises.grade_choice("time_per_iteration", "(b)") is True
    assert exercises.grade_choice("time_per_iteration", "a") is False
    out = capsys.readouterr().out
    assert "✗ time_per_iteration: (a)" in out and "The answer is (b)" in out
    with pytest.raises(ValueError, match="one of 'a', 'b', 'c'"):
        exercises.grade_choice("time_per_iteration", "d")
    with pytest.raises(ValueError, match="no question named"):
        exercises.grade_prediction("minibatch_constnat", 1.0, 1.0)
    with pytest.raises(TypeError, match="finite number"):
        exercises.grade_prediction("unrolled_memory", "six", 6.0)


def _question_cells():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code":
                for name in re.findall(r"grade_(?:prediction|choice)\(\s*\"(\w+)\"", cell.source):
                    yield path.stem, name


def test_every_question_is_asked_and_notebooks_01_to_03_ask_at_least_one():
    asked = list(_question_cells())
    assert {name for _, name in asked} <= set(exercises.QUESTIONS)
    for notebook in ("01_inverse_problems", "02_pnp_and_red", "03_deep_equilibrium"):
        assert any(stem == notebook for stem, _ in asked), notebook
    numeric = {name for _, name in asked if exercises.QUESTIONS[name].rtol is not None}
    assert numeric, "at least one question asks for a number"
