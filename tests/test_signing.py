"""Planetary Computer signing (asmspotter.acquire.signing, the planetary-computer package).

Everything runs against the loopback STAC server in its Planetary-Computer mode
(``StacServer(..., sas=True)``): assets in a blob storage account the server stands in for,
SAS tokens at ``/token/<account>/<container>`` and 403 for asset requests without a valid
token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import planetary_computer
import pystac
import pytest

from asmspotter.acquire import (
    PC_SAS_URL,
    PC_SAS_URL_ENV,
    TOKEN_MARGIN_S,
    HttpSettings,
    StacQuery,
    clear_token_cache,
    plan_source,
    resolve_signing,
    sas_url,
    search_stac,
    sign,
    signing_provenance,
    stac_query,
)
from asmspotter.catalogue import Source, get_region
from asmspotter.composite import fetch_composite, open_composite
from asmspotter.errors import FetchError, InputError
from asmspotter.testing.stac_server import StacServer, forbid_remote_connections
from asmspotter.testing.synthetic import SyntheticScenes, make_scenes, planetary_computer_item

FAST = HttpSettings(timeout=1.0, retries=2, backoff=0.01)
PC_STAC = "https://planetarycomputer.microsoft.com/api/stac/v1"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv(PC_SAS_URL_ENV, raising=False)
    monkeypatch.delenv("PC_SDK_SAS_URL", raising=False)
    clear_token_cache()  # tokens are cached per SAS URL; ports may be reused between tests
    with forbid_remote_connections():
        yield
    clear_token_cache()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> SyntheticScenes:
    return make_scenes(tmp_path_factory.mktemp("scenes"), seed=9)


@pytest.fixture()
def pc_server(scenes: SyntheticScenes, monkeypatch: pytest.MonkeyPatch) -> Iterator[StacServer]:
    """A Planetary-Computer-like server: PC-shaped items, SAS tokens, 403 without one."""
    items = [planetary_computer_item(i) for i in scenes.items]
    with StacServer(items, scenes.files, sas=True) as srv:
        monkeypatch.setenv(PC_SAS_URL_ENV, srv.sas_url)
        yield srv


def _fetch(scenes: SyntheticScenes, server: StacServer, **kw: object):  # noqa: ANN202
    region = scenes.region(server.url)
    return fetch_composite(region, "all", http=FAST, progress=False, **kw)  # type: ignore[arg-type]


def _no_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert leftovers == [], leftovers


# -- choosing to sign (no network) ----------------------------------------------------------


def test_signing_is_automatic_on_planetary_computer_only() -> None:
    assert resolve_signing("auto", PC_STAC) == "planetary-computer"
    assert resolve_signing("auto", "https://PlanetaryComputer.microsoft.com/x") == (
        "planetary-computer"
    )
    assert resolve_signing("auto", "https://earth-search.aws.element84.com/v1") == "none"
    assert resolve_signing("auto", "https://planetarycomputer.microsoft.com.evil.example/x") == (
        "none"
    )
    assert resolve_signing("none", PC_STAC) == "none"
    assert resolve_signing("planetary-computer", "http://127.0.0.1:9") == "planetary-computer"
    with pytest.raises(InputError, match="unknown signing method 'azure'"):
        resolve_signing("azure", PC_STAC)


def test_plans_sign_by_stac_url(shared_data: Path) -> None:
    region = get_region("brokopondo")  # its outline is in the shared data
    period = region.period("2019")
    pc = plan_source(region, period, stac_url=PC_STAC, collection="sentinel-2-l2a")
    assert isinstance(pc, StacQuery) and pc.sign == "planetary-computer"
    assert "sign" not in pc.as_dict()  # not part of the cache key: same values either way
    es = plan_source(region, period)
    assert isinstance(es, StacQuery) and es.sign == "none"
    off = plan_source(region, period, stac_url=PC_STAC, sign="none")
    assert isinstance(off, StacQuery) and off.sign == "none"


def test_source_sign_option(scenes: SyntheticScenes) -> None:
    region = scenes.region("http://127.0.0.1:9")
    assert region.source.sign == "auto"
    signed = dataclasses.replace(
        region, source=Source(stac_url="http://127.0.0.1:9", sign="planetary-computer")
    )
    query = plan_source(signed, signed.periods[0])
    assert isinstance(query, StacQuery) and query.sign == "planetary-computer"
    with pytest.raises(ValueError, match="sign 'yes' must be one of"):
        Source(sign="yes")  # type: ignore[arg-type]


# -- the signer: the planetary-computer package with our timeouts and errors ----------------


def _token_of(href: str) -> str:
    return href.split("?", 1)[1]


def _is_signed(href: str) -> bool:
    return "sig" in parse_qs(urlsplit(href).query)


def _blob(server: StacServer, collection: str = "sentinel-2-l2a") -> str:
    return f"{server.blob_url(collection)}/x.tif"


def test_sign_href_forms(pc_server: StacServer) -> None:
    href = _blob(pc_server)
    signed = sign(href, FAST)
    token = pc_server.issued_tokens("sentinel-2-l2a")[0]
    assert signed == f"{href}?{token}" and _is_signed(signed)
    assert sign(signed, FAST) == signed  # already signed
    assert sign("/local/file.tif", FAST) == "/local/file.tif"
    outside = f"{pc_server.url}/data/x.tif"  # not in blob storage: nothing to sign
    assert sign(outside, FAST) == outside
    assert len(pc_server.issued_tokens()) == 1  # one token, reused
    # the package's own token cache holds it: the package alone signs with it, unasked
    assert planetary_computer.sign(href) == signed
    assert len(pc_server.issued_tokens()) == 1


def test_default_sas_url_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PC_SDK_SAS_URL", raising=False)
    assert sas_url() == PC_SAS_URL
    monkeypatch.setenv("PC_SDK_SAS_URL", "http://127.0.0.1:9/pc/token")  # the package's
    assert sas_url() == "http://127.0.0.1:9/pc"
    monkeypatch.setenv(PC_SAS_URL_ENV, "http://127.0.0.1:9/sas/")  # ours comes first
    assert sas_url() == "http://127.0.0.1:9/sas"
    monkeypatch.setenv(PC_SAS_URL_ENV, "127.0.0.1:9")
    with pytest.raises(InputError, match=PC_SAS_URL_ENV):
        sas_url()


def test_tokens_are_cached_per_container_until_shortly_before_expiry(
    scenes: SyntheticScenes, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = [{**scenes.items[0], "id": "other", "collection": "landsat-c2-l2", "assets": {}}]
    items = [*map(planetary_computer_item, scenes.items), *other]
    with StacServer(items, scenes.files, sas=True) as srv:
        monkeypatch.setenv(PC_SAS_URL_ENV, srv.sas_url)
        first = sign(_blob(srv), FAST)
        assert sign(_blob(srv), FAST) == first
        # one token per container (each collection's assets are in a container of their own)
        assert _token_of(sign(_blob(srv, "landsat-c2-l2"), FAST)) != _token_of(first)
        assert [r.path for r in srv.requests] == [
            f"/token/{srv.account}/sentinel-2-l2a",
            f"/token/{srv.account}/landsat-c2-l2",
        ]
        expiry = signing_provenance([_item(first)])["collections"]["sentinel-2-l2a"]
        left = dt.datetime.fromisoformat(expiry["token_expiry"]) - dt.datetime.now(dt.UTC)
        assert 3590 < left.total_seconds() <= 3600
    # tokens that live shorter than the margin are asked for every time
    with StacServer(items, scenes.files, sas=True, token_lifetime=TOKEN_MARGIN_S - 100) as srv:
        monkeypatch.setenv(PC_SAS_URL_ENV, srv.sas_url)
        sign(_blob(srv), FAST)
        second = sign(_blob(srv), FAST)
        assert len(srv.issued_tokens()) == 2 and _token_of(second) == srv.issued_tokens()[-1]


def _item(href: str) -> pystac.Item:
    return pystac.Item.from_dict(
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": "x",
            "collection": "sentinel-2-l2a",
            "geometry": None,
            "properties": {"datetime": "2020-01-01T00:00:00Z"},
            "links": [],
            "assets": {"B04": {"href": href}},
        }
    )


def test_token_endpoint_errors_are_retried(pc_server: StacServer) -> None:
    pc_server.fail_next(2, status=503, path_prefix="/token")
    signed = sign(_blob(pc_server), FAST)
    assert _token_of(signed) == pc_server.issued_tokens()[0]
    assert sum(r.path.startswith("/token/") for r in pc_server.requests) == 3


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "500",
            r"SAS API http://127\.0\.0\.1:\d+/token/asmspotter\w+/sentinel-2-l2a answered HTTP "
            r"500 \(3 tries\) when asked for a token for storage container "
            r"'asmspotter\w+/sentinel-2-l2a'",
        ),
        ("hang", r"did not answer within 0\.3 s; set ASMSPOTTER_HTTP_TIMEOUT"),
        ("garbage", r"answered something that is not a SAS token"),
        (
            "unknown",
            r"answered HTTP 404 when asked for a token for storage container '\w+/nothing'",
        ),
    ],
)
def test_token_endpoint_failures_give_one_line_fetch_errors(
    pc_server: StacServer, fault: str, message: str
) -> None:
    http, collection = FAST, "sentinel-2-l2a"
    if fault == "500":
        pc_server.fail_next(100, status=500, path_prefix="/token")
    elif fault == "hang":
        pc_server.hang_next(100, seconds=3, path_prefix="/token")
        http = HttpSettings(timeout=0.3, retries=1, backoff=0.01)
    elif fault == "garbage":
        pc_server.garble_next(1, path_prefix="/token")
    else:
        collection = "nothing"
    with pytest.raises(FetchError, match=message) as err:
        sign(_blob(pc_server, collection), http)
    assert "\n" not in str(err.value)


def test_unreachable_token_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(PC_SAS_URL_ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(FetchError, match=r"cannot reach Planetary Computer SAS API .*2 tries"):
        sign("http://acct.blob.core.windows.net/c/x.tif", HttpSettings(1, 1, 0.01))


def test_searches_sign_as_the_source_says_and_sign_copies(
    pc_server: StacServer, scenes: SyntheticScenes
) -> None:
    region = scenes.region(pc_server.url)
    plain = search_stac(stac_query(region, region.periods[0], sign="none"), FAST)
    assert pc_server.issued_tokens() == []
    assert not any(_is_signed(a.href) for i in plain.items for a in i.assets.values())
    signed = search_stac(stac_query(region, region.periods[0], sign="planetary-computer"), FAST)
    assert len(pc_server.issued_tokens()) == 1  # the search results were signed as they came
    assert all(_is_signed(a.href) for i in signed.items for a in i.assets.values())
    item = plain.items[0]
    copy = sign(item, FAST)
    assert all(_is_signed(a.href) for a in copy.assets.values())
    assert not any(_is_signed(a.href) for a in item.assets.values())  # the original is intact
    assert len(pc_server.issued_tokens()) == 1


# -- composites ------------------------------------------------------------------------------


def test_signed_composite_equals_the_unsigned_one(
    scenes: SyntheticScenes,
    pc_server: StacServer,
    workdirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with StacServer(scenes.items, scenes.files) as plain:  # Earth-Search-like, open assets
        unsigned = _fetch(scenes, plain)
    assert unsigned.provenance["signing"] == {"method": "none"}
    expected = open_composite(unsigned.path)

    monkeypatch.setenv(PC_SAS_URL_ENV, pc_server.sas_url)
    signed = _fetch(scenes, pc_server, sign="planetary-computer", refresh=True)
    got = open_composite(signed.path)
    assert list(got.band.values) == list(expected.band.values) == ["blue", "green", "red"]
    np.testing.assert_array_equal(got.values, expected.values)
    assert signed.clear_fraction == unsigned.clear_fraction
    # PC items have no raster:bands: the offset came from the processing baseline
    scaling = signed.provenance["scaling"][scenes.scenes[1].item_id]["red"]
    assert scaling == {"scale": 1e-4, "offset": -0.1, "origin": "processing baseline"}

    token = pc_server.issued_tokens("sentinel-2-l2a")
    assert len(token) == 1  # one token for all scenes and bands
    reads = pc_server.asset_requests()
    assert reads and all(parse_qs(r.query).get("sig") == parse_qs(token[0])["sig"] for r in reads)
    signing = signed.provenance["signing"]
    assert signing["method"] == "planetary-computer"
    assert signing["sas_url"] == pc_server.sas_url
    assert set(signing["collections"]) == {"sentinel-2-l2a"}
    # the token (or its signature) is recorded nowhere
    on_disk = signed.provenance_path.read_text()
    assert token[0] not in on_disk and parse_qs(token[0])["sig"][0] not in on_disk
    assert "sig=" not in on_disk


def test_unsigned_reads_are_refused_with_a_hint_to_sign(
    scenes: SyntheticScenes, pc_server: StacServer, workdirs: dict[str, Path]
) -> None:
    with pytest.raises(FetchError) as err:
        _fetch(scenes, pc_server)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        f"access denied (HTTP 403) reading {pc_server.blob_url('sentinel-2-l2a')}/"
    )
    assert "--sign planetary-computer" in msg
    assert pc_server.issued_tokens() == []
    _no_files(workdirs["cache"])


def test_refused_token_says_so_and_is_renewed_next_time(
    scenes: SyntheticScenes,
    pc_server: StacServer,
    workdirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PC_SAS_URL_ENV, pc_server.sas_url)
    stale = _token_of(sign(_blob(pc_server), FAST))  # cached...
    pc_server.expire_tokens()  # ...but the server no longer accepts it
    with pytest.raises(FetchError, match=r"HTTP 403.*SAS token was refused") as err:
        _fetch(scenes, pc_server, sign="planetary-computer")
    assert stale not in str(err.value) and "sig=" not in str(err.value)
    _no_files(workdirs["cache"])
    result = _fetch(scenes, pc_server, sign="planetary-computer")  # a fresh token
    assert len(pc_server.issued_tokens()) == 2 and result.path.is_file()


def test_token_endpoint_failure_leaves_no_cache_entry(
    scenes: SyntheticScenes,
    pc_server: StacServer,
    workdirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PC_SAS_URL_ENV, pc_server.sas_url)
    pc_server.fail_next(100, status=500, path_prefix="/token")
    with pytest.raises(FetchError, match=r"SAS API .* answered HTTP 500 \(3 tries\)") as err:
        _fetch(scenes, pc_server, sign="planetary-computer")
    assert "\n" not in str(err.value)
    assert sum(r.path.startswith("/token/") for r in pc_server.requests) == 3
    assert not pc_server.asset_requests()
    _no_files(workdirs["cache"])


def test_read_errors_never_show_tokens() -> None:
    from asmspotter.composite.blocks import read_error as _read_error

    query = StacQuery(
        "r",
        "p",
        PC_STAC,
        "sentinel-2-l2a",
        (0, 0, 1, 1),
        "2020-01-01",
        "2020-12-31",
        40,
        sign="none",
    )
    href = "https://acct.blob.core.windows.net/s2/x_B04.tif"
    logged = [
        f"Failed to load {href}?st=1&sig=SECRET:1 due to rasterio error: 'HTTP response code: 409'"
    ]
    err = _read_error(RuntimeError("HTTP response code: 409"), query, logged)
    assert isinstance(err, FetchError)
    assert str(err).startswith(f"access denied (HTTP 409) reading {href}; its assets need signed")
    signed = dataclasses.replace(query, sign="planetary-computer")
    corrupt = _read_error(
        RuntimeError(f"'/vsicurl/{href}?se=2&sig=SECRET' not recognized as a supported format"),
        signed,
    )
    assert "SECRET" not in str(corrupt) and href in str(corrupt)
