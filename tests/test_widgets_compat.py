"""oder_edu.widgets.compat under this environment's ipywidgets 8 (under 7.7.1: tests/test_colab.py)."""

import warnings

import ipywidgets
import pytest

from oder_edu.widgets import compat


def test_this_environment_runs_ipywidgets_8_and_it_is_supported():
    assert compat.VERSION[0] == 8 and compat.supported()


def test_set_tooltip_writes_the_synced_trait_without_deprecation():
    slider = ipywidgets.SelectionSlider(options=[("1", 1.0)])
    button = ipywidgets.Button()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # description_tooltip is deprecated in 8
        compat.set_tooltip(slider, "b of B")
        compat.set_tooltip(button, "run")
    assert slider.tooltip == "b of B" and button.tooltip == "run"
    assert "tooltip" in slider.keys  # synced to the front end


def test_mimebundle_is_the_widget_view():
    box = ipywidgets.VBox([ipywidgets.HTML("x")])
    bundle = compat.mimebundle(box)
    assert bundle[compat.VIEW]["model_id"] == box.model_id and "text/plain" in bundle


def test_a_widget_without_any_tooltip_is_refused():
    class Bare(ipywidgets.Widget):
        pass

    with pytest.raises(TypeError, match="no tooltip"):
        compat.set_tooltip(Bare(), "x")


def test_tooltips_are_set_through_compat():
    """Under ipywidgets 7 only buttons have ``tooltip``; on a slider or a checkbox ``x.tooltip = ...`` is a plain
    attribute that never reaches Colab's front end. Every tooltip set after construction goes through
    ``compat.set_tooltip``."""
    import re
    from pathlib import Path

    package = Path(compat.__file__).resolve().parent.parent
    found = [f"{path.relative_to(package.parent)}:{number}" for path in sorted(package.rglob("*.py"))
             if path.name != "compat.py"
             for number, line in enumerate(path.read_text().splitlines(), start=1)
             if re.search(r"\.(description_)?tooltip\s*=[^=]", line)]
    assert not found, f"use compat.set_tooltip(widget, text) at {found}"
