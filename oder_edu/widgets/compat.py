"""What differs between ipywidgets 7.7 (Google Colab ships 7.7.1, and its front end renders no
ipywidgets 8) and ipywidgets 8 (JupyterLab 4, Notebook 7, VS Code), in one place. Everything else
the course uses -- sliders, dropdowns, buttons, ``HTML``, ``Image``, boxes, ``observe`` -- is the
same in both.

- Display: 8 has ``Widget._repr_mimebundle_``; 7 displays through ``_ipython_display_`` only.
  ``mimebundle`` gives the same display data under both.
- Tooltips: 8 has ``tooltip`` on every widget; 7 has it on buttons only, and ``description_tooltip``
  on the others (8 deprecates that name). ``set_tooltip`` writes the one that is synced.
"""

from __future__ import annotations

import ipywidgets

VERSION = tuple(int(part) for part in ipywidgets.__version__.split(".")[:2])
SUPPORTED = ((7, 7), (9, 0))  # [low, high): what pyproject.toml and notebook 00 accept
VIEW = "application/vnd.jupyter.widget-view+json"


def supported(version: tuple[int, int] = VERSION) -> bool:
    """True for ipywidgets 7.7 or later 7.x, or 8.x: the versions the course runs on."""
    return SUPPORTED[0] <= tuple(version) < SUPPORTED[1]


def mimebundle(widget, **kwargs) -> dict:
    """The display data of ``widget`` (text/plain and the widget view), under ipywidgets 7 or 8."""
    if hasattr(type(widget), "_repr_mimebundle_"):  # ipywidgets 8
        return widget._repr_mimebundle_(**kwargs)
    # ipywidgets 7: what Widget._ipython_display_ publishes, returned instead of displayed.
    plaintext = repr(widget)
    bundle = {"text/plain": plaintext if len(plaintext) <= 110 else plaintext[:110] + "…"}
    if widget._view_name is not None:
        bundle[VIEW] = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
        widget._handle_displayed()  # on_displayed callbacks take no arguments (IPython passes include/exclude)
    return bundle


def set_tooltip(widget, text: str) -> None:
    """Show ``text`` when the pointer rests on ``widget``, under ipywidgets 7 or 8."""
    if widget.has_trait("tooltip"):
        widget.tooltip = text
    elif widget.has_trait("description_tooltip"):  # ipywidgets 7, widgets other than buttons
        widget.description_tooltip = text
    else:
        raise TypeError(f"{type(widget).__name__} has no tooltip in ipywidgets {ipywidgets.__version__}")
