"""Live explorers built from core ipywidgets only (sliders, buttons, ``HTML``, ``Image`` with
PNG bytes from Matplotlib's Agg backend), so they work in JupyterLab, Notebook 7, VS Code and
Colab without ipympl.

- ``ReconstructionExplorer``: PnP / RED / online RED on CT, MRI and IDT with γ, σ, τ and b/B
  live, over the headless ``ReconstructionRun``;
- ``TrainingExplorer``: DEQ versus ODER training memory, time and test PSNR versus b/B.
"""

from .explorer import ReconstructionExplorer
from .runner import ReconstructionRun, Record, Settings
from .training import TrainingExplorer

__all__ = ["ReconstructionExplorer", "ReconstructionRun", "Record", "Settings", "TrainingExplorer"]
