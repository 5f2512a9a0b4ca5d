"""The course as static pages, for reading without a kernel (a tablet, an instructor's preview): one HTML page per
notebook, with its figures, tables and the final state of its widgets drawn as pictures and readouts, linked
to one another (contents, previous, next; a link to ``NN_name.ipynb`` in a notebook becomes one to its page).

Nothing is executed here. The notebooks' executions come from the test suite: tests/test_colab.py runs every
notebook in the Colab-like environment and keeps the executed copies in build/executed/, each with the sha256
of the notebook it ran; a copy whose notebook has changed since is stale and refused. ``make book`` runs that
test first when a copy is missing or stale; ``make test`` builds the book after the suite.

    python tools/book.py            # build build/book/ from build/executed/, then check it (exit 1 if broken)
    python tools/book.py --stale    # list the notebooks without a fresh executed copy (exit 1 if any)

The check: every notebook has its page, every page has as many pictures as its notebook has figures and
widget images, and no relative link or ``#anchor`` between the pages is broken. Conversion is nbconvert's
(offline); equations are typeset by MathJax, copied into the book from jupyter-server-mathjax (the [book]
extra) so that the pages need no network, or loaded from its CDN where that package is missing.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import html
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from oder_edu import files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "executed"
OUT = ROOT / "build" / "book"
VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"
CDN_MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
LOCAL_MATHJAX_FONTS = ('<script>window.MathJax = {"HTML-CSS": {availableFonts: [], preferredFont: null, '
                       'webFont: "STIX-Web", imageFont: null}};</script>\n')
NOTEBOOK_LINK = re.compile(r"(\]\(|href=\")(?!https?:|/)([\w.\-/]*?)([\w\-]+)\.ipynb(#[^)\"\s]*)?(?=[)\"])")


# --- which executions there are ------------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale(notebooks: list[Path], executed: Path) -> list[str]:
    """Names of ``notebooks`` whose executed copy in ``executed`` is missing or was made from another version."""
    found = []
    for notebook in notebooks:
        copy_ = executed / notebook.name
        made_from = (nbformat.read(copy_, as_version=4).metadata.get("oder_edu", {}).get("source_sha256")
                     if copy_.exists() else None)
        if made_from != sha256(notebook):
            found.append(notebook.name)
    return found


# --- widgets, drawn from their saved state -------------------------------------------------------------
def _buffers(model: dict) -> dict[str, bytes]:
    return {"/".join(map(str, b["path"])): base64.b64decode(b["data"]) for b in model.get("buffers", [])}


def _number(value, form: str | None) -> str:
    try:
        return format(value, form.replace("~", "")) if form else f"{value:g}"
    except (TypeError, ValueError):
        return str(value)


def widget_html(model_id: str, state: dict, depth: int = 0) -> str:
    """Static HTML for widget ``model_id`` of a notebook's saved widget ``state`` (ipywidgets 7 or 8): boxes,
    images (as PNG data), HTML and labels, and each control with its value as last set."""
    model = state.get(model_id)
    if model is None or depth > 20:
        return "<span class='book-widget-missing'>(a widget: run the notebook to use it)</span>"
    name, s = model["model_name"], model["state"]
    description = html.escape(s.get("description", ""))
    if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
        direction = "row" if name == "HBoxModel" else "column"
        children = "".join(widget_html(ref.removeprefix("IPY_MODEL_"), state, depth + 1) for ref in s["children"])
        return f"<div class='book-widget' style='display:flex;flex-direction:{direction};gap:6px;" \
               f"flex-wrap:wrap;align-items:flex-start'>{children}</div>"
    if name == "ImageModel":
        data = _buffers(model).get("value")  # bytes travel as buffers (ipywidgets 7 and 8)
        if not data:
            return ""
        return f"<img class='book-widget-image' alt='{description or 'widget image'}' " \
               f"src='data:image/{s.get('format', 'png')};base64,{base64.b64encode(data).decode()}'>"
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<div>{s.get('value', '')}</div>"
    if name == "LabelModel":
        return f"<span>{html.escape(str(s.get('value', '')))}</span>"
    if name in ("ButtonModel", "ToggleButtonModel"):
        return f"<button disabled>{description}</button>"
    if name in ("CheckboxModel",):
        return f"<label><input type='checkbox' disabled{' checked' if s.get('value') else ''}> {description}</label>"
    if "_options_labels" in s:  # dropdowns, selection sliders, toggle buttons
        index = s.get("index")
        label = s["_options_labels"][index] if isinstance(index, int) else ""
        return f"<span class='book-control'>{description} <b>{html.escape(str(label))}</b></span>"
    if "value" in s:  # sliders, text boxes
        shown = s["value"]  # a log slider's too: its min and max are exponents, its value is not
        value = _number(shown, s.get("readout_format")) if isinstance(shown, (int, float)) else html.escape(str(shown))
        return f"<span class='book-control'>{description} <b>{value}</b></span>"
    return ""  # layouts, styles, outputs without a picture


def snapshot_widgets(nb) -> int:
    """Replace each widget output of ``nb`` by its static HTML (the state saved at the end of the run) and drop
    the saved state, which nbconvert would otherwise render with JavaScript from a CDN; the number replaced."""
    state = nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {})
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(VIEW)
            if view is not None:
                output["data"] = {"text/html": widget_html(view["model_id"], state)}
                count += 1
    nb.metadata.pop("widgets", None)
    return count


# --- pages --------------------------------------------------------------------------------------------------
def link_pages(source: str) -> str:
    """Markdown or HTML links to ``NN_name.ipynb`` (a sibling notebook) pointed at its page."""
    return NOTEBOOK_LINK.sub(lambda m: f"{m.group(1)}{m.group(3)}.html{m.group(4) or ''}", source)


def title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if heading:
                return heading.group(1).strip()
    return fallback


def _nav(pages: list[tuple[str, str]], index: int) -> str:
    parts = ["<a href='index.html'>Contents</a>"]
    if index > 0:
        parts.append(f"<a href='{pages[index - 1][0]}'>← {html.escape(pages[index - 1][1])}</a>")
    if index + 1 < len(pages):
        parts.append(f"<a href='{pages[index + 1][0]}'>{html.escape(pages[index + 1][1])} →</a>")
    return ("<nav class='book-nav' style='font-family:sans-serif;padding:8px 16px;border-bottom:1px solid #ddd'>"
            + " · ".join(parts) + "</nav>")


def mathjax(out: Path) -> str:
    """The address of MathJax for the pages: a copy in ``out``/mathjax from jupyter-server-mathjax (the [book]
    extra), so that the pages typeset their equations offline; without that package, MathJax's CDN."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return CDN_MATHJAX
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(static, out / "mathjax", dirs_exist_ok=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def page(nb, pages: list[tuple[str, str]], index: int, mathjax_url: str = "") -> str:
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    snapshot_widgets(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = link_pages(cell.source)
    exporter = HTMLExporter(template_name="lab", **({"mathjax_url": mathjax_url} if mathjax_url else {}))
    body, _ = exporter.from_notebook_node(nb)
    body = re.sub(r"<script src=\"[^\"]*require[^\"]*\"></script>\n?", "", body)  # only widgets need require.js
    if mathjax_url.startswith("mathjax/"):  # the copy has the STIX-Web fonts only (as Jupyter's own MathJax)
        body = body.replace(f'<script src="{mathjax_url}"', LOCAL_MATHJAX_FONTS + f'<script src="{mathjax_url}"', 1)
    body = re.sub(r"<title>.*?</title>", f"<title>{html.escape(pages[index][1])} · oder-edu</title>", body, 1, re.S)
    nav = _nav(pages, index)
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, 1)
    return body.replace("</body>", nav.replace("border-bottom", "border-top") + "</body>", 1)


def index_page(pages: list[tuple[str, str]], notes: list[str]) -> str:
    items = "".join(f"<li><a href='{href}'>{html.escape(name)}</a></li>" for href, name in pages)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>oder-edu · the course</title></head>"
            "<body style='font-family:sans-serif;max-width:50em;margin:2em auto'>"
            "<h1>oder-edu · the course, executed</h1>"
            "<p>From imaging inverse problems to PnP/RED, deep equilibrium models and ODER. These pages show the "
            "notebooks as they ran, with their figures and the last state of their widgets; to change a slider "
            "or do an exercise, open the notebooks themselves (Colab, Binder, or <code>make lab</code>).</p>"
            f"<ol start='0'>{items}</ol><p style='color:#666'>{'<br>'.join(map(html.escape, notes))}</p>"
            "</body></html>\n")


def build(notebooks: list[Path], executed: Path, out: Path) -> list[Path]:
    """Write a page per notebook and ``index.html`` to ``out`` from the executed copies; the files written."""
    missing = stale(notebooks, executed)
    if missing:
        raise SystemExit(f"no fresh execution of {', '.join(missing)} in {executed}: run the notebook tests "
                         f"(`make book` does: pytest tests/test_colab.py)")
    runs = [nbformat.read(executed / nb.name, as_version=4) for nb in notebooks]
    pages = [(f"{nb.stem}.html", title(run, nb.stem)) for nb, run in zip(notebooks, runs)]
    out.mkdir(parents=True, exist_ok=True)
    mathjax_url = mathjax(out)
    written = []
    for index, run in enumerate(runs):
        path = out / pages[index][0]
        files.write_text(path, page(run, pages, index, mathjax_url))  # atomic: a reader sees the old page or the new
        written.append(path)
    notes = sorted({run.metadata.get("oder_edu", {}).get("executed_in", "") for run in runs} - {""})
    files.write_text(out / "index.html", index_page(pages, [f"Executed in {n}." for n in notes]))
    return written + [out / "index.html"]


# --- the check ----------------------------------------------------------------------------------------------
class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.scripts, self.ids, self.images = [], [], set(), 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "img" and (attrs.get("src") or "").startswith("data:image/"):
            self.images += 1


def _anchors(page_: _Links) -> set[str]:
    """The page's ids as written and percent-decoded (nbconvert writes heading ids percent-encoded)."""
    return page_.ids | {unquote(i) for i in page_.ids}


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def pictures(nb) -> int:
    """The figures of an executed notebook (image outputs) plus the images its widgets showed last."""
    state = nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {})
    figures = sum(1 for c in nb.cells for o in c.get("outputs", []) for mime in o.get("data", {})
                  if mime.startswith("image/"))

    def images(model_id, depth=0):
        model = state.get(model_id)
        if model is None or depth > 20:
            return 0
        if model["model_name"] == "ImageModel":
            return 1
        return sum(images(ref.removeprefix("IPY_MODEL_"), depth + 1) for ref in model["state"].get("children", []))

    views = [o["data"][VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", []) if VIEW in o.get("data", {})]
    return figures + sum(images(v) for v in views)


def check(notebooks: list[Path], executed: Path, out: Path) -> list[str]:
    """What is wrong with the book in ``out``: a missing page, missing pictures, a broken link or anchor."""
    problems = []
    parsed = {}
    for notebook in notebooks:
        path = out / f"{notebook.stem}.html"
        if not path.exists():
            problems.append(f"{notebook.name} has no page {path.name}")
            continue
        parsed[path.name] = _parse(path)
        want = pictures(nbformat.read(executed / notebook.name, as_version=4))
        if parsed[path.name].images < want:
            problems.append(f"{path.name} shows {parsed[path.name].images} pictures, its notebook has {want}")
    if not (out / "index.html").exists():
        problems.append("no index.html")
    else:
        parsed["index.html"] = _parse(out / "index.html")
    for name, page_ in parsed.items():
        for src in page_.scripts:  # a script the page loads from the book itself (MathJax) must be there
            parts = urlsplit(src)
            if not (parts.scheme or parts.netloc) and not (out / unquote(parts.path)).is_file():
                problems.append(f"{name}: script {src!r} is not in the book")
        for href in page_.links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue  # the outside world (papers, the repository) is not part of the book
            target = name if not parts.path else unquote(parts.path)
            if target not in parsed:
                problems.append(f"{name}: link {href!r} leads to no page of the book")
            elif parts.fragment and not {parts.fragment, unquote(parts.fragment)} & _anchors(parsed[target]):
                problems.append(f"{name}: link {href!r} names no anchor of {target}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stale", action="store_true", help="list notebooks without a fresh execution; exit 1 if any")
    parser.add_argument("--executed", type=Path, default=EXECUTED)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    notebooks = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    if args.stale:
        missing = stale(notebooks, args.executed)
        print("\n".join(missing) if missing else "every notebook has a fresh execution")
        return 1 if missing else 0
    build(notebooks, args.executed, args.out)
    problems = check(notebooks, args.executed, args.out)
    for problem in problems:
        print(f"book: {problem}", file=sys.stderr)
    if not problems:
        print(f"book: {len(notebooks)} pages and index.html in {args.out}; every link and picture checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
