"""What the notebooks' text may state: a measured number appears only in printed output or in Markdown that code
generates (``display(Markdown(...))``), never typed into a Markdown cell, where it would go stale the next time
the weights, the data or the machine change; and no notebook asserts on wall-clock time, which depends on the
machine and its load (compare block evaluations or memory instead).

The scan looks for decimals (``1.3``, ``0,5`` is not used) in Markdown cells, outside the references and links.
Constants of the methods — step factors, thresholds, noise levels the text sets rather than measures — are allowed
per notebook in ``CONSTANTS``, each with what it is."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))

# Decimals the text sets (parameters and derived constants of a method), never measures.
CONSTANTS = {
    "00_start_here": {
        "1.5": "FISTA's step 1.5/L_g, from 01's sweep grid",
    },
    "01_inverse_problems": {
        "0.5": "the sweep's smallest step factor γ·L_g; also the momentum threshold β > 0.5 derived in the text",
        "2.2": "the sweep's largest step factor γ·L_g",
        "1.2": "a step factor of the sweep", "1.5": "a step factor of the sweep", "1.7": "a step factor of the sweep",
        "1.8": "a step factor of the sweep", "1.9": "a step factor of the sweep",
        "0.125": "the momentum threshold derived for γL_g = 1.8",
        "0.28": "FISTA's momentum β_2 = (t_2 − 1)/t_3, a constant", "0.43": "FISTA's β_3, a constant",
        "0.53": "FISTA's β_4, a constant",
        "2.0": "the PSF width of the blur operator (gaussian_kernel(9, 2.0))",
    },
    "02_pnp_and_red": {
        "0.2": "the top of the noise levels σ the shipped DnCNN was trained for",
        "0.3": "the sweep's rule: final PSNR within 0.3 dB of the best iterate",
        "0.01": "the perturbation size of the nearby pairs, b = a + 0.01 n",
        "0.05": "the step of the pairs along the witness, b = a + 0.05 v",
        "0.02": "the asymmetry below which the verdict says symmetric (the course's threshold)",
    },
    "03_deep_equilibrium": {
        "0.95": "the tanh layer's ||W||₂, set by the demo",
    },
    "04_oder": {
        "0.5": "the course's target for online ODER on CT and IDT: within 0.5 dB of full DEQ",
        "1.0": "the course's target on MRI: within 1.0 dB",
        "0.3": "the margin of P below full DEQ's final validation PSNR (bench oder's P_MARGIN)",
        "0.99": "the course's target for the contraction constant of a shipped model's iterated map",
    },
    "05_applications": {
        "0.3": "10^(−50/20) ≈ 0.3 %, the noise of a 50 dB SNR (derived)",
        "0.5": "the CT setting's 0.5° angle steps",
        "0.125": "a ratio in an example command line",
        "2.4": "the shipped U-Net's weights in millions (its parameter count, MANIFEST)",
        "1.5": "the course's target margin of a learned prior over tuned TV, in dB",
    },
}
# A decimal, not part of a version or a dotted number (1.2.3), and found at the end of a sentence too ("… 0.98.").
DECIMAL = re.compile(r"(?<!\w)(?<!\d\.)\d+\.\d+(?!\w)(?!\.\d)")
LINK = re.compile(r"\]\([^)]*\)|https?://\S+|doi:\S+|arXiv:\S+", re.IGNORECASE)
CITED = re.compile(r"\b(?:thm|prop|def|lemma|cor|eq|ch|sec|fig)\.?\s*\d+(?:\.\d+)*", re.IGNORECASE)  # "prop. 4.39"


def _prose(source: str) -> str:
    """A Markdown cell without its references section, links, DOIs and arXiv numbers."""
    return CITED.sub(" ", LINK.sub(" ", source.split("## References")[0]))


def measured_decimals(path: Path) -> list[str]:
    """``cell <index>: <decimal> in '<context>'`` for every decimal of a Markdown cell not in ``CONSTANTS``."""
    allowed = CONSTANTS.get(path.stem, {})
    found = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "markdown":
            continue
        text = _prose(cell.source)
        for match in DECIMAL.finditer(text):
            if match.group() not in allowed:
                context = text[max(0, match.start() - 40):match.end() + 20].replace("\n", " ")
                found.append(f"cell {index}: {match.group()} in '…{context}…'")
    return found


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_no_measured_decimal_is_typed_into_markdown(path):
    found = measured_decimals(path)
    assert not found, (f"{path.name}: measured numbers belong in printed output or code-generated Markdown; "
                       f"if one is a constant of a method, add it to CONSTANTS with what it is:\n" + "\n".join(found))


def test_the_scan_finds_a_typed_measurement_and_spares_constants_and_references(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("FISTA ends 1.3 dB above ISTA at γ = 1.9/L_g."),
        nbformat.v4.new_markdown_cell("The constant at the test points was 0.98. Version 2.13.0 is not a number."),
        nbformat.v4.new_markdown_cell("See [arXiv:2205.13051](https://arxiv.org/abs/2205.13051).\n\n"
                                      "## References\n- Vol. 13, 600–612, 2004, version 2.0."),
    ])
    path = tmp_path / "01_inverse_problems.ipynb"
    nbformat.write(nb, path)
    assert [f.split(":")[0] + ":" + f.split(":")[1].split(" in ")[0] for f in measured_decimals(path)] == ["cell 0: 1.3", "cell 1: 0.98"]


TIMING = re.compile(r"(seconds|_ms$|^ms$|millisecond|time|elapsed|perf_counter|wall|clock|duration)", re.IGNORECASE)


def _names(node) -> set[str]:
    """Identifiers, attribute names and string subscripts inside ``node``."""
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            names.add(child.id)
        elif isinstance(child, ast.Attribute):
            names.add(child.attr)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str) and len(child.value) < 30:
            names.add(child.value)
    return names


def timing_asserts(path: Path) -> list[str]:
    """``cell <index>: <assert>`` for every assert of a code cell that reads a timing quantity."""
    found = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.split("\n"))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Assert) and any(TIMING.search(name) for name in _names(node.test)):
                found.append(f"cell {index}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_no_notebook_asserts_on_wall_clock_time(path):
    found = timing_asserts(path)
    assert not found, f"{path.name} asserts on time (compare block evaluations or memory):\n" + "\n".join(found)


def test_the_timing_scan_finds_a_time_comparison(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("per_iteration = [1, 2]\nassert records[1].seconds < records[0].seconds"),
        nbformat.v4.new_code_cell("assert run['grad_ms'] > 0\nassert memory[1] < memory[0]"),
    ])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert [f.split(":")[0] for f in timing_asserts(path)] == ["cell 0", "cell 1"]
