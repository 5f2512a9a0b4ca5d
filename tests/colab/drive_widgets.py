# The course's widgets, driven headlessly in a kernel of the Colab-like environment
# (tests/test_colab.py runs this file as a notebook, one cell per "# %%"): each is built,
# displayed, its controls set from the kernel side, and its readouts checked. The test then reads
# the widget state nbclient recorded from the comm messages: what Colab's front end would have got.
# %%
import json

import ipywidgets
from IPython.display import display

from oder_edu.widgets import ReconstructionExplorer, TrainingExplorer
from oder_edu.widgets.compat import supported

report = {"ipywidgets": ipywidgets.__version__, "supported": supported()}

# %%
# The reconstruction explorer on a tiny MRI problem: σ and b/B set, four iterations run.
explorer = ReconstructionExplorer("mri", image_size=32, denoiser="gaussian", num_blocks={"mri": 4, "idt": 8},
                                  iterations=6, device="cpu")
explorer  # shown as the notebooks show it: the cell's value, through IPython's display hook

# %%
explorer.sigma.value = 0.04
explorer.batch_ratio.value = 0.5
history = explorer.run_sync(4)
report["reconstruction"] = {
    "iterations": [r.iteration for r in history],
    "settings": [[r.settings.sigma, r.settings.batch_ratio, r.batch_size] for r in history],
    "readout": explorer.readout.value,
    "status": explorer.status.value,
    "bound": explorer.bound.value,
    "png": explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n",
    "ratio_tooltip": getattr(explorer.batch_ratio, "tooltip", None) or explorer.batch_ratio.description_tooltip,
}
explorer.problem.value = "idt"  # switching problem rebuilds the ratio options for B = 8 LEDs
report["reconstruction"]["idt_ratios"] = [label for label, _ in explorer.batch_ratio.options]
report["reconstruction"]["idt_readout"] = explorer.readout.value

# %%
# The training explorer on the shipped benchmark: moving the b/B slider changes the table.
training = TrainingExplorer()
display(training)
tables = {}
for label, ratio in training.ratio.options:
    training.ratio.value = ratio
    tables[label] = training.table.value
report["training"] = {"ratios": list(tables), "tables": tables, "png": training.image.value[:4] == b"\x89PNG"}

# %%
# A notebook-style slider wired with observe (notebook 00's first widget): the readout follows.
slider = ipywidgets.FloatSlider(value=0.05, min=0.01, max=0.3, step=0.01, description="σ")
readout = ipywidgets.HTML()
slider.observe(lambda change: setattr(readout, "value", f"σ = {change['new']:.2f}"), names="value")
display(ipywidgets.VBox([slider, readout]))
slider.value = 0.2
report["slider"] = readout.value
print(json.dumps(report))
