"""Tests of asmspotter.detect.gallery and ``asmspotter make-chips``, against a loopback STAC API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import Point, box

from asmspotter.catalogue import utm_crs
from asmspotter.cli import main
from asmspotter.detect.chips import read_gallery
from asmspotter.detect.gallery import chip_bounds, make_gallery_from_points
from asmspotter.errors import FetchError, InputError
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import SyntheticScenes, make_scenes

BANDS = ("red", "nir", "swir16")
PERIOD = "2021-12-01/2022-03-31"  # covers the three synthetic scenes
#: Scene pixels (row, col) the test points sit on; the chips around them lie inside the grid.
PIXELS = ((40, 50), (80, 70))

pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture(autouse=True)
def _fast_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASMSPOTTER_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("ASMSPOTTER_HTTP_RETRIES", "1")
    monkeypatch.setenv("ASMSPOTTER_HTTP_BACKOFF", "0.01")


@pytest.fixture(scope="module")
def big_scenes(tmp_path_factory: pytest.TempPathFactory) -> SyntheticScenes:
    return make_scenes(
        tmp_path_factory.mktemp("scenes"),
        seed=11,
        shape=(128, 128),
        bands=("blue", "green", "red", "nir", "swir16"),
    )


@pytest.fixture()
def stac(big_scenes: SyntheticScenes) -> Iterator[StacServer]:
    with StacServer(big_scenes.items, big_scenes.files) as srv:
        yield srv


def _lonlat(scenes: SyntheticScenes, row: int, col: int) -> tuple[float, float]:
    x, y = scenes.pixel_xy(row, col)
    lon, lat = Transformer.from_crs(scenes.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat)


def _points_file(scenes: SyntheticScenes, folder: Path, far: bool = True) -> Path:
    """Two points on the scenes, with one far away (no scene) between them."""
    pts = [
        Point(*_lonlat(scenes, *PIXELS[0])),
        Point(-60.0, 5.0),
        Point(*_lonlat(scenes, *PIXELS[1])),
    ]
    if not far:
        pts.pop(1)
    path = folder / "pits_positives.geojson"
    gpd.GeoDataFrame(geometry=pts, crs="EPSG:4326").to_file(path, driver="GeoJSON")
    return path


def _expected_chip(scenes: SyntheticScenes, lon: float, lat: float) -> np.ndarray:
    """The composite the synthetic truth implies over the chip of a point (0 = no data)."""
    crs, (x0, _y0, _x1, y1) = chip_bounds(lon, lat)
    assert crs == scenes.crs
    gx0, gy1 = scenes.transform.c, scenes.transform.f
    c0, r0 = round((x0 - gx0) / 10), round((gy1 - y1) / 10)
    assert 0 <= r0 <= 128 - 48 and 0 <= c0 <= 128 - 48
    cube = np.stack([scenes.expected_median(b)[r0 : r0 + 48, c0 : c0 + 48] for b in BANDS], -1)
    return np.nan_to_num(cube, nan=0.0)


def test_chip_bounds_centre_the_point_on_the_10m_grid() -> None:
    assert utm_crs(-69.9, -12.99) == "EPSG:32719" and utm_crs(-55.0, 4.8) == "EPSG:32621"
    crs, (x0, y0, x1, y1) = chip_bounds(-69.9, -12.99)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(-69.9, -12.99)
    assert (x1 - x0, y1 - y0) == (480.0, 480.0)
    assert x0 % 10 == 0 and y0 % 10 == 0
    assert abs((x0 + x1) / 2 - x) <= 5 and abs((y0 + y1) / 2 - y) <= 5


def test_gallery_holds_the_composite_around_each_point_and_resumes(
    big_scenes: SyntheticScenes, stac: StacServer, workdirs: dict[str, Path], tmp_path: Path
) -> None:
    points = _points_file(big_scenes, tmp_path)
    out = tmp_path / "galleries"
    notes: list[str] = []
    res = make_gallery_from_points(
        points,
        PERIOD,
        out,
        bands=BANDS,
        stac_url=stac.url,
        cols=2,
        progress=False,
        log=notes.append,
    )
    assert res.gallery == out / "pits_positives_S2L2A_2021-12-01_2022-03-31.tif"
    assert [c.chip for c in res.chips] == [0, None, 1]
    assert res.chips[1].note == "no scene in the period" and "point 1" in notes[0]
    g = read_gallery(res.gallery)
    assert (g.label, g.bands) == (1, BANDS) and g.chips.shape == (2, 48, 48, 3)
    for k, i in enumerate((0, 2)):
        c = res.chips[i]
        np.testing.assert_allclose(g.chips[k], _expected_chip(big_scenes, c.lon, c.lat), atol=1e-6)
        assert 0.5 < c.clear_fraction <= 1.0
    # chip i = feature i of the points written beside the gallery
    kept = gpd.read_file(res.points)
    assert list(kept["source_index"]) == [0, 2]
    assert kept.geometry.iloc[1].distance(Point(res.chips[2].lon, res.chips[2].lat)) < 1e-9
    prov = json.loads(res.provenance.read_text())
    assert prov["bands"] == list(BANDS) and prov["n_chips"] == 2 and prov["n_points"] == 3
    assert [p["index"] for p in prov["left_out"]] == [1]
    # a second run reuses each point's cached composite: the STAC API is not asked again
    stac.clear_log()
    again = make_gallery_from_points(
        points, PERIOD, out, bands=BANDS, stac_url=stac.url, cols=2, progress=False
    )
    searches = [r for r in stac.requests if r.path.endswith("/search")]
    reads = [r for r in stac.requests if r.path.endswith(".tif")]
    assert len(searches) == 1 and not reads  # only the point without scenes is searched again
    assert read_gallery(again.gallery).chips.tobytes() == g.chips.tobytes()


def test_server_failure_leaves_no_gallery_and_bad_input_is_refused_first(
    big_scenes: SyntheticScenes, stac: StacServer, workdirs: dict[str, Path], tmp_path: Path
) -> None:
    points = _points_file(big_scenes, tmp_path, far=False)
    out = tmp_path / "galleries"
    stac.fail_next(20, status=503)
    with pytest.raises(FetchError):
        make_gallery_from_points(
            points, PERIOD, out, bands=BANDS, stac_url=stac.url, progress=False
        )
    assert not out.exists() or not any(out.iterdir())
    stac.clear_log()
    polygons = tmp_path / "areas_negatives.geojson"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:4326").to_file(polygons)
    cases = [
        (dict(points_file=polygons), "feature 0 is not a point"),
        (dict(name="pits_S2L2A"), "cannot tell the label"),
        (dict(bands=("red", "fog")), "each must be named once"),
        (dict(period="2022-13"), "month 13 does not exist"),
        (dict(points_file=tmp_path / "none.geojson"), "sample points not found"),
    ]
    for kw, message in cases:
        args = {"points_file": points, "period": PERIOD, "out_dir": out, "bands": BANDS, **kw}
        with pytest.raises(InputError, match=message):
            make_gallery_from_points(stac_url=stac.url, progress=False, **args)  # type: ignore[arg-type]
    assert not stac.requests  # every mistake is found before the first request


def test_make_chips_command(
    big_scenes: SyntheticScenes,
    stac: StacServer,
    workdirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    points = _points_file(big_scenes, tmp_path)
    out = tmp_path / "chips"
    argv = ["make-chips", str(points), "-p", PERIOD, "--out", str(out), "--stac-url", stac.url]
    argv += ["--bands", ",".join(BANDS), "--name", "pits_positives_l2a", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote " + str(out / "pits_positives_l2a.tif") in captured.out
    assert "2 chips of 3 points; 1 left out, see pits_positives_l2a.json" in captured.out
    assert "asmspotter: note: point 1" in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "pits_positives_l2a.geojson",
        "pits_positives_l2a.json",
        "pits_positives_l2a.tif",
    ]
    assert main([*argv[:-3], "--name", "pits", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asmspotter: error: cannot tell the label of pits") and "\n" not in err


def test_shared_sample_points_match_their_galleries(shared_data: Path) -> None:
    """The real points files make-chips reads: point i is chip i of the PNG gallery."""
    from asmspotter.detect.gallery import read_points

    chips = shared_data / "amw" / "chips"
    files = sorted(chips.glob("*.geojson"))
    assert len(files) >= 4
    for points in files:
        pngs = sorted(chips.glob(f"{points.stem}_S2L1C_*.png"))
        assert pngs, points.name
        lonlat = read_points(points)
        assert all(-80 < lon < -50 and -20 < lat < 12 for lon, lat in lonlat)  # the Amazon
        assert {len(read_gallery(p).chips) for p in pngs} == {len(lonlat)}, points.name
