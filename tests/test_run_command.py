"""The main job: the whole chain on the offline demo region, as `make demo` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio

from asmspotter import layout
from asmspotter.cli import main


def test_run_la_pampa_end_to_end(
    shared_data: Path, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "la-pampa", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "-- fetch" in out and "-- detect" in out and "-- analyse" in out and "-- report" in out

    for period in ("2019", "2021"):
        comp = layout.composite_files("la-pampa", period, base=workdirs["cache"]).tif
        det = layout.detection_files("la-pampa", period, base=workdirs["output"])
        with rasterio.open(comp) as c, rasterio.open(det.mask) as m:
            assert (c.crs, c.transform, c.shape) == (m.crs, m.transform, m.shape)
        polys = gpd.read_file(det.gpkg)
        assert len(polys) > 0 and polys.is_valid.all()
        assert gpd.read_file(det.geojson).crs.to_epsg() == 4326

    analysis = json.loads(
        layout.analysis_files("la-pampa", base=workdirs["output"]).json.read_text()
    )
    result = analysis.get("result", analysis)
    periods = result["periods"]
    assert [p["period"] for p in periods] == ["2019", "2021"]
    assert periods[1]["cumulative_ha"] >= periods[0]["cumulative_ha"] > 0
    # detections lie mostly inside Amazon Mining Watch's footprint of the tile
    overall = result["reference"]["overall"]
    ours = overall["ours_inside_reference_ha"] + overall["ours_outside_reference_ha"]
    assert overall["ours_inside_reference_ha"] / ours > 0.8

    # the run ends with the briefing, whose expansion sentence states the analysis's areas
    html = layout.report_files("la-pampa", base=workdirs["output"]).html.read_text()
    first, last = (f"{p['cumulative_ha']:,.0f} ha" for p in (periods[0], periods[-1]))
    assert "factor" in html and first in html and last in html

    # a second run reuses the cached composites
    assert main(["run", "la-pampa", "--no-progress", "--no-report"]) == 0
    assert capsys.readouterr().out.count("reused") == 2


def test_run_unknown_region_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "atlantis"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asmspotter: error: unknown region 'atlantis'")
