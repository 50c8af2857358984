"""Briefing languages and key findings on generated footprints with exactly known areas.

Squares in UTM zone 19S, areas measured in that CRS: 100 m x 100 m is one hectare, so every
sentence's numbers are known exactly. No notebook is run here (see test_report.py).
"""

from __future__ import annotations

import datetime as dt
import re
import types
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from asmspotter.analyse import AnalysisResult, PeriodLayer, analyse
from asmspotter.catalogue import Overlay, Period, get_region
from asmspotter.errors import InputError
from asmspotter.report import key_findings, languages, load_language, reference_gaps
from asmspotter.report.context import localised
from asmspotter.report.language import BASE_LANGUAGE, placeholders

UTM = "EPSG:32719"
X0, Y0 = 400_000.0, 8_600_000.0
P19, P20, P21 = (Period.parse(y) for y in ("2019", "2020", "2021"))


def sq(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def frame(*geoms: shapely.Geometry, **columns: list) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=list(geoms), crs=UTM)


def overlay(tmp: Path, ident: str, kind: str, zones: dict[str, shapely.Polygon]) -> Overlay:
    path = tmp / f"{ident}.gpkg"
    frame(*zones.values(), name=list(zones)).to_file(path, driver="GPKG")
    return Overlay(ident, kind, f"Test {ident}", path, None, "name", "name")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> AnalysisResult:
    """100 ha mined by 2019, +50 ha in 2020, +50 ha in 2021 (new footprints, 200 ha in all)."""
    tmp = tmp_path_factory.mktemp("zones")
    layers = [
        PeriodLayer(P19, frame(sq(0, 0, 1000, 1000))),  # 100 ha
        PeriodLayer(P20, frame(sq(1000, 0, 1500, 1000))),  # 50 ha
        PeriodLayer(P21, frame(sq(2000, 0, 2500, 1000))),  # 50 ha
    ]
    overlays = [
        overlay(tmp, "parks", "protected_area", {"Park A": sq(0, 0, 300, 1000)}),  # 30 ha
        overlay(
            tmp,
            "lands",
            "indigenous_territory",
            {"Village B": sq(2000, 0, 2200, 1000), "Village C": sq(1000, 0, 1100, 1000)},
        ),
        overlay(tmp, "corridor", "mining_zone", {"Corridor": sq(0, 0, 1000, 1000)}),
    ]
    return analyse(layers, overlays=overlays, crs=UTM, region="test", region_name="Testland")


def test_every_language_has_every_text_of_english_with_the_same_placeholders() -> None:
    base = load_language(BASE_LANGUAGE)

    def leaves(node: object, prefix: str = "") -> dict[str, object]:
        if isinstance(node, dict):
            out: dict[str, object] = {}
            for key, value in node.items():
                out.update(leaves(value, f"{prefix}{key}."))
            return out
        return {prefix.rstrip("."): node}

    want = leaves(dict(base.texts))
    assert set(languages()) >= {"en", "es"}
    for code in languages():
        have = leaves(dict(load_language(code).texts))
        missing = {k for k in want if k not in have and not k.startswith("countries.")}
        assert not missing, (code, sorted(missing))
        for key, text in want.items():
            if isinstance(text, str) and key in have:
                assert placeholders(text) == placeholders(str(have[key])), (code, key)


def test_numbers_and_dates_are_written_per_locale() -> None:
    en, es = load_language("en"), load_language("es")
    assert (en.area(49935.2), es.area(49935.2)) == ("49,935", "49.935")
    assert (en.area(4.66), es.area(4.66), en.area(0.534)) == ("4.7", "4,7", "0.53")
    assert (en.factor(1.10963), es.factor(1.10963)) == ("1.11", "1,11")
    assert (en.percent(0.4381), es.percent(0.4381)) == ("43.8 %", "43,8 %")
    day = dt.date(2020, 9, 30)
    assert en.date(day) == "30 September 2020"
    assert es.date(day) == "30 de septiembre de 2020"
    assert es.join(["a", "b", "c"]) == "a, b y c"
    assert es.country("Peru") == "Perú"


def test_unknown_language_names_the_known_ones() -> None:
    with pytest.raises(InputError, match="unknown language 'fr'; briefings exist in: en, es"):
        load_language("fr")


def test_key_findings_in_english_are_exact(result: AnalysisResult) -> None:
    found = key_findings(result, "en", source="reference", source_label="Tester")
    src = "According to Tester's reference footprints"
    assert found[0] == (
        f"{src}, the mined area (cumulative) grew by a factor 2.00, from 100 ha in 2019 to "
        "200 ha in 2021."
    )
    years = (P21.mid - P19.mid).days / 365.25
    rate = f"{100 / years:.0f}"
    assert found[1] == (
        f"{src}, {rate} ha were newly mined a year between 2019 and 2021 "
        "(new area: 50 ha in 2020 and 50 ha in 2021)."
    )
    # protected areas: 30 of 200 ha (15 %), none new in 2021, Park A leads
    assert found[2] == (
        f"{src}, 30 ha of the mined area (cumulative) by 2021, 15.0 % of it, lay inside "
        "protected areas, of which 0 ha were new in 2021; Park A (30 ha) leads."
    )
    # territories: Village B holds 20 ha (new in 2021), Village C 10 ha (2020)
    assert found[3] == (
        f"{src}, 30 ha of the mined area (cumulative) by 2021, 15.0 % of it, lay inside "
        "indigenous territories, of which 20 ha were new in 2021; Village B (20 ha) and "
        "Village C (10 ha) lead."
    )
    # corridor: the first 100 ha inside; 100 ha outside (50 %); all 50 ha of 2021 outside
    assert found[4] == (
        f"{src}, 100 ha of the mined area (cumulative) by 2021, 50.0 % of it, lay outside the "
        "legal mining zone (Test corridor) and 100 ha inside; of the area newly mined in 2021, "
        "50 ha (100.0 %) lay outside."
    )
    assert len(found) == 5


def test_key_findings_in_spanish_use_the_same_numbers(result: AnalysisResult) -> None:
    en = key_findings(result, "en", source="detector", source_label="m1")
    es = key_findings(result, "es", source="detector", source_label="m1")
    assert len(es) == len(en)
    assert es[0] == (
        "Según el detector de ASMSpotter (m1), el área minada (acumulada) creció en un factor de "
        "2,00, de 100 ha en 2019 a 200 ha en 2021."
    )
    numbers = re.compile(r"\d+(?:[.,]\d+)?")
    for e, s in zip(en, es, strict=True):
        assert [n.replace(".", ",") for n in numbers.findall(e)] == numbers.findall(s)


def test_briefings_name_overlays_in_their_language(result: AnalysisResult) -> None:
    corridor = Overlay(
        "corridor",
        "mining_zone",
        "Test corridor",
        None,
        "http://127.0.0.1/p.json",
        "name",
        "name",
        labels={"es": "Corredor de prueba"},
    )
    region = types.SimpleNamespace(overlays=(corridor,))
    es = localised(result, region, "es")  # type: ignore[arg-type]
    assert [o.label for o in es.overlays] == ["Test parks", "Test lands", "Corredor de prueba"]
    assert [o.layer for o in es.overlays] == [o.layer for o in result.overlays]
    found = key_findings(es, "es", source="detector")
    assert "fuera de la zona minera legal (Corredor de prueba)" in found[-1]
    assert result.overlays[-1].label == "Test corridor"  # the analysis itself is unchanged


def test_no_mining_is_said_plainly() -> None:
    empty = gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=UTM))
    layers = [PeriodLayer(P19, empty), PeriodLayer(P21, empty)]
    res = analyse(layers, crs=UTM, region="x", region_name="Emptyland")
    assert key_findings(res, "en", source="detector", source_label="m1") == [
        "According to the ASMSpotter detector (m1), no mining was found in Emptyland in any "
        "period from 2019 to 2021."
    ]


def test_gaps_of_the_reference_against_the_catalogue(shared_data: Path) -> None:
    brokopondo = reference_gaps(get_region("brokopondo"))
    assert [(g.period.id, g.reason) for g in brokopondo] == [("2016", "first"), ("2017", "first")]
    assert all(g.reference_period and g.reference_period.id == "2018" for g in brokopondo)
    (cuyuni,) = reference_gaps(get_region("cuyuni-mazaruni"))
    assert (cuyuni.period.id, cuyuni.reason) == ("2020-Q3", "within")
    assert cuyuni.reference_period is not None and cuyuni.reference_period.id == "2020"
    assert reference_gaps(get_region("madre-de-dios")) == ()
    ref = get_region("brokopondo").reference
    assert ref is not None
    assert [p.id for p in ref.periods] == [str(y) for y in range(2018, 2024)]
    assert all("2024" not in str(f) for _, files in ref.series for f in files)
