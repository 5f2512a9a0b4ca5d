"""Shared fixtures: the real-browser harness (see tests/browser.py)."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from browser import CHROMIUM, CHROMIUM_ARGS, lab_server

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def chromium():
    """A headless Debian Chromium driven by Playwright; skips (locally) or fails (CI) without it.

    Module-scoped: Playwright's sync API keeps an asyncio loop running in this thread while
    it is open, which would break later tests that call ``asyncio.run``."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """``(base_url, token)`` of a private JupyterLab serving a copy of notebooks/."""
    with lab_server(NOTEBOOKS, tmp_path_factory.mktemp("jupyterlab")) as server:
        yield server


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run fastest on one thread; on a busy 2-core machine a second OpenMP
    thread waiting for a core made small-tensor tests (a 32² FFT) up to 100x slower. For a whole
    module: ``pytestmark = pytest.mark.usefixtures("one_thread")``; restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def interrupt_draw(monkeypatch):
    """``interrupt_draw(n)``: the n-th batch that training draws (``images.training_images``) raises
    KeyboardInterrupt, as Ctrl-C would; ``interrupt_draw(None)`` restores the real draw."""
    import oder_edu.images

    real = oder_edu.images.training_images

    def arm(n):
        if n is None:
            monkeypatch.setattr(oder_edu.images, "training_images", real)
            return
        calls = []

        def draw(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(oder_edu.images, "training_images", draw)

    return arm
