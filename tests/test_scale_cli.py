"""`asmspotter run`'s Dask options: which cluster they ask for, one-line errors, and the
same analysis as a plain `run` against a scheduler and workers started as separate processes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from asmspotter import paths
from asmspotter.cli import main
from asmspotter.errors import InputError
from asmspotter.scale import SCHEDULER_ENV, ClusterSpec
from asmspotter.scale import cluster as cluster_module
from asmspotter.scale.compare import compare_runs
from asmspotter.scale.synthetic import bright_model_card, make_region
from asmspotter.testing.dask_cluster import ProcessCluster, process_cluster

pytestmark = pytest.mark.usefixtures("loopback_only")


def test_options_choose_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert ClusterSpec.from_options() is None  # no option: the single-process chain
    assert ClusterSpec.from_options(workers=3) == ClusterSpec(workers=3)
    assert ClusterSpec(workers=3).local_size() == (3, 1)
    assert ClusterSpec(threads_per_worker=2).local_size()[1] == 2
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:9")
    assert ClusterSpec.from_options() == ClusterSpec(scheduler="tcp://127.0.0.1:9")
    # asking for local workers wins over the variable
    assert ClusterSpec.from_options(workers=2) == ClusterSpec(workers=2)
    with pytest.raises(InputError, match="an existing cluster"):
        ClusterSpec("tcp://127.0.0.1:9", workers=2)
    with pytest.raises(InputError, match="at least 1"):
        ClusterSpec(workers=0)


def test_run_refuses_bad_dask_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert main(["run", "la-pampa", "--tile-size", "448"]) == 2
    assert "--tile-size is for tiled runs" in capsys.readouterr().err
    assert main(["run", "la-pampa", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_unreachable_scheduler_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2)
    monkeypatch.setenv(SCHEDULER_ENV, f"tcp://127.0.0.1:{port}")
    assert main(["run", "la-pampa", "--no-progress", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asmspotter: error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """`dask scheduler` and two `dask worker` processes on loopback, as started by hand."""
    with process_cluster(tmp_path_factory.mktemp("dask-logs"), workers=2) as started:
        yield started


def _cli_run(
    base: Path, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """`asmspotter run ARGS` with cache and outputs below ``base``; return what it printed."""
    monkeypatch.setenv(paths.CACHE_ENV, str(base / "cache"))
    monkeypatch.setenv(paths.OUTPUT_ENV, str(base / "out"))
    assert main(["run", *args, "--no-progress", "--no-report"]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_run_on_dask_processes_matches_plain_run(
    cluster: ProcessCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    syn = make_region(tmp_path / "data", 240, 240, seed=5)
    card = bright_model_card(tmp_path / "model")
    region = [syn.region.id, "--catalogue", str(syn.catalogue), "--model", str(card)]
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    plain = _cli_run(tmp_path / "plain", region, monkeypatch, capsys)
    assert "Dask" not in plain
    tiled = ["--tile-size", "120"]  # 2 x 2 tiles; the crossing patch spans all four
    out = _cli_run(
        tmp_path / "tiled", [*region, "--scheduler", cluster.address, *tiled], monkeypatch, capsys
    )
    assert f"Dask cluster of 2 workers; dashboard: {cluster.dashboard}" in out
    assert "tiles (2 workers, 2 threads" in out and "detect 8 made, 0 reused" in out
    # the same cluster named by ASMSPOTTER_SCHEDULER instead of --scheduler
    monkeypatch.setenv(SCHEDULER_ENV, cluster.address)
    env = _cli_run(tmp_path / "env", [*region, *tiled], monkeypatch, capsys)
    assert f"dashboard: {cluster.dashboard}" in env
    for folder in ("tiled", "env"):
        comparison = compare_runs(syn.region.id, tmp_path / "plain/out", tmp_path / folder / "out")
        assert comparison.same(), comparison.lines()
        assert [p.period for p in comparison.periods] == ["2019", "2021"]
        assert all(p.mask_pixels_differing == 0 for p in comparison.periods)
        assert all(p.features[0] > 0 for p in comparison.periods)
    _compare_sees_differences(syn.region.id, tmp_path / "plain/out", tmp_path / "env/out", capsys)


def _compare_sees_differences(
    region: str, plain: Path, tiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The comparison fails on a 0.2 % area change and counts a changed mask pixel."""
    import json
    import shutil

    import numpy as np
    import rasterio

    from asmspotter import layout
    from asmspotter.scale.compare import main as compare_main

    altered = tiled.parent.parent / "altered"
    shutil.copytree(tiled, altered)
    files = layout.analysis_files(region, altered)
    analysis = json.loads(files.json.read_text())
    analysis["periods"][1]["new_ha"] *= 1.002
    files.json.write_text(json.dumps(analysis))
    mask = layout.detection_files(region, "2019", altered).mask
    with rasterio.open(mask, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        block = dst.read(1)
        block[0, 0] = 1 - block[0, 0] if block[0, 0] in (0, 1) else 0
        dst.write(block, 1)
    comparison = compare_runs(region, plain, altered)
    assert not comparison.same()
    first, second = comparison.periods
    assert first.same() and first.mask_pixels_differing == 1
    assert not second.same() and second.max_area_rel_diff == pytest.approx(0.002, rel=0.01)
    assert np.isfinite(second.probability_max_diff)
    assert compare_main([region, str(plain), str(altered)]) == 1
    assert "DIFFERENT" in capsys.readouterr().out
    assert compare_main([region, str(plain), str(altered / "missing")]) == 2
    assert "did the run finish?" in capsys.readouterr().err


@pytest.mark.slow
def test_la_pampa_on_dask_processes_matches_plain_run(
    shared_data: Path,
    cluster: ProcessCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's must-show: `run la-pampa --scheduler ...` gives `run la-pampa`'s analysis."""
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    _cli_run(tmp_path / "plain", ["la-pampa"], monkeypatch, capsys)
    out = _cli_run(
        tmp_path / "dask", ["la-pampa", "--scheduler", cluster.address], monkeypatch, capsys
    )
    assert f"dashboard: {cluster.dashboard}" in out
    comparison = compare_runs("la-pampa", tmp_path / "plain/out", tmp_path / "dask/out")
    assert comparison.same(), comparison.lines()
    assert all(p.mask_pixels_differing == 0 for p in comparison.periods)
    assert all(p.features[0] > 10 for p in comparison.periods)
