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
