"""asmspotter.locking: one writer per region, a second run waits or names the first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asmspotter import layout
from asmspotter.errors import RegionBusyError
from asmspotter.locking import LockHolder, region_lock

#: The source checkout, for subprocesses to import this asmspotter.
ROOT = str(Path(__file__).resolve().parents[1])

HOLD = """
import sys, time
from asmspotter.locking import region_lock
with region_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture()
def holder(workdirs: dict[str, Path]) -> Iterator[subprocess.Popen[str]]:
    """Another process holding region 'busy' for 30 s (stopped at the end)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, "busy", "30"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_writer_gives_up_naming_the_holder(holder: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    with pytest.raises(RegionBusyError) as err:
        with region_lock("busy", timeout=0.5):
            pass
    assert 0.4 < time.monotonic() - started < 5
    message = str(err.value)
    assert f"region 'busy' is being written by process {holder.pid}" in message
    assert "ASMSPOTTER_LOCK_TIMEOUT" in message and "\n" not in message


def test_a_second_writer_waits_and_goes_on_when_the_holder_is_killed(
    holder: subprocess.Popen[str],
) -> None:
    seen: list[LockHolder] = []
    threading.Timer(1.0, holder.send_signal, (signal.SIGKILL,)).start()
    started = time.monotonic()
    with region_lock("busy", on_wait=seen.append):
        waited = time.monotonic() - started
        record = json.loads(layout.lock_file("busy").read_text())
    assert 0.8 < waited < 10
    assert [h.pid for h in seen] == [holder.pid]
    assert record["pid"] == os.getpid()  # the lock file says who holds it now


def test_the_cli_says_which_process_holds_the_region(
    holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    catalogue = tmp_path / "regions.yaml"
    catalogue.write_text(
        "regions:\n  busy:\n    name: Busy\n    country: Nowhere\n"
        "    outline: {bbox: [-70.0, -13.1, -69.9, -13.0]}\n    periods: [2019]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", "analyse", "busy", "--catalogue", str(catalogue)],
        capture_output=True,
        text=True,
        env={**os.environ, "ASMSPOTTER_LOCK_TIMEOUT": "0.5", "PYTHONPATH": ROOT},
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr  # the warning that it waits, then the error
    assert lines[0].startswith(
        f"asmspotter: warning: region 'busy' is being written by process {holder.pid} ("
    )
    assert "waiting for it to finish" in lines[0]
    assert lines[1].startswith("asmspotter: error: region 'busy' is being written by process")


def test_reentrant_in_a_thread_exclusive_between_threads(workdirs: dict[str, Path]) -> None:
    order: list[str] = []
    with region_lock("solo"):
        with region_lock("solo"):  # the chain holds it while each stage takes it again
            order.append("nested")

        def other() -> None:
            with region_lock("solo"):
                order.append("other thread")

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.5)
        order.append("first released")
    thread.join(10)
    assert order == ["nested", "first released", "other thread"]


def test_taking_the_lock_removes_leftovers_of_killed_runs(workdirs: dict[str, Path]) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    composite = layout.composite_files("left", "2019")
    composite.folder.mkdir(parents=True)
    half = composite.folder / f".composite.partial-{dead}-x1.tif"
    half.write_bytes(b"half")
    publishing = layout.analysis_files("left").folder.parent / f".analysis.publish-{dead}-y2"
    publishing.mkdir(parents=True)
    (publishing / "periods.csv").write_text("half")
    with region_lock("left"):
        assert not half.exists() and not publishing.exists()


CONCURRENT = textwrap.dedent(
    """
    import sys
    from affine import Affine
    import numpy as np
    from asmspotter.testing.detections import write_detection
    grid = Affine(10, 0, 400000, 0, -10, 8601000)
    mask = np.zeros((100, 100), dtype="uint8")
    mask[10:60, 10:60] = 1
    for pid in ("2019", "2021"):
        write_detection("twice", pid, mask, crs="EPSG:32719", transform=grid)
    """
)


def _grid_bbox() -> tuple[float, ...]:
    """The lon/lat bounds of the detections' 1 km grid (with a margin)."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs("EPSG:32719", "EPSG:4326", always_xy=True)
    return to_lonlat.transform_bounds(399_000, 8_599_000, 402_000, 8_602_000)


def test_two_runs_on_one_region_at_once_both_finish_complete(
    workdirs: dict[str, Path], tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-c", CONCURRENT], check=True, env=env)
    catalogue = tmp_path / "regions.yaml"
    catalogue.write_text(
        "regions:\n  twice:\n    name: Twice\n    country: Nowhere\n"
        f"    outline: {{bbox: [{', '.join(f'{v:.6f}' for v in _grid_bbox())}]}}\n"
        "    crs: EPSG:32719\n"
        "    periods: [2019, 2021]\n"
    )
    argv = [
        sys.executable,
        "-m",
        "asmspotter.cli",
        "analyse",
        "twice",
        "--catalogue",
        str(catalogue),
    ]
    runs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert "Traceback" not in err
    files = layout.analysis_files("twice")
    record = json.loads(files.json.read_text())
    assert [p["period"] for p in record["periods"]] == ["2019", "2021"]
    assert record["periods"][0]["cumulative_ha"] == pytest.approx(25.0, rel=2e-3)
    names = sorted(p.name for p in files.folder.parent.rglob("*") if p.name.startswith("."))
    assert names == [layout.LOCK_NAME]  # no temporary file or folder of any run is left
