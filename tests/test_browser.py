"""Real browser: JupyterLab + Chromium run 00_start_here and a slider moved by keyboard
reaches the kernel (the readout it computes changes), with no browser console errors."""

import pytest

from browser import open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_start_here_slider_reaches_kernel(chromium, lab, tmp_path):
    base, token = lab
    errors: list[str] = []
    page = open_notebook(chromium, base, token, "00_start_here.ipynb", errors)
    readout = page.locator(".oder-readout").first
    readout.wait_for(timeout=60_000)
    # textContent, not innerText: JupyterLab skips rendering cells out of view, whose innerText is ''.
    before = readout.text_content()
    assert "PSNR" in before and "σ = 0.05" in before

    handle = page.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    # Three steps of 0.01 from 0.05: the kernel recomputed the readout for σ = 0.08.
    page.wait_for_function(
        "() => { const e = document.querySelector('.oder-readout'); return e && e.textContent.includes('σ = 0.08'); }",
        timeout=30_000,
    )
    after = readout.text_content()
    assert after != before and float(after.split()[1]) < float(before.split()[1])
    page.screenshot(path=str(tmp_path / "00_start_here.png"), full_page=True)
    assert not errors, "browser console errors:\n" + "\n".join(errors)
