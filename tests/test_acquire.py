"""asmspotter.acquire: planning sources and searching the loopback STAC API."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pystac
import pytest

from asmspotter.acquire import (
    BandScaling,
    HttpSettings,
    LocalScene,
    StacQuery,
    asset_key,
    band_scaling,
    plan_source,
    search_stac,
    stac_query,
)
from asmspotter.catalogue import DEFAULT_STAC_URL, get_region
from asmspotter.errors import DataError, FetchError, InputError
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import SyntheticScenes, planetary_computer_item

FAST = HttpSettings(timeout=1.0, retries=2, backoff=0.01)


# the loopback STAC fixtures (`scenes`, `server`, no remote connections) are in
# conftest.py; this module's synthetic scenes use this seed
pytestmark = pytest.mark.usefixtures("loopback_only")
SCENE_SEED = 2


def _query(scenes: SyntheticScenes, server: StacServer, **kw: object) -> StacQuery:
    region = scenes.region(server.url)
    return stac_query(region, region.periods[0], **kw)  # type: ignore[arg-type]


def test_l1c_before_l2a_from_and_overrides(shared_data: Path) -> None:
    region = get_region("brokopondo")  # its outline is in the shared data
    early = plan_source(region, region.period("2016"))
    late = plan_source(region, region.period("2019"))
    assert isinstance(early, StacQuery) and isinstance(late, StacQuery)
    assert (early.collection, early.level) == ("sentinel-2-l1c", "L1C")
    assert (late.collection, late.level) == ("sentinel-2-l2a", "L2A")
    assert late.stac_url == DEFAULT_STAC_URL and late.max_cloud == 40
    assert late.start == "2019-01-01" and late.end == "2019-12-31"
    custom = plan_source(
        region,
        region.period("2019"),
        stac_url="http://127.0.0.1:9/stac/",
        collection="my-l2a",
        max_cloud=15,
    )
    assert isinstance(custom, StacQuery)
    assert (custom.stac_url, custom.collection, custom.max_cloud) == (
        "http://127.0.0.1:9/stac",
        "my-l2a",
        15,
    )
    with pytest.raises(InputError, match="max cloud"):
        plan_source(region, region.period("2019"), max_cloud=101)
    with pytest.raises(InputError, match="http"):
        plan_source(region, region.period("2019"), stac_url="ftp://example")


def test_la_pampa_is_local_with_shared_data(shared_data: Path) -> None:
    region = get_region("la-pampa")
    plan = plan_source(region, region.period("2019"))
    assert isinstance(plan, LocalScene)
    assert plan.path == shared_data / "scenes/madre-de-dios-la-pampa/R1_original_2019-08-18.tif"
    assert plan.bands == ("red", "green", "blue") and plan.radiometry == "display"


def test_la_pampa_falls_back_to_stac_without_shared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASMSPOTTER_SHARED_DATA", str(tmp_path / "absent"))
    region = get_region("la-pampa")
    plan = plan_source(region, region.period("2021"))
    assert isinstance(plan, StacQuery)  # planned without any network access
    assert plan.stac_url == DEFAULT_STAC_URL and plan.collection == "sentinel-2-l2a"
    assert (plan.start, plan.end) == ("2021-07-23", "2021-07-23")
    assert plan.bbox == pytest.approx((-69.925, -13.031, -69.865, -12.971))


def test_search_finds_items_with_cloud_filter(scenes: SyntheticScenes, server: StacServer) -> None:
    found = search_stac(_query(scenes, server), FAST)
    assert found.ids == [s.item_id for s in scenes.scenes]
    assert found.items[0].assets["red"].href.startswith(server.url)
    few = search_stac(_query(scenes, server, max_cloud=10), FAST)
    assert few.ids == [scenes.scenes[2].item_id]  # the only scene with <= 10 % cloud


def test_no_scenes_names_region_dates_and_collection(
    scenes: SyntheticScenes, server: StacServer
) -> None:
    region = scenes.region(server.url, periods=["2019"])
    with pytest.raises(InputError) as err:
        search_stac(stac_query(region, region.periods[0]), FAST)
    msg = str(err.value)
    assert "'synthetic'" in msg and "2019-01-01 to 2019-12-31" in msg
    assert "'sentinel-2-l2a'" in msg and server.url in msg and "\n" not in msg


def test_server_errors_are_retried(scenes: SyntheticScenes, server: StacServer) -> None:
    server.fail_next(2, status=500, path_prefix="/search")
    found = search_stac(_query(scenes, server), FAST)
    assert len(found.items) == 3
    assert sum(r.path == "/search" for r in server.requests) == 3


def test_persistent_500_gives_clear_fetch_error(
    scenes: SyntheticScenes, server: StacServer
) -> None:
    server.fail_next(100, status=500)
    with pytest.raises(FetchError, match=r"answered HTTP 500 \(3 tries\)") as err:
        search_stac(_query(scenes, server), FAST)
    assert "\n" not in str(err.value)
    assert len(server.requests) == 3  # the landing page, tried three times


def test_timeout_gives_clear_fetch_error(scenes: SyntheticScenes, server: StacServer) -> None:
    server.hang_next(10, seconds=5, path_prefix="/search")
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not answer within 0.3 s"):
        search_stac(_query(scenes, server), HttpSettings(timeout=0.3, retries=1, backoff=0.01))
    assert time.monotonic() - started < 4


def test_unreachable_server(scenes: SyntheticScenes) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    region = scenes.region(f"http://127.0.0.1:{port}")
    with pytest.raises(FetchError, match="cannot reach STAC API"):
        search_stac(stac_query(region, region.periods[0]), HttpSettings(1, 1, 0.01))


def test_not_stac(scenes: SyntheticScenes, server: StacServer) -> None:
    region = scenes.region(server.url + "/data")
    with pytest.raises(FetchError):
        search_stac(stac_query(region, region.periods[0]), FAST)


def test_asset_keys_and_scaling(scenes: SyntheticScenes) -> None:
    item = pystac.Item.from_dict(scenes.items[1])
    assert asset_key(item, "red") == "red"
    scaling = band_scaling(item, "red")
    assert (scaling.scale, scaling.offset, scaling.origin) == (1e-4, -0.1, "raster:bands")
    # Planetary-Computer-style keys and no raster:bands: the processing baseline decides
    pc = dict(scenes.items[2])
    pc["assets"] = {
        "B04": {**pc["assets"]["red"], "raster:bands": [{"nodata": 0}]},
        "SCL": pc["assets"]["scl"],
    }
    pc_item = pystac.Item.from_dict(pc)
    assert asset_key(pc_item, "red") == "B04" and asset_key(pc_item, "scl") == "SCL"
    assert band_scaling(pc_item, "B04").offset == -0.1
    old = dict(scenes.items[0])
    old["assets"] = {"B04": {**old["assets"]["red"], "raster:bands": []}}
    assert band_scaling(pystac.Item.from_dict(old), "B04").offset == 0.0
    with pytest.raises(DataError, match="no 'nir08' band"):
        asset_key(item, "nir08")


@pytest.mark.parametrize(
    ("baseline", "offset"),
    [
        ("05.09", -0.1),
        ("04.00", -0.1),
        ("4.00", -0.1),
        ("N0400", -0.1),
        ("03.01", 0.0),
        ("3.01", 0.0),
        ("02.14", 0.0),
    ],
)
def test_planetary_computer_items(scenes: SyntheticScenes, baseline: str, offset: float) -> None:
    # PC's L2A items: band-id keys, eo:bands with common names, no raster:bands at all
    pc = planetary_computer_item(scenes.items[0])
    pc["properties"]["s2:processing_baseline"] = baseline
    item = pystac.Item.from_dict(pc)
    keys = {b: asset_key(item, b) for b in ("blue", "green", "red", "nir", "scl")}
    assert keys == {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}
    assert "raster:bands" not in pc["assets"]["B04"]
    assert band_scaling(item, "B04") == BandScaling(1e-4, offset, "processing baseline")


def test_http_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASMSPOTTER_HTTP_TIMEOUT", "7.5")
    monkeypatch.setenv("ASMSPOTTER_HTTP_RETRIES", "2")
    settings = HttpSettings.from_env()
    assert (settings.timeout, settings.retries) == (7.5, 2)
    opts = settings.gdal_options()
    assert opts["GDAL_HTTP_TIMEOUT"] == "8" and opts["GDAL_HTTP_MAX_RETRY"] == "2"
    assert opts["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    monkeypatch.setenv("ASMSPOTTER_HTTP_TIMEOUT", "soon")
    with pytest.raises(InputError, match="ASMSPOTTER_HTTP_TIMEOUT"):
        HttpSettings.from_env()
