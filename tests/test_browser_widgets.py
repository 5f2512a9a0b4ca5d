"""Real browser: JupyterLab + Chromium run a notebook holding the reconstruction explorer,
press Run, move the minibatch-ratio and step-size sliders by keyboard while it runs: the explorer
opens online (b = 32/128), moving b/B to 1 reaches the loop (its readout says b = 128/128), raises
the block evaluations and the memory per iteration, and moves γ to the full batch's larger default
step; moving γ by hand then unticks "γ = default step". No browser console errors. The time per
iteration is shown but not compared: wall-clock time belongs in ``oder-edu bench widgets``.

The notebook is written by the test into its own temporary folder (the course notebooks are
not involved); the problem is small and measurement-dominated (IDT 64², 128 LEDs, Gaussian
denoiser).
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
    "assert explorer.history == [] and explorer.batch_ratio.value == 0.25 and explorer.gamma_auto.value",
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
        # The loop is running online (b = 32/128); wait for the time readout to rest on ten iterations.
        wait_text(page, ".oder-readout.oder-memory", "t.includes('MiB')")
        page.wait_for_function("() => [...document.querySelectorAll('th')].some(e => /iteration (1[2-9]|[2-9][0-9])/"
                               ".test(e.innerText))", timeout=60_000)
        assert "32/128" in page.locator(".oder-readout").first.locator("xpath=ancestor::table").inner_text()
        assert text(page, ".oder-readout.oder-blocks") == "32" and text(page, ".oder-readout.oder-blocks-full") == "128"
        psnr_before = text(page, ".oder-readout.oder-psnr")
        memory_before = text(page, ".oder-readout.oder-memory")
        bound_before = text(page, ".oder-bound")
        gamma_before = float(bound_before.split("γ = ")[1].split(" =")[0])

        ratio = page.locator(".oder-ratio .noUi-handle").first
        ratio.scroll_into_view_if_needed()
        ratio.focus()
        for _ in range(2):
            page.keyboard.press("ArrowRight")  # b/B: 1/4 -> 1/2 -> 1
        # The running loop read the new b/B at its next iteration: its readout says so, the block evaluations
        # and the measured memory per iteration rise with the number of LEDs, and γ followed the default step.
        page.wait_for_function(
            "() => [...document.querySelectorAll('th')].some(e => e.innerText.includes('b = 128/128'))",
            timeout=30_000,
        )
        wait_text(page, ".oder-readout.oder-blocks", "t === '128'")
        wait_text(page, ".oder-readout.oder-memory", f"t.includes('MiB') && t !== {memory_before!r}")
        wait_text(page, ".oder-readout.oder-psnr", f"t !== {psnr_before!r}")
        bound_full = text(page, ".oder-bound")
        gamma_full = float(bound_full.split("γ = ")[1].split(" =")[0])
        assert gamma_full > gamma_before and "1.00 ×" in bound_full and "L = L_g" in bound_full
        assert page.locator(".oder-gamma-auto input").first.is_checked()
        changed_at = int(page.locator("th").first.inner_text().split()[1].split("/")[0])
        page.wait_for_function("(k) => { const e = document.querySelector('th'); "
                               "return e && parseInt(e.innerText.split(' ')[1]) >= k + 10; }", arg=changed_at,
                               timeout=60_000)
        memory_after = text(page, ".oder-readout.oder-memory")
        seconds_after = text(page, ".oder-readout.oder-seconds")
        assert float(memory_before.split()[0]) < 0.6 * float(memory_after.split()[0])
        assert float(seconds_after.split()[0]) > 0  # shown, not compared

        gamma = page.locator(".oder-gamma .noUi-handle").first
        gamma.focus()
        for _ in range(3):
            page.keyboard.press("ArrowLeft")  # three steps of 10^0.05 down: a smaller, safe γ, chosen by hand
        wait_text(page, ".oder-bound", f"t !== {bound_full!r}")
        assert float(text(page, ".oder-bound").split(" = ")[2].split(" ×")[0]) < 1.0
        assert not page.locator(".oder-gamma-auto input").first.is_checked()

        page.locator(".oder-stop button, button.oder-stop").first.click()
        wait_text(page, ".oder-status", "t.includes('stopped')")
        page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
        assert not errors, "browser console errors:\n" + "\n".join(errors)
