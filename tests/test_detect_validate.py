"""Tests of asmspotter.detect.validate on the real La Pampa 2019 scene (shared data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmspotter.detect.card import load_card, weights_path
from asmspotter.detect.model import load_weights
from asmspotter.detect.validate import footprint_polygons, la_pampa_available, validate_la_pampa


def test_la_pampa_validation_reproduces_card(shared_data: Path, tmp_path: Path) -> None:
    if not la_pampa_available():
        pytest.skip("La Pampa scene or AMW footprints not in the shared data")
    card, path = load_card()
    model = load_weights(weights_path(card, path))
    fig = tmp_path / "fig.png"
    res = validate_la_pampa(model, card, figure=fig)
    assert fig.stat().st_size > 10_000
    assert res.n_footprint_polygons >= 5
    assert 0 < res.detected_ha < res.footprint_ha
    recorded = card.metrics["la_pampa_2019"]
    assert res.precision == pytest.approx(recorded["precision_area_within_footprint"], abs=1e-3)
    assert res.polygon_recall == pytest.approx(recorded["footprint_polygon_recall"], abs=1e-3)


def test_footprint_polygons_in_tile(shared_data: Path) -> None:
    if not la_pampa_available():
        pytest.skip("AMW footprints not in the shared data")
    fp = footprint_polygons("EPSG:32719", (399690.0, 8559240.0, 406230.0, 8565910.0))
    assert len(fp) >= 5
    assert (fp.area >= 1e4).all()
    # AMW counts 1,806 ha up to 2018 and +325 ha in 2019 in this tile.
    assert fp.area.sum() / 1e4 == pytest.approx(1806 + 325, rel=0.05)


def test_validation_figure_is_built_without_choosing_a_backend() -> None:
    import geopandas as gpd
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure
    from shapely.geometry import box

    from asmspotter.detect.validate import LaPampaResult, validation_figure

    backend = dict.__getitem__(matplotlib.rcParams, "backend")
    bounds = (399690.0, 8559240.0, 400690.0, 8560240.0)
    rgb = np.random.default_rng(0).integers(0, 255, (3, 100, 100), dtype=np.uint8)
    prob = np.linspace(0, 1, 100 * 100, dtype=np.float32).reshape(100, 100)
    crs = "EPSG:32719"
    detected = gpd.GeoDataFrame(geometry=[box(399800, 8559300, 400000, 8559500)], crs=crs)
    footprint = gpd.GeoDataFrame(geometry=[box(399790, 8559290, 400100, 8559600)], crs=crs)
    result = LaPampaResult(1.0, 1.0, 4.0, 4.0, 9.6, 1, 1, 0.5, 0.5, None)
    fig = validation_figure(
        rgb, prob, detected, footprint, footprint.geometry[0].buffer(100), bounds, result
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 4  # three panels and a colour bar
    assert "polygons hit: 100.0% (1/1)" in fig.axes[2].get_title()
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
