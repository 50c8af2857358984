from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from asmspotter.catalogue import Period, get_region, load_catalogue
from asmspotter.errors import CatalogueError, InputError


def test_shipped_catalogue_has_the_four_regions() -> None:
    cat = load_catalogue(check_files=False)
    assert list(cat) == ["madre-de-dios", "brokopondo", "cuyuni-mazaruni", "la-pampa"]
    mdd = cat["madre-de-dios"]
    assert (mdd.country, [p.id for p in mdd.periods]) == ("Peru", ["2019", "2020", "2021"])
    assert {o.kind for o in mdd.overlays} == {
        "protected_area",
        "indigenous_territory",
        "mining_zone",
    }
    bro = cat["brokopondo"]
    assert [p.id for p in bro.periods] == ["2016", "2017", "2018", "2019", "2020"]
    # before the L2A archive covers Brokopondo, L1C is searched
    assert bro.source.collection_for(bro.period("2017")) == "sentinel-2-l1c"
    assert bro.source.collection_for(bro.period("2018")) == "sentinel-2-l2a"
    cm = cat["cuyuni-mazaruni"].period("2020-Q3")
    assert (cm.start, cm.end) == (dt.date(2020, 7, 1), dt.date(2020, 9, 30))
    lp = cat["la-pampa"]
    assert lp.source.kind == "local" and lp.source.fallback == "stac"
    assert lp.crs == "EPSG:32719"


def test_shipped_catalogue_files_exist(shared_data: Path) -> None:
    cat = load_catalogue(check_files=True)
    for region in cat.values():
        for overlay in region.overlays:
            assert overlay.require_path().is_file()
        outline = region.outline
        assert outline.is_valid and not outline.is_empty
        x0, y0, x1, y1 = region.bbox
        assert -180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90
    # La Pampa lies inside Madre de Dios
    assert cat["madre-de-dios"].outline.contains(cat["la-pampa"].outline)


@pytest.mark.parametrize(
    ("spec", "pid", "start", "end"),
    [
        (2019, "2019", "2019-01-01", "2019-12-31"),
        ("2020-Q3", "2020-Q3", "2020-07-01", "2020-09-30"),
        ("2020-q1", "2020-Q1", "2020-01-01", "2020-03-31"),
        ("2024-02", "2024-02", "2024-02-01", "2024-02-29"),
        ("2020-07-01/2020-09-30", "2020-07-01_2020-09-30", "2020-07-01", "2020-09-30"),
        (
            {"id": "dry", "start": "2021-06-01", "end": "2021-10-31"},
            "dry",
            "2021-06-01",
            "2021-10-31",
        ),
    ],
)
def test_period_forms(spec: object, pid: str, start: str, end: str) -> None:
    p = Period.parse(spec)
    assert (p.id, p.start.isoformat(), p.end.isoformat()) == (pid, start, end)
    assert p.start <= p.mid <= p.end


def test_period_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="before start"):
        Period.parse({"id": "x", "start": "2020-02-01", "end": "2020-01-01"})
    with pytest.raises(ValueError, match="not a year"):
        Period.parse("last summer")
    with pytest.raises(ValueError, match="month 13"):
        Period.parse("2020-13")


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "regions.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
regions:
  test-area:
    name: Test
    country: Nowhere
    outline: {bbox: [-70.0, -13.1, -69.9, -13.0]}
    periods: [2019, 2021]
"""


def test_new_region_is_one_entry(tmp_path: Path) -> None:
    region = load_catalogue(_write(tmp_path, GOOD))["test-area"]
    assert region.crs == "EPSG:32719"  # UTM zone from the outline's centre
    assert region.source.kind == "stac"
    assert region.source.sign == "auto"
    assert region.outline.bounds == (-70.0, -13.1, -69.9, -13.0)


def test_overlay_labels_per_language(tmp_path: Path) -> None:
    body = GOOD + (
        "    overlays:\n      - {id: pa, kind: protected_area, url: 'http://127.0.0.1/x.json',"
        " id_field: id, name_field: name, label: {en: Parks, es: Parques}}\n"
        "      - {id: it, kind: indigenous_territory, url: 'http://127.0.0.1/y.json',"
        " id_field: id, name_field: name, label: Lands}\n"
    )
    parks, lands = load_catalogue(_write(tmp_path, body))["test-area"].overlays
    assert (parks.label, parks.label_in("es"), parks.label_in("fr")) == (
        "Parks",
        "Parques",
        "Parks",
    )
    assert (lands.label, lands.label_in("es")) == ("Lands", "Lands")
    shipped = load_catalogue(check_files=False)["madre-de-dios"].overlay("protected-areas")
    assert shipped.label_in("es") == "Áreas naturales protegidas (SERNANP)"
    with pytest.raises(CatalogueError, match="overlay 'pa': label .* needs an 'en' entry"):
        load_catalogue(_write(tmp_path, body.replace("en: Parks, ", "")))


@pytest.mark.parametrize(
    ("value", "sign"),
    [
        ("planetary-computer", "planetary-computer"),
        ("none", "none"),
        ("false", "none"),
        ("auto", "auto"),
    ],
)
def test_source_sign(tmp_path: Path, value: str, sign: str) -> None:
    body = GOOD + (
        "    source: {url: 'https://planetarycomputer.microsoft.com/api/stac/v1', "
        f"sign: {value}}}\n"
    )
    assert load_catalogue(_write(tmp_path, body))["test-area"].source.sign == sign


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            GOOD.replace("[2019, 2021]", "[{id: a, start: 2020-05-01, end: 2020-01-01}]"),
            "region 'test-area': period .*before start",
        ),
        (
            GOOD.replace("[-70.0, -13.1, -69.9, -13.0]", "[-69.0, -13.1, -69.9, -13.0]"),
            "region 'test-area': invalid outline bbox",
        ),
        (GOOD.replace("[2019, 2021]", "[2021, 2019]"), "region 'test-area': .*chronological"),
        (GOOD.replace("[2019, 2021]", "[2019, 2019]"), "region 'test-area': duplicate period"),
        (
            GOOD + "    overlays:\n      - {id: pa, kind: protected_area, file: nope.geojson,"
            " id_field: id, name_field: name}\n",
            "region 'test-area': overlay 'pa': overlay file",
        ),
        (
            GOOD + "    overlays:\n      - {id: pa, kind: park, url: 'http://127.0.0.1/x.json',"
            " id_field: id, name_field: name}\n",
            "region 'test-area': .*kind 'park'",
        ),
        (GOOD + "    crs: EPSG:4326\n", "region 'test-area': crs .* projected"),
        (GOOD + "    colour: blue\n", "region 'test-area': unknown field"),
        (
            GOOD + "    source: {sign: azure}\n",
            "region 'test-area': source: sign 'azure' must be one of auto, none",
        ),
        ("regions: [1, 2]\n", "expected a mapping"),
        ("regions: {a: [\n", "not valid YAML"),
    ],
)
def test_invalid_entries_name_the_region(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(_write(tmp_path, body), check_files=True)


def test_unknown_region_and_period_list_the_known_ones() -> None:
    with pytest.raises(InputError, match="unknown region 'atlantis'; known regions: .*la-pampa"):
        get_region("atlantis")
    with pytest.raises(InputError, match="no period '2030'; known periods: 2019, 2021"):
        get_region("la-pampa").period("2030")
