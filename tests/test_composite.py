"""asmspotter.composite: masked, scaled median composites from the loopback STAC API."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from asmspotter.acquire import HttpSettings
from asmspotter.catalogue import get_region
from asmspotter.composite import (
    CloudyCompositeWarning,
    fetch_composite,
    open_composite,
)
from asmspotter.errors import DataError, FetchError, InputError
from asmspotter.layout import RADIOMETRY_TAG, composite_files
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import (
    SCL_CIRRUS,
    SCL_CLOUD_HIGH,
    SceneSpec,
    SyntheticScenes,
    make_scenes,
)

FAST = HttpSettings(timeout=1.0, retries=1, backoff=0.01)


# the loopback STAC fixtures (`scenes`, `server`, no remote connections) are in
# conftest.py; this module's synthetic scenes use this seed
pytestmark = pytest.mark.usefixtures("loopback_only")
SCENE_SEED = 3


def _fetch(scenes: SyntheticScenes, server: StacServer, **kw: object):  # noqa: ANN202
    region = scenes.region(server.url)
    return fetch_composite(region, "all", http=FAST, progress=False, **kw)  # type: ignore[arg-type]


def _scene_window(scenes: SyntheticScenes, path: Path) -> tuple[int, int]:
    """Row and column of the composite pixel over scene pixel (0, 0) (may be negative)."""
    with rasterio.open(path) as src:
        x, y = scenes.pixel_xy(0, 0)
        c, r = (~src.transform) @ (x, y)
    return int(np.floor(r)), int(np.floor(c))


def _expected(scenes: SyntheticScenes, band: str, path: Path, shape: tuple[int, int]) -> np.ndarray:
    r0, c0 = _scene_window(scenes, path)
    return scenes.expected_median(band)[-r0 : -r0 + shape[0], -c0 : -c0 + shape[1]]


def _no_partial_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert leftovers == [], leftovers


def test_values_at_clear_and_cloudy_pixels(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    result = _fetch(scenes, server)
    assert result.path == workdirs["cache"] / "synthetic" / "all" / "composite.tif"
    data = open_composite(result.path)
    assert list(data.band.values) == ["blue", "green", "red"]
    assert data.attrs["radiometry"] == "reflectance"
    red = data.sel(band="red").values
    r0, c0 = _scene_window(scenes, result.path)

    def at(row: int, col: int) -> float:
        return float(red[row + r0, col + c0])

    truth = scenes.reflectance["red"]
    assert np.isnan(at(10, 10))  # cloud in all three scenes: stays no-data
    # shadow in scene 0: the median of scenes 1 and 2 (both baseline 04.00, offset -0.1)
    assert at(25, 10) == pytest.approx(np.mean(truth[1:, 25, 10]), abs=1e-6)
    assert at(44, 8) == pytest.approx(np.mean(truth[1:, 44, 8]), abs=1e-6)  # saturated
    # cirrus in scene 1: scene 0 (offset 0) and scene 2 (offset -0.1)
    assert at(35, 40) == pytest.approx(np.mean(truth[[0, 2], 35, 40]), abs=1e-6)
    assert at(49, 49) == pytest.approx(np.mean(truth[:2, 49, 49]), abs=1e-6)  # snow in scene 2
    assert at(30, 53) == pytest.approx(np.mean(truth[:2, 30, 53]), abs=1e-6)  # no-data in 2
    assert at(40, 10) == pytest.approx(np.median(truth[:, 40, 10]), abs=1e-6)  # always clear
    # every pixel of every band
    for i, band in enumerate(data.band.values):
        expected = _expected(scenes, str(band), result.path, red.shape)
        np.testing.assert_allclose(data.values[i], expected, atol=1e-6)
    assert not result.reused


def test_scale_offset_and_provenance(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    result = _fetch(scenes, server)
    prov = result.provenance
    assert prov["software"] == "asmspotter" and prov["version"]
    assert prov["items"] == [s.item_id for s in scenes.scenes]
    assert prov["query"]["stac_url"] == server.url
    assert prov["query"]["collection"] == "sentinel-2-l2a"
    assert prov["query"]["datetime"] == "2021-12-15T00:00:00Z/2022-03-05T23:59:59Z"
    assert prov["query"]["max_cloud"] == 40
    assert prov["mask"]["method"] == "scl"
    assert sorted(prov["mask"]["masked_classes"]) == [0, 1, 3, 8, 9, 10, 11]
    offsets = [prov["scaling"][s.item_id]["red"]["offset"] for s in scenes.scenes]
    assert offsets == pytest.approx([0.0, -0.1, -0.1])
    with rasterio.open(result.path) as src:
        r0, c0 = _scene_window(scenes, result.path)
        window_clear = scenes.clear.any(axis=0)[-r0 : -r0 + src.height, -c0 : -c0 + src.width]
        assert prov["clear_fraction"] == pytest.approx(window_clear.mean(), abs=1e-6)
        assert src.crs.to_epsg() == 32719 and src.res == (10.0, 10.0)
        assert src.descriptions == ("blue", "green", "red")
        assert src.tags()[RADIOMETRY_TAG] == "reflectance"
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
        assert src.profile["tiled"]
    on_disk = result.provenance_path.read_text()
    assert '"clear_fraction"' in on_disk and scenes.scenes[0].item_id in on_disk


def test_offset_from_processing_baseline_without_raster_bands(
    scenes: SyntheticScenes, workdirs: dict[str, Path]
) -> None:
    items = scenes.items
    for item in items:
        for asset in item["assets"].values():
            asset["raster:bands"] = [{"nodata": 0}]
    with StacServer(items, scenes.files) as srv:
        result = _fetch(scenes, srv)
    assert result.provenance["scaling"][scenes.scenes[1].item_id]["red"] == {
        "scale": 1e-4,
        "offset": -0.1,
        "origin": "processing baseline",
    }
    red = open_composite(result.path, bands=["red"]).values[0]
    np.testing.assert_allclose(red, _expected(scenes, "red", result.path, red.shape), atol=1e-6)


def test_cache_hit_refresh_and_invalidation(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    first = _fetch(scenes, server)
    mtime = first.path.stat().st_mtime_ns
    seen = len(server.requests)
    again = _fetch(scenes, server)
    assert again.reused and len(server.requests) == seen  # no new request at all
    assert again.path.stat().st_mtime_ns == mtime
    assert again.provenance == first.provenance
    rebuilt = _fetch(scenes, server, refresh=True)
    assert not rebuilt.reused and len(server.requests) > seen
    assert rebuilt.path.stat().st_mtime_ns != mtime
    # a composite without its JSON is incomplete: rebuilt
    rebuilt.provenance_path.unlink()
    assert not _fetch(scenes, server).reused
    # other settings: rebuilt
    other = _fetch(scenes, server, max_cloud=10)
    assert not other.reused and other.provenance["items"] == [scenes.scenes[2].item_id]


def test_persistent_server_error_leaves_no_cache_entry(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    server.fail_next(100, status=500, path_prefix="/search")
    with pytest.raises(FetchError, match="HTTP 500"):
        _fetch(scenes, server)
    _no_partial_files(workdirs["cache"])


def test_transient_asset_errors_are_retried(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    server.fail_next(1, status=503, path_prefix="/data/")
    result = _fetch(scenes, server)
    assert result.path.is_file()
    assert sum(r.path.startswith("/data/") for r in server.requests) > 12


def test_persistent_asset_error(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    server.fail_next(1000, status=500, path_prefix="/data/")
    with pytest.raises(FetchError, match="HTTP 500"):
        _fetch(scenes, server)
    _no_partial_files(workdirs["cache"])


def test_asset_timeout(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    server.hang_next(1000, seconds=4, path_prefix="/data/")
    with pytest.raises(FetchError, match="timed out"):
        region = scenes.region(server.url)
        fetch_composite(region, "all", http=HttpSettings(timeout=1, retries=0), progress=False)
    _no_partial_files(workdirs["cache"])


def test_truncated_cog(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    name = scenes.scenes[1].files["green"].name
    server.truncate(name)
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        _fetch(scenes, server)
    assert name in str(err.value) and "\n" not in str(err.value)
    _no_partial_files(workdirs["cache"])


def test_corrupt_cog(scenes: SyntheticScenes, workdirs: dict[str, Path]) -> None:
    files: dict[str, Path | bytes] = dict(scenes.files)
    name = scenes.scenes[0].files["red"].name
    files[name] = b"this is not a GeoTIFF" * 100
    with StacServer(scenes.items, files) as srv, pytest.raises(DataError, match=name):
        _fetch(scenes, srv)
    _no_partial_files(workdirs["cache"])


def test_missing_band(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    server.remove_band("red", item_ids=[scenes.scenes[2].item_id])
    with pytest.raises(DataError, match=f"{scenes.scenes[2].item_id} has no 'red' band"):
        _fetch(scenes, server)
    _no_partial_files(workdirs["cache"])


def test_missing_band_file(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    server.remove_file(scenes.scenes[0].files["scl"].name)
    with pytest.raises(DataError, match="missing"):
        _fetch(scenes, server)
    _no_partial_files(workdirs["cache"])


def test_period_without_scenes(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    region = scenes.region(server.url, periods=["2020-Q3"])
    with pytest.raises(InputError, match=r"'synthetic' period '2020-Q3' \(2020-07-01 to "):
        fetch_composite(region, "2020-Q3", http=FAST, progress=False)
    _no_partial_files(workdirs["cache"])


def test_all_cloudy_warns_and_keeps_no_data(tmp_path: Path, workdirs: dict[str, Path]) -> None:
    cloudy = make_scenes(tmp_path / "cloudy", seed=4, all_cloudy=True)
    with StacServer(cloudy.items, cloudy.files) as srv:
        with pytest.warns(CloudyCompositeWarning, match=r"only 0\.0% of the composite"):
            result = _fetch(cloudy, srv)
    assert result.clear_fraction == 0.0
    assert np.isnan(open_composite(result.path).values).all()


def test_l1c_with_qa60_when_s2cloudless_is_missing(
    tmp_path: Path, workdirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    l1c = make_scenes(
        tmp_path / "l1c",
        seed=5,
        level="L1C",
        bands=("blue", "green", "red"),
        specs=[
            SceneSpec(dt.date(2017, 3, 1), ((SCL_CLOUD_HIGH, 4, 12, 4, 12),)),
            SceneSpec(dt.date(2017, 4, 1), ((SCL_CIRRUS, 16, 20, 16, 24),)),
        ],
    )
    monkeypatch.setitem(sys.modules, "s2cloudless", None)  # import fails
    with StacServer(l1c.items, l1c.files) as srv:
        result = _fetch(l1c, srv)
    assert result.provenance["mask"]["method"] == "qa60"
    assert result.provenance["query"]["collection"] == "sentinel-2-l1c"
    red = open_composite(result.path, bands=["red"]).values[0]
    np.testing.assert_allclose(red, _expected(l1c, "red", result.path, red.shape), atol=1e-6)


@pytest.mark.slow
def test_l1c_with_s2cloudless(tmp_path: Path, workdirs: dict[str, Path]) -> None:
    pytest.importorskip("s2cloudless")
    l1c = make_scenes(
        tmp_path / "l1c",
        seed=6,
        level="L1C",
        bands=("blue", "green", "red"),
        specs=[
            SceneSpec(dt.date(2017, 3, 1), ((SCL_CLOUD_HIGH, 4, 14, 4, 14),)),
            SceneSpec(dt.date(2017, 4, 1)),
        ],
    )
    with StacServer(l1c.items, l1c.files) as srv:
        result = _fetch(l1c, srv)
    assert result.provenance["mask"]["method"] == "s2cloudless"
    red = open_composite(result.path, bands=["red"]).values[0]
    r0, c0 = _scene_window(l1c, result.path)
    truth = l1c.reflectance["red"]
    # the cloud (scene 0) is masked: only scene 1 remains
    assert red[16 + r0, 16 + c0] == pytest.approx(truth[1, 16, 16], abs=1e-6)
    # far from the cloud both scenes count
    assert red[55 + r0, 55 + c0] == pytest.approx(truth[:, 55, 55].mean(), abs=1e-6)


def test_open_composite_errors(tmp_path: Path, scenes: SyntheticScenes) -> None:
    with pytest.raises(DataError, match="not found"):
        open_composite(tmp_path / "nothing.tif")
    with pytest.raises(DataError, match="not an ASMSpotter composite"):
        open_composite(scenes.scenes[0].files["red"])
    with pytest.raises(DataError, match="truncated or corrupt"):
        bad = tmp_path / "composite.tif"
        bad.write_bytes(b"II*\x00garbage")
        open_composite(bad)


def test_la_pampa_composites_match_the_shared_scenes(
    shared_data: Path, workdirs: dict[str, Path]
) -> None:
    region = get_region("la-pampa")
    for period, name in (
        ("2019", "R1_original_2019-08-18.tif"),
        ("2021", "R1_original_2021-07-23.tif"),
    ):
        result = fetch_composite(region, period)
        assert result.path == composite_files("la-pampa", period).tif
        source = shared_data / "scenes" / "madre-de-dios-la-pampa" / name
        with rasterio.open(source) as src, rasterio.open(result.path) as out:
            assert out.crs == src.crs and out.transform == src.transform
            assert (out.width, out.height, out.count) == (src.width, src.height, src.count)
            assert out.dtypes == src.dtypes == ("uint8",) * 3
            np.testing.assert_array_equal(out.read(), src.read())
            assert out.descriptions == ("red", "green", "blue")
            assert out.tags()[RADIOMETRY_TAG] == "display"
            assert out.nodata == 0
        assert result.provenance["source"]["file"] == str(source)
        assert result.provenance["radiometry"] == "display"
        assert result.clear_fraction > 0.99
        assert fetch_composite(region, period).reused
    with pytest.raises(DataError, match="holds red, green, blue, not nir"):
        fetch_composite(region, "2019", bands=["red", "nir"], refresh=True)


def test_la_pampa_falls_back_to_stac(
    tmp_path: Path, workdirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASMSPOTTER_SHARED_DATA", str(tmp_path / "no-shared-data"))
    day = make_scenes(tmp_path / "day", seed=7, specs=[SceneSpec(dt.date(2019, 8, 18))])
    with StacServer(day.items, day.files) as srv, pytest.warns(CloudyCompositeWarning):
        result = fetch_composite("la-pampa", "2019", stac_url=srv.url, http=FAST, progress=False)
    assert result.provenance["source"]["type"] == "stac"
    assert result.provenance["items"] == [day.scenes[0].item_id]
    assert result.radiometry == "reflectance"
    with rasterio.open(result.path) as out:  # the region's whole outline, in its CRS
        assert out.crs.to_epsg() == 32719
        assert abs(out.width - 654) <= 3 and abs(out.height - 667) <= 3  # as the local scenes
