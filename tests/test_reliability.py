"""Nothing lost, nothing silent (issue #16): bad and edge-case inputs at every public entry point.

One table, ``CASES``: each row is a call, the exception it must raise (or ``None``: it must
succeed, e.g. numpy scalars and edge sizes) and a regex its message must match, which names the
parameter and what was expected. A row's *outcome* is one of

- ``clear``:   the expected exception with a matching message (or, for ``None``, success);
- ``unclear``: another exception, or a message that does not name the parameter (a raw
  torch/numpy error, or one that blames the wrong thing);
- ``silent``:  no exception although one was due, a wrong result, or expensive work started
  before the bad argument was refused (``forbid``: the expensive step is replaced by a
  stand-in that raises ``WorkStarted``);
- ``blow-up``: memory was allocated before the size was checked.

Every row must be ``clear``. Rows marked ``guard`` ask for sizes of many GiB; they run in a
subprocess under a 3 GiB address-space limit, so a regression fails the test instead of the
machine. ``python tests/test_reliability.py`` prints the tally of outcomes by kind of entry point.

Where non-finite values are rejected (item 7 of the issue): operators pass NaN/Inf through (a
linear map); ``LeastSquares`` rejects a non-finite ``y``; every solver (``algorithms.step.setup``)
and every fixed-point solver (``deq.solvers``) rejects a non-finite start, ``DEQ``/``REDDEQ``
too; a non-finite iterate (a denoiser returning NaN) ends a solver's stream with a ``diverged``
state, which the explorer shows in its panel; ``add_noise_snr`` rejects a non-finite ``y``,
``make_problem`` a non-finite truth, ``deq.train_step`` non-finite training images; DnCNN and
the classical denoisers reject non-finite images.

The command line is tried twice: the ``cli`` rows run with ``--debug``, so the error arrives as
the exception itself; ``CLI_ERRORS`` runs the commands as a user does and asserts one line on
stderr, no traceback and the exit status (2: the command line must change, 1: the run failed).

Covered elsewhere, not repeated here: ``train deq`` refusing an existing ``--out`` before
training, ``--num-blocks 0``, ``--checkpoint-every -1`` (tests/test_train_deq.py), ``labs``
refusing to overwrite notebooks unless ``--force`` (tests/test_labs.py), atomic weight saves
(tests/test_checkpoints.py), every file on a full disk and after a kill (tests/test_files.py),
divergence advice (tests/test_algorithms.py, tests/test_iterate.py).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from oder_edu import checkpoints, cli, exercises
from oder_edu import results as shipped_results
from oder_edu.algorithms import fista_tv, gradient_descent, pnp_admm, pnp_pgd, red, step_size, tikhonov
from oder_edu.checkpoints import CheckpointError
from oder_edu.denoisers import ClassicalDenoiser, DnCNN, gaussian_denoise, load_denoiser, tv_denoise
from oder_edu.deq import (DEQ, REDDEQ, ModelConfig, anderson, build, evaluate, forward_iteration, held_out,
                          jacobian_norm, load_model, nesterov, save, train_step, unrolled)
from oder_edu.images import real_image
from oder_edu.physics import (Blur, Denoising, IntensityDiffractionTomography, LeastSquares, MultiCoilMRI,
                              ParallelBeamCT, add_noise_snr, fbp)
from oder_edu.physics.mri import birdcage_maps, cartesian_mask
from oder_edu.physics.samplers import (CyclicSampler, StratifiedSampler, UniformSampler, batch_size_for,
                                       make_sampler)
from oder_edu.physics.simple import gaussian_kernel
from oder_edu.problems import make_operator, make_problem, truth_images
from oder_edu.widgets import ReconstructionExplorer, ReconstructionRun, Settings, TrainingExplorer

NAN = float("nan")
CUDA = torch.cuda.is_available()
MEMORY_LIMIT = 3 * 2**30  # bytes of address space for the guarded rows


class WorkStarted(Exception):
    """Raised by a stand-in for an expensive step: the bad argument was refused too late."""


@dataclass
class Case:
    kind: str
    name: str
    call: Callable
    raises: type | tuple | None  # None: the call must succeed
    match: str = ""  # regex on the exception's message; on ``str(result)`` for a success
    check: Callable | None = None  # for a success: a predicate on the result
    guard: bool = False  # many GiB asked for: run under a memory limit
    wrong: str = "silent"  # the outcome of a success whose result fails match/check

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


# --- shared objects, built once and only when a row needs them ------------------------------------
@functools.cache
def tmp() -> Path:
    path = Path(tempfile.mkdtemp(prefix="oder-reliability-"))
    import atexit

    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def ct():
    return ParallelBeamCT(16, num_angles=4)


def image(n=1, size=16):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


@functools.cache
def sinogram():
    return ct()(image())


def nan_like(t):
    return torch.full_like(t, NAN)


@functools.cache
def ls():
    return LeastSquares(ct(), sinogram())


@functools.cache
def mri():
    return MultiCoilMRI(16, 2)


@functools.cache
def net():
    torch.manual_seed(0)
    return DnCNN(1, 3, 4)


def smooth(x, sigma):
    return gaussian_denoise(x, sigma)


def half(z, *args):
    return 0.5 * z


def tiny_config(**options):
    return ModelConfig(**{"image_size": 16, "num_blocks": 4, "pretrained": None, "depth": 2, "width": 4,
                          "max_iter": 5, "backward_max_iter": 5, **options})


def log_dir_holding(name: str, state) -> Path:
    """A fresh log folder ``name`` whose state.pt is a copy of the file ``state`` (none if None)."""
    folder = tmp() / name
    folder.mkdir()
    if state is not None:
        shutil.copy(state, folder / "state.pt")
    return folder


@functools.cache
def files() -> dict:
    """Weight files made here (not the shipped ones): a denoiser, a model, a truncated copy,
    a text file and a folder whose manifest entry has no sha256."""
    d = tmp() / "weights"
    d.mkdir()
    out = {"denoiser": checkpoints.save_state(d / "den.pt", "denoiser", net().config(), net())}
    config = tiny_config()
    out["model"] = save(d / "model.pt", build(config, make_operator("ct", 16, 4)), config)
    out["truncated"] = d / "truncated.pt"
    out["truncated"].write_bytes(out["model"].read_bytes()[:100])
    out["text"] = d / "notes.txt"
    out["text"].write_text("not weights")
    nosha = tmp() / "nosha"
    nosha.mkdir()
    out["nosha"] = checkpoints.save_state(nosha / "w.pt", "denoiser", net().config(), net())
    (nosha / "MANIFEST.json").write_text(json.dumps({"w": {"file": "w.pt", "command": "oder-edu train denoiser --out w.pt"}}))
    return out


def manifest(content: str) -> Path:
    """A folder holding a valid weight file ``w.pt`` beside a MANIFEST.json of ``content``."""
    d = Path(tempfile.mkdtemp(dir=tmp()))
    checkpoints.save_state(d / "w.pt", "denoiser", net().config(), net())
    (d / "MANIFEST.json").write_text(content)
    return d / "w.pt"


def blocked() -> Path:
    """A path under a regular file: no folder can be made there (whoever runs the tests)."""
    f = tmp() / "a-file"
    f.write_text("x")
    return f / "sub"


def last(stream):
    state = None
    for state in stream:
        pass
    return state


def said(check, answer) -> str:
    """What an exercise check printed for ``answer``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(answer)
    return out.getvalue()


@contextlib.contextmanager
def forbid(*targets: str):
    """Replace each ``module:attr`` by a stand-in raising ``WorkStarted`` for the block."""
    saved = []
    for target in targets:
        module, attr = target.split(":")
        mod = importlib.import_module(module)
        saved.append((mod, attr, getattr(mod, attr)))

        def stand_in(*args, _target=target, **kwargs):
            raise WorkStarted(f"{_target} ran before the bad argument was refused")

        setattr(mod, attr, stand_in)
    try:
        yield
    finally:
        for mod, attr, old in reversed(saved):
            setattr(mod, attr, old)


def run_cli(args, forbidden=()):
    """``oder-edu ARGS`` with ``--debug``: its error raised as the exception itself (the one-line
    messages and exit statuses without it: ``test_cli_error_is_one_line``)."""
    with forbid(*forbidden), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main(["--debug", *[str(a) for a in args]])


def warned(call) -> str:
    """``"COUNT: first message"`` of the warnings ``call()`` raises (every one recorded)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return f"{len(caught)}: {caught[0].message if caught else ''}"


def twice_at(sigma):
    """A fresh DnCNN (trained range (0, 0.2)) called twice at ``sigma``."""
    D = DnCNN(1, 3, 4)
    return lambda: (D(image(), sigma), D(image(), sigma))


def recon(*args, **kwargs):
    return ReconstructionExplorer(*args, **kwargs)


@functools.cache
def explorer():
    return ReconstructionExplorer("ct", image_size=16, num_blocks={"ct": 4}, denoiser="gaussian", iterations=3,
                                  device="cpu")


def explorer_with(denoiser):
    """The status panel after a 3-iteration run with ``denoiser`` (an error is shown there, then raised)."""
    ex = ReconstructionExplorer("ct", image_size=16, num_blocks={"ct": 4}, denoiser=denoiser, iterations=3,
                                device="cpu")
    try:
        ex.run_sync(3)
    except ValueError:
        pass
    finally:
        ex.close()
    return ex.status.value


def training_explorer(results, **kw):
    return TrainingExplorer(results, **kw)


FULL = {"app": "ct", "method": "full", "ratio": 1.0, "train_step_ms": 10.0, "train_peak_mib": 5.0, "test_psnr": 30.0}
ODER = dict(FULL, method="oder", ratio=0.25, train_step_ms=4.0, train_peak_mib=2.0, test_psnr=29.0)


def json_file(text: str) -> str:
    path = Path(tempfile.mkdtemp(dir=tmp())) / "bad.json"
    path.write_text(text)
    return str(path)


def numpy_config_round_trip():
    """A ModelConfig of numpy scalars is saved and loads back with plain Python values."""
    config = tiny_config(image_size=np.int64(16), num_blocks=np.int64(4), depth=np.int64(2), width=np.int64(4),
                         max_iter=np.int64(5), sigma=np.float32(0.05), tol=np.float64(1e-3))
    path = Path(tempfile.mkdtemp(dir=tmp())) / "np.pt"
    save(path, build(config, make_operator("ct", 16, 4)), config)
    loaded = load_model(path, device="cpu").config
    return [type(getattr(loaded, k)).__name__ for k in ("image_size", "depth", "width", "max_iter", "sigma")]


def deq_step_on_nan_images():
    A = make_operator("ct", 16, 4)
    x = image(2)
    y = A(x)
    x[0, 0, 0, 0] = NAN
    model = build(tiny_config(), A)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_step(model, optimizer, x, fbp(A, y), LeastSquares(A, y), torch.Generator().manual_seed(0), False)
    return [bool(torch.isfinite(p).all()) for p in model.parameters()]


TINY_DEQ = ["--app", "ct", "--image-size", 16, "--num-blocks", 4, "--pretrained", "none", "--depth", 2, "--width", 2,
            "--batch-size", 1, "--max-iter", 3, "--backward-max-iter", 3, "--val-images", 1, "--steps", 1,
            "--no-progress"]
TINY_DENOISER = ["--steps", 1, "--patch-size", 16, "--batch-size", 1, "--architecture", "dncnn", "--depth", 2, "--width", 2,
                 "--no-progress"]
TRAIN = "oder_edu.train.denoiser:train"
RUN_DEQ = "oder_edu.commands.train_deq:run"
DEMO_LOADS = "oder_edu.commands.demo:load_denoiser"

V, T = ValueError, TypeError


def C(kind, name, call, raises, match="", **kw):
    return Case(kind, name, call, raises, match, **kw)


CASES = [
    # --- operators ----------------------------------------------------------------------------------
    C("operators", "CT image_size float", lambda: ParallelBeamCT(16.0, num_angles=4), T, r"image_size must be an integer, got 16.0"),
    C("operators", "CT image_size 1", lambda: ParallelBeamCT(1, num_angles=4), V, r"image_size must be an integer >= 2, got 1"),
    C("operators", "CT num_angles 0", lambda: ParallelBeamCT(16, num_angles=0), V, r"num_angles must be an integer >= 1"),
    C("operators", "CT both num_angles and angles", lambda: ParallelBeamCT(16, num_angles=4, angles=[0]), V,
      r"exactly one of num_angles .* and angles"),
    C("operators", "CT NaN angle", lambda: ParallelBeamCT(16, angles=[0, NAN]), V, r"angles contains NaN or Inf"),
    C("operators", "CT no angles", lambda: ParallelBeamCT(16, angles=[]), V, r"angles must be a non-empty 1-D"),
    C("operators", "CT num_detectors 0", lambda: ParallelBeamCT(16, num_angles=4, num_detectors=0), V,
      r"num_detectors must be an integer >= 1"),
    C("operators", "CT numpy sizes", lambda: ParallelBeamCT(np.int64(16), num_angles=np.int64(4), num_detectors=np.int32(20)),
      None, check=lambda A: (A.image_size, A.num_blocks, A.num_detectors) == (16, 4, 20) and type(A.image_size) is int),
    C("operators", "CT smallest size", lambda: ParallelBeamCT(2, num_angles=1)(torch.ones(1, 1, 2, 2)).shape, None,
      r"\(1, 1, 2\)|\[1, 1, 2\]"),
    C("operators", "forward of a list", lambda: ct().forward([[1.0]]), T, r"image must be a torch.Tensor image batch"),
    C("operators", "forward of integers", lambda: ct().forward(torch.ones(1, 1, 16, 16, dtype=torch.long)), T,
      r"image must be a real floating-point tensor, got dtype torch.int64"),
    C("operators", "forward of [H, W] batch", lambda: ct().forward(torch.ones(1, 16, 16)), V, r"shape \[N, C, H, W\]"),
    C("operators", "forward of wrong size", lambda: ct().forward(torch.ones(1, 1, 8, 8)), V,
      r"ParallelBeamCT expects images of shape \[N, 1, 16, 16\], got \(1, 1, 8, 8\)"),
    C("operators", "block out of range", lambda: ct().forward(image(), [4]), IndexError, r"block indices must lie in \[0, 4\)"),
    C("operators", "negative block", lambda: ct().forward(image(), [-1]), IndexError, r"block indices must lie in \[0, 4\)"),
    C("operators", "repeated block", lambda: ct().forward(image(), [1, 1]), V, r"blocks must be distinct"),
    C("operators", "float block", lambda: ct().forward(image(), [1.0]), T, r"blocks must hold integer indices"),
    C("operators", "no block", lambda: ct().forward(image(), []), V, r"blocks is empty; expected at least one index"),
    C("operators", "blocks as a string", lambda: ct().forward(image(), "01"), T, r"blocks must be a 1-D sequence of integer"),
    C("operators", "boolean block mask", lambda: ct().forward(image(), torch.tensor([True, False, True, False])), T,
      r"blocks must hold integer indices, got dtype torch.bool"),
    C("operators", "numpy scalar block", lambda: tuple(ct().forward(image(), np.int64(2)).shape), None, r"\(1, 1, 16\)"),
    C("operators", "numpy block array", lambda: tuple(ct().forward(image(), np.array([0, 2])).shape), None, r"\(1, 2, 16\)"),
    C("operators", "adjoint for the wrong blocks", lambda: ct().adjoint(sinogram(), [0]), V,
      r"measurements of shape \[N, 1, 16\] for 1 block"),
    C("operators", "complex CT data", lambda: ct().adjoint(sinogram().to(torch.complex64)), T,
      r"expects real floating-point measurements"),
    C("operators", "numpy data", lambda: ct().adjoint(sinogram().numpy()), T, r"expects a torch.Tensor measurement"),
    C("operators", "NaN passes through (a linear map)", lambda: bool(ct()(nan_like(image())).isnan().all()), None, "True"),
    C("operators", "measurement_shape of no image", lambda: ct().measurement_shape(0), V, r"batch must be an integer >= 1"),
    C("operators", "norm num_iter 0", lambda: ct().norm(0), V, r"num_iter must be an integer >= 1"),
    C("operators", "minibatch b > B", lambda: ct().minibatch_lipschitz(5), V, r"batch_size must be an integer in \[1, 4\]"),
    C("operators", "minibatch numpy b", lambda: ct().minibatch_lipschitz(np.int64(2)), None, check=lambda v: v > 0),
    C("operators", "LeastSquares NaN data", lambda: LeastSquares(ct(), nan_like(sinogram())), V,
      r"measurements y contains NaN or Inf"),
    C("operators", "LeastSquares Inf in complex data", lambda: LeastSquares(mri(), mri()(image()) + 1j * math.inf), V,
      r"measurements y contains NaN or Inf"),
    C("operators", "LeastSquares of a string", lambda: LeastSquares("A", sinogram()), T, r"A must be a BlockOperator"),
    C("operators", "LeastSquares wrong data shape", lambda: LeastSquares(ct(), sinogram()[:, :2]), V,
      r"measurements of shape \[N, 4, 16\]"),
    C("operators", "gradient in float64", lambda: ls().grad(image().double()), V, r"data term expects torch.float32"),
    C("operators", "gradient of 2 images", lambda: ls().grad(image(2)), V, r"image batch 2 does not match data batch 1"),
    C("operators", "prox gamma 0", lambda: ls().prox(image(), 0), V, r"gamma must be > 0"),
    C("operators", "prox cg_iter 0", lambda: ls().prox(image(), 0.5, cg_iter=0), V, r"cg_iter must be an integer >= 1"),
    C("operators", "prox numpy gamma", lambda: tuple(ls().prox(image(), np.float32(0.5), cg_iter=np.int64(2)).shape), None,
      r"\(1, 1, 16, 16\)"),
    C("operators", "normal of a wrong shape", lambda: ls().normal(image()[..., :8]), V, r"expects images of shape"),
    C("operators", "normal over empty blocks", lambda: ls().normal(image(), []), V, r"blocks is empty"),
    C("operators", "fbp filter", lambda: fbp(ct(), sinogram(), filter="shepp"), V, r"filter must be one of 'ramp', 'hann'"),
    C("operators", "fbp NaN sinogram", lambda: fbp(ct(), nan_like(sinogram())), V, r"sinogram y contains NaN"),
    C("operators", "fbp of another operator", lambda: fbp(Denoising(16), sinogram()), T, r"fbp needs a ParallelBeamCT"),
    C("operators", "fbp circle 'no'", lambda: fbp(ct(), sinogram(), circle="no"), T, r"circle must be True or False"),
    C("operators", "MRI no coil", lambda: MultiCoilMRI(16, 0), V, r"num_coils must be an integer >= 1"),
    C("operators", "MRI acceleration 0.5", lambda: MultiCoilMRI(16, 2, acceleration=0.5), V,
      r"acceleration must be a number >= 1"),
    C("operators", "MRI mask kind", lambda: MultiCoilMRI(16, 2, mask="radial"), V, r"mask kind must be one of 'random'"),
    C("operators", "MRI mask of 0.5", lambda: MultiCoilMRI(16, 2, mask=torch.full((16, 16), 0.5)), V,
      r"mask tensor must contain only 0 and 1"),
    C("operators", "MRI mask samples nothing", lambda: MultiCoilMRI(16, 1, mask=torch.zeros(16, 16)), V,
      r"mask samples no k-space entry"),
    C("operators", "MRI maps shape", lambda: MultiCoilMRI(16, 2, maps=torch.ones(3, 16, 16, dtype=torch.complex64)), V,
      r"maps must be a tensor of shape \[2, 16, 16\]"),
    C("operators", "MRI NaN maps", lambda: MultiCoilMRI(16, 1, maps=torch.full((1, 16, 16), NAN, dtype=torch.complex64)),
      V, r"maps contain NaN or Inf"),
    C("operators", "MRI center_fraction 0", lambda: MultiCoilMRI(16, 2, center_fraction=0), V,
      r"center_fraction must lie in \(0, 1\]"),
    C("operators", "MRI numpy arguments", lambda: MultiCoilMRI(np.int64(16), num_coils=np.int64(2),
                                                               acceleration=np.float32(2), seed=np.int64(3)).num_blocks,
      None, "2"),
    C("operators", "MRI real data", lambda: mri().adjoint(mri()(image()).real), T, r"expects complex measurements"),
    C("operators", "coil radius inside", lambda: birdcage_maps(16, 2, radius=1), V, r"radius must exceed sqrt\(2\)"),
    C("operators", "IDT no LED", lambda: IntensityDiffractionTomography(16, num_leds=0), V, r"num_leds must be an integer >= 1"),
    C("operators", "IDT objective_na 1.5", lambda: IntensityDiffractionTomography(16, 4, objective_na=1.5), V,
      r"objective_na must be below medium_index"),
    C("operators", "IDT darkfield ring", lambda: IntensityDiffractionTomography(16, 4, illumination_na=0.9), V,
      r"illumination_na must lie in \(0, objective_na"),
    C("operators", "IDT led_na shape", lambda: IntensityDiffractionTomography(16, led_na=torch.zeros(3)), V,
      r"led_na must have shape \[L, 2\]"),
    C("operators", "IDT led_na a number", lambda: IntensityDiffractionTomography(16, led_na=5), (T, V),
      r"led_na must .*\[L, 2\]"),
    C("operators", "IDT led_na complex", lambda: IntensityDiffractionTomography(16, led_na=torch.zeros(2, 2, dtype=torch.complex64)),
      T, r"led_na must be real"),
    C("operators", "IDT darkfield LED", lambda: IntensityDiffractionTomography(16, led_na=torch.tensor([[0.9, 0.0]])), V,
      r"every LED must be brightfield"),
    C("operators", "IDT absorption 'yes'", lambda: IntensityDiffractionTomography(16, 4, absorption="yes"), T,
      r"absorption must be True or False"),
    C("operators", "IDT numpy arguments", lambda: IntensityDiffractionTomography(np.int64(16), num_leds=np.int64(4),
                                                                                 wavelength=np.float32(0.5)).num_blocks,
      None, "4"),
    C("operators", "blur kernel a string", lambda: Blur("gauss", 16), T, r"kernel must be a real 2-D tensor"),
    C("operators", "blur kernel complex", lambda: Blur(torch.ones(3, 3, dtype=torch.complex64), 16), T,
      r"kernel must be a real 2-D tensor"),
    C("operators", "blur kernel too large", lambda: Blur(torch.ones(20, 20), 16), V,
      r"kernel must be a 2-D tensor no larger than 16x16"),
    C("operators", "blur NaN kernel", lambda: Blur(torch.full((3, 3), NAN), 16), V, r"kernel contains NaN"),
    C("operators", "blur numpy kernel and size", lambda: Blur(np.ones((3, 3)) / 9, np.int64(16)).image_shape, None,
      r"\(1, 16, 16\)"),
    C("operators", "gaussian_kernel size 0", lambda: gaussian_kernel(0), V, r"size must be an integer >= 1"),
    C("operators", "gaussian_kernel std 0", lambda: gaussian_kernel(3, 0), V, r"std must be > 0"),
    C("operators", "Denoising size '16'", lambda: Denoising("16"), T, r"image_size must be an integer, got '16'"),
    C("operators", "Denoising no channel", lambda: Denoising(16, 0), V, r"channels must be an integer >= 1"),
    C("operators", "Denoising 1 pixel", lambda: Denoising(1).image_shape, None, r"\(1, 1, 1\)"),

    # --- sizes: refused before any memory is spent (run under a memory limit) -----------------------
    C("sizes", "CT 100000", lambda: ParallelBeamCT(100000, num_angles=180), V, r"image_size=100000.*limit of 8 GiB",
      guard=True),
    C("sizes", "CT 10^9 angles", lambda: ParallelBeamCT(16, num_angles=10**9), V, r"num_angles=1000000000.*limit", guard=True),
    C("sizes", "CT 10^10 detectors", lambda: ParallelBeamCT(16, num_angles=4, num_detectors=10**10), V,
      r"num_detectors=10000000000.*limit", guard=True),
    C("sizes", "MRI 100000", lambda: MultiCoilMRI(100000), V, r"MultiCoilMRI\(100000.*limit", guard=True),
    C("sizes", "MRI 8192", lambda: MultiCoilMRI(8192), V, r"MultiCoilMRI\(8192.*limit", guard=True),
    C("sizes", "MRI 10^6 coils", lambda: MultiCoilMRI(64, num_coils=10**6), V, r"num_coils=1000000.*limit", guard=True),
    C("sizes", "coil maps 100000", lambda: birdcage_maps(100000, 8), V, r"100000 x 100000.*limit", guard=True),
    C("sizes", "mask 10^6", lambda: cartesian_mask(10**6, 4), V, r"1000000.*limit", guard=True),
    C("sizes", "IDT 100000", lambda: IntensityDiffractionTomography(100000), V,
      r"IntensityDiffractionTomography\(100000.*limit", guard=True),
    C("sizes", "IDT 10^8 LEDs", lambda: IntensityDiffractionTomography(16, num_leds=10**8), V, r"num_leds=100000000.*limit",
      guard=True),
    C("sizes", "Blur 100000", lambda: Blur(gaussian_kernel(), 100000), V, r"100000 x 100000 pixels.*limit", guard=True),
    C("sizes", "Denoising 100000", lambda: Denoising(100000), V, r"100000 x 100000 pixels.*limit", guard=True),
    C("sizes", "gaussian_kernel 10^6", lambda: gaussian_kernel(10**6), V, r"1000000.*limit", guard=True),
    C("sizes", "make_problem 100000", lambda: make_problem("ct", 100000), V, r"image_size=100000.*limit", guard=True),
    C("sizes", "truth images 100000", lambda: truth_images("shepp_logan", 1, 100000), V, r"100000.*limit", guard=True),
    C("sizes", "real_image 100000", lambda: real_image("ct", 100000), V, r"size=100000.*limit|100000 x 100000.*limit",
      guard=True),
    C("sizes", "DnCNN width 10^6", lambda: DnCNN(width=10**6), V, r"width=1000000.*limit", guard=True),
    C("sizes", "demo --image-size 100000", lambda: run_cli(["demo", "--image-size", 100000], [DEMO_LOADS]), V,
      r"image_size=100000.*limit", guard=True),
    C("sizes", "train denoiser --patch-size 100000",
      lambda: run_cli(["train", "denoiser", "--out", tmp() / "p.pt", "--patch-size", 100000], [TRAIN]), V,
      r"patch.size.*100000.*limit|100000.*limit", guard=True),
    C("sizes", "train deq --image-size 100000",
      lambda: run_cli(["train", "deq", "--image-size", 100000, "--log-dir", tmp() / "big"]), V,
      r"image_size=100000.*limit", guard=True),
    C("sizes", "explorer image_size 100000", lambda: recon("ct", image_size=100000, denoiser="gaussian"), V, r"image_size=100000.*limit", guard=True),

    # --- samplers ---------------------------------------------------------------------------------
    C("samplers", "no block", lambda: UniformSampler(0, 1), V, r"num_blocks must be an integer >= 1"),
    C("samplers", "b > B", lambda: UniformSampler(4, 5), V, r"batch_size must be an integer in \[1, 4\], got 5"),
    C("samplers", "float b", lambda: UniformSampler(8, 2.0), T, r"batch_size must be an integer, got 2.0"),
    C("samplers", "boolean b", lambda: CyclicSampler(8, True), T, r"batch_size must be an integer, got True"),
    C("samplers", "sectors that do not divide", lambda: StratifiedSampler(8, 4, 3), V, r"num_sectors=3 must divide"),
    C("samplers", "no sector", lambda: StratifiedSampler(8, 4, 0), V, r"num_sectors must be an integer >= 1"),
    C("samplers", "generator an int", lambda: UniformSampler(8, 2)(0), T, r"generator must be a torch.Generator or None"),
    C("samplers", "numpy generator", lambda: StratifiedSampler(8, 4)(np.random.default_rng(0)), T,
      r"generator must be a torch.Generator or None"),
    C("samplers", "cyclic generator a string", lambda: CyclicSampler(8, 2)("seed"), T, r"generator must be a torch.Generator"),
    C("samplers", "unknown sampler", lambda: make_sampler("random", 8, 0.5), V, r"sampler must be one of 'uniform'"),
    C("samplers", "ratio 0", lambda: make_sampler("uniform", 8, 0), V, r"batch_ratio must lie in \(0, 1\], got 0.0"),
    C("samplers", "ratio NaN", lambda: make_sampler("uniform", 8, NAN), V, r"batch_ratio must be finite"),
    C("samplers", "ratio 2", lambda: make_sampler("cyclic", 8, 2), V, r"batch_ratio must lie in \(0, 1\]"),
    C("samplers", "B = 2.5", lambda: make_sampler("uniform", 2.5, 0.5), T, r"num_blocks must be an integer, got 2.5"),
    C("samplers", "batch_size_for B = 0", lambda: batch_size_for(0, 0.5), V, r"num_blocks must be an integer >= 1"),
    C("samplers", "batch_size_for B = 2.5", lambda: batch_size_for(2.5, 0.5), T, r"num_blocks must be an integer"),
    C("samplers", "numpy B and ratio", lambda: make_sampler("uniform", np.int64(8), np.float32(0.25)).batch_size, None, "2"),
    C("samplers", "numpy uniform", lambda: tuple(UniformSampler(np.int64(8), np.int64(2))(torch.Generator()).shape), None,
      r"\(2,\)"),
    C("samplers", "numpy stratified", lambda: StratifiedSampler(np.int64(8), np.int64(4), np.int64(2))(None).tolist(), None,
      check=lambda b: len(b) == 4),
    C("samplers", "tiny ratio still draws one block", lambda: batch_size_for(1, 1e-9), None, "1"),

    # --- noise --------------------------------------------------------------------------------------
    C("noise", "snr a string", lambda: add_noise_snr(sinogram(), "30"), T, r"snr_db must be a real number, got '30'"),
    C("noise", "snr inf", lambda: add_noise_snr(sinogram(), math.inf), V, r"snr_db must be finite"),
    C("noise", "numpy data", lambda: add_noise_snr(sinogram().numpy(), 30), T, r"add_noise_snr expects a torch.Tensor"),
    C("noise", "integer data", lambda: add_noise_snr(torch.ones(2, 3, dtype=torch.long), 30), T,
      r"floating-point or complex tensor"),
    C("noise", "NaN data", lambda: add_noise_snr(nan_like(sinogram()), 30), V, r"y contains NaN or Inf"),
    C("noise", "all-zero data", lambda: add_noise_snr(torch.zeros(2, 3), 30), V, r"all zeros: its SNR is undefined"),
    C("noise", "0-d data", lambda: add_noise_snr(torch.tensor(1.0), 30), V, r"at least one dimension"),
    C("noise", "empty data", lambda: add_noise_snr(torch.zeros(0, 3), 30), V, r"non-empty tensor"),
    C("noise", "generator an int", lambda: add_noise_snr(sinogram(), 30, generator=0), T, r"generator must be a torch.Generator"),
    C("noise", "numpy snr", lambda: tuple(add_noise_snr(sinogram(), np.float32(30)).shape), None, r"\(1, 4, 16\)"),
    C("noise", "complex data", lambda: add_noise_snr(mri()(image()), 30).dtype, None, "complex64"),

    # --- solvers ------------------------------------------------------------------------------------
    C("solvers", "max_iter 0", lambda: gradient_descent(ct(), sinogram(), max_iter=0), V, r"max_iter must be an integer >= 1"),
    C("solvers", "max_iter 2.7", lambda: gradient_descent(ct(), sinogram(), max_iter=2.7), T, r"max_iter must be an integer"),
    C("solvers", "gamma -1", lambda: gradient_descent(ct(), sinogram(), gamma=-1), V, r"gamma must be > 0"),
    C("solvers", "NaN x0", lambda: gradient_descent(ct(), sinogram(), x0=nan_like(image())), V, r"x0 contains NaN or Inf"),
    C("solvers", "NaN y", lambda: gradient_descent(ct(), nan_like(sinogram())), V, r"measurements y contains NaN"),
    C("solvers", "x0 of the wrong size", lambda: gradient_descent(ct(), sinogram(), x0=torch.zeros(1, 1, 8, 8)), V,
      r"expects images of shape \[N, 1, 16, 16\]"),
    C("solvers", "tol NaN", lambda: gradient_descent(ct(), sinogram(), tol=NAN), V, r"tol must be finite"),
    C("solvers", "operator a string", lambda: gradient_descent("A", sinogram()), T, r"A must be a BlockOperator"),
    C("solvers", "tikhonov lam -1", lambda: tikhonov(ct(), sinogram(), lam=-1), V, r"lam must be a number >= 0"),
    C("solvers", "tikhonov NaN x0", lambda: tikhonov(ct(), sinogram(), lam=0.1, x0=nan_like(image())), V, r"x0 contains NaN"),
    C("solvers", "fista tv_iter 0", lambda: fista_tv(ct(), sinogram(), lam=0.1, tv_iter=0), V, r"tv_iter must be an integer >= 1"),
    C("solvers", "fista accelerate 'no'", lambda: fista_tv(ct(), sinogram(), lam=0.1, accelerate="no"), T,
      r"accelerate must be True or False"),
    C("solvers", "pnp sigma -1", lambda: pnp_pgd(ct(), sinogram(), smooth, sigma=-1), V, r"sigma must be a number >= 0"),
    C("solvers", "pnp denoiser a name", lambda: pnp_pgd(ct(), sinogram(), "dncnn", sigma=0.05), T, r"D must be a callable"),
    C("solvers", "pnp sampler 5", lambda: pnp_pgd(ct(), sinogram(), smooth, sigma=0.05, batch_ratio=0.5, sampler=5), T,
      r"sampler must be a callable"),
    C("solvers", "pnp generator 1", lambda: pnp_pgd(ct(), sinogram(), smooth, sigma=0.05, batch_ratio=0.5, generator=1), T,
      r"generator must be a torch.Generator"),
    C("solvers", "pnp accelerate 'yes'", lambda: pnp_pgd(ct(), sinogram(), smooth, sigma=0.05, accelerate="yes"), T,
      r"accelerate must be True or False"),
    C("solvers", "denoiser returns None", lambda: last(pnp_pgd(ct(), sinogram(), lambda x, s: None, sigma=0.05, max_iter=2)),
      V, r"denoiser D\(x, σ\) must return a tensor of the input shape"),
    C("solvers", "admm cg_iter 0", lambda: pnp_admm(ct(), sinogram(), smooth, sigma=0.05, cg_iter=0), V,
      r"cg_iter must be an integer >= 1"),
    C("solvers", "admm NaN x0", lambda: pnp_admm(ct(), sinogram(), smooth, sigma=0.05, x0=nan_like(image())), V,
      r"x0 contains NaN"),
    C("solvers", "red tau None", lambda: red(ct(), sinogram(), smooth, sigma=0.05, tau=None), T,
      r"tau must be a real number, got None"),
    C("solvers", "red lipschitz_R -1", lambda: red(ct(), sinogram(), smooth, sigma=0.05, tau=0.1, lipschitz_R=-1), V,
      r"lipschitz_R must be a number >= 0"),
    C("solvers", "red max_iter True", lambda: red(ct(), sinogram(), smooth, sigma=0.05, tau=0.1, max_iter=True), T,
      r"max_iter must be an integer, got True"),
    C("solvers", "red NaN x0", lambda: red(ct(), sinogram(), smooth, sigma=0.05, tau=0.1, x0=nan_like(image())), V,
      r"x0 contains NaN"),
    C("solvers", "red sampler draws block 9", lambda: last(red(ct(), sinogram(), smooth, sigma=0.05, tau=0.1, batch_ratio=0.5,
                                                                 sampler=lambda g: [9], max_iter=2)),
      IndexError, r"block indices must lie in \[0, 4\)"),
    C("solvers", "step_size of a string", lambda: step_size("A"), T, r"A must be a BlockOperator"),
    C("solvers", "step_size tau -1", lambda: step_size(ct(), -1), V, r"tau must be a number >= 0"),
    C("solvers", "numpy everything", lambda: last(red(ct(), sinogram(), smooth, sigma=np.float32(0.05), tau=np.float64(0.1),
                                                       gamma=np.float32(1e-3), batch_ratio=np.float64(0.5),
                                                       max_iter=np.int32(2))).iteration, None, "2"),
    C("solvers", "numpy max_iter", lambda: last(gradient_descent(ct(), sinogram(), max_iter=np.int64(2))).iteration, None, "2"),
    C("solvers", "NaN denoiser output ends the run",
      lambda: (lambda s: (s.iteration, s.diverged, "non-finite" in s.message))(
          last(red(ct(), sinogram(), lambda x, s: x * NAN, sigma=0.05, tau=0.1, max_iter=3))),
      None, r"\(1, True, True\)"),

    # --- deq ----------------------------------------------------------------------------------------
    C("deq", "DEQ unroll_iter 0", lambda: DEQ(half, unroll_iter=0), V, r"unroll_iter must be an integer >= 1, got 0"),
    C("deq", "DEQ backward_max_iter 0", lambda: DEQ(half, backward_max_iter=0), V, r"backward_max_iter must be an integer >= 1"),
    C("deq", "DEQ max_iter 2.7", lambda: DEQ(half, max_iter=2.7), T, r"max_iter must be an integer, got 2.7"),
    C("deq", "DEQ solver a name", lambda: DEQ(half, solver="anderson"), T, r"solver must be a callable"),
    C("deq", "DEQ backward 'exact'", lambda: DEQ(half, backward="exact"), V, r"backward must be one of 'implicit'"),
    C("deq", "DEQ NaN start", lambda: DEQ(half)(torch.full((1, 3), NAN)), V, r"z0 contains NaN or Inf"),
    C("deq", "DEQ list start", lambda: DEQ(half)([1.0]), T, r"z0 must be a floating-point tensor"),
    C("deq", "unrolled DEQ NaN start", lambda: DEQ(half, backward="unrolled", max_iter=3)(torch.full((1, 3), NAN)), V,
      r"z0 contains NaN or Inf"),
    C("deq", "unrolled NaN start", lambda: unrolled(half, torch.full((1, 3), NAN), 3), V, r"z0 contains NaN or Inf"),
    C("deq", "anderson max_iter 2.7", lambda: anderson(half, torch.ones(1, 3), max_iter=2.7), T, r"max_iter must be an integer"),
    C("deq", "anderson max_iter '5'", lambda: anderson(half, torch.ones(1, 3), max_iter="5"), T, r"max_iter must be an integer, got '5'"),
    C("deq", "anderson max_iter True", lambda: anderson(half, torch.ones(1, 3), max_iter=True), T,
      r"max_iter must be an integer, got True"),
    C("deq", "anderson m 2.5", lambda: anderson(half, torch.ones(1, 3), m=2.5), T, r"m must be an integer, got 2.5"),
    C("deq", "anderson NaN start", lambda: anderson(half, torch.full((1, 3), NAN)), V, r"^z0 contains NaN or Inf"),
    C("deq", "forward_iteration max_iter 2.7", lambda: forward_iteration(half, torch.ones(1, 3), max_iter=2.7), T,
      r"max_iter must be an integer"),
    C("deq", "nesterov max_iter True", lambda: nesterov(half, torch.ones(1, 3), max_iter=True), T, r"max_iter must be an integer"),
    C("deq", "anderson beta 0", lambda: anderson(half, torch.ones(1, 3), beta=0), V, r"beta must be > 0"),
    C("deq", "map changes the shape", lambda: anderson(lambda z: z[:, :2], torch.ones(1, 3)), V,
      r"must return a tensor of the input shape \(1, 3\)"),
    C("deq", "anderson numpy settings", lambda: anderson(half, torch.ones(1, 3), max_iter=np.int64(50), m=np.int64(3),
                                                         tol=np.float32(1e-6))[1].converged, None, "True"),
    C("deq", "REDDEQ of a function", lambda: REDDEQ(smooth, 0.05, 1.0), T, r"denoiser must be an nn.Module with residual"),
    C("deq", "REDDEQ tau 0", lambda: REDDEQ(net(), 0.05, 0), V, r"tau must be > 0"),
    C("deq", "REDDEQ unroll_iter 0", lambda: REDDEQ(net(), 0.05, 1.0, unroll_iter=0), V, r"unroll_iter must be an integer >= 1"),
    C("deq", "REDDEQ NaN x0", lambda: REDDEQ(net(), 0.05, 1.0, max_iter=3)(nan_like(image()), ls()), V,
      r"x0 contains NaN or Inf"),
    C("deq", "unrolled REDDEQ NaN x0", lambda: REDDEQ(net(), 0.05, 1.0, backward="unrolled", max_iter=3)(nan_like(image()), ls()),
      V, r"x0 contains NaN or Inf"),
    C("deq", "REDDEQ data term an operator", lambda: REDDEQ(net(), 0.05, 1.0)(image(), ct()), T,
      r"g must be a LeastSquares data term"),
    C("deq", "REDDEQ ratio 0", lambda: REDDEQ(net(), 0.05, 1.0)(image(), ls(), batch_ratio=0), V, r"batch_ratio must lie in"),
    C("deq", "REDDEQ generator 3", lambda: REDDEQ(net(), 0.05, 1.0)(image(), ls(), batch_ratio=0.5, generator=3), T,
      r"generator must be a torch.Generator"),
    C("deq", "REDDEQ numpy call", lambda: tuple(torch.no_grad()(REDDEQ(net(), np.float32(0.05), np.float64(1.0)))(
        image(), ls(), batch_ratio=np.float32(0.5), max_iter=np.int64(2)).shape), None, r"\(1, 1, 16, 16\)"),
    C("deq", "config app", lambda: ModelConfig(app="xray"), V, r"app must be one of 'denoise'"),
    C("deq", "config image_size 4", lambda: ModelConfig(image_size=4), V, r"image_size must be an integer >= 8"),
    C("deq", "config oder at ratio 1", lambda: ModelConfig(method="oder"), V, r"ODER needs a ratio below 1"),
    C("deq", "config depth 1.5", lambda: ModelConfig(depth=1.5), T, r"depth must be an integer, got 1.5"),
    C("deq", "config pretrained 5", lambda: ModelConfig(pretrained=5), T, r"pretrained must be .*None"),
    C("deq", "config of numpy scalars round-trips", numpy_config_round_trip, None, r"\['int', 'int', 'int', 'int', 'float'\]"),
    C("deq", "load_model of a denoiser file", lambda: load_model(files()["denoiser"]), CheckpointError,
      r"holds a 'denoiser' model, not a 'red_deq': load_denoiser loads it"),
    C("deq", "load_model of a truncated file", lambda: load_model(files()["truncated"]), CheckpointError,
      r"cannot load .*truncated.pt.*regenerate it with"),
    C("deq", "load_model device 'gpu'", lambda: load_model(files()["model"], device="gpu"), V,
      r"device='gpu' is not a device name; available"),
    C("deq", "load_model device 5", lambda: load_model(files()["model"], device=5), T, r"device must be a device name"),
    C("deq", "load_model of a number", lambda: load_model(5), T, r"weights must be named by a manifest name or a path"),
    C("deq", "load_model unknown name", lambda: load_model("nope"), CheckpointError, r"no weights named 'nope'"),
    C("deq", "load_model of a text file", lambda: load_model(files()["text"]), CheckpointError, r"notes.txt"),
    C("deq", "evaluate batch_size 0", lambda: evaluate(REDDEQ(net(), 0.05, 1.0), ct(), image(), 40.0, batch_size=0), V,
      r"batch_size must be an integer >= 1"),
    C("deq", "held_out app", lambda: held_out("xray", 2, 16), V, r"app must be one of"),
    C("deq", "build from a dict", lambda: build({"app": "ct"}, ct()), T, r"config must be a ModelConfig"),
    C("deq", "save a denoiser as a model", lambda: save(tmp() / "not-a-model.pt", net(), tiny_config()), T,
      r"model must be a REDDEQ"),
    C("deq", "jacobian_norm num_iter 0", lambda: jacobian_norm(REDDEQ(net(), 0.05, 1.0), image(), ls(), 0), V,
      r"num_iter must be an integer >= 1"),
    C("deq", "training step on NaN images", deq_step_on_nan_images, V, r"training images x contains NaN or Inf"),
    *([] if CUDA else [C("deq", "load_model on a missing GPU", lambda: load_model(files()["model"], device="cuda"), V,
                         r"device='cuda' is not available on this machine; available: cpu")]),

    # --- denoisers -----------------------------------------------------------------------------------
    C("denoisers", "DnCNN depth 1", lambda: DnCNN(depth=1), V, r"depth must be an integer >= 2"),
    C("denoisers", "DnCNN no channel", lambda: DnCNN(channels=0), V, r"channels must be an integer >= 1"),
    C("denoisers", "DnCNN sigma_range reversed", lambda: DnCNN(sigma_range=(0.2, 0.0)), V,
      r"sigma_range must be a pair \(low, high\) with 0 <= low <= high"),
    C("denoisers", "DnCNN sigma_range a number", lambda: DnCNN(sigma_range=0.2), T, r"sigma_range must be a pair"),
    C("denoisers", "DnCNN sigma_range of 3", lambda: DnCNN(sigma_range=(0, 0.1, 0.2)), V, r"sigma_range must be a pair"),
    C("denoisers", "DnCNN numpy sizes", lambda: DnCNN(np.int64(1), np.int64(3), np.int64(4)).config(), None,
      check=lambda c: c["depth"] == 3 and type(c["depth"]) is int),
    C("denoisers", "sigma -1", lambda: net()(image(), -1), V, r"sigma must be >= 0"),
    C("denoisers", "sigma a string", lambda: net()(image(), "0.1"), T, r"sigma must be a float or a tensor of shape \[1\]"),
    C("denoisers", "one sigma per image", lambda: net()(image(), torch.tensor([0.1, 0.2])), V, r"one per image"),
    C("denoisers", "sigma True", lambda: net()(image(), True), T, r"sigma must be a float"),
    C("denoisers", "NaN image", lambda: net()(nan_like(image()), 0.1), V, r"DnCNN: the image contains NaN or Inf"),
    C("denoisers", "float64 image, float32 net", lambda: net()(image().double(), 0.1), V, r"DnCNN weights are torch.float32"),
    C("denoisers", "2-channel image", lambda: net()(torch.rand(1, 2, 16, 16), 0.1), V, r"DnCNN expects images \[N, 1, H, W\]"),
    C("denoisers", "numpy sigma", lambda: tuple(net()(image(), np.float32(0.1)).shape), None, r"\(1, 1, 16, 16\)"),
    C("denoisers", "lipschitz grid 2", lambda: net().lipschitz_bound(2), V, r"grid must be an integer >= 4"),
    C("denoisers", "tv num_iter 2.5", lambda: tv_denoise(image(), 0.1, 2.5), (T, V), r"num_iter must be"),
    C("denoisers", "tv num_iter '5'", lambda: tv_denoise(image(), 0.1, "5"), (T, V), r"num_iter must be"),
    C("denoisers", "tv num_iter True", lambda: tv_denoise(image(), 0.1, True), T, r"num_iter must be an integer, got True"),
    C("denoisers", "tv num_iter None", lambda: tv_denoise(image(), 0.1, None), T, r"num_iter must be an integer, got None"),
    C("denoisers", "tv lam -1", lambda: tv_denoise(image(), -1), V, r"lam must be >= 0"),
    C("denoisers", "tv NaN image", lambda: tv_denoise(nan_like(image()), 0.1), V, r"tv_denoise: the image contains NaN"),
    C("denoisers", "tv numpy image", lambda: tv_denoise(image().numpy(), 0.1), T, r"tv_denoise expects a torch.Tensor image"),
    C("denoisers", "tv numpy settings", lambda: tuple(tv_denoise(image(), np.float32(0.1), np.int64(3)).shape), None,
      r"\(1, 1, 16, 16\)"),
    C("denoisers", "tv lam 0 is the identity", lambda: bool(torch.equal(tv_denoise(image(), 0.0), image())), None, "True"),
    C("denoisers", "gaussian std -1", lambda: gaussian_denoise(image(), 0.1, std=-1), V, r"std must be >= 0"),
    C("denoisers", "gaussian kernel wider than the image", lambda: gaussian_denoise(image(), 5.0), V,
      r"kernel radius \d+ px needs images larger than 16x16"),
    C("denoisers", "gaussian integer image", lambda: gaussian_denoise(torch.ones(1, 1, 16, 16, dtype=torch.long), 0.05), T,
      r"gaussian_denoise expects a real floating-point image"),
    C("denoisers", "classical kind", lambda: ClassicalDenoiser("nlm"), V, r"kind must be one of 'tv', 'gaussian', 'bm3d'"),
    C("denoisers", "classical num_iter 0.5", lambda: ClassicalDenoiser("tv", 0.5), T, r"num_iter must be an integer, got 0.5"),
    C("denoisers", "load_denoiser device 'gpu'", lambda: load_denoiser("tv", device="gpu"), V, r"device='gpu' is not a device name"),
    C("denoisers", "load_denoiser device 5", lambda: load_denoiser("tv", device=5), T, r"device must be a device name"),
    C("denoisers", "load_denoiser of a model file", lambda: load_denoiser(files()["model"], device="cpu"), CheckpointError,
      r"holds a 'red_deq' model, not a 'denoiser': deq.load_model loads it"),
    C("denoisers", "load_denoiser of a truncated file", lambda: load_denoiser(files()["truncated"], device="cpu"),
      CheckpointError, r"cannot load .*regenerate it with"),
    C("denoisers", "load_denoiser of None", lambda: load_denoiser(None, device="cpu"), T, r"weights must be named by"),
    C("denoisers", "load_denoiser missing path", lambda: load_denoiser(tmp() / "none.pt", device="cpu"), CheckpointError,
      r"no weight file at .*none.pt"),
    C("denoisers", "load_denoiser of a file made here", lambda: type(load_denoiser(files()["denoiser"], device="cpu")).__name__,
      None, "DnCNN"),
    C("denoisers", "load_denoiser torch.device", lambda: load_denoiser("gaussian", device=torch.device("cpu")).kind, None,
      "gaussian"),
    *([] if CUDA else [C("denoisers", "load_denoiser on a missing GPU", lambda: load_denoiser("tv", device="cuda"), V,
                         r"device='cuda' is not available on this machine; available: cpu")]),

    # --- checkpoints ---------------------------------------------------------------------------------
    C("checkpoints", "manifest entry without sha256", lambda: load_denoiser(files()["nosha"], device="cpu"), CheckpointError,
      r"records no sha256 for w.pt; regenerate it with:\n +oder-edu train denoiser"),
    C("checkpoints", "manifest not JSON", lambda: load_denoiser(manifest("{bad"), device="cpu"), CheckpointError,
      r"MANIFEST.json is not valid JSON"),
    C("checkpoints", "manifest sha256 differs", lambda: load_denoiser(manifest('{"w": {"file": "w.pt", "sha256": "abc"}}'),
                                                                      device="cpu"),
      CheckpointError, r"corrupted or was changed"),
    C("checkpoints", "manifest a list", lambda: load_denoiser(manifest('["w"]'), device="cpu"), CheckpointError,
      r"MANIFEST.json must map names to entries"),
    C("checkpoints", "manifest entry a string", lambda: load_denoiser(manifest('{"w": "w.pt"}'), device="cpu"),
      CheckpointError, r"MANIFEST.json.* entry 'w' must be a dict"),
    C("checkpoints", "save a string", lambda: checkpoints.save_state(tmp() / "s.pt", "denoiser", {}, "net"), T,
      r"model must be a torch.nn.Module"),
    C("checkpoints", "save a config of numpy scalars", lambda: checkpoints.load_state(checkpoints.save_state(
        tmp() / "np.pt", "denoiser", {"depth": np.int64(3), "sigma": np.float32(0.5)}, net()))["config"], None,
      r"\{'depth': 3, 'sigma': 0.5\}"),
    C("checkpoints", "save a config holding an object", lambda: checkpoints.save_state(tmp() / "o.pt", "denoiser",
                                                                                       {"path": Path(".")}, net()),
      T, r"config\['path'\] .*PosixPath|config\['path'\] .*Path"),
    C("checkpoints", "load kind 'model'", lambda: checkpoints.load_state(files()["model"], kind="model"), V,
      r"kind must be one of 'denoiser', 'red_deq'"),
    C("checkpoints", "record under a number", lambda: checkpoints.record(5, files()["denoiser"], "cmd", 0, {}), T,
      r"name must be a string"),

    # --- problems and images ------------------------------------------------------------------------
    C("problems", "unknown app", lambda: make_problem("xray"), V, r"app must be one of 'denoise', 'blur', 'ct', 'mri', 'idt'"),
    C("problems", "image_size 4", lambda: make_problem("ct", 4), V, r"image_size must be an integer >= 8"),
    C("problems", "denoising with 2 blocks", lambda: make_problem("denoise", 16, 2), V, r"denoise has a single block"),
    C("problems", "blur with 2 blocks", lambda: make_operator("blur", 16, 2), V, r"blur has a single block"),
    C("problems", "unknown truth", lambda: make_problem("denoise", 16, truth="lena"), V, r"truth must be one of"),
    C("problems", "truth of the wrong size", lambda: make_problem("denoise", 16, truth=torch.rand(1, 1, 8, 8)), V,
      r"expects images of shape \[N, 1, 16, 16\]"),
    C("problems", "NaN truth", lambda: make_problem("denoise", 16, truth=torch.full((1, 1, 16, 16), NAN)), V,
      r"truth contains NaN or Inf"),
    C("problems", "numpy truth", lambda: make_problem("denoise", 16, truth=np.zeros((1, 1, 16, 16))), T,
      r"truth must be a torch.Tensor"),
    C("problems", "device 'gpu'", lambda: make_problem("denoise", 16, device="gpu"), V, r"device='gpu' is not a device name"),
    C("problems", "operator a string", lambda: make_problem("ct", 16, A="ct"), T, r"A must be a BlockOperator"),
    C("problems", "snr NaN", lambda: make_problem("denoise", 16, snr_db=NAN), V, r"snr_db must be finite"),
    C("problems", "numpy arguments", lambda: tuple(make_problem("denoise", np.int64(16), snr_db=np.float32(20),
                                                                seed=np.int64(1)).y.shape), None, r"\(1, 1, 1, 16, 16\)"),
    C("problems", "no truth image", lambda: truth_images("shepp_logan", 0, 16), V, r"n must be an integer >= 1"),
    C("problems", "-1 truth images", lambda: truth_images("shepp_logan", -1, 16), V, r"n must be an integer >= 1"),
    C("problems", "numpy operator sizes", lambda: make_operator("idt", np.int64(16), np.int64(4)).num_blocks, None, "4"),
    C("problems", "real image 'lena'", lambda: real_image("lena"), V, r"name must be one of 'ct', 'mr', 'cell'"),
    C("problems", "real image size 4", lambda: real_image("ct", 4), V, r"size must be an integer >= 8"),
    C("problems", "real image size 128.0", lambda: real_image("ct", 128.0), T, r"size must be an integer, got 128.0"),
    C("problems", "real image size '128'", lambda: real_image("ct", "128"), T, r"size must be an integer"),
    C("problems", "real image numpy size", lambda: tuple(real_image("ct", np.int64(32)).shape), None, r"\(1, 1, 32, 32\)"),
    C("problems", "real image at its own size", lambda: tuple(real_image("mr").shape), None, r"\(1, 1, 64, 64\)"),

    # --- exercises: the student is told what came back, not blamed for the checker's crash -------------
    C("exercises", "psnr returns None", lambda: said(exercises.check_psnr, lambda x, r: None), None,
      r"my_psnr returned None", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "psnr returns a string", lambda: said(exercises.check_psnr, lambda x, r: "abc"), None,
      r"my_psnr returned a str", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "landweber returns None", lambda: said(exercises.check_landweber, lambda *a: None), None,
      r"landweber returned None", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "landweber returns a pair", lambda: said(exercises.check_landweber, lambda *a: (1, 2)), None,
      r"landweber returned shape \(2,\), expected \(2, 1, 4, 4\)", check=lambda out: "your function raised" not in out,
      wrong="unclear"),
    C("exercises", "power_iteration returns None", lambda: said(exercises.check_power_iteration, lambda A, n: None), None,
      r"power_iteration returned None; expected a number", check=lambda out: "your function raised" not in out,
      wrong="unclear"),
    C("exercises", "power_iteration returns 2 numbers",
      lambda: said(exercises.check_power_iteration, lambda A, n: torch.tensor([1.0, 2.0])), None,
      r"power_iteration returned a tensor of shape \(2,\); expected a number",
      check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "lipschitz_estimate returns None", lambda: said(exercises.check_lipschitz_estimate, lambda *a: None),
      None, r"lipschitz_estimate returned None", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "fixed point (None, None)", lambda: said(exercises.check_fixed_point_iteration, lambda *a: (None, None)),
      None, r"fixed_point_iteration returned None", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "fixed point residuals None",
      lambda: said(exercises.check_fixed_point_iteration, lambda f, z0, m, t: (z0, None)), None,
      r"residuals must be a list of numbers, got NoneType", check=lambda out: "your function raised" not in out,
      wrong="unclear"),
    C("exercises", "red_update returns None", lambda: said(exercises.check_red_update, lambda *a: None), None,
      r"red_update returned None", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "window returns a dict", lambda: said(exercises.check_window, lambda *a: {"a": 1}), None,
      r"window returned a dict", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "anderson_weights returns None", lambda: said(exercises.check_anderson_weights, lambda G: None), None,
      r"anderson_weights returned None", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "add_noise_snr returns None", lambda: said(exercises.check_add_noise_snr, lambda *a: None), None,
      r"add_noise_snr returned None", check=lambda out: "your function raised" not in out, wrong="unclear"),
    C("exercises", "a number instead of a function", lambda: exercises.check_psnr(5), T,
      r"check_psnr expects your function itself"),
    C("exercises", "a crash in the student's code is still reported",
      lambda: said(exercises.check_psnr, lambda x, r: 1 / 0), None, r"your function raised ZeroDivisionError"),
    C("exercises", "the stub's own hint is shown",
      lambda: said(exercises.check_psnr, lambda x, r: (_ for _ in ()).throw(NotImplementedError("Hint: mse"))), None,
      r"not implemented yet.*\n  Hint: mse"),

    # --- widgets -------------------------------------------------------------------------------------
    C("widgets", "explorer problem 'denoise'", lambda: recon(
        "denoise", denoiser="gaussian"), V, r"problem must be one of 'ct', 'mri', 'idt'"),
    C("widgets", "explorer algorithm 'admm'", lambda: recon(
        "ct", "admm", denoiser="gaussian"), V, r"algorithm must be one of 'red'"),
    C("widgets", "explorer 0 iterations", lambda: recon(
        "ct", iterations=0, denoiser="gaussian"), V, r"iterations must be an integer in \[1, 1000\]"),
    C("widgets", "explorer image_size 8", lambda: recon(
        "ct", image_size=8, denoiser="gaussian"), V, r"image_size must be an integer >= 16"),
    C("widgets", "explorer num_blocks key", lambda: recon(
        "ct", image_size=16, num_blocks={"xray": 4}, denoiser="gaussian"), V, r"num_blocks keys must be among"),
    C("widgets", "explorer num_blocks a list", lambda: recon(
        "ct", image_size=16, num_blocks=[4], denoiser="gaussian"), T, r"num_blocks must be a dict"),
    C("widgets", "explorer denoiser 5", lambda: recon(
        "ct", image_size=16, denoiser=5), T, r"denoiser must be a callable D\(x, sigma\), or a name"),
    C("widgets", "explorer device 'gpu'", lambda: recon(
        "ct", image_size=16, denoiser="gaussian", device="gpu"), V, r"device='gpu' is not a device name"),
    C("widgets", "explorer reference 'yes'", lambda: recon(
        "ct", image_size=16, denoiser="gaussian", reference="yes"), T, r"reference must be True or False"),
    C("widgets", "run_sync 0", lambda: explorer().run_sync(0), V, r"iterations must be an integer >= 1"),
    C("widgets", "run_sync 2.5", lambda: explorer().run_sync(2.5), T, r"iterations must be an integer, got 2.5"),
    C("widgets", "start 0", lambda: explorer().start(0), V, r"iterations must be an integer >= 1"),
    C("widgets", "run_sync numpy", lambda: len(explorer().run_sync(np.int64(2))), None, "2"),
    C("widgets", "NaN denoiser output shown in the panel", lambda: explorer_with(lambda x, s: x * NAN), None,
      r"diverged, run stopped: iterates diverged at iteration 1 \(non-finite values\)"),
    C("widgets", "denoiser returning None shown in the panel", lambda: explorer_with(lambda x, s: None), None,
      r"error at iteration 1: ValueError: the denoiser D\(x, σ\) must return a tensor"),
    C("widgets", "settings gamma 0", lambda: Settings("red", 0, 0.1, 0.1, 1.0), V,
      r"gamma must be > 0"),
    C("widgets", "settings algorithm", lambda: Settings("admm", 0.1, 0.1, 0.1, 1.0), V,
      r"algorithm must be one of"),
    C("widgets", "run of 0 iterations", lambda: ReconstructionRun(
        explorer()._problem, smooth, 0), V, r"iterations must be an integer >= 1"),
    C("widgets", "run step with a dict", lambda: ReconstructionRun(
        explorer()._problem, smooth, 2).step({"gamma": 1}), T, r"settings must be a Settings"),
    C("widgets", "training explorer with nothing", lambda: training_explorer(None), V, r"no results to show"),
    C("widgets", "training explorer measure 5", lambda: training_explorer(None, measure=5), T, r"measure must be a callable"),
    C("widgets", "training explorer results 5", lambda: training_explorer(5), T, r"results must be a path, a list"),
    C("widgets", "training explorer missing file", lambda: training_explorer("/nonexistent/oder.json"), FileNotFoundError,
      r"no benchmark file at /nonexistent/oder.json"),
    C("widgets", "training explorer: ratio 0 and no method are left out",
      lambda: training_explorer([FULL, ODER, dict(ODER, ratio=0), {"app": "ct", "ratio": 0.5}]).ratio.options, None,
      r"\(\('1/4', 0.25\), \('1/1', 1.0\)\)"),
    C("widgets", "training explorer: numpy ratio kept",
      lambda: training_explorer([FULL, dict(ODER, ratio=np.float32(0.5))]).ratio.options, None, r"'1/2', 0.5"),
    C("widgets", "training explorer: a metric that is not a number",
      lambda: "–" in training_explorer([FULL, dict(ODER, test_psnr="n/a")]).table.value, None, "True"),
    C("widgets", "training explorer: only unrolled records", lambda: training_explorer([dict(FULL, method="unrolled")]), V,
      r"no full DEQ or ODER record"),
    C("widgets", "training explorer: file not JSON", lambda: training_explorer(json_file("{bad")), V,
      r"bad.json is not valid JSON"),
    C("widgets", "training explorer: live without apps", lambda: training_explorer(None, measure=lambda *a: {}, apps=()), V,
      r"apps"),
    C("widgets", "training explorer: live ratio 0", lambda: training_explorer(None, measure=lambda *a: {}, ratios=(0, 0.5)),
      V, r"ratios.*must lie in \(0, 1\]"),
    C("widgets", "training explorer: measure returns None",
      lambda: training_explorer(None, measure=lambda *a: None).measure_sync(), T, r"must return a dict, got NoneType"),

    # --- command line --------------------------------------------------------------------------------
    C("cli", "demo --iterations 0", lambda: run_cli(["demo", "--iterations", 0], [DEMO_LOADS]), V,
      r"--iterations must be an integer >= 1, got 0"),
    C("cli", "demo --image-size 8", lambda: run_cli(["demo", "--image-size", 8], [DEMO_LOADS]), V,
      r"--image-size must be an integer >= 16"),
    C("cli", "demo --size 8 (the old spelling)", lambda: run_cli(["demo", "--size", 8], [DEMO_LOADS]), V,
      r"--image-size must be an integer >= 16"),
    C("cli", "demo --num-blocks 0", lambda: run_cli(["demo", "--num-blocks", 0], [DEMO_LOADS]), V,
      r"--num-blocks must be an integer >= 1"),
    C("cli", "demo --snr nan", lambda: run_cli(["demo", "--snr", "nan"], [DEMO_LOADS]), V, r"--snr must be finite"),
    C("cli", "demo --out unwritable", lambda: run_cli(["demo", "--out", blocked() / "demo.png"],
                                                      ["oder_edu.commands.demo:run_demo"]),
      OSError, r"cannot write .*a-file/sub"),
    C("cli", "demo --out x.txt", lambda: run_cli(["demo", "--out", tmp() / "x.txt"], ["oder_edu.commands.demo:run_demo"]),
      V, r"--out must be a path to a \.png file .*x\.txt"),
    C("cli", "demo --out ''", lambda: run_cli(["demo", "--out", ""], ["oder_edu.commands.demo:run_demo"]), V,
      r"--out is empty; expected a path to a \.png file"),
    C("cli", "demo --out an existing folder", lambda: run_cli(["demo", "--out", tmp()], ["oder_edu.commands.demo:run_demo"]),
      V, r"--out .* is a folder; expected a path to a \.png file"),
    C("cli", "bench physics --out unwritable", lambda: run_cli(["bench", "physics", "--quick", "--out", blocked()],
                                                                ["oder_edu.commands.bench_physics:measure"]),
      OSError, r"cannot write to --out .*a-file/sub"),
    C("cli", "bench physics --threads 0", lambda: run_cli(["bench", "physics", "--quick", "--threads", 0, "--out", tmp()],
                                                           ["oder_edu.commands.bench_physics:measure"]),
      V, r"--threads must be an integer >= 1, got 0"),
    C("cli", "bench physics --device gpu", lambda: run_cli(["bench", "physics", "--quick", "--device", "gpu", "--out", tmp()],
                                                            ["oder_edu.commands.bench_physics:measure"]),
      V, r"device='gpu' is not a device name"),
    C("cli", "bench widgets --out unwritable", lambda: run_cli(["bench", "widgets", "--out", blocked()],
                                                                ["oder_edu.commands.bench_widgets:write_results"]),
      OSError, r"cannot write to --out"),
    C("cli", "train denoiser over an existing file",
      lambda: run_cli(["train", "denoiser", "--out", files()["denoiser"], *TINY_DENOISER], [TRAIN]), FileExistsError,
      r"den.pt exists; pass --force to replace it"),
    C("cli", "train denoiser --steps 0", lambda: run_cli(["train", "denoiser", "--out", tmp() / "d.pt", "--steps", 0], [TRAIN]),
      V, r"--steps must be >= 1, got 0"),
    C("cli", "train denoiser --device gpu",
      lambda: run_cli(["train", "denoiser", "--out", tmp() / "d.pt", *TINY_DENOISER, "--device", "gpu"], [TRAIN]), V,
      r"--device='gpu' is not a device name"),
    C("cli", "train denoiser --threads 0",
      lambda: run_cli(["train", "denoiser", "--out", tmp() / "d.pt", *TINY_DENOISER, "--threads", 0], [TRAIN]), V,
      r"--threads must be an integer >= 1, got 0"),
    C("cli", "train denoiser --sigma-max nan",
      lambda: run_cli(["train", "denoiser", "--out", tmp() / "d.pt", "--sigma-max", "nan"], [TRAIN]), V, r"sigma"),
    C("cli", "train denoiser --out unwritable",
      lambda: run_cli(["train", "denoiser", "--out", blocked() / "d.pt", *TINY_DENOISER], [TRAIN]), OSError,
      r"cannot write .*a-file/sub"),
    C("cli", "train deq --resume, state.pt a text file",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", log_dir_holding("r1", files()["text"]), "--resume"]),
      CheckpointError, r"--resume: cannot load .*state.pt"),
    C("cli", "train deq --resume, state.pt a weight file",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", log_dir_holding("r2", files()["denoiser"]), "--resume"]),
      CheckpointError, r"--resume: .*state.pt is not a training state"),
    C("cli", "train deq --resume, no state.pt",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", log_dir_holding("r3", None), "--resume"]),
      CheckpointError, r"--resume: no state.pt in .*r3"),
    C("cli", "train deq --device gpu",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", tmp() / "r4", "--device", "gpu"], [RUN_DEQ]), V,
      r"--device='gpu' is not a device name"),
    C("cli", "train deq --threads 0",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", tmp() / "r5", "--threads", 0], [RUN_DEQ]), V,
      r"--threads must be an integer >= 1, got 0"),
    C("cli", "train deq --out unwritable",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", tmp() / "r6", "--out", blocked() / "m.pt"], [RUN_DEQ]),
      OSError, r"cannot write .*a-file/sub"),
    C("cli", "train deq --log-dir unwritable",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", blocked()], [RUN_DEQ]), OSError,
      r"cannot write .*a-file/sub"),
    C("cli", "train deq --val-images 0",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", tmp() / "r7", "--val-images", 0], [RUN_DEQ]), V,
      r"val_images must be an integer >= 1"),
    C("cli", "train deq --memory-every -1",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", tmp() / "r7", "--memory-every", -1], [RUN_DEQ]), V,
      r"memory_every must be an integer >= 0"),
    C("cli", "train deq --ratio nan",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", tmp() / "r7", "--ratio", "nan"], [RUN_DEQ]), V,
      r"ratio must be finite"),
    C("cli", "train deq --pretrained nope",
      lambda: run_cli(["train", "deq", "--app", "ct", "--image-size", 16, "--num-blocks", 4, "--pretrained", "nope",
                       "--steps", 1, "--log-dir", tmp() / "r8", "--no-progress"]),
      CheckpointError, r"no weights named 'nope'"),
    C("cli", "labs --out is a file", lambda: run_cli(["labs", "--out", files()["text"]]), V,
      r"notes.txt is a file, not a folder"),
    C("cli", "labs --notebooks missing", lambda: run_cli(["labs", "--notebooks", tmp() / "none", "--out", tmp() / "s"]),
      FileNotFoundError, r"no notebooks \(\*.ipynb\) in"),
    C("cli", "labs --source missing (the old spelling)",
      lambda: run_cli(["labs", "--source", tmp() / "none", "--out", tmp() / "s"]), FileNotFoundError,
      r"no notebooks \(\*.ipynb\) in .*none; pass --notebooks DIR"),
    C("cli", "train denoiser --out x.bin", lambda: run_cli(["train", "denoiser", "--out", tmp() / "x.bin"], [TRAIN]), V,
      r"--out must be a path ending in \.pt .*x\.bin"),
    C("cli", "train deq --out x.bin",
      lambda: run_cli(["train", "deq", *TINY_DEQ, "--log-dir", tmp() / "r9", "--out", tmp() / "x.bin"], [RUN_DEQ]), V,
      r"--out must be a path ending in \.pt"),
    C("cli", "clean-partials of a missing folder", lambda: run_cli(["clean-partials", tmp() / "none"]), FileNotFoundError,
      r"none: no such folder"),

    # --- shipped results, silent inputs --------------------------------------------------------------
    C("results", "load a relative path", lambda: shipped_results.load("../weights/MANIFEST"), V,
      r"name must be the name of a shipped result \(one of oder, priors, widgets\), not a path"),
    C("results", "load a path up the tree", lambda: shipped_results.load("../../x/any"), V, r"not a path"),
    C("results", "load an absolute path", lambda: shipped_results.load(str(tmp() / "any")), V, r"not a path"),
    C("results", "load a number", lambda: shipped_results.load(5), T, r"name must be the name of a shipped result"),
    C("results", "load an unknown name", lambda: shipped_results.load("nope"), FileNotFoundError,
      r"no shipped result 'nope' \(shipped: oder, priors, widgets\)"),
    C("results", "load a shipped name", lambda: len(shipped_results.load("oder")["records"]) > 0, None, "True"),
    C("problems", "an mri problem on a CT operator", lambda: make_problem("mri", 32, 4, A=make_operator("ct", 32, 4)), T,
      r"A must be a MultiCoilMRI for app='mri' .*got a ParallelBeamCT"),
    C("problems", "a ct problem on its own operator", lambda: make_problem("ct", 16, 4, A=ct()).app, None, "ct"),
    C("widgets", "training explorer: unknown live app",
      lambda: training_explorer(None, measure=lambda *a: {}, apps=("pet",)), V,
      r"apps must be one of 'ct', 'mri', 'idt'; got 'pet'"),
    C("widgets", "training explorer: apps a string", lambda: training_explorer(None, measure=lambda *a: {}, apps="ct"), T,
      r"apps must be a tuple of app names"),
    C("denoisers", "DnCNN far outside its sigma_range warns once", lambda: warned(twice_at(50.0)), None,
      r"^1: DnCNN was trained for sigma in \[0, 0.2\] \(sigma_range\) but is called with sigma = 50"),
    C("denoisers", "DnCNN inside its sigma_range is silent", lambda: warned(twice_at(0.2)), None, r"^0: $"),
    C("denoisers", "DnCNN a little above its sigma_range is silent", lambda: warned(twice_at(0.3)), None, r"^0: $"),
    C("denoisers", "DnCNN sigma tensor far outside warns", lambda: warned(twice_at(torch.tensor([0.1]) * 10)), None,
      r"^1: .*sigma = 1\b"),
]


# --- the command line without --debug: one line on stderr, exit status 2 (usage) or 1 (runtime) --------
DEMO_RUNS = "oder_edu.commands.demo:run_demo"
BENCHES = {"physics": "oder_edu.commands.bench_physics:measure", "oder": "oder_edu.commands.bench_oder:step_rows",
           "widgets": "oder_edu.commands.bench_widgets:ReconstructionExplorer",
           "priors": "oder_edu.commands.bench_priors:load_denoiser"}


@dataclass
class Row:
    argv: list
    status: int
    match: str  # regex on the one line
    forbidden: tuple = ()  # the expensive work, replaced by a stand-in raising WorkStarted

    @property
    def id(self) -> str:
        return " ".join(map(str, self.argv))[:90]


CLI_ERRORS = [
    # demo (issue #24's rows first)
    Row(["demo", "--iterations", -1], 2, r"^oder-edu demo: error: --iterations must be an integer >= 1, got -1$",
        (DEMO_RUNS,)),
    Row(["demo", "--image-size", 0], 2, r"--image-size must be an integer >= 16, got 0", (DEMO_RUNS,)),
    Row(["demo", "--size", 0], 2, r"--image-size must be an integer >= 16, got 0", (DEMO_RUNS,)),
    Row(["demo", "--num-blocks", 0], 2, r"--num-blocks must be an integer >= 1", (DEMO_RUNS,)),
    Row(["demo", "--snr", "nan"], 2, r"--snr must be finite, got nan", (DEMO_RUNS,)),
    Row(["demo", "--out", "x.txt"], 2, r"--out must be a path to a \.png file .*'x\.txt'", (DEMO_RUNS,)),
    Row(["demo", "--out", ""], 2, r"--out is empty; expected a path to a \.png file", (DEMO_RUNS,)),
    Row(["demo", "--out", "EXISTING_FOLDER"], 2, r"--out .* is a folder; expected a path to a \.png file", (DEMO_RUNS,)),
    Row(["demo", "--out", "UNWRITABLE/demo.png"], 1, r"cannot write to --out .*a-file/sub: Not a directory", (DEMO_RUNS,)),
    Row(["demo", "--iterations", "many"], 2, r"argument --iterations: invalid int value: 'many'", (DEMO_RUNS,)),
    Row(["demo", "--frobnicate"], 2, r"unrecognized arguments: --frobnicate", (DEMO_RUNS,)),
    # train denoiser
    Row(["train", "denoiser", "--out", "TMP/d.pt", "--steps", 0], 2, r"--steps must be >= 1, got 0", (TRAIN,)),
    Row(["train", "denoiser", "--out", "TMP/d.pt", "--lr", "nan"], 2, r"--lr must be a finite number > 0, got nan",
        (TRAIN,)),
    Row(["train", "denoiser", "--out", "TMP/d.pt", "--sigma-min", 0.3, "--sigma-max", 0.1], 2,
        r"--sigma-min must be below --sigma-max .*got --sigma-min 0.3 and --sigma-max 0.1", (TRAIN,)),
    Row(["train", "denoiser", "--out", "TMP/d.pt", "--sigma-max", "nan"], 2, r"--sigma-max must be finite", (TRAIN,)),
    Row(["train", "denoiser", "--out", "TMP/d.pt", "--device", "tpu"], 2, r"--device='tpu' is not a device name; available",
        (TRAIN,)),
    Row(["train", "denoiser", "--out", "TMP/d.pt", "--threads", 0], 2, r"--threads must be an integer >= 1, got 0",
        (TRAIN,)),
    Row(["train", "denoiser", "--out", "TMP/x.bin"], 2, r"--out must be a path ending in \.pt .*x\.bin", (TRAIN,)),
    Row(["train", "denoiser", "--out", "DENOISER"], 2, r"--out .*den\.pt exists; pass --force to replace it", (TRAIN,)),
    Row(["train", "denoiser", "--out", "UNWRITABLE/d.pt"], 1, r"cannot write to --out .*a-file/sub", (TRAIN,)),
    # train deq
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "TMP/q1", "--ratio", "nan"], 2, r"ratio must be finite", (RUN_DEQ,)),
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "TMP/q1", "--steps", 0], 2, r"steps must be an integer >= 1", (RUN_DEQ,)),
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "TMP/q1", "--device", "tpu"], 2, r"--device='tpu' is not a device name",
        (RUN_DEQ,)),
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "TMP/q1", "--out", "TMP/x.bin"], 2, r"--out must be a path ending in \.pt",
        (RUN_DEQ,)),
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "TMP/q1", "--out", "DENOISER"], 2, r"den\.pt exists; pass --force",
        (RUN_DEQ,)),
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "UNWRITABLE"], 1, r"cannot write to --log-dir .*a-file/sub", (RUN_DEQ,)),
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "TMP/q2", "--resume"], 1, r"--resume: no state.pt in .*q2"),
    Row(["train", "deq", *TINY_DEQ, "--log-dir", "TMP/q3", "--pretrained", "nope"], 1, r"no weights named 'nope' in .*"
        r"MANIFEST\.json \(recorded: .*\); train them"),
    # benches, labs, clean-partials
    Row(["bench", "physics", "--quick", "--out", "TMP", "--threads", 0], 2, r"--threads must be an integer >= 1",
        (BENCHES["physics"],)),
    Row(["bench", "physics", "--quick", "--out", "TMP", "--device", "tpu"], 2, r"--device='tpu' is not a device name",
        (BENCHES["physics"],)),
    Row(["bench", "physics", "--quick", "--out", "UNWRITABLE"], 1, r"cannot write to --out", (BENCHES["physics"],)),
    Row(["bench", "oder", "--out", "TMP", "--ratios", "2"], 2, r"--ratios must lie in \(0, 1\)", (BENCHES["oder"],)),
    Row(["bench", "oder", "--out", "TMP", "--repeat", 0], 2, r"--repeat must be an integer >= 1", (BENCHES["oder"],)),
    Row(["bench", "oder", "--out", "TMP", "--image-size", 64], 2, r"--image-size and --num-blocks set another setting "
        r"for part map only", (BENCHES["oder"],)),
    Row(["bench", "oder", "--out", "TMP", "--apps", "pet"], 2, r"--apps must be one of 'ct', 'mri', 'idt'",
        (BENCHES["oder"],)),
    Row(["bench", "widgets", "--out", "TMP", "--ratio", 0], 2, r"--ratio must lie in \(0, 1\]", (BENCHES["widgets"],)),
    Row(["bench", "widgets", "--out", "TMP", "--image-size", 8], 2, r"--image-size must be an integer >= 16",
        (BENCHES["widgets"],)),
    Row(["bench", "priors", "--out", "TMP", "--iterations", 1], 2, r"--iterations must be an integer >= 2",
        (BENCHES["priors"],)),
    Row(["labs", "--notebooks", "TMP/none", "--out", "TMP/s"], 1, r"no notebooks \(\*\.ipynb\) in .*none"),
    Row(["labs", "--out", "TEXT"], 2, r"--out .*notes\.txt is a file, not a folder"),
    Row(["clean-partials", "TMP/none"], 1, r"none: no such folder; expected a folder to sweep"),
]

PLACES = {"TMP": lambda: str(tmp()), "UNWRITABLE": lambda: str(blocked()), "TEXT": lambda: str(files()["text"]),
          "DENOISER": lambda: str(files()["denoiser"]), "EXISTING_FOLDER": lambda: str(tmp())}


def placed(word) -> str:
    """A row's word with its placeholder (TMP, UNWRITABLE, ...) replaced by a real path."""
    word = str(word)
    for key, where in PLACES.items():
        if word == key or word.startswith(key + "/"):
            return where() + word[len(key):]
    return word


# --- running a row ---------------------------------------------------------------------------------
def _message(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return str(error.code)
    return str(error)


def outcome(case: Case) -> tuple[str, str]:
    """``(clear | unclear | silent | blow-up, what happened)`` for one row."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = case.call()
    except WorkStarted as error:
        return "silent", str(error)
    except MemoryError as error:
        return "blow-up", f"MemoryError: {error}"
    except (Exception, SystemExit) as error:
        text = f"{type(error).__name__}: {_message(error)[:300]}"
        if isinstance(error, RuntimeError) and "allocate" in str(error):
            return "blow-up", text
        if case.raises is None:
            return "unclear", "raised " + text
        if isinstance(error, case.raises) and re.search(case.match, _message(error)):
            return "clear", text
        return "unclear", text
    if case.raises is not None:
        return "silent", f"no error; returned {str(result)[:200]}"
    if (case.match and not re.search(case.match, str(result))) or (case.check and not case.check(result)):
        return case.wrong, f"returned {str(result)[:300]}"
    return "clear", ""


def tally(rows: list[tuple[Case, str]]) -> str:
    kinds = list(dict.fromkeys(case.kind for case, _ in rows))
    columns = ("clear", "unclear", "silent", "blow-up")
    lines = ["| entry points | tried | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for kind in [*kinds, "all"]:
        mine = [o for c, o in rows if kind in ("all", c.kind)]
        lines.append(f"| {kind} | {len(mine)} | " + " | ".join(str(mine.count(c)) for c in columns) + " |")
    return "\n".join(lines)


# --- the tests -------------------------------------------------------------------------------------
def test_case_names_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("case", [c for c in CASES if not c.guard], ids=lambda c: c.id)
def test_entry_point(case):
    result, detail = outcome(case)
    assert result == "clear", f"{case.id}: {result}: {detail} (expected {getattr(case.raises, '__name__', case.raises)} "\
                              f"matching {case.match!r})"


def _limit_memory():
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


@pytest.mark.parametrize("row", CLI_ERRORS, ids=lambda r: r.id)
def test_cli_error_is_one_line(row, capsys, monkeypatch):
    """Without --debug every row ends with one line on stderr naming the argument or path and what
    was expected, no traceback, and its exit status; the expensive work never starts."""
    monkeypatch.delenv("ODER_EDU_DEBUG", raising=False)
    with forbid(*row.forbidden):
        try:
            status = cli.main([placed(word) for word in row.argv])
        except SystemExit as exit_:  # argparse's own errors
            status = exit_.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert status == row.status and re.search(row.match, lines[0]), (status, lines[0])
    assert lines[0].startswith("oder-edu") and ": error: " in lines[0]


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux")
def test_sizes_are_refused_before_memory_is_spent():
    """The ``guard`` rows run in a child process limited to 3 GiB of address space: each must
    raise its ValueError naming the size and the limit, without allocating first."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a CUDA context alone reserves GiBs of address space
    done = subprocess.run([sys.executable, __file__, "--guarded", "--json"], capture_output=True, text=True, env=env,
                          preexec_fn=_limit_memory, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == sum(case.guard for case in CASES)
    bad = [row for row in rows if row["outcome"] != "clear"]
    assert not bad, bad


def main(argv: list[str]) -> int:
    """``python tests/test_reliability.py [--guarded] [--json]``: run the rows (all of them, under
    the memory limit, or only the guarded ones) and print their outcomes and the tally."""
    if "--guarded" not in argv and sys.platform == "linux":
        _limit_memory()
    torch.set_num_threads(1)
    rows = []
    for case in CASES:
        if "--guarded" in argv and not case.guard:
            continue
        result, detail = outcome(case)
        rows.append((case, result))
        if "--json" in argv:
            print(json.dumps({"id": case.id, "outcome": result, "detail": detail}), flush=True)
        elif result != "clear":
            print(f"{result:8} {case.id}: {detail}", flush=True)
    if "--json" not in argv:
        print(tally(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
