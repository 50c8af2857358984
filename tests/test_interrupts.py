"""Runs stopped half-way (SIGTERM, Ctrl-C, kill -9) leave either the old outputs or the new.

Each test starts the CLI in a subprocess, waits until a temporary file or folder of the
run appears (the point where a stop used to leave half a set behind), stops it there and
checks what is left: no half-written file, no mix of two runs, and no leftover once the
next run of the region has started.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from pyproj import Transformer

from asmspotter import layout
from asmspotter.testing.detections import write_detection
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import make_scenes

#: The source checkout, for subprocesses to import this asmspotter.
ROOT = str(Path(__file__).resolve().parents[1])
UTM = "EPSG:32719"
GRID = Affine(10, 0, 400_000, 0, -10, 8_601_000)
TEMPORARY = re.compile(r"^\..+\.(partial|publish|old|work)-")


def _temporaries(*folders: Path) -> list[str]:
    return sorted(
        p.name for f in folders if f.exists() for p in f.rglob("*") if TEMPORARY.match(p.name)
    )


def _env(workdirs: dict[str, Path], **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": ROOT,
        "ASMSPOTTER_CACHE": str(workdirs["cache"]),
        "ASMSPOTTER_OUTPUT": str(workdirs["output"]),
        **more,
    }


def _stop_when(
    argv: list[str], env: dict[str, str], ready: Callable[[], bool], sig: int, limit: float = 120
) -> tuple[int, str, bool]:
    """Run the CLI; send ``sig`` as soon as ``ready()``. Returns (status, stderr, stopped)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "asmspotter.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stopped = False
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(sig)
            stopped = True
            break
        time.sleep(0.002)
    _, err = proc.communicate(timeout=limit)
    return proc.returncode, err, stopped


# --------------------------------------------------------------------------------------
# analyse: the analysis folder is published as a unit
# --------------------------------------------------------------------------------------


@pytest.fixture()
def detections(workdirs: dict[str, Path], tmp_path: Path) -> Path:
    """Seeded detections of region 'r' (2019, 2020, 2021); returns its catalogue."""
    rng = np.random.default_rng(16)
    for period in ("2019", "2020", "2021"):
        mask = (rng.random((300, 300)) > 0.93).astype("uint8")
        mask[50:150, 40:200] = 1
        write_detection("r", period, mask, crs=UTM, transform=GRID, base=workdirs["output"])
    bbox = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform_bounds(
        399_000, 8_597_000, 404_000, 8_602_000
    )
    catalogue = tmp_path / "regions.yaml"
    region = {
        "name": "R",
        "country": "Peru",
        "outline": {"bbox": [round(v, 6) for v in bbox]},
        "crs": UTM,
        "periods": [2019, 2020, 2021],
    }
    catalogue.write_text(yaml.safe_dump({"regions": {"r": region}}))
    return catalogue


def _analysis(workdirs: dict[str, Path]) -> dict[str, bytes]:
    folder = layout.analysis_files("r", base=workdirs["output"]).folder
    if not folder.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _figures(files: dict[str, bytes]) -> dict[str, bytes]:
    """The analysis's tables (the JSON and GeoPackage carry times of day)."""
    return {k: v for k, v in files.items() if k.endswith(".csv")}


@pytest.mark.parametrize(
    ("sig", "status", "line"),
    [
        (signal.SIGKILL, -signal.SIGKILL, None),
        (signal.SIGTERM, 143, "asmspotter: terminated"),  # Ctrl-C (130) takes the same path
    ],
)
def test_a_stopped_analysis_leaves_the_previous_one_whole(
    sig: int,
    status: int,
    line: str | None,
    detections: Path,
    workdirs: dict[str, Path],
) -> None:
    env = _env(workdirs)
    region = layout.analysis_files("r", base=workdirs["output"]).folder.parent
    first = ["analyse", "r", "--catalogue", str(detections), "--no-overlays"]
    assert (
        subprocess.run(
            [sys.executable, "-m", "asmspotter.cli", *first],
            env=env,
            check=False,
            capture_output=True,
        ).returncode
        == 0
    )
    before = _analysis(workdirs)
    assert "periods.csv" in before and "analysis.json" in before

    def half_written() -> bool:  # the new tables are being written beside the old ones
        return any(
            p.name.startswith(".analysis.publish-") and any(p.iterdir()) for p in region.iterdir()
        )

    second = [*first[:-1], "--periods", "2019", "2021"]  # other figures than the first's
    for _ in range(5):
        rc, err, stopped = _stop_when(second, env, half_written, sig)
        if stopped:
            break
        subprocess.run(
            [sys.executable, "-m", "asmspotter.cli", *first],
            env=env,
            check=True,
            capture_output=True,
        )
        before = _analysis(workdirs)
    assert stopped, "the run finished before it could be stopped"
    assert rc == status, err
    if line is not None:
        assert err.strip().splitlines() == [line]
        assert _temporaries(region) == []  # removed on the way out
    else:
        assert _temporaries(region) != []  # kill -9: the half-published folder stays...
    assert _analysis(workdirs) == before  # the previous analysis, whole
    # the next run of the region removes what a kill -9 left, and matches a clean run
    rerun = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", *second],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _temporaries(region) == []
    after = _analysis(workdirs)
    clean = {**workdirs, "output": workdirs["output"].parent / "clean"}
    for period in ("2019", "2020", "2021"):
        shutil.copytree(
            layout.detection_files("r", period, base=workdirs["output"]).folder,
            layout.detection_files("r", period, base=clean["output"]).folder,
        )
    subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", *second],
        env=_env(clean),
        check=True,
        capture_output=True,
    )
    assert _figures(after) == _figures(_analysis(clean))  # as a run never stopped
    assert _figures(after) != _figures(before)


# --------------------------------------------------------------------------------------
# fetch: a refresh stopped half-way keeps the cached composite
# --------------------------------------------------------------------------------------


def test_sigterm_during_a_refresh_keeps_the_cached_composite(
    workdirs: dict[str, Path], tmp_path: Path
) -> None:
    scenes = make_scenes(tmp_path / "scenes", seed=11)
    with StacServer(scenes.items, scenes.files) as server:
        catalogue = scenes.write_catalogue(tmp_path / "regions.yaml", server.url)
        env = _env(workdirs, NO_PROXY="127.0.0.1", ASMSPOTTER_HTTP_TIMEOUT="5")
        argv = ["fetch", "loop", "--catalogue", str(catalogue)]
        done = subprocess.run(
            [sys.executable, "-m", "asmspotter.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        files = layout.composite_files("loop", "winter", base=workdirs["cache"])
        cached = files.tif.read_bytes(), files.provenance.read_bytes()
        server.hang_next(1000, seconds=0.2, path_prefix="/data/")  # a slow download

        def building() -> bool:  # the new composite's work file is being written
            return any(p.name.startswith(".composite.work-") for p in workdirs["cache"].rglob("*"))

        rc, err, stopped = _stop_when([*argv, "--refresh"], env, building, signal.SIGTERM)
    assert stopped and rc == 143, err
    assert err.strip().splitlines() == ["asmspotter: terminated"]
    assert (files.tif.read_bytes(), files.provenance.read_bytes()) == cached
    assert _temporaries(workdirs["cache"]) == []
