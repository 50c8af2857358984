"""asmspotter.analyse on real data: reproduce Amazon Mining Watch's published figures.

Amazon Mining Watch (AMW) publishes yearly mined hectares per indigenous territory,
computed from its footprints by area-weighted apportionment of ``Mined area (ha)``.
Running our analysis on the same footprints and territories must give the same
numbers (within 1 %), and the department totals quoted in the shared data's README.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from pyproj import Geod

from asmspotter import layout
from asmspotter.analyse import AnalysisResult, PeriodLayer, account, analyse_region
from asmspotter.catalogue import Period, get_region

YEARS = (2018, 2019, 2020, 2021)
ATTRIBUTE = "Mined area (ha)"
STATS = "amw/stats/protected_areas_and_indigenous_territories__indigenous_territories_yearly.json"


def footprint_files(shared: Path, years=YEARS) -> list[Path]:
    return [shared / f"amw/footprints/mining_{y}00.geojson" for y in years]


@pytest.fixture(scope="module")
def amw_result(shared_data: Path) -> AnalysisResult:
    region = get_region("madre-de-dios")
    return analyse_region(
        region,
        footprints=footprint_files(shared_data),
        area_attribute=ATTRIBUTE,
        overlay_ids=["indigenous-territories"],
    )


@pytest.fixture(scope="module")
def amw_stats(shared_data: Path) -> pd.DataFrame:
    stats = pd.read_json(shared_data / STATS)
    table = stats.pivot(index="id", columns="admin_year", values="intersected_area_ha")
    return table.fillna(0.0)  # AMW leaves years without mining empty


def test_periods_come_from_the_year_column(amw_result: AnalysisResult) -> None:
    assert amw_result.accounting.period_ids == ["2018", "2019", "2020", "2021"]
    assert amw_result.accounting.mode == "attribute"


def test_department_cumulative_area(amw_result: AnalysisResult) -> None:
    cum = {f.period: f.cumulative_ha for f in amw_result.accounting.figures}
    for period, published in (("2019", 45_001), ("2020", 46_761), ("2021", 49_935)):
        assert cum[period] == pytest.approx(published, rel=0.01), period


def test_per_territory_yearly_hectares_match_amw(
    amw_result: AnalysisResult, amw_stats: pd.DataFrame
) -> None:
    layer = amw_result.overlay("indigenous-territories")
    ours = {f.id: {z.period: z for z in f.periods} for f in layer.features}
    # Every territory of the region with mining in these years is among our features.
    peru = amw_stats[amw_stats.index.str.startswith("PE")]
    mined = peru[(peru[[y * 100 for y in YEARS]] > 0).any(axis=1)].index
    in_region = set(ours)
    assert {"PE1082_0", "PE1450_0", "PE1050_0", "PE795_0", "PE794_0"} <= in_region
    compared = 0
    worst = 0.0
    for tid, per_period in ours.items():
        for year in YEARS:
            published = float(amw_stats.loc[tid, year * 100]) if tid in amw_stats.index else 0.0
            got = per_period[str(year)].new_inside_ha
            if published == 0:
                assert got == pytest.approx(0.0, abs=0.01), (tid, year)
                continue
            rel = abs(got - published) / published
            worst = max(worst, rel)
            assert rel <= 0.01, f"{tid} {year}: ours {got:.2f} ha, AMW {published:.2f} ha"
            compared += 1
    assert compared >= 30
    # Cumulative per territory too (AMW's intersected_area_ha_cumulative is the running sum).
    for tid in ("PE1082_0", "PE1450_0", "PE1050_0"):
        expected = sum(float(amw_stats.loc[tid, y * 100]) for y in YEARS)
        assert ours[tid]["2021"].inside_ha == pytest.approx(expected, rel=0.01)
    print(
        f"per-territory max relative error: {worst:.4%} over {compared} territory-years; "
        f"territories with AMW mining outside the region: {sorted(set(mined) - in_region)}"
    )


def test_geometric_areas_agree_with_geodesic_areas(shared_data: Path) -> None:
    geod = Geod(ellps="WGS84")
    region = get_region("madre-de-dios")
    layers = []
    expected = []
    union = None
    for year, path in zip(YEARS, footprint_files(shared_data), strict=True):
        frame = gpd.read_file(path)
        frame = frame[frame["region"] == "Madre de Dios"]
        layers.append(PeriodLayer(Period.parse(str(year)), frame, (str(path),)))
        year_union = shapely.union_all(frame.geometry.values)
        union = year_union if union is None else shapely.union(union, year_union)
        expected.append(abs(geod.geometry_area_perimeter(union)[0]) / 1e4)
    acc = account(layers, outline=region.outline)  # default: equal-area, geometric
    got = [f.cumulative_ha for f in acc.figures]
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, rel=0.005)
    worst = max(abs(g - e) / e for g, e in zip(got, expected, strict=True))
    print(f"geodesic check: max relative difference {worst:.2e}")
    assert worst < 1e-4  # equal-area: far tighter than the 0.5 % target


def test_reference_agreement_with_itself_is_perfect(shared_data: Path) -> None:
    region = get_region("madre-de-dios")
    result = analyse_region(
        region,
        footprints=footprint_files(shared_data, (2018, 2019)),
        use_overlays=False,
        reference=True,
    )
    rows = {a.period: a for a in result.reference.periods}
    r = rows["2019"]  # catalogue reference 2019 = AMW 2018 + 2019 files
    assert r.ours_outside_reference_ha == pytest.approx(0, abs=0.5)
    assert r.reference_missed_ha == pytest.approx(0, abs=0.5)
    assert r.share_of_reference_found == pytest.approx(1.0, abs=1e-4)


def test_cli_reproduces_amw(shared_data: Path, workdirs, capsys) -> None:
    from asmspotter.cli import main

    rc = main(
        [
            "analyse",
            "madre-de-dios",
            "--footprints",
            *map(str, footprint_files(shared_data)),
            "--area-attribute",
            ATTRIBUTE,
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    data = json.loads(out.out)
    cum = {p["period"]: p["cumulative_ha"] for p in data["periods"]}
    assert cum["2021"] == pytest.approx(49_935, rel=0.01)
    karene = data["overlays"]["indigenous-territories"]["features"]["PE1082_0"]
    assert karene["name"] == "SAN JOSE DE KARENE"
    assert karene["periods"][0]["new_inside_ha"] == pytest.approx(3704.09, rel=0.01)
    corridor = data["legal_zone"][0]
    assert corridor["layer"] == "mining-corridor"
    last = corridor["periods"][-1]
    assert last["inside_legal_zone_ha"] + last["outside_legal_zone_ha"] == pytest.approx(
        cum["2021"], rel=1e-6
    )
    files = layout.analysis_files("madre-de-dios", base=workdirs["output"])
    assert files.json.is_file() and files.gpkg.is_file()
