"""Data-parallel training under torchrun: two CPU processes (gloo) train on different
images, and DistributedDataParallel keeps their parameters bit-for-bit identical."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun is missing")
def test_two_processes_keep_identical_replicas(tmp_path):
    torchrun = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    command = [
        torchrun, "--standalone", "--nproc_per_node=2", "-m", "oder_edu.cli", "train", "deq",
        "--app", "ct", "--method", "oder", "--ratio", "0.25", "--image-size", "24", "--num-blocks", "16",
        "--pretrained", "none", "--depth", "3", "--width", "4", "--batch-size", "1", "--steps", "3", "--snapshot-every", "0",
        "--max-iter", "6", "--backward-max-iter", "6", "--val-images", "1", "--threads", "1",
        "--no-progress", "--log-dir", str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "log.json").read_text())
    replicas = summary["replicas"]
    assert len(replicas) == 2 and summary["command"].startswith("torchrun")
    # Each process saw its own images (different losses), yet the averaged gradients kept
    # the two replicas identical after every step.
    assert replicas[0]["mean_loss"] != replicas[1]["mean_loss"]
    assert replicas[0]["digest"] == replicas[1]["digest"]
