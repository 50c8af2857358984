"""The loopback STAC server and the synthetic scene generator (asmspotter.testing)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests

from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import SyntheticScenes, make_scenes

# the loopback STAC fixtures (`scenes`, `server`, no remote connections) are in
# conftest.py; this module's synthetic scenes use this seed
pytestmark = pytest.mark.usefixtures("loopback_only")
SCENE_SEED = 1


def _client(server: StacServer):  # noqa: ANN202
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO

    return Client.open(server.url, stac_io=StacApiIO(timeout=5, max_retries=None))


def test_generator_is_seeded_and_georeferenced(tmp_path: Path, scenes: SyntheticScenes) -> None:
    again = make_scenes(tmp_path, seed=1)
    for a, b in zip(scenes.scenes, again.scenes, strict=True):
        for key in a.files:
            digest = [
                hashlib.sha256(p.read_bytes()).hexdigest() for p in (a.files[key], b.files[key])
            ]
            assert digest[0] == digest[1], key
    with rasterio.open(scenes.scenes[0].files["red"]) as src:
        assert src.crs.to_epsg() == 32719
        assert src.transform == scenes.transform
        assert (src.height, src.width) == scenes.shape
        assert src.profile["tiled"]
    with rasterio.open(scenes.scenes[0].files["scl"]) as src:
        assert src.res == (20.0, 20.0)
        scl = src.read(1)
    assert (scl == 9).sum() == 64  # the 8 x 8 cloud box (20 m pixels)
    lon0, lat0, lon1, lat1 = scenes.footprint
    assert -70 < lon0 < lon1 < -69.8 and -13.1 < lat0 < lat1 < -12.9


def test_generator_offsets_follow_the_processing_baseline(scenes: SyntheticScenes) -> None:
    for scene in scenes.scenes:
        raster = scene.item["assets"]["red"]["raster:bands"][0]
        new = scene.date >= dt.date(2022, 1, 25)
        assert scene.item["properties"]["s2:processing_baseline"] == ("04.00" if new else "03.01")
        assert raster["offset"] == pytest.approx(-0.1 if new else 0.0)
        assert raster["scale"] == pytest.approx(1e-4)
        with rasterio.open(scene.files["red"]) as src:
            dn = src.read(1).astype(float)
        index = list(scenes.scenes).index(scene)
        truth = scenes.reflectance["red"][index]
        ok = scenes.clear[index]
        assert np.allclose(dn[ok] * raster["scale"] + raster["offset"], truth[ok])


def test_landing_page_search_and_paging(server: StacServer, scenes: SyntheticScenes) -> None:
    client = _client(server)
    found = list(
        client.search(collections=["sentinel-2-l2a"], bbox=scenes.footprint, max_items=10).items()
    )
    assert [i.id for i in found] == [s.item_id for s in scenes.scenes]
    assert all(a.href.startswith(server.url + "/data/") for a in found[0].assets.values())
    server.page_size = 1  # pystac-client follows the next links
    paged = list(
        client.search(
            collections=["sentinel-2-l2a"], datetime="2022-01-01/2022-12-31", method="POST"
        ).items()
    )
    assert [i.id for i in paged] == [s.item_id for s in scenes.scenes[1:]]
    paged_get = list(client.search(collections=["sentinel-2-l2a"], method="GET").items())
    assert len(paged_get) == 3
    cloudy = client.search(
        collections=["sentinel-2-l2a"], query={"eo:cloud_cover": {"lte": 10}}
    ).item_collection()
    assert [i.properties["eo:cloud_cover"] for i in cloudy] == [8.0]
    assert not list(client.search(collections=["sentinel-2-l1c"]).items())
    far = list(client.search(bbox=[10, 10, 11, 11]).items())
    assert far == []


def test_range_requests_and_head(server: StacServer, scenes: SyntheticScenes) -> None:
    path = scenes.scenes[0].files["red"]
    data = path.read_bytes()
    url = f"{server.url}/data/{path.name}"
    part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert requests.get(url, headers={"Range": "bytes=-5"}, timeout=5).content == data[-5:]
    beyond = requests.get(url, headers={"Range": f"bytes={len(data) + 5}-"}, timeout=5)
    assert beyond.status_code == 416
    head = requests.head(url, timeout=5)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
    assert requests.get(f"{server.url}/data/nothing.tif", timeout=5).status_code == 404
    assert [r.range for r in server.requests][:2] == ["bytes=10-19", "bytes=-5"]
    # GDAL reads the COG through the server (in-process servers need EMPTY_DIR: GDAL lists
    # folders while holding the GIL)
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(url) as src:
        assert src.read(1).shape == scenes.shape


def test_faults(server: StacServer, scenes: SyntheticScenes) -> None:
    server.fail_next(2, status=503, path_prefix="/search")
    assert requests.get(server.url, timeout=5).status_code == 200  # other paths unaffected
    assert requests.get(f"{server.url}/search", timeout=5).status_code == 503
    assert requests.get(f"{server.url}/search", timeout=5).status_code == 503
    assert requests.get(f"{server.url}/search", timeout=5).status_code == 200
    server.hang_next(1, seconds=3)
    with pytest.raises(requests.Timeout):
        requests.get(f"{server.url}/conformance", timeout=0.3)
    name = scenes.scenes[0].files["red"].name
    server.truncate(name, 100)
    assert len(requests.get(f"{server.url}/data/{name}", timeout=5).content) == 100
    server.remove_band("green")
    item = requests.get(f"{server.url}/search", timeout=5).json()["features"][0]
    assert "green" not in item["assets"] and "red" in item["assets"]
    green = scenes.scenes[0].files["green"].name
    assert requests.get(f"{server.url}/data/{green}", timeout=5).status_code == 404


def test_planetary_computer_mode(scenes: SyntheticScenes) -> None:
    name = scenes.scenes[0].files["red"].name
    with StacServer(scenes.items, scenes.files, sas=True, token_lifetime=600) as srv:
        url = f"{srv.url}/data/{name}"
        # search stays open; assets need a token
        assert requests.get(f"{srv.url}/search", timeout=5).status_code == 200
        refused = requests.get(url, timeout=5)
        assert refused.status_code == 403 and "AuthenticationFailed" in refused.text
        answer = requests.get(f"{srv.sas_url}/token/sentinel-2-l2a", timeout=5).json()
        token = answer["token"]
        assert srv.issued_tokens() == [token] and "sig=" in token
        expiry = dt.datetime.fromisoformat(answer["msft:expiry"].replace("Z", "+00:00"))
        assert 590 < (expiry - dt.datetime.now(dt.UTC)).total_seconds() <= 600
        assert requests.get(f"{url}?{token}", timeout=5).content == scenes.files[name].read_bytes()
        assert srv.requests[-1].query == token
        assert requests.get(f"{url}?sig=forged", timeout=5).status_code == 403
        assert requests.get(f"{srv.sas_url}/token/nothing", timeout=5).status_code == 404
        srv.garble_next(1, path_prefix="/token")
        garbled = requests.get(f"{srv.sas_url}/token/sentinel-2-l2a", timeout=5)
        assert garbled.status_code == 200 and garbled.headers["Content-Type"] == "text/html"
        srv.expire_tokens()
        expired = requests.get(f"{url}?{token}", timeout=5)
        assert expired.status_code == 403 and "expired" in expired.text
    # without sas=True: no token endpoint, open assets
    with StacServer(scenes.items, scenes.files) as srv:
        assert requests.get(f"{srv.url}/token/sentinel-2-l2a", timeout=5).status_code == 404
        assert requests.get(f"{srv.url}/data/{name}", timeout=5).status_code == 200


def test_planetary_computer_mode_stands_in_for_blob_storage(
    scenes: SyntheticScenes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GDAL_HTTP_PROXY", raising=False)
    name = scenes.scenes[0].files["red"].name
    with StacServer(scenes.items, scenes.files, sas=True) as srv:
        assert os.environ["GDAL_HTTP_PROXY"] == srv.proxy  # GDAL's reads come to the server
        via = {"http": f"http://{srv.proxy}"}
        item = requests.get(f"{srv.url}/search", timeout=5).json()["features"][0]
        url = f"http://{srv.account}.blob.core.windows.net/sentinel-2-l2a/{name}"
        assert item["assets"]["red"]["href"] == url == f"{srv.blob_url('sentinel-2-l2a')}/{name}"
        refused = requests.get(url, proxies=via, timeout=5)
        assert refused.status_code == 403 and "AuthenticationFailed" in refused.text
        token = requests.get(f"{srv.sas_url}/token/{srv.account}/sentinel-2-l2a", timeout=5).json()[
            "token"
        ]
        assert requests.get(f"{url}?{token}", proxies=via, timeout=5).content == (
            scenes.files[name].read_bytes()
        )
        assert srv.asset_requests()[-1].host == srv.blob_host
        wrong = url.replace("/sentinel-2-l2a/", "/other/")
        assert requests.get(f"{wrong}?{token}", proxies=via, timeout=5).status_code == 404
        elsewhere = requests.get("http://example.org/x", proxies=via, timeout=5)
        assert elsewhere.status_code == 502  # a proxy for its own blob storage only
        assert (
            requests.get(f"{srv.sas_url}/token/other/sentinel-2-l2a", timeout=5).status_code == 404
        )
    assert "GDAL_HTTP_PROXY" not in os.environ


def test_server_binds_loopback_only_and_guard_blocks_remote(scenes: SyntheticScenes) -> None:
    with pytest.raises(ValueError, match="loopback"):
        StacServer(scenes.items, scenes.files, host="0.0.0.0")
    with pytest.raises(requests.ConnectionError):
        requests.get("http://192.0.2.1/", timeout=1)


def test_a_server_on_an_earlier_servers_port_is_not_read_from_gdals_cache(
    tmp_path: Path, scenes: SyntheticScenes
) -> None:
    # two servers, one after the other on the same port, serving different rasters under
    # the same file name: GDAL must read the second server's file, not the first one's,
    # also with a second copy of GDAL in the process (pyogrio's, as in a whole test run)
    import pyogrio  # noqa: F401

    name = scenes.scenes[0].files["red"].name
    values = []
    port = 0
    for scene in scenes.scenes[:2]:
        with StacServer([], {name: scene.files["red"]}, port=port) as srv:
            port = int(srv.url.rsplit(":", 1)[1])
            env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "VSI_CACHE": "TRUE"}
            with rasterio.Env(**env), rasterio.open(f"/vsicurl/{srv.url}/data/{name}") as src:
                values.append(src.read(1))
    with rasterio.open(scenes.scenes[1].files["red"]) as src:
        second = src.read(1)
    assert not np.array_equal(values[0], second)
    np.testing.assert_array_equal(values[1], second)
