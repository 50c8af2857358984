"""Tiled runs on Dask (asmspotter.scale): same analysis as one process, resumable, robust.

A seeded synthetic region (240 x 240 px, two periods, a sediment patch across the middle)
is cut into 2 x 2 tiles of 120 px; a tiny detector with a little spatial context (3 x 3)
and detector tiles of 32 px (overlap 8) makes tile borders matter. Every tiled run is
compared with the single-process run of the same region: the same analysis (areas within
0.1 %, polygon counts equal), the same mask and composite pixels.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from asmspotter import layout, paths
from asmspotter.chain import ChainReporter, ChainResult, run_region
from asmspotter.scale import ClusterSpec, TileRecord
from asmspotter.scale.synthetic import SyntheticRegion, bright_model_card, make_region
from asmspotter.testing.dask_cluster import ProcessCluster, process_cluster, stop, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_only")]

SIZE, TILE = 240, 120
PYTHON = sys.executable


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticRegion, Path]:
    """The synthetic region and the tiny detector's card."""
    base = tmp_path_factory.mktemp("synthetic")
    return make_region(base / "data", SIZE, SIZE, seed=3), bright_model_card(base / "model")


def _folders(base: Path) -> dict[str, str]:
    return {paths.CACHE_ENV: str(base / "cache"), paths.OUTPUT_ENV: str(base / "reports")}


def _run(synthetic: Any, base: Path, **kw: Any) -> ChainResult:
    """run_region on the synthetic region with cache and outputs below ``base``."""
    syn, card = synthetic
    with pytest.MonkeyPatch.context() as mp:
        for k, v in _folders(base).items():
            mp.setenv(k, v)
        return run_region(syn.region, model=card, progress=False, **kw)


@pytest.fixture(scope="module")
def single(synthetic: Any, tmp_path_factory: pytest.TempPathFactory) -> ChainResult:
    """The single-process run everything is compared with."""
    return _run(synthetic, tmp_path_factory.mktemp("single"))


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def assert_same_result(tiled: ChainResult, single: ChainResult) -> None:
    """The tiled run's analysis, polygons, masks and composites are the single run's."""
    assert tiled.tiled is not None and single.tiled is None
    figures = zip(
        tiled.analysis.accounting.figures, single.analysis.accounting.figures, strict=True
    )
    for a, b in figures:
        assert a.period == b.period and a.features == b.features
        for name in ("cumulative_ha", "new_ha", "active_ha"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-3), name
    for a, b in zip(tiled.detections, single.detections, strict=True):
        assert a.n_polygons == b.n_polygons
        assert a.polygon_area_ha == pytest.approx(b.polygon_area_ha, rel=1e-3)
        assert a.mining_area_ha == pytest.approx(b.mining_area_ha, rel=1e-9)
        assert np.array_equal(_read(a.files["mining_mask.tif"]), _read(b.files["mining_mask.tif"]))
        prob_a, prob_b = (
            _read(a.files["mining_probability.tif"]),
            _read(b.files["mining_probability.tif"]),
        )
        assert np.allclose(prob_a, prob_b, atol=1e-5, equal_nan=True)
    for a, b in zip(tiled.composites, single.composites, strict=True):
        assert np.array_equal(_read(a.path), _read(b.path))
        assert a.provenance["request"] == b.provenance["request"]


def _tile_records(base: Path, syn: SyntheticRegion) -> dict[Path, int]:
    """Every tile record on disk below ``base`` -> its modification time (ns)."""
    grid = f"{TILE}px"
    found: dict[Path, int] = {}
    for period in ("2019", "2021"):
        cache = layout.composite_tile_files(syn.region.id, period, grid, "*", base / "cache")
        det = layout.detection_tile_files(syn.region.id, period, grid, "*", base / "reports")
        for pattern in (cache.provenance, det.provenance, det.polygons_record):
            for p in pattern.parent.parent.glob(f"*/{pattern.name}"):
                found[p] = p.stat().st_mtime_ns
    return found


def test_local_cluster_matches_single_process(
    synthetic: Any, single: ChainResult, tmp_path: Path
) -> None:
    syn, _ = synthetic
    spec = ClusterSpec(workers=2, threads_per_worker=2)
    result = _run(synthetic, tmp_path, cluster=spec, tile_size=TILE)
    tiled = result.tiled
    assert tiled is not None and tiled.workers == 2 and tiled.threads == 4
    # workers detect on their GPU when they have one (the default device), else on the CPU
    from asmspotter.detect.loader import pick_device

    assert {r.stats["device"] for r in tiled.records if r.stage == "detect"} == {pick_device()}
    assert all(len(g) == 4 for g in tiled.grids)
    assert tiled.count("detect") == 8 and tiled.count("detect", reused=True) == 0
    assert_same_result(result, single)
    # the patch across the middle crosses tile borders, and is one merged polygon
    import geopandas as gpd
    import shapely

    grid = tiled.grids[0]
    frame = gpd.read_file(result.detections[0].files["mining.gpkg"]).to_crs(grid.raster.crs)
    cores = [shapely.box(*grid.raster.box_bounds(t.core)) for t in grid]
    crossing = [g for g in frame.geometry if sum(g.intersection(c).area > 0 for c in cores) == 4]
    assert len(crossing) == 1
    p = syn.crossing  # (the 3 x 3 mean takes about a pixel off the patch's edges)
    assert crossing[0].area == pytest.approx((p.row1 - p.row0) * (p.col1 - p.col0) * 100, rel=0.1)
    alone = gpd.read_file(single.detections[0].files["mining.gpkg"]).to_crs(grid.raster.crs)
    assert any(g.symmetric_difference(crossing[0]).area < 1e-6 for g in alone.geometry)
    # the whole-region rasters are VRTs over the tiles, translated to the contract's COGs
    mosaic = layout.mosaic_files(
        syn.region.id, "2019", grid.name, tmp_path / "cache", tmp_path / "reports"
    )
    assert np.array_equal(_read(mosaic.mask), _read(result.detections[0].files["mining_mask.tif"]))
    assert np.array_equal(_read(mosaic.composite), _read(result.composites[0].path))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """`dask scheduler` and two `dask worker` processes on loopback, stopped at the end."""
    with process_cluster(tmp_path_factory.mktemp("dask-logs"), workers=2) as started:
        yield started


def test_scheduler_and_worker_processes_match_single_process(
    synthetic: Any, single: ChainResult, cluster: ProcessCluster, tmp_path: Path
) -> None:
    result = _run(synthetic, tmp_path, cluster=ClusterSpec(cluster.address), tile_size=TILE)
    assert result.tiled is not None and result.tiled.workers == result.tiled.threads == 2
    assert_same_result(result, single)


def test_workers_let_gdal_use_their_own_threads(cluster: ProcessCluster) -> None:
    """A one-thread worker compresses with one GDAL thread, not with every core."""
    from distributed import Client

    from asmspotter.geoio import gdal_threads
    from asmspotter.scale.records import worker_task

    task = worker_task(gdal_threads)
    assert task() == gdal_threads() == "ALL_CPUS"  # outside a worker: unchanged
    with Client(cluster.address) as client:
        assert client.submit(task, pure=False).result(timeout=60) == "1"


def test_killed_run_resumes_without_remaking_finished_tiles(
    synthetic: Any, single: ChainResult, cluster: ProcessCluster, tmp_path: Path
) -> None:
    syn, card = synthetic
    command = [
        PYTHON, "-m", "asmspotter.cli", "run", syn.region.id, "--catalogue", str(syn.catalogue),
        "--model", str(card), "--scheduler", cluster.address, "--tile-size", str(TILE),
        "--no-progress",
    ]  # fmt: skip
    env = {**worker_env(), **_folders(tmp_path)}
    run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    total = 2 * 4 * 3  # periods x tiles x tile tasks
    deadline = time.monotonic() + 300
    try:
        while len(_tile_records(tmp_path, syn)) < 4 and time.monotonic() < deadline:
            assert run.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        stop(run)
    finished = _tile_records(tmp_path, syn)
    assert 4 <= len(finished) < total, "kill the run half-way"
    time.sleep(2)  # tasks the workers were running when the client died may still finish
    before = _tile_records(tmp_path, syn)
    result = _run(synthetic, tmp_path, cluster=ClusterSpec(cluster.address), tile_size=TILE)
    tiled = result.tiled
    assert tiled is not None
    reused = sum(tiled.count(s, reused=True) for s in ("composite", "detect", "polygons"))
    made = sum(tiled.count(s) for s in ("composite", "detect", "polygons"))
    assert made + reused == total
    assert reused >= len(before) >= len(finished)
    # finished tiles were not made again: their records are untouched
    after = _tile_records(tmp_path, syn)
    assert all(after[p] == t for p, t in before.items())
    assert_same_result(result, single)
    # a third run makes nothing
    again = _run(synthetic, tmp_path, cluster=ClusterSpec(cluster.address), tile_size=TILE)
    assert again.tiled is not None
    assert sum(again.tiled.count(s) for s in ("composite", "detect", "polygons")) == 0
    assert_same_result(again, single)


class _KillOneWorker(ChainReporter):
    """Kills a worker's process group when the first detection tile finishes."""

    def __init__(self, victim: subprocess.Popen[bytes]) -> None:
        self.victim = victim
        self.done_at_kill: int | None = None
        self.done = 0

    def tile(self, record: TileRecord) -> None:
        self.done += 1
        if record.stage == "detect" and self.done_at_kill is None:
            os.killpg(self.victim.pid, signal.SIGKILL)
            self.done_at_kill = self.done


def test_lost_worker_does_not_change_the_result(
    synthetic: Any, single: ChainResult, cluster: ProcessCluster, tmp_path: Path
) -> None:
    killer = _KillOneWorker(cluster.workers[1])
    result = _run(
        synthetic, tmp_path, cluster=ClusterSpec(cluster.address), tile_size=TILE, reporter=killer
    )
    assert killer.done_at_kill is not None and killer.done_at_kill < 2 * 4 * 3
    assert cluster.workers[1].wait(timeout=30) != 0
    assert_same_result(result, single)
