"""Live explorers built from core ipywidgets only (sliders, buttons, ``HTML``, ``Image`` with
PNG bytes from Matplotlib's Agg backend), so they work in JupyterLab, Notebook 7, VS Code and
Colab without ipympl.

- ``ReconstructionExplorer``: PnP / RED / online RED on CT, MRI and IDT with γ, σ and b/B live;
- ``TrainingExplorer``: DEQ versus ODER training memory, time and test PSNR versus b/B.
"""

from .explorer import Record, ReconstructionExplorer
from .problems import Problem, make_problem
from .training import TrainingExplorer

__all__ = ["ReconstructionExplorer", "TrainingExplorer", "Record", "Problem", "make_problem"]
