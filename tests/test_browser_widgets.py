"""Real browser: JupyterLab + Chromium run a notebook holding the reconstruction explorer,
press Run, move the step-size and minibatch-ratio sliders by keyboard while it runs: the PSNR
readout changes, and moving b/B from 1 to 1/4 reaches the loop (its readout says b = 32/128) and
lowers the displayed memory per iteration, with no browser console errors. The time per
iteration is shown but not compared: wall-clock time belongs in ``oder-edu bench widgets``.

The notebook is written by the test into its own temporary folder (the course notebooks are
not involved); the problem is small and measurement-dominated (IDT 64², 128 LEDs, Gaussian
denoiser), so a quarter of the LEDs costs clearly less per iteration.
"""

import nbformat
import pytest

from browser import lab_server, open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    "from oder_edu.widgets import ReconstructionExplorer\n"
    "explorer = ReconstructionExplorer('idt', image_size=64, denoiser='gaussian', num_blocks={'idt': 128},\n"
    "                                  iterations=1000, device='cpu', reference=False)\n"
    "explorer",
    "assert explorer.history == [] and explorer.batch_ratio.value == 1.0",
]


def text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text()


def wait_text(page, selector: str, predicate_js: str, timeout_ms: int = 30_000) -> None:
    """Wait until the first element matching ``selector`` has text ``t`` with ``predicate_js``."""
    page.wait_for_function(
        f"() => {{ const e = document.querySelector({selector!r}); if (!e) return false;"
        f" const t = e.innerText; return {predicate_js}; }}",
        timeout=timeout_ms,
    )


def test_explorer_sliders_reach_the_running_loop(chromium, tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebooks / "explorer.ipynb")

    with lab_server(notebooks, tmp_path / "lab") as (base, token):
        errors: list[str] = []
        page = open_notebook(chromium, base, token, "explorer.ipynb", errors, timeout_s=120)
        page.locator(".oder-bound").first.wait_for(timeout=60_000)
        assert "× 1/(L + τ·L_R)" in text(page, ".oder-bound") and "start image" in text(page, ".oder-psnr")

        page.locator(".oder-run button, button.oder-run").first.click()
        # The loop is running: readouts in the table form, at full batch (b = 128/128); wait for the
        # time readout to rest on ten iterations at this setting.
        wait_text(page, ".oder-readout.oder-memory", "t.includes('MiB')")
        page.wait_for_function("() => [...document.querySelectorAll('th')].some(e => /iteration (1[2-9]|[2-9][0-9])/"
                               ".test(e.innerText))", timeout=60_000)
        psnr_before = text(page, ".oder-readout.oder-psnr")
        memory_before = text(page, ".oder-readout.oder-memory")
        seconds_before = text(page, ".oder-readout.oder-seconds")
        bound_before = text(page, ".oder-bound")
        assert "128/128" in page.locator(".oder-readout").first.locator("xpath=ancestor::table").inner_text()

        gamma = page.locator(".oder-gamma .noUi-handle").first
        gamma.scroll_into_view_if_needed()
        gamma.focus()
        for _ in range(3):
            page.keyboard.press("ArrowLeft")  # three steps of 10^0.05 down: a smaller, safe γ
        wait_text(page, ".oder-bound", f"t !== {bound_before!r}")
        assert float(text(page, ".oder-bound").split("γ = ")[1].split(" ×")[0]) < 1.0

        ratio = page.locator(".oder-ratio .noUi-handle").first
        ratio.focus()
        for _ in range(2):
            page.keyboard.press("ArrowLeft")  # b/B: 1 -> 1/2 -> 1/4
        # The running loop read the new b/B at its next iteration: its readout says so, and the
        # measured memory and time per iteration drop with the number of LEDs.
        page.wait_for_function(
            "() => [...document.querySelectorAll('th')].some(e => e.innerText.includes('b = 32/128'))",
            timeout=30_000,
        )
        wait_text(page, ".oder-readout.oder-memory", f"t.includes('MiB') && t !== {memory_before!r}")
        wait_text(page, ".oder-readout.oder-psnr", f"t !== {psnr_before!r}")
        changed_at = int(page.locator("th").first.inner_text().split()[1].split("/")[0])
        page.wait_for_function("(k) => { const e = document.querySelector('th'); "
                               "return e && parseInt(e.innerText.split(' ')[1]) >= k + 10; }", arg=changed_at,
                               timeout=60_000)
        memory_after = text(page, ".oder-readout.oder-memory")
        seconds_after = text(page, ".oder-readout.oder-seconds")
        assert float(memory_after.split()[0]) < 0.6 * float(memory_before.split()[0])
        assert float(seconds_before.split()[0]) > 0 and float(seconds_after.split()[0]) > 0  # shown, not compared

        page.locator(".oder-stop button, button.oder-stop").first.click()
        wait_text(page, ".oder-status", "t.includes('stopped')")
        page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
        assert not errors, "browser console errors:\n" + "\n".join(errors)
