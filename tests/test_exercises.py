"""Each exercise check accepts the notebook's reference solution and rejects the student
stub and typical wrong answers, with a hint aimed at the mistake."""

import itertools
import re
from pathlib import Path

import nbformat
import pytest
import torch

from oder_edu import exercises
from oder_edu.commands.labs import has_solution, strip_solutions

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


def _minibatch_unscaled(A, y, x, blocks):
    return A.adjoint(A.forward(x, blocks) - y[:, blocks], blocks)


def _expected_unscaled(A, y, x, b):
    subsets = [torch.tensor(S) for S in itertools.combinations(range(A.num_blocks), b)]
    return sum(A.adjoint(A.forward(x, S) - y[:, S], S) for S in subsets) / len(subsets)


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


def _subset_solution(scaled=True, all_blocks=False):
    """The minimizer of (B/b)·½||A_S x − y_S||² + (μ/2)||x||², optionally without B/b or over all blocks."""
    def subset_fixed_point(A, y, blocks, mu):
        blocks = torch.arange(A.num_blocks) if all_blocks else blocks
        scale = A.num_blocks / len(blocks) if scaled else 1.0
        n = A.matrix().shape[1]
        M = A.matrix().reshape(A.num_blocks, -1, n)[blocks].reshape(-1, n)
        rhs = scale * y[:, blocks].reshape(y.shape[0], -1) @ M
        x = torch.linalg.solve(scale * M.T @ M + mu * torch.eye(n, dtype=M.dtype), rhs.T).T
        return x.reshape(y.shape[0], *A.image_shape)
    return subset_fixed_point


WRONG = {
    "power_iteration": [(_power_norm, "but L = ||A||²")],
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
    "minibatch_gradient": [(_minibatch_unscaled, "without the factor B/b")],
    "lipschitz_estimate": [(_lipschitz_squared, "its root")],
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
    "expected_minibatch_gradient": [(_expected_unscaled, "needs the factor B/b")],
    "oder_map": [(_oder_unscaled, "lacks the factor B/b")],
    "subset_fixed_point": [
        (_subset_solution(scaled=False), "without the factor B/b"),
        (_subset_solution(scaled=False, all_blocks=True), "full-data solution x*"),
    ],
    "add_noise_snr": [
        (lambda y, snr, gen: y + y.norm() / y.numel() ** 0.5 * 10 ** (-snr / 10)
         * torch.randn(y.shape, generator=gen, dtype=y.dtype), "not /10"),
        (lambda y, snr, gen: y + y.norm() / y.numel() ** 0.5 * 10 ** (-snr / 20)
         * torch.randn(y.shape, dtype=y.dtype), "draw the noise from `generator`"),
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


def test_passing_a_result_instead_of_the_function_is_a_type_error():
    with pytest.raises(TypeError, match="your function itself"):
        exercises.check_psnr(torch.tensor([30.0]))
