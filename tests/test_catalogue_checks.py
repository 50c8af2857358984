"""Catalogue mistakes caught at load, on one line, in plain words (asmspotter.catalogue_checks)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from asmspotter.catalogue import load_catalogue
from asmspotter.errors import CatalogueError

GOOD = """
regions:
  test-area:
    name: Test
    country: Nowhere
    outline: {bbox: [-70.0, -13.1, -69.9, -13.0]}
    crs: EPSG:32719
    periods: [2019, 2021]
"""


def _load(tmp_path: Path, body: str, check_files: bool = False):  # type: ignore[no-untyped-def]
    path = tmp_path / "regions.yaml"
    path.write_text(textwrap.dedent(body))
    return load_catalogue(path, check_files=check_files)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (  # latitude and longitude swapped: used to give an all-zero analysis
            GOOD.replace("[-70.0, -13.1, -69.9, -13.0]", "[-13.1, -70.0, -13.0, -69.9]"),
            r"region 'test-area': outline bbox \[-13.1, -70, -13, -69.9\] lies outside where "
            r"EPSG:32719 is used \(longitude -72 to -66, latitude -80 to 0\): longitude and "
            r"latitude look swapped",
        ),
        (  # another place than the CRS's
            GOOD.replace("EPSG:32719", "EPSG:32621"),
            "lies outside where EPSG:32621 is used .*; check the coordinates and the crs",
        ),
        (
            GOOD + "  test-area:\n    name: Again\n",
            r"line 9, column 3: key 'test-area' is given twice \(first on line 3\)",
        ),
        (
            GOOD.replace("[2019, 2021]", "[{id: dry, start: 2020-05-01, end: 2020-01-01}]"),
            r"region 'test-area': period 'dry': end 2020-01-01 is before start 2020-05-01$",
        ),
        (
            GOOD.replace("[2019, 2021]", "[{id: a, start: 2020-01-01}]"),
            r"period \{id: a, start: 2020-01-01\} lacks end$",
        ),
        (
            GOOD.replace("[2019, 2021]", "[2019, 2019-Q4]"),
            r"periods 2019 \(2019-01-01 to 2019-12-31\) and 2019-Q4 \(2019-10-01 to "
            r"2019-12-31\) overlap",
        ),
        (
            GOOD.replace("[2019, 2021]", "[2014, 2019]"),
            r"period 2014 \(2014-01-01 to 2014-12-31\) ends before the first Sentinel-2 "
            r"scenes \(2015-06-23\)",
        ),
        (
            GOOD.replace("country: Nowhere", "country: [Nowhere"),
            r"regions.yaml: not valid YAML at line \d+, column \d+: ",
        ),
    ],
)
def test_mistakes_are_caught_at_load(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=message) as err:
        _load(tmp_path, body)
    text = str(err.value)
    assert "\n" not in text and "datetime" not in text


def _outlines(folder: Path) -> Path:
    path = folder / "boundaries" / "outlines.geojson"
    path.parent.mkdir(parents=True)
    gpd.GeoDataFrame(
        {"name": ["La Pampa", "Elsewhere"]},
        geometry=[shapely.box(-69.93, -13.04, -69.86, -12.97), shapely.box(10, 10, 11, 11)],
        crs="EPSG:4326",
    ).to_file(path)
    return path


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("{name: La Pampa}", None),
        ("{name: La Pamp}", "no feature of the outline file matches name = La Pamp"),
        ("{region: La Pampa}", "the outline file has no column 'region' .*columns: name"),
        ("{name: Elsewhere}", "outline of outlines.geojson .* lies outside where EPSG:32719"),
    ],
)
def test_outline_files_are_checked_at_load(
    where: str, message: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _outlines(tmp_path)
    monkeypatch.setenv("ASMSPOTTER_SHARED_DATA", str(tmp_path))
    body = GOOD.replace(
        "{bbox: [-70.0, -13.1, -69.9, -13.0]}",
        f"{{file: boundaries/outlines.geojson, where: {where}}}",
    )
    if message is None:
        region = _load(tmp_path, body, check_files=True)["test-area"]
        assert region.outline.bounds == pytest.approx((-69.93, -13.04, -69.86, -12.97))
        return
    with pytest.raises(CatalogueError, match=f"region 'test-area': {message}"):
        _load(tmp_path, body, check_files=True)


def test_an_overlay_filter_matching_nothing_is_caught_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _outlines(tmp_path)
    monkeypatch.setenv("ASMSPOTTER_SHARED_DATA", str(tmp_path))
    overlay = (
        "    overlays:\n      - {id: pa, kind: protected_area, file: boundaries/outlines.geojson,"
        " where: {name: Nowhere}, id_field: name, name_field: name}\n"
    )
    with pytest.raises(CatalogueError, match="overlay 'pa': no feature of the overlay file"):
        _load(tmp_path, GOOD + overlay, check_files=True)


def test_the_cli_prints_a_yaml_error_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "regions.yaml"
    path.write_text("regions:\n  a:\n    name: [unclosed\n    country: X\n")
    proc = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", "regions", "--catalogue", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"asmspotter: error: {path}: not valid YAML at line ")
