"""Checks for the notebooks' exercises: ``ok = check_<exercise>(your_function)``.

Each check runs your function on a small seeded problem with a known answer, prints ``✓ <exercise>: correct.`` or
``✗ <exercise>: <what is wrong>`` and returns True or False, so a later cell can use your function where it passed
(``L = power_iteration(A, 100) if power_ok else A.norm() ** 2``). Hints come in tiers, counted per exercise in this
kernel: the first wrong answer gets a diagnosis and a conceptual ``idea`` (no code), every later one adds concrete
``steps`` and points to ``solution("<exercise>")``, the only thing that prints a full answer; ``reset()`` forgets
the counts. The notebook stub (``raise NotImplementedError("Hint: ...")``) prints its own hint and is not counted.
A wrong, empty or crashing answer is reported, never raised; passing something that is not a function
(``check_psnr(my_psnr(x, ref))``) raises a TypeError.

One module per notebook holds its checks, each beside its hints and a full answer: ``inverse_problems`` (01),
``pnp_red`` (02), ``deq`` (03), ``oder`` (04), ``applications`` (05); ``_grading`` is the machinery they share and
``_recording`` the instrumented operator some checks hand to an answer (it records which blocks were used).

Predict-then-explain questions (``questions``): write a guess before the measuring cell, then
``grade_prediction(name, predicted, measured)`` or ``grade_choice(name, answer)`` prints ✓/✗ with the
explanation (``?`` and the explanation when nothing was guessed: an open question never stops a notebook).
"""

from ._grading import B, HINTS, INTEGER_DIVISION, RTOL, Hints, S, b, reset, solution, withhold_solutions
from .applications import check_add_noise_snr, check_window
from .deq import check_anderson_weights, check_fixed_point_iteration, check_implicit_backward
from .inverse_problems import check_landweber, check_power_iteration, check_psnr
from .oder import check_expected_minibatch_gradient, check_oder_map, check_subset_fixed_point
from .pnp_red import check_lipschitz_estimate, check_minibatch_gradient, check_red_update
from .questions import QUESTIONS, grade_choice, grade_prediction

__all__ = [
    "Hints", "HINTS", "RTOL", "B", "S", "b", "INTEGER_DIVISION", "solution", "reset", "withhold_solutions",
    "check_power_iteration", "check_landweber", "check_psnr",
    "check_red_update", "check_minibatch_gradient", "check_lipschitz_estimate",
    "check_fixed_point_iteration", "check_implicit_backward", "check_anderson_weights",
    "check_expected_minibatch_gradient", "check_oder_map", "check_subset_fixed_point",
    "check_add_noise_snr", "check_window",
    "QUESTIONS", "grade_prediction", "grade_choice",
]
