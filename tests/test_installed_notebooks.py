"""Notebooks run wherever a student opens them: the wheel is built, installed into a clean virtual
environment through constraints.txt, and every notebook executes top to bottom from a temporary
working directory outside the repository -- Colab's situation after the set-up cell. A cell that
reaches for a file only a clone has (``../benchmarks``, ``data/...`` by path) fails here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
"""
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(python, work_dir)``: a fresh venv holding only the built wheel and its dependencies."""
    tmp = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(ROOT)],
                   check=True)
    (wheel,) = (tmp / "dist").glob("oder_edu-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
                           f"{wheel}[test]"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    work = tmp / "work"
    work.mkdir()
    return python, work


def test_the_wheel_imports_outside_the_repository(installed):
    python, work = installed
    code = ("import oder_edu, json; from oder_edu.images import real_image; from oder_edu import results;"
            "print(json.dumps([oder_edu.__file__, tuple(real_image('ct').shape), len(results.load('oder')['records'])]))")
    done = subprocess.run([str(python), "-c", code], cwd=work, capture_output=True, text=True, check=True)
    location, shape, records = json.loads(done.stdout)
    assert str(ROOT) not in location and shape == [1, 1, 128, 128] and records > 0


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_from_an_installed_wheel(installed, notebook):
    python, work = installed
    copy = work / notebook.name
    copy.write_text(notebook.read_text())
    env = {**os.environ, "ODER_EDU_DEVICE": "cpu", "MPLBACKEND": "agg"}
    done = subprocess.run([str(python), "-c", RUN, str(copy), str(work)], cwd=work, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, f"{notebook.name} failed from the installed wheel:\n{done.stderr[-4000:]}"
