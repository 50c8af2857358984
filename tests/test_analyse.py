"""Tests of asmspotter.analyse on generated footprints with exactly known areas.

Squares are laid out in UTM zone 19S (metres) near Madre de Dios; 100 m x 100 m is one
hectare. Unless a test says otherwise, areas are measured in that same UTM CRS so that
every expected figure is exact.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import Geod

from asmspotter import layout
from asmspotter.analyse import (
    PeriodLayer,
    account,
    analyse,
    analyse_region,
    area_crs,
    clean_polygons,
    detector_layers,
    expansion,
    format_summary,
    layers_from_files,
    order_periods,
    write_analysis,
)
from asmspotter.catalogue import Overlay, Period, Region
from asmspotter.errors import DataError, InputError

UTM = "EPSG:32719"
X0, Y0 = 400_000.0, 8_600_000.0  # about -69.9, -12.7
P19, P20, P21 = (Period.parse(y) for y in ("2019", "2020", "2021"))


def sq(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A rectangle given in metres relative to (X0, Y0)."""
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def frame(*geoms: shapely.Geometry, crs: str = UTM, **columns: list) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=list(geoms), crs=crs)


def empty_frame(crs: str = UTM) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=crs))


A = sq(0, 0, 1000, 1000)  # 100 ha
B = sq(500, 0, 1500, 1000)  # 100 ha, 50 ha of it over A
C = sq(2000, 0, 3000, 500)  # 50 ha
Z1 = sq(0, 0, 1200, 2000)  # zone 1
Z2 = sq(1400, -1000, 2500, 1000)  # zone 2 (disjoint from zone 1)


def active_layers(crs: str = UTM) -> list[PeriodLayer]:
    """Per-period masks: A active in 2019; A and B in 2020; only C in 2021."""
    layers = [
        PeriodLayer(P19, frame(A)),
        PeriodLayer(P20, frame(A, B)),
        PeriodLayer(P21, frame(C)),
    ]
    if crs != UTM:
        layers = [PeriodLayer(la.period, la.frame.to_crs(crs)) for la in layers]
    return layers


def write_zones(path: Path, kind_id: str = "zones") -> Overlay:
    zones = frame(Z1, Z2, zid=["z1", "z2"], label=["Zone one", "Zone two"])
    zones.to_file(path, driver="GPKG")
    return Overlay(
        id=kind_id,
        kind="indigenous_territory",
        label="Test zones",
        path=path,
        url=None,
        id_field="zid",
        name_field="label",
    )


def fig(result_or_acc, period: str):
    acc = getattr(result_or_acc, "accounting", result_or_acc)
    return next(f for f in acc.figures if f.period == period)


# --------------------------------------------------------------------------------------
# accounting
# --------------------------------------------------------------------------------------


def test_new_cumulative_active_stopped_exact() -> None:
    acc = account(active_layers(), kind="active", crs=UTM)
    assert [f.period for f in acc.figures] == ["2019", "2020", "2021"]
    expected = {  # cumulative, new, active, stopped
        "2019": (100.0, 100.0, 100.0, None),
        "2020": (150.0, 50.0, 150.0, 0.0),
        "2021": (200.0, 50.0, 50.0, 150.0),
    }
    for pid, (cum, new, active, stopped) in expected.items():
        f = fig(acc, pid)
        assert f.cumulative_ha == pytest.approx(cum, rel=1e-9)
        assert f.new_ha == pytest.approx(new, rel=1e-9)
        assert f.active_ha == pytest.approx(active, rel=1e-9)
        if stopped is None:
            assert f.stopped_ha is None
        else:
            assert f.stopped_ha == pytest.approx(stopped, rel=1e-9, abs=1e-9)
    # The new pieces are disjoint and add up to the cumulative area.
    assert acc.piece_ha().sum() == pytest.approx(200.0, rel=1e-9)


def test_new_layers_have_no_active_or_stopped() -> None:
    acc = account(active_layers(), kind="new", crs=UTM)
    assert fig(acc, "2020").new_ha == pytest.approx(50.0)
    assert all(f.active_ha is None and f.stopped_ha is None for f in acc.figures)


def test_expansion_factor_and_growth_exact() -> None:
    exp = expansion(account(active_layers(), kind="active", crs=UTM))
    head = exp.headline
    assert head is not None and (head.from_period, head.to_period) == ("2019", "2021")
    assert head.cumulative_factor == pytest.approx(2.0, rel=1e-12)
    years = (P21.mid - P19.mid).days / 365.25
    assert head.years == pytest.approx(years)
    assert head.cumulative_growth_per_year == pytest.approx(2.0 ** (1 / years) - 1, rel=1e-12)
    assert head.new_ha_per_year == pytest.approx(100.0 / years, rel=1e-9)
    assert head.active_factor == pytest.approx(0.5, rel=1e-9)
    p = exp.pair("2019", "2020")
    assert p.cumulative_factor == pytest.approx(1.5, rel=1e-12)
    assert len(exp.pairs) == 3
    with pytest.raises(InputError):
        exp.pair("2021", "2019")


def test_overlays_inside_outside_exact(tmp_path: Path) -> None:
    zones = write_zones(tmp_path / "zones.gpkg")
    result = analyse(active_layers(), overlays=[zones], kind="active", crs=UTM)
    o = result.overlay("zones")
    feats = {f.id: f for f in o.features}
    assert feats["z1"].name == "Zone one"
    assert feats["z1"].area_ha == pytest.approx(240.0)
    z1 = {z.period: z for z in feats["z1"].periods}
    z2 = {z.period: z for z in feats["z2"].periods}
    # Zone 1 holds A (100 ha, 2019) and the 20 ha strip of B that was new in 2020.
    assert [z1[p].new_inside_ha for p in ("2019", "2020", "2021")] == pytest.approx([100, 20, 0])
    assert [z1[p].inside_ha for p in ("2019", "2020", "2021")] == pytest.approx([100, 120, 120])
    # Zone 2 holds a 10 ha strip of B (2020) and half of C's western half (25 ha, 2021).
    assert [z2[p].new_inside_ha for p in ("2019", "2020", "2021")] == pytest.approx([0, 10, 25])
    assert [z2[p].inside_ha for p in ("2019", "2020", "2021")] == pytest.approx([0, 10, 35])
    # Active area inside, from the per-period masks.
    assert [z1[p].active_inside_ha for p in ("2019", "2020", "2021")] == pytest.approx(
        [100, 120, 0]
    )
    layer = {z.period: z for z in o.layer}
    assert [layer[p].inside_ha for p in ("2019", "2020", "2021")] == pytest.approx([100, 130, 155])
    assert [layer[p].outside_ha for p in ("2019", "2020", "2021")] == pytest.approx(
        [0, 20, 45], abs=1e-9
    )
    assert [layer[p].new_outside_ha for p in ("2019", "2020", "2021")] == pytest.approx(
        [0, 20, 25], abs=1e-9
    )


def test_area_attribute_apportioned_by_area_share(tmp_path: Path) -> None:
    zones = write_zones(tmp_path / "zones.gpkg")
    d = sq(1000, 0, 2000, 1000)  # 100 ha polygon: 20 % in zone 1, 60 % in zone 2
    layers = [
        PeriodLayer(P19, frame(A, mined=[10.0])),
        PeriodLayer(P20, frame(d, mined=[40.0])),
    ]
    result = analyse(layers, overlays=[zones], area_attribute="mined", crs=UTM)
    assert [f.new_ha for f in result.accounting.figures] == pytest.approx([10, 40])
    assert [f.cumulative_ha for f in result.accounting.figures] == pytest.approx([10, 50])
    feats = {f.id: {z.period: z for z in f.periods} for f in result.overlay("zones").features}
    assert feats["z1"]["2020"].new_inside_ha == pytest.approx(8.0)
    assert feats["z1"]["2020"].inside_ha == pytest.approx(18.0)
    assert feats["z2"]["2020"].new_inside_ha == pytest.approx(24.0)
    layer = {z.period: z for z in result.overlay("zones").layer}
    assert layer["2020"].outside_ha == pytest.approx(50 - 18 - 24)
    assert result.expansion.headline.cumulative_factor == pytest.approx(5.0)


def test_area_attribute_missing_or_bad_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="no area attribute 'mined'.*columns are: other"):
        account([PeriodLayer(P19, frame(A, other=[1.0]))], area_attribute="mined", crs=UTM)
    with pytest.raises(DataError, match="no numeric 'mined'"):
        account([PeriodLayer(P19, frame(A, mined=["x"]))], area_attribute="mined", crs=UTM)
    with pytest.raises(InputError, match="new detections"):
        account(
            [PeriodLayer(P19, frame(A, mined=[1.0]))],
            area_attribute="mined",
            kind="active",
            crs=UTM,
        )


def test_legal_zone_split(tmp_path: Path) -> None:
    path = tmp_path / "corridor.geojson"
    frame(Z1, code=["OT1"], nm=["Corridor"]).to_crs("EPSG:4326").to_file(path)
    corridor = Overlay("corridor", "mining_zone", "Corridor", path, None, "code", "nm")
    data = analyse(active_layers(), overlays=[corridor], crs=UTM).to_dict()
    legal = data["legal_zone"]
    assert [item["layer"] for item in legal] == ["corridor"]
    rows = {r["period"]: r for r in legal[0]["periods"]}
    # The corridor went through EPSG:4326, so its edges moved by micrometres at most.
    assert rows["2021"]["inside_legal_zone_ha"] == pytest.approx(120.0, rel=1e-6)
    assert rows["2021"]["outside_legal_zone_ha"] == pytest.approx(80.0, rel=1e-6)
    assert rows["2021"]["share_inside"] == pytest.approx(0.6, rel=1e-5)


# --------------------------------------------------------------------------------------
# CRS, clipping, geodesic areas
# --------------------------------------------------------------------------------------


def test_footprints_in_another_crs_give_the_same_areas() -> None:
    in_utm = account(active_layers(), kind="active", crs=UTM)
    in_4326 = account(active_layers("EPSG:4326"), kind="active", crs=UTM)
    in_3857 = account(active_layers("EPSG:3857"), kind="active", crs=UTM)
    for a, b, c in zip(in_utm.figures, in_4326.figures, in_3857.figures, strict=True):
        assert b.cumulative_ha == pytest.approx(a.cumulative_ha, rel=1e-7)
        assert c.new_ha == pytest.approx(a.new_ha, rel=1e-7)


def test_default_equal_area_matches_geodesic_area() -> None:
    acc = account(active_layers(), kind="active")  # equal-area CRS centred on the data
    assert "laea" in acc.crs.srs
    geod = Geod(ellps="WGS84")
    union = gpd.GeoSeries([shapely.union_all([A, B, C])], crs=UTM).to_crs("EPSG:4326").iloc[0]
    geodesic_ha = abs(geod.geometry_area_perimeter(union)[0]) / 1e4
    assert acc.figures[-1].cumulative_ha == pytest.approx(geodesic_ha, rel=1e-5)
    # UTM squares are not exactly 1 ha per 100 m x 100 m on the ground (scale factor).
    assert acc.figures[-1].cumulative_ha != pytest.approx(200.0, rel=1e-6)
    assert acc.figures[-1].cumulative_ha == pytest.approx(200.0, rel=2e-3)


def test_area_crs_rejects_degrees_and_empty() -> None:
    with pytest.raises(InputError):
        area_crs(shapely.Polygon())
    with pytest.raises(InputError, match="not longitude/latitude"):
        area_crs(shapely.box(400000, 8600000, 401000, 8601000))
    with pytest.raises(InputError, match="not projected"):
        account(active_layers(), crs="EPSG:4326")


def test_clip_to_region_outline() -> None:
    # Outline covering x < 1000 m only: A stays, B is cut in half, C is dropped.
    outline = gpd.GeoSeries([sq(-5000, -5000, 1000, 5000)], crs=UTM).to_crs(4326).iloc[0]
    acc = account(active_layers(), outline=outline, kind="active", crs=UTM)
    assert [f.cumulative_ha for f in acc.figures] == pytest.approx([100, 100, 100], rel=1e-6)
    assert fig(acc, "2021").active_ha == pytest.approx(0.0, abs=1e-9)
    assert fig(acc, "2021").features == 0


def test_footprints_without_crs_are_refused() -> None:
    layer = PeriodLayer(P19, gpd.GeoDataFrame(geometry=[A]), ("nocrs.shp",))
    with pytest.raises(InputError, match="nocrs.shp.*no coordinate reference system"):
        account([layer], crs=UTM)


def test_invalid_geometries_are_repaired_and_counted(tmp_path: Path) -> None:
    bowtie = shapely.Polygon(
        [(X0, Y0), (X0 + 1000, Y0 + 1000), (X0 + 1000, Y0), (X0, Y0 + 1000), (X0, Y0)]
    )
    cleaned, report = clean_polygons(np.array([bowtie, A, None, shapely.Point(X0, Y0)]))
    assert report.repaired == 1 and report.dropped == 2
    assert cleaned[0].is_valid and cleaned[0].area == pytest.approx(500_000.0)
    acc = account([PeriodLayer(P19, frame(bowtie))], crs=UTM)
    assert acc.figures[0].cumulative_ha == pytest.approx(50.0)
    assert any("1 invalid footprint geometry was repaired" in w for w in acc.warnings)
    path = tmp_path / "bad_zones.gpkg"
    frame(bowtie, A, zid=["bow", "sq"], label=["Bow tie", "Square"]).to_file(path)
    zones = Overlay("bad", "other", "Bad zones", path, None, "zid", "label")
    result = analyse([PeriodLayer(P19, frame(A))], overlays=[zones], crs=UTM)
    assert result.overlay("bad").repaired == 1
    assert any("overlay 'bad': 1 invalid geometry was repaired" in w for w in result.warnings)
    feats = {f.id: f for f in result.overlay("bad").features}
    assert feats["bow"].periods[0].inside_ha == pytest.approx(50.0)


# --------------------------------------------------------------------------------------
# empty footprints, periods
# --------------------------------------------------------------------------------------


def test_empty_period_is_zero_not_an_error() -> None:
    layers = [
        PeriodLayer(P19, frame(A)),
        PeriodLayer(P20, empty_frame()),
        PeriodLayer(P21, frame(C)),
    ]
    acc = account(layers, kind="active", crs=UTM)
    assert [f.new_ha for f in acc.figures] == pytest.approx([100, 0, 50])
    assert [f.cumulative_ha for f in acc.figures] == pytest.approx([100, 100, 150])
    assert fig(acc, "2020").stopped_ha == pytest.approx(100.0)


def test_all_empty_gives_zeros_and_undefined_factor(tmp_path: Path) -> None:
    zones = write_zones(tmp_path / "zones.gpkg")
    layers = [PeriodLayer(P19, empty_frame("EPSG:4326")), PeriodLayer(P20, empty_frame())]
    result = analyse(layers, overlays=[zones])
    data = result.to_dict()
    assert [p["cumulative_ha"] for p in data["periods"]] == [0.0, 0.0]
    assert data["expansion_factor"]["value"] is None
    assert data["overlays"]["zones"]["features"]["z1"]["periods"][1]["inside_ha"] == 0.0
    json.dumps(data)  # no NaN or infinity sneaks in
    assert "NaN" not in json.dumps(data)


def test_periods_out_of_order_are_sorted_with_a_warning() -> None:
    layers = active_layers()
    shuffled = [layers[2], layers[0], layers[1]]
    acc = account(shuffled, kind="active", crs=UTM)
    assert [f.period for f in acc.figures] == ["2019", "2020", "2021"]
    assert fig(acc, "2020").new_ha == pytest.approx(50.0)
    assert any("out of chronological order" in w for w in acc.warnings)


def test_duplicated_or_overlapping_periods_are_refused() -> None:
    with pytest.raises(InputError, match="period 2019 is given twice"):
        order_periods([PeriodLayer(P19, frame(A)), PeriodLayer(P19, frame(B))])
    q3 = Period.parse("2019-Q3")
    with pytest.raises(InputError, match="overlap"):
        order_periods([PeriodLayer(P19, frame(A)), PeriodLayer(q3, frame(B))])
    with pytest.raises(InputError, match="no footprint layers"):
        account([])


def _write(path: Path, gdf: gpd.GeoDataFrame) -> Path:
    gdf.to_file(path)
    return path


def test_periods_from_year_column(tmp_path: Path) -> None:
    f1 = _write(tmp_path / "a.geojson", frame(A, C, year=[201800, 202000]).to_crs(4326))
    f2 = _write(tmp_path / "b.geojson", frame(B, year=[2019]).to_crs(4326))
    got = layers_from_files([f2, f1], [P19, P20, P21])  # out of order on purpose
    assert [la.period.id for la in got.layers] == ["2018", "2019", "2020"]
    assert got.layers[1].period is P19  # the catalogue's own period object
    assert got.layers[0].period.start == dt.date(2018, 1, 1)  # a calendar year
    assert any("calendar years: 2018" in n for n in got.notes)
    dup = _write(tmp_path / "c.geojson", frame(B, year=[2019]).to_crs(4326))
    with pytest.raises(InputError, match="period 2019 is given twice"):
        layers_from_files([f2, dup], [P19])


def test_periods_from_catalogue_order_or_command_line(tmp_path: Path) -> None:
    f1 = _write(tmp_path / "a.gpkg", frame(A))
    f2 = _write(tmp_path / "b.gpkg", frame(B))
    got = layers_from_files([f1, f2], [P19, P20])
    assert [la.period.id for la in got.layers] == ["2019", "2020"]
    with pytest.raises(InputError, match="2 footprint file.*3 catalogue period.*--periods"):
        layers_from_files([f1, f2], [P19, P20, P21])
    got = layers_from_files([f1, f2], [P19, P20, P21], ["2021", "2019"])
    assert [la.period.id for la in got.layers] == ["2019", "2021"]
    assert any("out of chronological order" in w for w in got.warnings)
    with pytest.raises(InputError, match="2 period ids for 1"):
        layers_from_files([f1], [P19], ["2019", "2020"])
    with pytest.raises(InputError, match="not a year"):
        layers_from_files([f1], [P19], ["last-year"])
    with_year = _write(tmp_path / "y.geojson", frame(A, year=[2019]).to_crs(4326))
    with pytest.raises(InputError, match="some footprint files have a year column"):
        layers_from_files([with_year, f2], [P19, P20])


def test_empty_footprint_file_counts_as_zero(tmp_path: Path) -> None:
    f1 = _write(tmp_path / "a.gpkg", frame(A))
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    got = layers_from_files([f1, empty], [P19, P20])
    acc = account(got.layers, crs=UTM)
    assert [f.new_ha for f in acc.figures] == pytest.approx([100, 0])


def test_missing_or_unreadable_footprints(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        layers_from_files([tmp_path / "nope.geojson"], [P19])
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not geojson")
    with pytest.raises(DataError, match="cannot read"):
        layers_from_files([junk], [P19])


# --------------------------------------------------------------------------------------
# overlays: bad input
# --------------------------------------------------------------------------------------


def test_overlay_file_missing_or_unreadable(tmp_path: Path) -> None:
    missing = Overlay("pa", "protected_area", "PAs", tmp_path / "gone.gpkg", None, "id", "name")
    with pytest.raises(DataError, match="overlay 'pa': file not found: .*gone.gpkg"):
        analyse(active_layers(), overlays=[missing], crs=UTM)
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"\x00garbage")
    broken = Overlay("pa", "protected_area", "PAs", junk, None, "id", "name")
    with pytest.raises(DataError, match="overlay 'pa': cannot read"):
        analyse(active_layers(), overlays=[broken], crs=UTM)
    url_only = Overlay("pa", "protected_area", "PAs", None, "https://example.org/x", "id", "n")
    with pytest.raises(DataError, match="no local file"):
        analyse(active_layers(), overlays=[url_only], crs=UTM)
    zones = write_zones(tmp_path / "zones.gpkg")
    wrong = Overlay("zones", "other", "Z", zones.path, None, "nope", "label")
    with pytest.raises(DataError, match="id_field 'nope' is not a column.*zid"):
        analyse(active_layers(), overlays=[wrong], crs=UTM)


def test_overlay_where_filter_and_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "z.gpkg"
    frame(Z1, Z2, Z2, zid=["a", "b", "b"], grp=["x", "y", "y"], nm=["A", "B", "B2"]).to_file(path)
    only_y = Overlay("z", "other", "Z", path, None, "zid", "nm", where={"grp": "y"})
    result = analyse(active_layers(), overlays=[only_y], crs=UTM)
    o = result.overlay("z")
    assert [f.id for f in o.features] == ["b"]
    assert any("merged" in w for w in o.warnings)
    assert o.features[0].periods[-1].inside_ha == pytest.approx(35.0)


def test_no_overlays_is_fine() -> None:
    result = analyse(active_layers(), crs=UTM)
    data = result.to_dict()
    assert data["overlays"] == {} and data["legal_zone"] == []
    assert any("no overlay" in n for n in data["notes"])


# --------------------------------------------------------------------------------------
# reference agreement
# --------------------------------------------------------------------------------------


def test_reference_agreement_exact() -> None:
    # Reference: A in 2019 (everything up to then), C in 2021; nothing new in 2020.
    ref = [PeriodLayer(P19, frame(A)), PeriodLayer(P21, frame(sq(2000, 0, 3000, 1000)))]
    ours = [
        PeriodLayer(P19, frame(sq(0, 0, 500, 1000))),
        PeriodLayer(P20, frame(B)),
        PeriodLayer(P21, frame(C)),
    ]
    result = analyse(ours, reference_layers=ref, reference_label="AMW", crs=UTM)
    rows = {a.period: a for a in result.reference.periods}
    r19 = rows["2019"]
    assert (r19.ours_ha, r19.reference_ha) == pytest.approx((50, 100))
    assert r19.ours_inside_reference_ha == pytest.approx(50)
    assert r19.reference_missed_ha == pytest.approx(50)
    r20 = rows["2020"]  # ours: [0, 1500] x [0, 1000]; reference still A
    assert r20.reference_period == "2019"
    assert (r20.ours_inside_reference_ha, r20.ours_outside_reference_ha) == pytest.approx((100, 50))
    assert r20.reference_missed_ha == pytest.approx(0, abs=1e-9)
    r21 = rows["2021"]
    assert r21.reference_ha == pytest.approx(200)
    assert r21.ours_inside_reference_ha == pytest.approx(150)
    assert r21.reference_missed_ha == pytest.approx(50)
    assert r21.share_of_reference_found == pytest.approx(0.75)
    assert result.reference.overall.ours_ha == pytest.approx(200)


# --------------------------------------------------------------------------------------
# detector outputs, writers, CLI
# --------------------------------------------------------------------------------------


def _region(overlays: tuple[Overlay, ...] = ()) -> Region:
    outline = gpd.GeoSeries([sq(-2000, -2000, 4000, 3000)], crs=UTM).to_crs(4326).total_bounds
    return Region(
        id="test-region",
        name="Test region",
        country="Peru",
        outline_spec={"bbox": [float(v) for v in outline]},
        crs=UTM,
        periods=(P19, P20, P21),
        overlays=overlays,
    )


def _write_detector_outputs(out: Path) -> None:
    """Complete detections: 2019 polygons A, 2020 A and B, 2021 a 10 m mask mapping C."""
    from affine import Affine
    from rasterio.features import rasterize

    from asmspotter.testing.detections import write_detection

    grid = Affine(10, 0, X0, 0, -10, Y0 + 1000)  # 4 km x 2 km grid from (X0, Y0 + 1000)
    for pid, polygons in (("2019", [A]), ("2020", [shapely.union(A, B)])):
        mask = rasterize(polygons, out_shape=(200, 400), transform=grid, dtype="uint8")
        write_detection(
            "test-region", pid, mask, crs=UTM, transform=grid, polygons=polygons, base=out
        )
    mask = np.zeros((200, 400), dtype=np.uint8)
    mask[50:100, 200:300] = 1  # rows from the top: y 500..0 m, x 2000..3000 m = C
    # no data over x 0..500 m, y 0..1000 m: half of A unobserved
    mask[0:100, 0:50] = layout.MASK_NODATA
    write_detection("test-region", "2021", mask, crs=UTM, transform=grid, base=out)


def test_detector_outputs_contract(tmp_path: Path) -> None:
    _write_detector_outputs(tmp_path)
    got = detector_layers("test-region", (P19, P20, P21), tmp_path)
    assert [la.period.id for la in got.layers] == ["2019", "2020", "2021"]
    assert got.layers[2].sources[0] == str(
        layout.detection_files("test-region", "2021", tmp_path).gpkg  # the mask's, vectorised
    )
    acc = account(got.layers, kind="active", crs=UTM)
    assert [f.cumulative_ha for f in acc.figures] == pytest.approx([100, 150, 200])
    # A and B were active in 2020; in 2021 half of A could not be observed (no data),
    # so only the other 100 ha count as stopped.
    assert got.layers[2].unobserved is not None
    assert [f.stopped_ha for f in acc.figures][1:] == pytest.approx([0, 100], abs=1e-9)
    assert [f.active_ha for f in acc.figures] == pytest.approx([100, 150, 50])
    with pytest.raises(DataError, match="no detector outputs.*asmspotter detect other"):
        detector_layers("other", (P19,), tmp_path)
    partial = detector_layers("test-region", (P19, Period.parse("2022")), tmp_path)
    assert any("no detector output for period(s) 2022" in w for w in partial.warnings)


def test_analyse_region_from_detector_and_write(tmp_path: Path, workdirs) -> None:
    out = workdirs["output"]
    _write_detector_outputs(out)
    zones = write_zones(tmp_path / "zones.gpkg")
    region = _region((zones,))
    result = analyse_region(region)
    assert result.accounting.kind == "active"
    # Equal-area figures differ from the UTM squares' nominal areas by the scale factor.
    cum = [f.cumulative_ha for f in result.accounting.figures]
    assert cum == pytest.approx([100, 150, 200], rel=2e-3)
    files = layout.analysis_files("test-region", base=out)
    written = write_analysis(result, files.folder, crs=UTM)
    assert written == [
        files.periods_csv,
        files.expansion_csv,
        files.overlay_layers_csv,
        files.overlay_features_csv,
        files.gpkg,
        files.json,
    ]
    layers = {name for name, _ in pyogrio.list_layers(files.gpkg)}
    assert layers == {"period_2019", "period_2020", "period_2021", "overlay_zones"}
    p21 = gpd.read_file(files.gpkg, layer="period_2021")
    assert p21.crs.to_epsg() == 32719
    assert set(p21["status"]) == {"new", "stopped"}
    stopped = p21[p21.status == "stopped"]
    assert stopped.area.sum() / 1e4 == pytest.approx(100, rel=1e-6)  # back in UTM: exact
    zl = gpd.read_file(files.gpkg, layer="overlay_zones")
    assert set(zl["feature_id"]) == {"z1", "z2"}
    assert "inside_ha_2021" in zl.columns
    record = json.loads(files.json.read_text())
    assert record["provenance"]["software"] == "asmspotter"
    assert record["provenance"]["stage"] == "analyse"
    assert record["periods"][2]["stopped_ha"] == pytest.approx(100, rel=2e-3)
    assert not list(files.folder.glob(".*partial*"))
    header = files.periods_csv.read_text().splitlines()[0]
    assert header == "period,start,end,cumulative_ha,new_ha,active_ha,stopped_ha"


def _catalogue(tmp_path: Path, overlays: str) -> Path:
    bounds = gpd.GeoSeries([sq(-2000, -2000, 4000, 3000)], crs=UTM).to_crs(4326).total_bounds
    path = tmp_path / "regions.yaml"
    path.write_text(
        "regions:\n"
        "  test-region:\n"
        "    name: Test region\n"
        "    country: Peru\n"
        f"    outline: {{bbox: [{', '.join(f'{v:.6f}' for v in bounds)}]}}\n"
        "    crs: EPSG:32719\n"
        "    periods: [2019, 2020, 2021]\n" + overlays
    )
    return path


def test_cli_json_and_files(tmp_path: Path, workdirs, capsys) -> None:
    from asmspotter.cli import main

    zones = write_zones(tmp_path / "zones.gpkg")
    cat = _catalogue(
        tmp_path,
        "    overlays:\n"
        f"      - {{id: zones, kind: mining_zone, file: {zones.path}, id_field: zid,"
        " name_field: label}\n",
    )
    files = []
    for pid, geoms in (("2019", [A]), ("2020", [A, B]), ("2021", [C])):
        files.append(
            _write(
                tmp_path / f"m{pid}.geojson",
                frame(*geoms, year=[int(pid)] * len(geoms)).to_crs(4326),
            )
        )
    rc = main(
        [
            "analyse",
            "test-region",
            "--catalogue",
            str(cat),
            "--footprints",
            *map(str, files),
            "--kind",
            "active",
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    data = json.loads(out.out)
    assert {"periods", "expansion_factor", "overlays"} <= set(data)
    assert [p["period"] for p in data["periods"]] == ["2019", "2020", "2021"]
    assert [p["new_ha"] for p in data["periods"]] == pytest.approx([100, 50, 50], rel=2e-3)
    assert data["expansion_factor"]["value"] == pytest.approx(2.0, rel=1e-3)
    z1 = data["overlays"]["zones"]["features"]["z1"]
    assert z1["name"] == "Zone one"
    assert [p["inside_ha"] for p in z1["periods"]] == pytest.approx([100, 120, 120], rel=2e-3)
    assert [p["new_inside_ha"] for p in z1["periods"]] == pytest.approx([100, 20, 0], rel=2e-3)
    assert data["legal_zone"][0]["layer"] == "zones"
    assert layout.analysis_files("test-region", base=workdirs["output"]).json.is_file()


def test_cli_table_output_and_errors(tmp_path: Path, workdirs, capsys) -> None:
    from asmspotter.cli import main

    cat = _catalogue(tmp_path, "")
    f1 = _write(tmp_path / "a.gpkg", frame(A))
    base = [
        "analyse",
        "test-region",
        "--catalogue",
        str(cat),
        "--footprints",
        str(f1),
        "--periods",
        "2019",
    ]
    rc = main([*base, "--no-write"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "2019" in out.out and "cumulative ha" in out.out
    assert not (workdirs["output"] / "test-region").exists()
    rc = main(["analyse", "test-region", "--catalogue", str(cat)])
    err = capsys.readouterr().err
    assert rc == 2 and "no detector outputs" in err and "asmspotter detect test-region" in err
    for extra, message in [
        (["--overlays", "nope"], "no overlay 'nope'"),
        (["--reference"], "no reference footprints"),
        (["--area-attribute", "Mined area (ha)"], "no area attribute 'Mined area (ha)'"),
    ]:
        rc = main(base + extra)
        assert rc == 2 and message in capsys.readouterr().err, extra


def test_cli_help_is_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, argparse; import asmspotter.commands.analyse as m; "
        "p = argparse.ArgumentParser(); m.add_parser(p.add_subparsers()); "
        "print('geopandas' in sys.modules, 'shapely' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_growth_rate_is_labelled() -> None:
    data = analyse(active_layers(), kind="active", crs=UTM).to_dict()
    assert "measure" in data["expansion_factor"]
    g = data["growth"][0]
    assert set(g) >= {
        "from",
        "to",
        "years",
        "cumulative_factor",
        "cumulative_growth_per_year",
        "new_ha_per_year",
        "active_factor",
    }
    for key in ("cumulative_ha", "new_ha", "cumulative_growth_per_year", "new_ha_per_year"):
        assert key in data["definitions"]
    assert math.isclose(data["periods"][2]["stopped_ha"], 150.0)


def test_footprints_outside_the_region_are_flagged() -> None:
    far = gpd.GeoSeries([shapely.box(10, 10, 11, 11)], crs=4326).iloc[0]  # not in Peru
    acc = account(active_layers(), outline=far, crs=UTM)
    assert [f.cumulative_ha for f in acc.figures] == [0.0, 0.0, 0.0]
    assert any("none of the 4 footprint features lies inside" in w for w in acc.warnings)


def test_summary_prints_the_figures_of_the_json() -> None:
    result = analyse(active_layers(), kind="active", crs=UTM)
    data = result.to_dict()
    lines = format_summary(result).splitlines()
    assert "mined area per period (polygon areas, equal-area projection)" in lines[0]
    for row, line in zip(data["periods"], lines[2:5], strict=True):
        cells = line.split()
        assert cells[0] == row["period"]
        figures = [row[k] for k in ("cumulative_ha", "new_ha", "active_ha", "stopped_ha")]
        assert cells[1:] == ["-" if v is None else f"{v:,.1f}" for v in figures]
    ef = data["expansion_factor"]
    assert lines[5].startswith(f"  expansion {ef['from']} -> {ef['to']}: ")
    assert f"cumulative area x{ef['value']:.3f}" in lines[5]
