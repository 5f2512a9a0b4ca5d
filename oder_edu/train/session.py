"""A training run that survives being stopped: one folder, resumable across processes and sessions.

``log_dir`` holds ``state.pt`` -- everything the loop needs to continue (model, optimizer, the data
generator's state, the step, the best validated weights, the segments so far) -- written atomically
every ``save_every`` seconds of wall time and at the end, and ``log.csv``, one row per step as it happens.
On ``resume`` the state is loaded and the log is cut back to the saved step, so a run killed between two
saves repeats the lost steps exactly once in its log and continues as if it had never stopped (the data
generator's state is part of the state). Each process that trains is a *segment*: its command line, the
steps it took and its seconds; a run's training time is the sum over its segments.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import torch

from .. import files
from ..checkpoints import CheckpointError

STATE = "state.pt"
LOG = "log.csv"


def schedule(step: int, lr: float, warmup: int, steps: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``steps``: linear warm-up over ``warmup`` steps, then
    a cosine decay to 1 % of ``lr`` (a function of the step alone, so a resumed run continues it)."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    progress = min((step - warmup) / max(1, steps - warmup), 1.0)
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


class Session:
    """The folder of one training run (module docstring): ``state`` (None for a fresh run), ``log(row)``,
    ``checkpoint(make_state)`` and the ``segments``. ``columns`` are the log's CSV columns."""

    def __init__(self, log_dir, columns: tuple[str, ...], command: str, resume: bool = False,
                 save_every: float = 300.0):
        self.dir, self.columns, self.save_every = Path(log_dir), tuple(columns), float(save_every)
        state_path, log_path = self.dir / STATE, self.dir / LOG
        if resume:
            if not state_path.is_file():
                raise CheckpointError(f"--resume: no {STATE} in {self.dir}; pass the --log-dir of the run to "
                                      f"continue (it writes {STATE} every few minutes)")
            try:
                self.state = torch.load(state_path, map_location="cpu", weights_only=True)
            except Exception as error:  # truncated, not a torch file, or holding code
                raise CheckpointError(f"--resume: cannot load {state_path} ({type(error).__name__}); it is not "
                                      f"a training state written by oder-edu") from None
            if not isinstance(self.state, dict) or not {"step", "segments"} <= set(self.state):
                raise CheckpointError(f"--resume: {state_path} is not a training state (no step and segments)")
        else:
            if state_path.exists() or log_path.exists():
                raise CheckpointError(f"{self.dir} holds an earlier run ({STATE} or {LOG}); continue it with "
                                      f"--resume, or choose another --log-dir")
            self.state = None
        self.dir.mkdir(parents=True, exist_ok=True)
        files.sweep(self.dir)  # what a process killed mid-save left behind
        self.step = 0 if self.state is None else int(self.state["step"])
        self.segments = [] if self.state is None else list(self.state["segments"])
        self.segments.append({"command": command, "first_step": self.step + 1, "last_step": self.step, "seconds": 0.0})
        self._cut_log(log_path)
        self._file = open(log_path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        if self._file.tell() == 0:
            self._writer.writeheader()
        self._started = self._saved = time.perf_counter()

    def _cut_log(self, path: Path) -> None:
        """Keep the rows of steps up to the saved step (those after it will be taken again)."""
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = [row for row in csv.DictReader(f) if int(row["step"]) <= self.step]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        files.write_text(path, text.getvalue())

    @property
    def seconds(self) -> float:
        """Training seconds over all segments, this one up to now."""
        self.segments[-1]["seconds"] = round(time.perf_counter() - self._started, 1)
        return sum(segment["seconds"] for segment in self.segments)

    def log(self, row: dict) -> None:
        """Append one step's row (floats to 6 significant digits) and remember the step."""
        self.step = int(row["step"])
        self.segments[-1]["last_step"] = self.step
        self._writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._file.flush()

    def checkpoint(self, make_state, force: bool = False) -> bool:
        """Save ``make_state()`` (plus the step and segments) if ``save_every`` seconds have passed since the
        last save, or if ``force``; returns whether it saved."""
        if not force and time.perf_counter() - self._saved < self.save_every:
            return False
        seconds = self.seconds
        files.save_torch({**make_state(), "step": self.step, "segments": self.segments, "seconds": seconds},
                         self.dir / STATE)
        self._saved = time.perf_counter()
        return True

    def rows(self) -> list[dict]:
        """The log so far, as dicts of strings."""
        if not self._file.closed:
            self._file.flush()
        with open(self.dir / LOG, newline="") as f:
            return list(csv.DictReader(f))

    def close(self) -> None:
        self._file.close()
