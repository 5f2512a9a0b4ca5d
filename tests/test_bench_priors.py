"""bench priors' fair protocol: ``tune`` widens a grid whose best point is on an edge until the choice lies
inside (and says so when it cannot), then refines it at the geometric midpoints, over one parameter or several;
the shipped results name, for every tuned row, the point chosen on the tuning image, which reproduces the row's
setting."""

import math

import pytest

from oder_edu import results
from oder_edu.commands.bench_priors import tune


def test_tune_widens_an_edge_until_the_best_point_is_inside():
    calls = []

    def score(point):
        calls.append(point)
        return -abs(math.log(point[0] / 0.06))  # best at 0.06, below the starting grid

    best, values, bracketed = tune(score, [[0.1, 0.2, 0.4]])
    # 0.1 / 2.5 = 0.04, then 0.016 below it brackets the optimum; the midpoints of 0.04 with 0.016 and 0.1 refine it
    assert bracketed and best == pytest.approx(((0.04 * 0.1) ** 0.5,))
    assert sorted(p for (p,) in values) == pytest.approx([0.016, 0.016 ** 0.5 * 0.04 ** 0.5, 0.04, 0.04 ** 0.5 * 0.1 ** 0.5,
                                                          0.1, 0.2, 0.4])
    assert len(calls) == len(values)  # no point is scored twice


def test_tune_says_when_the_optimum_is_beyond_its_widening_limit():
    best, values, bracketed = tune(lambda p: p[0], [[1.0, 2.0]], limit=2)
    assert not bracketed and best == (2.0 * 2.5 ** 2,)
    assert len(values) == 4  # no refinement around a point at the edge


def test_tune_brackets_each_parameter_of_a_grid_product():
    best, values, bracketed = tune(lambda p: -(p[0] - 0.3) ** 2 - (math.log(p[1]) - math.log(5.0)) ** 2,
                                   [[0.1, 0.3, 0.5], [1.0, 2.0]])
    assert bracketed and best == (0.3, 5.0)  # 2 -> 5 -> 12.5 brackets 5; the midpoints score lower
    assert (0.3, (5.0 * 12.5) ** 0.5) in values and ((0.3 * 0.5) ** 0.5, 5.0) in values


def test_every_shipped_tuned_row_names_the_point_its_setting_describes():
    records = results.load("priors")["records"]
    tuned = [r for r in records if "tuning_psnr" in r]
    assert tuned
    for r in tuned:
        for value in r["parameters"]:
            assert f"{value:.3g}" in r["setting"], r
        assert isinstance(r["bracketed"], bool)


def test_a_deq_row_scales_the_models_tau_for_its_point_and_restores_it():
    """``deq_methods``: the point is a factor on the shipped model's τ; factor 1 is the model's own default call,
    another factor another fixed point, and the model keeps its τ afterwards."""
    from types import SimpleNamespace

    import torch

    from oder_edu.commands.bench_priors import deq_methods
    from oder_edu.deq import REDDEQ
    from oder_edu.denoisers import DnCNN
    from oder_edu.physics import IntensityDiffractionTomography, LeastSquares

    torch.manual_seed(0)
    A = IntensityDiffractionTomography(16, num_leds=8)
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    g = LeastSquares(A, A.forward(x))
    model = REDDEQ(DnCNN(depth=3, width=4), sigma=0.05, tau=0.5 * A.norm() ** 2).eval()
    problem = SimpleNamespace(x0=torch.zeros_like(x), g=g)
    (name, (run, grids, describe)), = deq_methods(problem, {"full RED-DEQ": ("deq_test", model)}).items()
    tau = model.tau.item()
    with torch.no_grad():
        own = model(problem.x0, g, generator=torch.Generator().manual_seed(1))
    assert name == "full RED-DEQ, τ tuned" and describe((0.25,)) == "deq_test, τ × 0.25" and 1.0 in grids[0]
    assert torch.equal(run((1.0,)), own)
    assert (run((0.25,)) - own).norm() > 1e-3 * own.norm()
    assert model.tau.item() == tau
