"""tools/book.py, on small executed notebooks made here: a page per notebook, links between the pages, widgets
drawn from their saved state (ipywidgets 7 and 8), and a check that finds a missing page, a missing picture
and a broken link. The book of the course itself is built and checked by ``make test`` after the suite, from
the executions tests/test_colab.py keeps."""

import base64
import hashlib
import importlib.util
import io
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("book", ROOT / "tools" / "book.py")
book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book)


def _png(shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, shade, shade)).save(buffer, format="png")
    return buffer.getvalue()


def _state(version: str) -> dict:
    """A saved widget state: a VBox of a slider, an HTML readout and an image (controls ``version``: 1.5.0 is
    ipywidgets 7's, 2.0.0 is 8's)."""
    def model(name, state, buffers=()):
        return {"model_name": name, "model_module": "@jupyter-widgets/controls", "model_module_version": version,
                "state": state, "buffers": list(buffers)}
    return {
        "box": model("VBoxModel", {"children": ["IPY_MODEL_slider", "IPY_MODEL_html", "IPY_MODEL_image"]}),
        "slider": model("FloatLogSliderModel", {"description": "step γ", "value": 0.25, "readout_format": ".3g",
                                                "min": -1, "max": 1}),
        "html": model("HTMLModel", {"value": "<span class='oder-readout'>PSNR 31.25 dB</span>"}),
        "image": model("ImageModel", {"format": "png", "value": {}}, [
            {"data": base64.b64encode(_png(90)).decode(), "encoding": "base64", "path": ["value"]}]),
    }


def _course(tmp_path, version="1.5.0"):
    """(notebooks, executed): two notebooks, 00 with a figure and a widget, linking to a section of 01."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    notebooks, executed = tmp_path / "notebooks", tmp_path / "executed"
    notebooks.mkdir()
    executed.mkdir()
    first = nbformat.v4.new_notebook(cells=[
        md("# 00 · First\nNext: [the second notebook](01_second.ipynb#Part-two), or [its top](01_second.ipynb)."),
        code("plot()"), code("explorer")])
    second = nbformat.v4.new_notebook(cells=[md("# 01 · Second"), md("## Part two\nBack to [00](00_first.ipynb).")])
    for name, nb in (("00_first.ipynb", first), ("01_second.ipynb", second)):
        nbformat.write(nb, notebooks / name)
    run = nbformat.from_dict(first)
    run.cells[1].outputs = [nbformat.v4.new_output("display_data", data={
        "image/png": base64.b64encode(_png(200)).decode(), "text/plain": "<Figure>"})]
    run.cells[2].outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "VBox(...)", book.VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0}})]
    run.metadata["widgets"] = {book.STATE: {"state": _state(version), "version_major": 2, "version_minor": 0}}
    for name, nb in (("00_first.ipynb", run), ("01_second.ipynb", nbformat.from_dict(second))):
        nb.metadata["oder_edu"] = {"source_sha256": hashlib.sha256((notebooks / name).read_bytes()).hexdigest(),
                                   "executed_in": "a test"}
        nbformat.write(nb, executed / name)
    return sorted(notebooks.glob("*.ipynb")), executed


@pytest.mark.parametrize("version", ["1.5.0", "2.0.0"], ids=["ipywidgets7", "ipywidgets8"])
def test_a_page_per_notebook_with_figures_widgets_and_links(tmp_path, version):
    notebooks, executed = _course(tmp_path, version)
    out = tmp_path / "book"
    written = book.build(notebooks, executed, out)
    assert sorted(p.name for p in written) == ["00_first.html", "01_second.html", "index.html"]
    first = (out / "00_first.html").read_text()
    assert "01_second.html#Part-two" in first and "01_second.ipynb" not in first
    assert "step γ <b>0.25</b>" in first and "PSNR 31.25 dB" in first  # the widget as it was left
    assert base64.b64encode(_png(90)).decode() in first and base64.b64encode(_png(200)).decode() in first
    assert book.VIEW not in first and "require" not in first  # no widget JavaScript, nothing to fetch for it
    assert "<title>00 · First · oder-edu</title>" in first and "01 · Second →" in first
    assert book.pictures(nbformat.read(executed / "00_first.ipynb", as_version=4)) == 2
    assert book.check(notebooks, executed, out) == []
    assert "00 · First" in (out / "index.html").read_text() and "Executed in a test." in (out / "index.html").read_text()


def test_the_check_finds_a_missing_page_a_lost_picture_and_a_broken_link(tmp_path):
    notebooks, executed = _course(tmp_path)
    out = tmp_path / "book"
    book.build(notebooks, executed, out)
    first = out / "00_first.html"
    broken = first.read_text().replace("#Part-two", "#Part-three")
    first.write_text(broken.replace('widget-image" src="data:image', 'widget-image" src="data:x'))
    (out / "01_second.html").unlink()
    problems = "\n".join(book.check(notebooks, executed, out))
    assert "01_second.ipynb has no page" in problems
    assert "00_first.html shows 1 pictures, its notebook has 2" in problems
    assert "leads to no page" in problems
    book.build(notebooks, executed, out)
    first.write_text(first.read_text().replace("#Part-two", "#Part-three"))
    assert book.check(notebooks, executed, out) == ["00_first.html: link '01_second.html#Part-three' names no "
                                                    "anchor of 01_second.html"]


def test_a_stale_or_missing_execution_is_refused(tmp_path):
    notebooks, executed = _course(tmp_path)
    assert book.stale(notebooks, executed) == []
    nb = nbformat.read(notebooks[1], as_version=4)
    nb.cells[0].source += " (edited)"
    nbformat.write(nb, notebooks[1])
    (executed / "00_first.ipynb").unlink()
    assert book.stale(notebooks, executed) == ["00_first.ipynb", "01_second.ipynb"]
    with pytest.raises(SystemExit, match="no fresh execution of 00_first.ipynb, 01_second.ipynb"):
        book.build(notebooks, executed, tmp_path / "book")


def test_links_to_notebooks_point_at_their_pages():
    assert book.link_pages("[x](02_pnp_and_red.ipynb) and [y](03_deep_equilibrium.ipynb#Anderson)") == \
        "[x](02_pnp_and_red.html) and [y](03_deep_equilibrium.html#Anderson)"
    assert book.link_pages("[paper](https://example.org/a.ipynb)") == "[paper](https://example.org/a.ipynb)"
    assert book.link_pages('<a href="04_oder.ipynb">04</a>') == '<a href="04_oder.html">04</a>'


def test_mathjax_is_copied_into_the_book_when_its_package_is_there(tmp_path, monkeypatch):
    """With jupyter-server-mathjax (the [book] extra) the pages load MathJax from the book itself, STIX-Web fonts
    configured; the check then requires the file. Without it, they load it from its CDN."""
    import sys
    import types

    static = tmp_path / "pkg" / "static"
    (static / "config").mkdir(parents=True)
    (static / "MathJax.js").write_text("// MathJax")
    fake = types.ModuleType("jupyter_server_mathjax")
    fake.__file__ = str(static.parent / "__init__.py")
    monkeypatch.setitem(sys.modules, "jupyter_server_mathjax", fake)
    notebooks, executed = _course(tmp_path)
    out = tmp_path / "book"
    book.build(notebooks, executed, out)
    page = (out / "00_first.html").read_text()
    assert '<script src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"' in page
    assert 'webFont: "STIX-Web"' in page and (out / "mathjax" / "MathJax.js").is_file()
    assert book.check(notebooks, executed, out) == []
    (out / "mathjax" / "MathJax.js").unlink()
    assert book.check(notebooks, executed, out) == [
        f"{name}: script 'mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe' is not in the book"
        for name in ("00_first.html", "01_second.html")]
    monkeypatch.setitem(sys.modules, "jupyter_server_mathjax", None)  # not installed: import fails
    assert book.mathjax(tmp_path / "other") == book.CDN_MATHJAX
