"""Colab as it really is. A virtual environment holds Colab's versions of everything the course needs
of it (tests/colab/requirements.txt: each version's source, and every deviation this machine forces);
the built wheel goes in through notebook 00's own set-up cell, its ``git+`` URL swapped for the wheel,
in a kernel that sees ``google.colab`` as Colab's does; then every notebook runs top to bottom from a
working directory outside the repository, and the course's widgets are driven from the kernel
(tests/colab/drive_widgets.py) with the widget state the front end would receive checked.

The executed notebooks are kept in build/executed/ for the static course (tools/book.py, ``make book``),
which converts them instead of running the notebooks again."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

import venvs
from oder_edu import files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
REQUIREMENTS = ROOT / "tests" / "colab" / "requirements.txt"
EXECUTED = ROOT / "build" / "executed"
GIT_URL = 'f"oder-edu @ git+{REPOSITORY}"'  # in every set-up cell, swapped here for the wheel's file URL
# What the issue and Colab's list (backend-info, 2026-08-19) say Colab has; the record must keep them.
COLAB = {"ipykernel": "6.17.1", "ipython": "7.34.0", "ipywidgets": "7.7.1", "jupyter-client": "7.4.9",
         "notebook": "6.5.7", "matplotlib": "3.10.0", "numpy": "2.1.3", "scikit-image": "0.25.2"}
# Executed by the venv's python: nbclient and the kernel are Colab's versions too.
RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
try:
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
finally:
    nbformat.write(nb, sys.argv[3])
"""
# An IPython start-up file: the kernel then has google.colab in sys.modules, as on Colab.
ON_COLAB = 'import sys, types\nsys.modules.setdefault("google.colab", types.ModuleType("google.colab"))\n'


def pins() -> dict[str, str]:
    return dict(venvs.normalized(line) for line in REQUIREMENTS.read_text().splitlines()
                if line.split("#")[0].strip())


def setup_cell(notebook: Path) -> str:
    return "".join(json.loads(notebook.read_text())["cells"][1]["source"])


# --- the record and the set-up cell, read without a venv ------------------------------------------
def test_the_record_names_its_source_and_colabs_versions():
    text, pinned = REQUIREMENTS.read_text(), pins()
    assert "googlecolab/backend-info" in text and "a724079" in text and "2026-08-19" in text
    for name, version in COLAB.items():
        assert pinned[name] == version, f"{name}: Colab has {version}, the record pins {pinned.get(name)}"
    deviations = [line for line in text.splitlines() if "DEVIATION:" in line and not line.startswith("#")]
    assert {venvs.normalized(line)[0] for line in deviations} == {"torch", "setuptools", "tifffile", "overrides"}
    assert all(re.search(r"# DEVIATION: \S.{20,}", line) for line in deviations), "each deviation says why"
    torch_line = next(line for line in deviations if line.startswith("torch=="))
    assert pinned["torch"] == "2.13.0+cpu" and "2.11.0" in torch_line and "3.11" in torch_line
    assert re.search(r"python: Colab runs 3\.13\.15; this machine has only Python 3\.11", text)
    assert "jupyterlab" not in pinned and "oder-edu" not in pinned


def test_every_notebook_has_the_same_set_up_cell_and_it_leaves_torch_alone():
    cells = {nb.name: setup_cell(nb) for nb in NOTEBOOKS}
    assert len(set(cells.values())) == 1, f"the set-up cells differ: {sorted(cells)}"
    cell = cells[NOTEBOOKS[0].name]
    assert cell.count(GIT_URL) == 1 and '"google.colab" in sys.modules' in cell
    # The package alone, then only what is missing (oder_edu.colab): pip resolves nothing Colab has.
    assert '"--no-deps", ' + GIT_URL in cell and "install_missing()" in cell
    assert cell.count("pip") == 1 and not re.search(r"--upgrade|-U\b|--force|torch[=<>]", cell)


# --- the Colab-like environment ----------------------------------------------------------------------
def _install(python: Path) -> None:
    venvs.pip(python, "install", "-q", f"pip=={pins()['pip']}")
    venvs.pip(python, "install", "-q", "--no-deps", "-r", str(REQUIREMENTS))


class Colab:
    """The venv's ``python``, a ``work`` folder outside the repository, the kernels' environment ``env``, the
    packages before and after the set-up cell ran, and ``execute(notebook_path) -> executed notebook``."""

    def __init__(self, python: Path, work: Path, wheel: Path):
        self.python, self.work, self.wheel = python, work, wheel
        startup = work.parent / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-google-colab.py").write_text(ON_COLAB)
        self.env = venvs.clean_env(ODER_EDU_DEVICE="cpu", IPYTHONDIR=str(startup.parent.parent))
        self.env.pop("MPLBACKEND", None)  # the kernel's own default: inline figures, as on Colab

    def swapped(self, source: str) -> str:
        return source.replace(GIT_URL, repr(f"oder-edu @ {self.wheel.as_uri()}"))

    def execute(self, nb, name: str):
        """Run ``nb`` (an nbformat notebook) in a Colab-like kernel; its executed copy, or a failed assertion."""
        source, out = self.work / name, self.work / f"executed-{name}"
        nbformat.write(nb, source)
        done = subprocess.run([str(self.python), "-c", RUN, str(source), str(self.work), str(out)], cwd=self.work,
                              env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"{name} failed in the Colab-like kernel:\n{done.stderr[-4000:]}"
        return nbformat.read(out, as_version=4)


@pytest.fixture(scope="module")
def colab(wheel, tmp_path_factory):
    python = venvs.venv("colab", venvs.key(REQUIREMENTS), _install)
    extra = sorted(set(venvs.installed(python)) - set(pins()))  # oder-edu, from the run before this one
    if extra:
        venvs.pip(python, "uninstall", "-y", *extra)
    env = Colab(python, tmp_path_factory.mktemp("colab") / "work", wheel)
    env.work.mkdir()
    env.before = venvs.installed(python)
    env.site_packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                       capture_output=True, text=True, check=True).stdout.strip()
    cell = nbformat.v4.new_code_cell(env.swapped(setup_cell(NOTEBOOKS[0])))
    env.setup = env.execute(nbformat.v4.new_notebook(cells=[cell], metadata=_kernel()), "setup.ipynb")
    env.after = venvs.installed(python)
    return env


def _kernel():
    return {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _errors(nb) -> list:
    """Error outputs, also those a cell shows without failing (IPython reports a failed display so)."""
    return [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.slow
def test_the_venv_is_colab_as_recorded(colab):
    assert colab.before == pins(), "the Colab-like venv holds other packages than tests/colab/requirements.txt"
    done = subprocess.run([str(colab.python), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "(3, 11)"  # the recorded deviation from Colab's 3.13


@pytest.mark.slow
def test_the_set_up_cell_installs_only_the_package(colab):
    """What Colab lacks is the package alone: nothing else is added, upgraded or downgraded; torch stays."""
    added = {name: v for name, v in colab.after.items() if colab.before.get(name) != v}
    removed = {name for name in colab.before if name not in colab.after}
    assert added == {"oder-edu": "0.1.0"} and not removed, (added, removed)
    assert "device: cpu" in _text(colab.setup.cells[0])
    # ... and what Colab has satisfies every requirement of the package (pyproject accepts Colab as it is).
    code = ("from importlib.metadata import requires, version; from packaging.requirements import Requirement\n"
            "reqs = [Requirement(r) for r in requires('oder-edu') if 'extra' not in r]\n"
            "print([str(r) for r in reqs if not r.specifier.contains(version(r.name), prereleases=True)])")
    done = subprocess.run([str(colab.python), "-c", code], env=colab.env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"Colab's versions do not satisfy {done.stdout.strip()}"


@pytest.mark.slow
def test_the_wheel_imports_outside_the_repository(colab):
    code = ("import oder_edu, json; from oder_edu.images import real_image; from oder_edu import results;"
            "print(json.dumps([oder_edu.__file__, tuple(real_image('ct').shape), len(results.load('oder')['records'])]))")
    done = subprocess.run([str(colab.python), "-c", code], cwd=colab.work, env=colab.env, capture_output=True,
                          text=True, check=True)
    location, shape, records = json.loads(done.stdout)
    assert Path(location).parent.parent == Path(colab.site_packages) and shape == [1, 1, 128, 128] and records > 0


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_colab(colab, notebook):
    """Every notebook, top to bottom, in the Colab-like kernel; the executed copy is kept for the book."""
    nb = nbformat.read(notebook, as_version=4)
    original = nb.cells[1].source
    nb.cells[1].source = colab.swapped(original)
    executed = colab.execute(nb, notebook.name)
    assert "device: cpu" in _text(executed.cells[1])
    assert not _errors(executed), _errors(executed)[0]
    executed.cells[1].source = original  # the page shows the cell as a student sees it
    executed.metadata["oder_edu"] = {
        "executed_in": "the Colab-like environment of tests/colab/requirements.txt (ipywidgets 7.7.1)",
        "source_sha256": hashlib.sha256(notebook.read_bytes()).hexdigest()}
    EXECUTED.mkdir(parents=True, exist_ok=True)
    files.write_text(EXECUTED / notebook.name, nbformat.writes(executed))  # atomic: never half a notebook


@pytest.mark.slow
def test_widgets_are_driven_headlessly_with_ipywidgets_7(colab):
    cells = [nbformat.v4.new_code_cell(part.strip()) for part in
             re.split(r"(?m)^# %%$", (ROOT / "tests" / "colab" / "drive_widgets.py").read_text())[1:]]
    executed = colab.execute(nbformat.v4.new_notebook(cells=cells, metadata=_kernel()), "drive_widgets.ipynb")
    assert not _errors(executed), _errors(executed)[0]
    report = json.loads(_text(executed.cells[-1]).strip().splitlines()[-1])
    assert report["ipywidgets"] == "7.7.1" and report["supported"]

    recon = report["reconstruction"]
    assert recon["iterations"] == [1, 2, 3, 4] and recon["png"]
    assert all(s == [0.04, 0.5, 2] for s in recon["settings"]), recon["settings"]  # σ and b/B as set, b = 2 of 4
    assert "iteration 4/4" in recon["readout"] and "b = 2/4 coils" in recon["readout"]
    assert "run 1 done: 4 iterations" in recon["status"] and "b/B = 1/2" in recon["bound"]
    assert "B = 4 coils" in recon["ratio_tooltip"]  # synced as description_tooltip under ipywidgets 7
    assert recon["idt_ratios"] == ["1/8", "1/4", "1/2", "1"]

    training = report["training"]
    assert len(training["ratios"]) >= 2 and training["png"]
    assert len(set(training["tables"].values())) == len(training["tables"]), "the table ignores the b/B slider"
    assert report["slider"] == "σ = 0.20"

    # What the front end got: ipywidgets 7's protocol (controls 1.5.0), and the readouts as the kernel set them.
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    controls = {m["model_module_version"] for m in state.values() if m["model_module"] == "@jupyter-widgets/controls"}
    assert controls == {"1.5.0"}
    html = [m["state"]["value"] for m in state.values() if m["model_name"] == "HTMLModel"]
    assert recon["idt_readout"] in html and report["slider"] in html and "start image x₀" in recon["idt_readout"]
    assert any(tables == training["tables"][training["ratios"][-1]] for tables in html)  # the last ratio set
    images = [m for m in state.values() if m["model_name"] == "ImageModel"]
    assert images and all(b["path"] == ["value"] for m in images for b in m.get("buffers", []))
    shown = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for c in executed.cells
             for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(shown) == 3 and all(model in state for model in shown)
