"""The package installs everything it loads at run time; Binder's environment agrees
with pyproject.toml; the repository address is written in one place."""

import json
import re
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import oder_edu

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement(spec: str) -> tuple[str, str]:
    name, bound = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec).groups()
    return name.lower().replace("_", "-"), bound.replace(" ", "")


@pytest.mark.slow
def test_wheel_contains_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "oder_edu/weights/MANIFEST.json" in names
    manifest = json.loads((ROOT / "oder_edu/weights/MANIFEST.json").read_text())
    assert manifest, "the manifest lists no weights"
    for entry in manifest.values():
        assert f"oder_edu/weights/{entry['file']}" in names
    assert "oder_edu/physics/base.py" in names
    for data in ("ct_small.npy", "mr_small.npy", "cell_phase.npy", "README.md"):
        assert f"oder_edu/data/{data}" in names  # data/, installed as oder_edu.data
    assert any(name.startswith("oder_edu/results/") and name.endswith(".json") for name in names)


def test_pyproject_lists_every_package():
    """``packages`` is written out (data/ is mapped to oder_edu.data), so a new subpackage must be added."""
    on_disk = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "oder_edu").rglob("__init__.py")}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert on_disk | {"oder_edu.data"} == listed


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = dict(_requirement(d) for d in env["dependencies"] if isinstance(d, str))
    conda_to_pypi = {"pytorch-cpu": "torch", "python": "python"}
    conda = {conda_to_pypi.get(k, k): v for k, v in conda.items()}
    # Binder opens the course in JupyterLab: the dependencies and the [lab] extra, nothing else.
    wanted = dict(_requirement(spec) for spec in PYPROJECT["project"]["dependencies"]
                  + PYPROJECT["project"]["optional-dependencies"]["lab"])
    assert "jupyterlab" in wanted and "jupyterlab" not in dict(map(_requirement, PYPROJECT["project"]["dependencies"]))
    for name, bound in wanted.items():
        assert name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[name] == bound, f"{name}: pyproject says {bound!r}, environment.yml {conda[name]!r}"
    assert set(conda) - {"python", "pip"} == set(wanted), "environment.yml installs what pyproject does not name"
    assert conda["python"] == "=3.11"
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section == ["."], "Binder must install the package itself with pip"


def test_constraints_pin_cpu_torch_and_cover_dependencies():
    pins = dict(
        _requirement(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert pins["torch"] == "==2.13.0"
    extras = [spec for group in PYPROJECT["project"]["optional-dependencies"].values() for spec in group]
    for spec in PYPROJECT["project"]["dependencies"] + extras:
        name, _ = _requirement(spec)
        assert name in pins, f"{name} is not pinned in constraints.txt"


def test_repository_address_written_once():
    """README badges and each notebook's set-up cell name the repository of oder_edu.REPOSITORY."""
    slug = oder_edu.REPOSITORY.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"(?:colab\.research\.google\.com/github|mybinder\.org/v2/gh)/([\w.\-]+/[\w.\-]+)", readme)
    assert badges and set(badges) == {slug}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        setup = "".join(json.loads(nb.read_text())["cells"][1]["source"])
        assert f'REPOSITORY = "{oder_edu.REPOSITORY}"' in setup, f"{nb.name}: set-up cell names another repository"


def test_badges_open_files_that_exist():
    """The Binder badge's labpath and every Colab badge's notebook are files of this repository, and
    Binder finds its environment where repo2docker looks (environment.yml at the root)."""
    readme = (ROOT / "README.md").read_text()
    binder = re.findall(r"mybinder\.org/v2/gh/[\w.\-]+/[\w.\-]+/[\w.\-]+\?labpath=([\w./\-]+)", readme)
    colab = re.findall(r"colab\.research\.google\.com/github/[\w.\-]+/[\w.\-]+/blob/main/([\w./\-]+)", readme)
    assert binder and colab
    for path in binder + colab:
        assert (ROOT / path).is_file(), f"a README badge opens {path}, which is not in the repository"
    assert sorted(colab) == sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert (ROOT / "environment.yml").is_file() and not (ROOT / "binder").exists()


def test_ipywidgets_range_is_the_one_the_widgets_support():
    """pyproject, Binder and oder_edu.widgets.compat accept the same ipywidgets: 7.7+ (Colab) and 8."""
    from oder_edu.widgets import compat

    specs = dict(map(_requirement, PYPROJECT["project"]["dependencies"]))
    (low, high) = compat.SUPPORTED
    assert specs["ipywidgets"] == f">={low[0]}.{low[1]},<{high[0]}"
    assert compat.supported((7, 7)) and compat.supported((8, 1)) and not compat.supported((7, 6))
    assert not compat.supported((9, 0))
