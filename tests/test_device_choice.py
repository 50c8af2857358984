"""A device this machine lacks is named on one line (exit 2) before any work, never the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asmspotter.detect.loader import load_detector, pick_device
from asmspotter.errors import InputError

#: The source checkout, for subprocesses to import this asmspotter.
ROOT = str(Path(__file__).resolve().parents[1])
#: A CUDA device no machine has (or plain ``cuda`` where torch sees none).
MISSING = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def test_devices_are_checked_before_the_weights_are_read() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match=rf"^--device {MISSING}: .*CUDA device"):
        load_detector(None, MISSING)
    with pytest.raises(InputError, match=r"^--device gpu: not a torch device"):
        pick_device("gpu")
    assert load_detector(None, "cpu").device == "cpu"


@pytest.mark.parametrize("command", ["detect", "run"])
def test_the_cli_names_the_device_not_the_model(
    command: str, workdirs: dict[str, Path], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "ASMSPOTTER_CACHE": str(workdirs["cache"]),
        "ASMSPOTTER_OUTPUT": str(workdirs["output"]),
        "ASMSPOTTER_SHARED_DATA": str(tmp_path / "absent"),  # run would go online first
    }
    proc = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", command, "la-pampa", "--device", MISSING],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"asmspotter: error: --device {MISSING}: ")
    assert "CUDA device" in lines[0] and "model" not in lines[0] and ".pt" not in lines[0]
    assert not workdirs["cache"].exists()  # nothing was fetched
