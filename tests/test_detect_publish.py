"""A period's detection is published as a unit: kills leave the old set whole, re-runs clean up.

The CLI runs in subprocesses on a seeded composite of la-pampa; a run is killed (kill -9 and
SIGTERM) as soon as the new set's first file appears beside the old set, and the next run
of the region must remove what the kill left and give the files of a run never stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from asmspotter import layout
from asmspotter.detect.synthetic import make_scene, write_composite
from asmspotter.geoio import write_json

#: The source checkout, for subprocesses to import this asmspotter.
ROOT = str(Path(__file__).resolve().parents[1])
TEMPORARY = re.compile(r"^\.(.+\.(partial|publish|old|work)-|detect-partial-)")
DETECT = ["detect", "la-pampa", "-p", "2019", "--no-progress", "--tta", "none"]


def _env(cache: Path, output: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": ROOT,
        "ASMSPOTTER_CACHE": str(cache),
        "ASMSPOTTER_OUTPUT": str(output),
    }


def _cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TEMPORARY.match(p.name))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _same_result(a: Path, b: Path) -> None:
    """Two detection folders hold the same result (the record differs in times only)."""
    fa, fb = layout.DetectionFiles(a), layout.DetectionFiles(b)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in ("probability", "mask"):
        with rasterio.open(getattr(fa, name)) as ra, rasterio.open(getattr(fb, name)) as rb:
            np.testing.assert_array_equal(ra.read(), rb.read())
    assert fa.geojson.read_bytes() == fb.geojson.read_bytes()
    ja, jb = (json.loads(f.provenance.read_text()) for f in (fa, fb))
    for record in (ja, jb):
        del record["created"], record["seconds"]
    assert ja == jb


@pytest.fixture()
def cached(tmp_path: Path) -> Path:
    """A seeded composite of la-pampa 2019 in a cache folder; returns the cache folder."""
    cache = tmp_path / "cache"
    files = layout.composite_files("la-pampa", "2019", base=cache)
    scene = make_scene(360, 300, seed=16, n_patches=6)
    write_composite(files.tif, scene, radiometry="display")
    write_json(files.provenance, {"clear_fraction": 1.0})
    return cache


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)]
)
def test_a_stopped_detection_leaves_the_previous_set_and_the_rerun_cleans_up(
    cached: Path, tmp_path: Path, sig: int, status: int
) -> None:
    output = tmp_path / "reports"
    env = _env(cached, output)
    period = layout.detection_files("la-pampa", "2019", base=output).folder
    first = _cli([*DETECT, "--threshold", "0.3"], env)
    assert first.returncode == 0, first.stderr
    before = _files(period)
    assert set(before) == {p.name for p in layout.DetectionFiles(period).files}
    legacy = period / ".detect-partial-q1w2e3"  # staging of an older version, long dead
    (legacy / "x").mkdir(parents=True)
    os.utime(legacy, (1, 1))

    def half_published() -> bool:  # the new set's first file is complete beside the old set
        return any(
            p.name.startswith(".2019.publish-") and (p / "mining_probability.tif").exists()
            for p in period.parent.iterdir()
        )

    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "asmspotter.cli", *DETECT],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stopped = False
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if half_published():
                proc.send_signal(sig)
                stopped = True
                break
            time.sleep(0.002)
        _, err = proc.communicate(timeout=120)
        if stopped:
            break
        assert _cli([*DETECT, "--threshold", "0.3"], env).returncode == 0  # the old set again
        before = _files(period)
    assert stopped, "the detection finished before it could be stopped"
    assert proc.returncode == status, err
    assert _files(period) == before  # the previous set, whole: nothing of the new one
    left = _temporaries(output)
    if sig == signal.SIGKILL:
        assert any(n.startswith(".2019.publish-") for n in left), left  # the half set...
    else:
        assert err.strip().splitlines() == ["asmspotter: terminated"]
        assert not any(n.startswith(".2019.publish-") for n in left), left  # removed on exit

    rerun = _cli(DETECT, env)  # ...goes with the next run of the region
    assert rerun.returncode == 0, rerun.stderr
    assert _temporaries(output) == []
    clean = tmp_path / "clean"
    assert _cli(DETECT, _env(cached, clean)).returncode == 0
    _same_result(period, layout.detection_files("la-pampa", "2019", base=clean).folder)
    assert _files(period)[layout.DetectionFiles(period).mask.name] != before["mining_mask.tif"]


def test_rerun_geojson_is_byte_identical_and_named_after_its_layer(
    cached: Path, tmp_path: Path
) -> None:
    output = tmp_path / "reports"
    env = _env(cached, output)
    geojson = layout.detection_files("la-pampa", "2019", base=output).geojson
    runs = []
    for _ in range(2):
        done = _cli([*DETECT, "--threshold", "0.1", "--min-area-ha", "0"], env)
        assert done.returncode == 0, done.stderr
        runs.append(geojson.read_bytes())
    assert runs[0] == runs[1]
    content = json.loads(runs[0])
    assert content["name"] == "mining" and len(content["features"]) > 0


def test_a_tiled_runs_tiles_stay_and_other_files_are_never_replaced(tmp_path: Path) -> None:
    from asmspotter.detect.inference import detect_composite
    from asmspotter.detect.loader import load_detector
    from asmspotter.errors import OutputError

    comp = write_composite(tmp_path / "c.tif", make_scene(96, 80, seed=5), radiometry="display")
    det = load_detector(None, "cpu")
    out = tmp_path / "r" / "2019"
    tile = out / layout.TILES_FOLDER / "g512" / "t0_0" / "detection.json"
    tile.parent.mkdir(parents=True)
    tile.write_text("{}")
    res = detect_composite(comp, out, detector=det, views="none", progress=False)
    assert tile.read_text() == "{}"  # a tiled run's tiles stay below the period's folder
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [layout.TILES_FOLDER, *(p.name for p in layout.DetectionFiles(out).files)]
    )
    assert res.files["detection.json"].exists()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("precious")
    with pytest.raises(OutputError, match=r"not replacing .*notes: it holds files .*mine.txt"):
        detect_composite(comp, notes, detector=det, views="none", progress=False)
    assert [p.name for p in notes.iterdir()] == ["mine.txt"]
    assert _temporaries(tmp_path) == []
