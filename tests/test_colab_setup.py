"""oder_edu.colab: the set-up cell's ``install_missing`` installs the requirements no version of which is
installed, and nothing else; torch never (the Colab-like run is in tests/test_colab.py)."""

import sys
from importlib import metadata

import pytest

from oder_edu import colab


@pytest.fixture
def requirements(monkeypatch):
    """Set the requirements the fake distribution 'course' declares; 'tqdm' and 'torch' are installed here."""
    def declare(*lines):
        monkeypatch.setattr(colab.metadata, "requires", lambda name: list(lines) if name == "course" else None)
    return declare


def test_only_requirements_with_no_installed_version_are_missing(requirements):
    requirements("torch>=2.1", "tqdm>=999", "no-such-project-xyz>=1.0", "Another_Missing.Pkg",
                 "jupyterlab>=4; extra == \"lab\"")
    # tqdm is installed, even if older than the bound: Colab's version is kept, not upgraded.
    assert colab.missing("course") == ["no-such-project-xyz>=1.0", "Another_Missing.Pkg"]


def test_install_missing_runs_pip_once_with_what_is_missing(requirements):
    requirements("tqdm", "no-such-project-xyz>=1.0")
    calls = []
    assert colab.install_missing("course", run=lambda *a, **k: calls.append((a, k))) == ["no-such-project-xyz>=1.0"]
    assert calls == [(([sys.executable, "-m", "pip", "install", "-q", "no-such-project-xyz>=1.0"],), {"check": True})]


def test_nothing_missing_runs_nothing(requirements):
    requirements("tqdm", "numpy")
    assert colab.install_missing("course", run=lambda *a, **k: pytest.fail("pip ran")) == []


def test_torch_is_never_installed(requirements, monkeypatch):
    requirements("torch>=2.1", "tqdm")
    real = metadata.version
    monkeypatch.setattr(colab.metadata, "version", lambda name: real("no-such-project-xyz") if name == "torch"
                        else real(name))
    with pytest.raises(RuntimeError, match="torch is not installed"):
        colab.install_missing("course", run=lambda *a, **k: pytest.fail("pip ran"))


def test_markers_other_than_extras_are_refused(requirements):
    requirements("tomli; python_version < \"3.11\"")
    with pytest.raises(ValueError, match="markers"):
        colab.missing("course")


def test_the_package_declares_no_marker_missing_cannot_read():
    """The installed package's own requirements are readable by ``missing`` (from a clone: its metadata)."""
    try:
        assert isinstance(colab.missing("oder-edu"), list)
    except metadata.PackageNotFoundError:
        pytest.skip("oder-edu is not installed in this environment")
