"""Argument checks (``oder_edu.checks``): one function per kind of argument.

The contract every public entry point relies on: the right kind of object comes back in its
plain Python (or torch) form; the wrong kind raises TypeError, a bad value ValueError; every
message names the parameter. numpy scalars and one-element tensors count as the numbers they
hold (a notebook computes sizes with numpy and steps with torch), booleans never do (``True``
as an iteration count is always a mistake).
"""

import math

import numpy as np
import pytest
import torch

from oder_edu import checks

# --- integer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3), torch.tensor(3), torch.tensor([3]),
                                   np.array(3)])
def test_integer_accepts_every_integer_form_and_returns_a_python_int(value):
    """numpy integers, 0-d arrays and one-element integer tensors are the integers they hold."""
    out = checks.integer("max_iter", value, 1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [2.7, 3.0, "5", None, True, False, np.float64(3.0), torch.tensor(3.0),
                                   torch.tensor([1, 2]), np.bool_(True), [3]])
def test_integer_refuses_other_kinds_with_a_type_error_naming_the_parameter(value):
    """Floats (even integral ones), strings, booleans and multi-element tensors are the wrong kind."""
    with pytest.raises(TypeError, match=r"^max_iter must be an integer"):
        checks.integer("max_iter", value, 1)


@pytest.mark.parametrize("value, minimum, maximum, match", [
    (0, 1, None, r"max_iter must be an integer >= 1, got 0"),
    (np.int64(9), 1, 8, r"max_iter must be an integer in \[1, 8\], got 9"),
    (7, None, 5, r"max_iter must be an integer <= 5, got 7"),
])
def test_integer_out_of_range_is_a_value_error_with_the_range(value, minimum, maximum, match):
    with pytest.raises(ValueError, match=match):
        checks.integer("max_iter", value, minimum, maximum)


def test_integer_bounds_are_inclusive():
    assert checks.integer("n", 1, 1, 8) == 1 and checks.integer("n", 8, 1, 8) == 8


# --- number ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (0.25, 0.25), (2, 2.0), (np.float32(0.25), 0.25), (np.float64(0.25), 0.25), (np.int64(2), 2.0),
    (torch.tensor(0.25), 0.25), (torch.tensor([0.25], dtype=torch.float64), 0.25), (torch.tensor(2), 2.0),
])
def test_number_accepts_numpy_scalars_and_one_element_tensors(value, expected):
    """np.float32 / np.int64 scalars and one-element tensors come back as a plain float."""
    out = checks.number("gamma", value)
    assert out == expected and type(out) is float


@pytest.mark.parametrize("value", ["0.1", None, True, np.bool_(False), 1 + 0j, torch.tensor([0.1, 0.2]),
                                   torch.tensor(1 + 1j), [0.1]])
def test_number_refuses_other_kinds(value):
    with pytest.raises(TypeError, match=r"^gamma must be a real number"):
        checks.number("gamma", value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -math.inf, np.float32("nan"), torch.tensor(float("inf"))])
def test_number_refuses_non_finite_values(value):
    with pytest.raises(ValueError, match=r"^gamma must be finite"):
        checks.number("gamma", value)


def test_number_positive_and_range():
    with pytest.raises(ValueError, match=r"gamma must be > 0, got 0.0"):
        checks.number("gamma", 0, positive=True)
    with pytest.raises(ValueError, match=r"tol must be a number >= 0, got -1.0"):
        checks.number("tol", -1, minimum=0)
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\], got 1.5"):
        checks.number("beta", 1.5, minimum=0, maximum=1)
    assert checks.number("tol", 0, minimum=0) == 0.0  # bounds are inclusive
    assert checks.number("gamma", np.float32(1e-3), positive=True) == pytest.approx(1e-3)


# --- ratio -------------------------------------------------------------------------------------


def test_ratio_is_a_number_in_the_half_open_unit_interval():
    """b/B: 1 (all blocks) is allowed, 0 (no block) is not."""
    assert checks.ratio("batch_ratio", 1) == 1.0
    assert checks.ratio("batch_ratio", np.float32(0.25)) == 0.25
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"batch_ratio must lie in \(0, 1\]"):
            checks.ratio("batch_ratio", bad)
    with pytest.raises(ValueError, match="batch_ratio must be finite"):
        checks.ratio("batch_ratio", float("nan"))
    with pytest.raises(TypeError, match="batch_ratio must be a real number"):
        checks.ratio("batch_ratio", "0.5")


# --- choice, generator, function -------------------------------------------------------------------


def test_choice_returns_the_value_or_lists_the_options():
    assert checks.choice("sampler", "uniform", ("uniform", "cyclic")) == "uniform"
    with pytest.raises(ValueError, match=r"sampler must be one of 'uniform', 'cyclic'; got 'random'"):
        checks.choice("sampler", "random", ("uniform", "cyclic"))
    with pytest.raises(ValueError, match="sampler must be one of"):
        checks.choice("sampler", "Uniform", ("uniform", "cyclic"))  # no case folding


def test_generator_is_a_torch_generator_or_none():
    gen = torch.Generator()
    assert checks.generator(gen) is gen and checks.generator(None) is None
    for bad in (0, np.random.default_rng(0), "seed"):
        with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
            checks.generator(bad)


def test_function_must_be_callable_and_the_message_shows_the_signature():
    f = lambda x, s: x  # noqa: E731
    assert checks.function("D", f, "D(x, sigma)") is f
    with pytest.raises(TypeError, match=r"D must be a callable D\(x, sigma\) -> x, got int"):
        checks.function("D", 3, "D(x, sigma) -> x")


# --- tensors -----------------------------------------------------------------------------------------


def test_finite_passes_the_tensor_through_or_names_it():
    x = torch.rand(2, 3)
    assert checks.finite("y", x) is x
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.zeros(4)
        x[2] = bad
        with pytest.raises(ValueError, match="^measurements y contains NaN or Inf"):
            checks.finite("measurements y", x)


def test_image_batch_accepts_real_four_dimensional_batches():
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    assert checks.image_batch("x0", x) is x
    assert checks.image_batch("x0", x, channels=3) is x
    with pytest.raises(ValueError, match=r"x0 must have shape \[N, C, H, W\] with N >= 1, got \(5, 7\)"):
        checks.image_batch("x0", x[0, 0])  # without ``channels`` the message says C


@pytest.mark.parametrize("x, error, match", [
    (np.zeros((1, 1, 4, 4)), TypeError, r"x0 must be a torch.Tensor image batch"),
    (torch.zeros(1, 1, 4, 4, dtype=torch.long), TypeError, r"x0 must be a real floating-point tensor"),
    (torch.zeros(1, 1, 4, 4, dtype=torch.complex64), TypeError, r"x0 must be a real floating-point tensor"),
    (torch.zeros(1, 4, 4), ValueError, r"x0 must have shape \[N, 1, H, W\] with N >= 1, got \(1, 4, 4\)"),
    (torch.zeros(0, 1, 4, 4), ValueError, r"N >= 1, got \(0, 1, 4, 4\)"),
    (torch.zeros(1, 2, 4, 4), ValueError, r"x0 must have shape \[N, 1, H, W\]"),
])
def test_image_batch_refuses_the_wrong_kind_or_shape(x, error, match):
    with pytest.raises(error, match=match):
        checks.image_batch("x0", x, channels=1)


def test_memory_refuses_before_allocating():
    """A size that would need more than the limit is refused up front, naming what and how much."""
    assert checks.memory("a small table", 1024.0) is None
    assert checks.memory("exactly the limit", 2.0**30, limit=2.0**30) is None
    with pytest.raises(ValueError, match=r"coil maps would need about 12.0 GiB, more than the limit of 8 GiB"):
        checks.memory("coil maps", 12 * 2.0**30)
