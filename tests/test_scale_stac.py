"""Tiled runs of a STAC region: each tile's median of the scenes touching it, on the region's
grid, assembles into the single-process composite pixel for pixel (loopback STAC server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from asmspotter import paths
from asmspotter.chain import run_region
from asmspotter.scale import ClusterSpec
from asmspotter.scale.synthetic import bright_model_card

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_only")]
SCENE_SEED = 5


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_tiled_stac_composites_equal_the_single_process_composite(
    scenes: Any, server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = scenes.region(server.url)
    card = bright_model_card(tmp_path / "model", tile_size=16, overlap=4)
    runs = {}
    for name, kw in {
        "single": {},
        "tiled": {"cluster": ClusterSpec(workers=1), "tile_size": 24},
    }.items():
        monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / name / "cache"))
        monkeypatch.setenv(paths.OUTPUT_ENV, str(tmp_path / name / "reports"))
        runs[name] = run_region(region, model=card, progress=False, **kw)
    tiled, single = runs["tiled"], runs["single"]
    assert tiled.tiled is not None and len(tiled.tiled.grids[0]) >= 4
    (a,), (b,) = tiled.composites, single.composites
    assert np.array_equal(_read(a.path), _read(b.path), equal_nan=True)
    assert a.bands == b.bands and a.provenance["request"] == b.provenance["request"]
    assert a.clear_fraction == pytest.approx(b.clear_fraction, abs=1e-5)
    assert sorted(a.provenance["items"]) == sorted(b.provenance["items"])
    (da,), (db,) = tiled.detections, single.detections
    assert np.array_equal(_read(da.files["mining_mask.tif"]), _read(db.files["mining_mask.tif"]))
