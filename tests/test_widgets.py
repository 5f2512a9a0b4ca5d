"""The live explorers, driven programmatically: controls in, ``history`` out.

Asynchronous scenarios run in ``asyncio.run`` and wait by counting event-loop turns
(``await asyncio.sleep(0)``), never by wall-clock assertions. Problems are tiny (MRI 32²,
4 coils, Gaussian denoiser) so the whole file stays fast.
"""

import asyncio
import gc
import json
import math
import weakref

import matplotlib.pyplot as plt
import pytest
import torch

from oder_edu.problems import make_problem
from oder_edu.widgets import Record, ReconstructionExplorer, ReconstructionRun, Settings, TrainingExplorer
from oder_edu.widgets.explorer import ratio_options
from oder_edu.widgets.render import Throttle


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shared():
    return ReconstructionExplorer("mri", image_size=32, denoiser="gaussian", num_blocks={"mri": 4, "idt": 8},
                                  iterations=6, device="cpu")


@pytest.fixture
def ex(shared):
    """The shared explorer with its controls back at their defaults."""
    shared.stop()
    if shared.problem.value != "mri":
        shared.problem.value = "mri"
    shared.algorithm.value = "red"
    shared.batch_ratio.value = 1.0
    shared.sigma.value = 0.05
    shared.tau.value = 0.1
    shared.gamma_auto.value = True
    shared.reference.value = True
    shared.band.value = True
    shared.iterations.value = 6
    return shared


async def until(condition, turns=200_000):
    """Yield to the event loop until ``condition()`` holds (fails after ``turns`` turns)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def other_tasks():
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def test_run_sync_records_every_iteration_with_its_controls(ex):
    history = ex.run_sync(5)
    assert [r.iteration for r in history] == [1, 2, 3, 4, 5] and ex.history is history
    assert all(isinstance(r, Record) for r in history)
    assert all((r.settings.gamma, r.settings.sigma, r.settings.batch_ratio, r.batch_size) == (ex.safe_step, 0.05, 1.0, 4)
               for r in history)
    start = make_problem("mri", 32, 4)
    from oder_edu.metrics import psnr

    assert history[-1].psnr > psnr(start.x0, start.x_true).item() + 1.0  # RED improves on Aᵀy
    assert all(0 < r.ssim <= 1 and r.seconds > 0 and r.peak_bytes > 0 for r in history)
    # b = B: the run is its own full-batch reference.
    assert all(r.reference_psnr == r.psnr and r.reference_peak_bytes == r.peak_bytes for r in history)
    assert "oder-psnr" in ex.readout.value and "done" in ex.status.value
    assert ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_minibatch_run_uses_less_memory_than_its_full_batch_reference(ex):
    ex.batch_ratio.value = 0.25
    history = ex.run_sync(4)
    assert all(r.batch_size == 1 and r.settings.batch_ratio == 0.25 for r in history)
    # Measured, per iteration: one coil's k-space instead of four.
    assert all(r.peak_bytes < r.reference_peak_bytes for r in history)
    assert all(r.reference_psnr != r.psnr for r in history)
    assert "1/4" in ex.readout.value and "4/4" in ex.readout.value and "minibatch constant" in ex.bound.value
    # The readout counts block evaluations (b against B, exact on any machine) and keeps the panel's own work
    # (reference run, seed band, PSNR, drawing) apart from the solver's time.
    assert "oder-blocks' style='padding:0 12px'>1<" in ex.readout.value
    assert "oder-blocks-full' style='padding:0 12px'>4<" in ex.readout.value
    assert "solver time" in ex.readout.value and "not part of either method's cost" in ex.readout.value
    assert all(r.wall_seconds > r.seconds > 0 for r in history)


def test_gamma_follows_the_default_step_when_b_over_B_changes(ex):
    """Until the student moves γ, it is the default step of the current b/B: the minibatch constant's, smaller
    than the full batch's, at b < B. Once moved, it stays; ticking the box brings the default back."""
    assert ex.gamma_auto.value and math.isclose(ex.gamma.value, ex.safe_step) and ex.batch_ratio.value == 1.0
    full = ex.gamma.value
    ex.batch_ratio.value = 0.25
    online = ex.gamma.value
    assert math.isclose(online, ex.safe_step) and online < full and ex.gamma_auto.value
    assert f"γ = {online:.3g} = 1.00 ×" in ex.bound.value and "minibatch constant" in ex.bound.value
    ex.tau.value = 0.2  # τ enters the default step too
    assert math.isclose(ex.gamma.value, ex.safe_step) and ex.gamma.value < online
    ex.gamma.value = 0.5 * ex.safe_step  # the student's choice: kept from now on
    assert not ex.gamma_auto.value
    mine = ex.gamma.value
    ex.batch_ratio.value = 1.0
    assert ex.gamma.value == mine and not math.isclose(mine, ex.safe_step)
    assert all(r.settings.gamma == mine for r in ex.run_sync(2))
    ex.gamma_auto.value = True
    assert math.isclose(ex.gamma.value, ex.safe_step)


def test_a_browser_rounding_gamma_to_its_slider_grid_does_not_stop_it_following(ex):
    """A browser's slider rounds a value between its grid points and sends the rounded one back (seen in Chromium:
    γ then stayed put when b/B changed). The panel puts the default step on the slider's grid, and a change of less
    than half a step from the value it set is taken for that rounding, not for the student's move."""
    def steps_above_min():
        return (math.log10(ex.gamma.value) - ex.gamma.min) / ex.gamma.step

    for ratio in (0.25, 0.5, 1.0):
        ex.batch_ratio.value = ratio
        assert math.isclose(ex.gamma.value, ex.safe_step) and abs(steps_above_min() - round(steps_above_min())) < 1e-6
    ex.batch_ratio.value = 0.25
    online = ex.gamma.value
    ex.gamma.value = online * 10 ** (0.4 * ex.gamma.step)  # what the browser sends back after rounding
    assert ex.gamma_auto.value
    ex.batch_ratio.value = 1.0
    assert math.isclose(ex.gamma.value, ex.safe_step) and ex.gamma.value > online
    ex.gamma.value = ex.safe_step * 10 ** (-ex.gamma.step)  # one step down: the student's
    assert not ex.gamma_auto.value


def test_the_explorer_opens_online_and_reset_restores_its_defaults():
    """It opens at b/B = 1/4 (the nearest option when B has no quarter), and ``reset`` brings σ, τ, b/B and the
    default γ back after a notebook's checks moved them."""
    ex = ReconstructionExplorer("mri", image_size=32, denoiser="gaussian", num_blocks={"mri": 4, "idt": 2},
                                device="cpu")
    assert ex.batch_ratio.value == 0.25 and math.isclose(ex.gamma.value, ex.safe_step) and ex.gamma_auto.value
    sigma, tau = ex.sigma.value, ex.tau.value
    ex.sigma.value, ex.tau.value, ex.batch_ratio.value, ex.gamma.value = 0.15, 0.3, 1.0, 1e-3
    ex.reset()
    assert (ex.sigma.value, ex.tau.value, ex.batch_ratio.value) == (sigma, tau, 0.25) and ex.gamma_auto.value
    assert math.isclose(ex.gamma.value, ex.safe_step) and ex.history == []
    ex.problem.value = "idt"  # B = 2: no quarter, the nearest option is 1/2
    assert ex.batch_ratio.value == 0.5
    ex.close()


def test_the_band_spreads_the_online_curve_over_seeds(ex):
    """Online, every iteration also runs three more seeds: their PSNRs differ from the run's (other blocks drawn);
    at full batch there is nothing to spread, and without the band no extra runs are made."""
    ex.batch_ratio.value = 0.25
    history = ex.run_sync(4)
    assert all(len(r.band_psnr) == 3 and any(v != r.psnr for v in r.band_psnr) for r in history)
    assert "PSNR over 4 seeds" in ex.readout.value
    ex.batch_ratio.value = 1.0
    assert all(r.band_psnr == () for r in ex.run_sync(2))
    ex.band.value, ex.batch_ratio.value = False, 0.25
    assert all(r.band_psnr == () for r in ex.run_sync(2))


def test_changing_sigma_mid_run_changes_the_records_from_the_next_iteration(ex):
    baseline = [r.psnr for r in ex.run_sync(8)]

    async def scenario():
        task = ex.start(8)
        await until(lambda: len(ex.history) >= 3)
        changed_at = len(ex.history)
        ex.sigma.value = 0.12
        await task
        assert not other_tasks()
        return changed_at

    k = asyncio.run(scenario())
    history = ex.history
    assert len(history) == 8 and [r.iteration for r in history] == list(range(1, 9))
    assert all(r.settings.sigma == 0.05 for r in history[:k]) and all(r.settings.sigma == 0.12 for r in history[k:])
    assert [r.psnr for r in history[:k]] == baseline[:k]  # same run until the change...
    assert all(a != b for a, b in zip([r.psnr for r in history[k:]], baseline[k:]))  # ...different after


def test_stop_stops_and_leaves_no_task(ex):
    async def scenario():
        task = ex.start(1000)
        await until(lambda: len(ex.history) >= 2)
        ex.stop_button.click()
        await task
        stopped_at = len(ex.history)
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(ex.history) == stopped_at
        assert task.done() and not task.cancelled() and not other_tasks()
        return stopped_at

    n = asyncio.run(scenario())
    assert 2 <= n < 1000 and "stopped" in ex.status.value


def test_a_second_run_cancels_the_first(ex):
    async def scenario():
        ex.run_button.click()
        first = ex.task
        await until(lambda: len(ex.history) >= 2)
        first_run = ex.history[0].run
        second = ex.start(4)
        await second
        assert first.cancelled() and second.done() and not other_tasks()
        return first_run

    first_run = asyncio.run(scenario())
    assert len(ex.history) == 4 and {r.run for r in ex.history} == {first_run + 1}
    assert [r.iteration for r in ex.history] == [1, 2, 3, 4]


def test_fifty_rapid_changes_leave_one_consistent_run(ex):
    safe = ex.safe_step
    gammas, sigmas = (0.5 * safe, 0.8 * safe, safe), (0.02, 0.05, 0.08)
    ratios = [value for _, value in ratio_options(4)]
    tasks = []
    ex.iterations.value = 1000  # every run is still going when the next Run press comes

    async def scenario():
        ex.run_button.click()
        tasks.append(ex.task)
        for i in range(50):  # 50 changes in 2 s
            kind = i % 5
            if kind == 0:
                ex.sigma.value = sigmas[i % 3]
            elif kind == 1:
                ex.gamma.value = gammas[i % 3]
            elif kind == 2:
                ex.batch_ratio.value = ratios[i % len(ratios)]
            elif kind == 3:
                ex.algorithm.value = ("red", "red-nesterov", "pnp")[i % 3]
            else:
                ex.run_button.click()
                tasks.append(ex.task)
            await asyncio.sleep(0.04)
        ex.stop_button.click()
        await ex.task
        assert not other_tasks()

    asyncio.run(scenario())
    assert all(t.cancelled() for t in tasks[:-1]) and tasks[-1].done() and not tasks[-1].cancelled()
    history = ex.history
    assert history, "the last run made no iteration"
    assert {r.run for r in history} == {history[0].run}
    assert [r.iteration for r in history] == list(range(1, len(history) + 1))
    for r in history:
        s = r.settings
        assert math.isclose(s.gamma, gammas[0]) or math.isclose(s.gamma, gammas[1]) or math.isclose(s.gamma, safe)
        assert s.sigma in sigmas + (0.05,) and s.batch_ratio in ratios
        assert s.algorithm in ("red", "red-nesterov", "pnp") and math.isfinite(r.psnr) and not r.diverged


def test_divergence_warns_stops_and_the_widget_stays_usable(ex):
    ex.gamma.value = 30 * ex.safe_step
    history = ex.run_sync(200)
    assert len(history) < 200 and history[-1].diverged
    assert "diverged" in ex.status.value and "try γ ≤" in ex.status.value and ex.error is None
    ex.gamma.value = ex.safe_step
    again = ex.run_sync(3)
    assert len(again) == 3 and not any(r.diverged for r in again) and "done" in ex.status.value


def test_a_failing_denoiser_is_reported_in_the_panel_and_raised():
    def broken(x, sigma):
        return x[..., :-1]  # wrong shape

    ex = ReconstructionExplorer("mri", image_size=32, denoiser=broken, num_blocks={"mri": 2}, device="cpu")
    with pytest.raises(ValueError, match="input shape"):
        ex.run_sync(3)
    assert "error at iteration 1" in ex.status.value and ex.history == []


def test_redraws_are_throttled_and_the_last_frame_is_drawn(ex):
    # Virtual time: 40 ms per iteration, so a 0.1 s throttle allows about one frame in 2.5.
    ex.throttle = Throttle(0.1, clock=lambda: 0.04 * len(ex.history))
    try:
        ex.run_sync(20)
    finally:
        ex.throttle = Throttle()
    shown = [iteration for iteration, _ in ex.frames]
    assert shown[-1] == 20
    assert all(b - a >= 3 for a, b in zip(shown[:-2], shown[1:-1]))  # >= 0.1 s of virtual time apart
    assert len(shown) <= 20 * 0.04 / 0.1 + 2


def test_throttle():
    now = [0.0]
    throttle = Throttle(0.1, clock=lambda: now[0])
    assert throttle.ready() and not throttle.ready()
    now[0] = 0.05
    assert not throttle.ready() and math.isclose(throttle.wait(), 0.05)
    now[0] = 0.1
    assert throttle.ready()
    with pytest.raises(ValueError, match="interval"):
        Throttle(-1)


def test_switching_problem_resets_the_controls_and_reuses_built_problems(ex):
    ex.problem.value = "idt"
    try:
        assert [label for label, _ in ex.batch_ratio.options] == ["1/8", "1/4", "1/2", "1"]
        assert math.isclose(ex.gamma.value, ex.safe_step, rel_tol=1e-9) and "8 LEDs" in ex.batch_ratio.tooltip
        assert len(ex.run_sync(2)) == 2
    finally:
        built = ex._problems["mri"]
        ex.problem.value = "mri"
    assert ex._problems["mri"] is built and ex.history == []


def test_ratio_options_are_clean_fractions_of_the_block_count():
    assert ratio_options(180) == [("1/4", 0.25), ("1/2", 0.5), ("1", 1.0)]
    assert [label for label, _ in ratio_options(256)] == ["1/256", "1/128", "1/64", "1/32", "1/16", "1/8", "1/4",
                                                          "1/2", "1"]
    assert ratio_options(7) == [("1", 1.0)]


def test_closing_an_explorer_releases_it_and_its_figure():
    ex = ReconstructionExplorer("mri", image_size=32, denoiser="gaussian", num_blocks={"mri": 2}, device="cpu")
    ex.run_sync(2)
    training = TrainingExplorer(RECORDS)
    refs = [weakref.ref(ex), weakref.ref(ex.figure.fig), weakref.ref(training), weakref.ref(training.fig)]
    ex.close()
    training.close()
    del ex, training
    gc.collect()
    gc.collect()  # a second pass frees what the first pass's finalizers (widgets' __del__) released
    assert [ref() is None for ref in refs] == [True] * 4
    assert plt.get_fignums() == []  # pyplot was never involved


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="problem must be one of"):
        ReconstructionExplorer("pet")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        ReconstructionExplorer("mri", "admm")
    with pytest.raises(ValueError, match="iterations"):
        ReconstructionExplorer("mri", iterations=0)
    with pytest.raises(TypeError, match="denoiser must be"):
        ReconstructionExplorer("mri", denoiser=3)
    with pytest.raises(ValueError, match="num_blocks keys"):
        ReconstructionExplorer("mri", num_blocks={"pet": 3})
    with pytest.raises(ValueError, match="image_size"):
        make_problem("mri", image_size=4)


# --- training explorer ------------------------------------------------------------------------
RECORDS = [
    {"app": "ct", "method": "full", "ratio": 1.0, "train_step_ms": 400.0, "train_peak_mib": 100.0, "test_psnr": 30.0},
    {"app": "ct", "method": "oder", "ratio": 0.25, "train_step_ms": 150.0, "train_peak_mib": 35.0, "test_psnr": 29.8},
    {"app": "ct", "method": "oder", "ratio": 0.5, "train_step_ms": 250.0, "train_peak_mib": 60.0, "test_psnr": 29.9},
]


def test_training_explorer_reads_a_benchmark_file_and_labels_it(tmp_path):
    path = tmp_path / "oder.json"
    path.write_text(json.dumps({"command": "oder-edu bench oder", "date": "today", "machine": {"cpu": "x86_64"},
                                "records": RECORDS}))
    explorer = TrainingExplorer(path)
    assert explorer.ratio.value == 0.25 and [v for _, v in explorer.ratio.options] == [0.25, 0.5, 1.0]
    table = explorer.table.value
    assert "35.0 MiB" in table and "100.0 MiB" in table and "0.35×" in table and "-0.20 dB" in table
    assert "oder.json (oder-edu bench oder, today, x86_64)" in table and "live" not in table
    explorer.ratio.value = 0.5
    assert "60.0 MiB" in explorer.table.value and "0.60×" in explorer.table.value
    assert explorer.image.value[:4] == b"\x89PNG" and explorer.measure_button.disabled
    with pytest.raises(RuntimeError, match="measure"):
        explorer.measure_sync()


def test_training_explorer_live_runs_through_the_given_callable():
    calls = []

    def fake_measure(app, method, ratio):
        calls.append((app, method, ratio))
        return {"train_step_ms": 100.0 * ratio, "train_peak_mib": 80.0 * ratio, "test_psnr": 28.0 + ratio}

    explorer = TrainingExplorer(None, measure=fake_measure, apps=("idt",), ratios=(0.25, 0.5))
    assert "no measurement" in explorer.status.value
    new = explorer.measure_sync()
    assert calls == [("idt", "full", 1.0), ("idt", "oder", 0.25)] and len(new) == 2
    assert "live runs on this machine" in explorer.table.value and "20.0 MiB" in explorer.table.value
    # One step of a fresh model has no held-out PSNR: a live run keeps time and memory only.
    assert all("test_psnr" not in r for r in new) and "28.25 dB" not in explorer.table.value
    assert "needs a trained model" in explorer.table.value
    explorer.measure_sync()  # cached: nothing measured twice
    explorer.ratio.value = 0.5
    explorer.measure_button.click()
    assert calls[-1] == ("idt", "oder", 0.5) and len(calls) == 3 and len(explorer.history) == 3


def test_training_explorer_keeps_file_and_live_figures_apart():
    records = [dict(r, image_size=128, num_blocks=180) for r in RECORDS]
    measure = lambda app, method, ratio: {"train_step_ms": 1.0, "train_peak_mib": 1.0, "test_psnr": 1.0}  # noqa: E731
    explorer = TrainingExplorer(records, measure=measure, apps=("ct",))
    assert [label for label, _ in explorer.case.options] == ["ct 128², B = 180", "ct (live runs)"]
    assert explorer.measure_button.disabled and "records given" in explorer.table.value
    explorer.case.value = ("ct", "live", None)
    assert not explorer.measure_button.disabled and "no measurement" in explorer.status.value
    explorer.measure_sync()
    assert "1.0 MiB" in explorer.table.value and "100.0 MiB" not in explorer.table.value


def test_training_explorer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        TrainingExplorer(None)
    with pytest.raises(FileNotFoundError, match="bench oder"):
        TrainingExplorer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="records"):
        TrainingExplorer(bad)
    explorer = TrainingExplorer(None, measure=lambda app, method, ratio: {"train_step_ms": 1.0})
    with pytest.raises(ValueError, match="train_peak_mib"):
        explorer.measure_sync()
    with pytest.raises(TypeError, match="measure must be"):
        TrainingExplorer(RECORDS, measure=3)


def test_explorers_render_as_widgets(ex):
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    assert "oder-setting" in ex.readout.value or "start image" in ex.readout.value


def test_bench_widgets_measures_through_the_explorer(tmp_path):
    from oder_edu.cli import main

    assert main(["bench", "widgets", "--out", str(tmp_path), "--image-size", "32", "--num-angles", "16",
                 "--iterations", "4", "--changes", "3", "--denoiser", "gaussian", "--threads", "1"]) == 0
    data = json.loads((tmp_path / "widgets.json").read_text())
    (record,) = data["records"]
    assert record["threads"] == 1 and "--threads 1" in data["command"]
    assert record["case"] == "RED, CT 32², 16 angles, b/B = 1/4"
    for key in ("first_frame_ms", "first_frame_ms_max", "run_to_first_frame_ms", "iters_per_s",
                "iters_per_s_with_reference", "solver_iters_per_s", "frame_render_ms"):
        assert record[key] > 0, key
    assert record["first_frame_ms"] <= record["first_frame_ms_max"] and record["changes"] == 3
    assert (tmp_path / "widgets.md").exists()


def test_training_explorer_leaves_out_records_it_cannot_place():
    """A record with ratio 0, no method or no ratio is skipped, not a crash."""
    broken = [{"app": "ct", "method": "oder", "ratio": 0, "train_step_ms": 1.0}, {"app": "ct", "ratio": 0.5},
              {"app": "ct", "method": "oder"}]
    explorer = TrainingExplorer(RECORDS + broken)
    assert [v for _, v in explorer.ratio.options] == [0.25, 0.5, 1.0]


def test_the_default_training_explorer_reads_the_shipped_results():
    """From any working directory (the results ship inside the package), labelled with their setting."""
    explorer = TrainingExplorer()
    assert "shipped with oder_edu" in explorer.table.value
    assert all("²" in label and "B = " in label for label, _ in explorer.case.options)


def test_tau_zero_switches_the_prior_off(ex):
    """τ = 0 (not σ = 0) removes the prior: RED is then plain gradient descent on g."""
    from oder_edu.algorithms import gradient_descent

    ex.tau.value = 0.0
    ex.gamma.value = ex.safe_step
    history = ex.run_sync(4)
    p = ex._problem
    plain = list(gradient_descent(p.A, p.y, gamma=ex.gamma.value, x0=p.x0, max_iter=4))
    assert history[-1].psnr == pytest.approx(__import__("oder_edu.metrics", fromlist=["psnr"]).psnr(
        plain[-1].x, p.x_true).item(), abs=1e-6)


def test_a_headless_run_changes_settings_between_iterations():
    """ReconstructionRun, the explorer without widgets: settings may change at any iteration."""
    from oder_edu.denoisers import load_denoiser

    problem = make_problem("idt", 32, 8, device="cpu")
    run = ReconstructionRun(problem, load_denoiser("gaussian", device="cpu"), iterations=6)
    first = Settings("red", 1e-3, 0.05, 0.1 * problem.A.norm() ** 2, 1.0)
    for k in range(6):
        run.step(first if k < 3 else Settings("red", 1e-3, 0.05, first.tau, 0.25))
    assert run.done and [r.batch_size for r in run.history] == [8, 8, 8, 2, 2, 2]
    assert all(r.reference_psnr is not None for r in run.history)
    with pytest.raises(ValueError, match="batch_ratio"):
        Settings("red", 1e-3, 0.05, 1.0, 0.0)


def test_a_record_reports_the_blocks_its_sampler_drew():
    """B = 360 CT angles at b/B = 0.3: the stratified sampler draws b = 120 (the divisor of 360 nearest to
    0.3·360 = 108); the record says 120, and the step is the minibatch constant's for b = 120."""
    from oder_edu.denoisers import load_denoiser
    from oder_edu.widgets.runner import safe_step

    problem = make_problem("ct", 16, 360, device="cpu")
    run = ReconstructionRun(problem, load_denoiser("gaussian", device="cpu"), iterations=2, reference=False)
    settings = Settings("red", safe_step(problem, "red", 1.0, 0.3), 0.05, 1.0, 0.3)
    while not run.done:
        run.step(settings)
    assert [r.batch_size for r in run.history] == [120, 120]
    assert settings.gamma == pytest.approx(1 / (problem.A.minibatch_lipschitz(120) + 1.0))


def test_the_explorer_defaults_are_the_shipped_sweep_choice():
    """problems.SETTINGS' RED σ and τ are what `oder-edu bench widgets --sweep` chose, and that
    choice ends within 0.3 dB of its best iterate (the sweep's rule)."""
    from oder_edu import results
    from oder_edu.problems import SETTINGS

    sweep = [r for r in results.load("widgets")["records"] if r["case"].startswith("RED sweep")]
    for app in ("ct", "mri", "idt"):
        (chosen,) = [r for r in sweep if r["case"] == f"RED sweep, {app}" and r["chosen"]]
        assert (chosen["sigma"], chosen["tau_over_L"]) == (SETTINGS[app].red_sigma, SETTINGS[app].red_tau_over_L), app
        assert chosen["best_psnr"] - chosen["final_psnr"] <= 0.3 and not chosen["diverged"]


def test_red_sweep_and_its_choice():
    from oder_edu.denoisers import load_denoiser
    from oder_edu.widgets.runner import choose_red_setting, red_sweep

    problem = make_problem("idt", 32, 8, device="cpu")
    rows = red_sweep(problem, load_denoiser("gaussian", device="cpu"), sigmas=(0.02, 0.05), taus_over_L=(0.03, 0.3),
                     iterations=15)
    assert len(rows) == 4 and all(r["best_psnr"] >= r["final_psnr"] for r in rows)
    chosen = choose_red_setting(rows, within=100.0)
    assert chosen["final_psnr"] == max(r["final_psnr"] for r in rows)
    with pytest.raises(ValueError, match="within"):
        choose_red_setting([dict(r, best_psnr=r["final_psnr"] + 1) for r in rows], within=0.3)


def test_training_explorer_shows_every_measured_ratio_on_zero_based_cost_axes():
    """Every ratio a benchmark measured is a point and a slider stop; memory and time axes start at 0 (a saving
    reads true only against zero), the PSNR axis does not; the metric list drives the panels."""
    from oder_edu.widgets.training import METRICS

    records = RECORDS + [dict(RECORDS[1], ratio=r, train_peak_mib=90.0 * r + 10) for r in (0.125, 0.0625)]
    explorer = TrainingExplorer(records)
    assert [v for _, v in explorer.ratio.options] == [0.0625, 0.125, 0.25, 0.5, 1.0]
    assert len(explorer.axes) == len(METRICS)
    for ax, metric in zip(explorer.axes, METRICS):
        assert (ax.get_ylim()[0] == 0) == metric.zero_based, metric.key
    memory = explorer.axes[[m.key for m in METRICS].index("train_peak_mib")]
    assert len(memory.lines[0].get_xdata()) == 4  # ODER at every ratio below 1
