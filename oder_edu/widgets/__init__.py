"""Live explorers built from core ipywidgets only (sliders, buttons, ``HTML``, ``Image`` with
PNG bytes from Matplotlib's Agg backend), so they work in JupyterLab, Notebook 7, VS Code and
Colab without ipympl.

- ``ReconstructionExplorer``: PnP / RED / online RED on CT, MRI and IDT with γ (following the default step of
  the current b/B until moved), σ, τ and b/B live, over the headless ``ReconstructionRun``; it reads block
  evaluations, the solver's own time and memory beside the full batch's, and a band over seeds;
- ``TrainingExplorer``: DEQ versus ODER training-step memory and time, and the benchmark's held-out PSNR,
  at every b/B measured (live runs: memory and time only).
"""

from .explorer import ReconstructionExplorer
from .runner import ReconstructionRun, Record, Settings
from .training import TrainingExplorer

__all__ = ["ReconstructionExplorer", "ReconstructionRun", "Record", "Settings", "TrainingExplorer"]
