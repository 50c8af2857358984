"""Find the scenes for a region and period: a STAC API search or local GeoTIFFs.

:func:`plan_source` decides, without touching the network, where a period's imagery comes
from: the region's local GeoTIFF when its source is ``local`` and the file is present, else
a STAC search (:class:`StacQuery`) of the region's outline and dates with the scene-cloud
filter (also the fallback of local sources whose files are absent). :func:`search_stac`
runs a query with pystac-client, with timeouts and retries with backoff on server errors
(5xx) and connection errors, and turns every failure into a one-line
:class:`~asmspotter.errors.FetchError`.

HTTP behaviour is set by :class:`HttpSettings` (environment: ``ASMSPOTTER_HTTP_TIMEOUT``,
``ASMSPOTTER_HTTP_RETRIES``, ``ASMSPOTTER_HTTP_BACKOFF``); :meth:`HttpSettings.gdal_options`
gives the matching GDAL settings for reading the scenes' COGs.

Microsoft Planetary Computer keeps its assets in Azure blob storage that can only be read
with a SAS token: :class:`PlanetaryComputerSigner` asks the SAS API (``GET
{sas_url}/token/{collection}``; ``ASMSPOTTER_PC_SAS_URL`` points it elsewhere) for a token
per collection, with the same timeouts and retries, caches it until shortly before it
expires and appends it to the asset hrefs. Queries sign automatically when the STAC URL's
host is planetarycomputer.microsoft.com (:func:`resolve_signing`).

Example:
    >>> from asmspotter.catalogue import get_region
    >>> region = get_region("brokopondo")
    >>> plan_source(region, region.period("2016")).collection          # doctest: +SKIP
    'sentinel-2-l1c'

"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from asmspotter import paths
from asmspotter.catalogue import SIGN_METHODS, Period, Radiometry, Region
from asmspotter.errors import DataError, FetchError, InputError, NoScenesError

if TYPE_CHECKING:
    import pystac

log = logging.getLogger(__name__)

TIMEOUT_ENV = "ASMSPOTTER_HTTP_TIMEOUT"
RETRIES_ENV = "ASMSPOTTER_HTTP_RETRIES"
BACKOFF_ENV = "ASMSPOTTER_HTTP_BACKOFF"

#: HTTP status codes that are retried (server trouble and rate limiting).
RETRY_STATUS: tuple[int, ...] = (429, 500, 502, 503, 504)

#: Host of Microsoft Planetary Computer's APIs; STAC URLs on it sign assets by default.
PC_HOST = "planetarycomputer.microsoft.com"
#: Planetary Computer's SAS API (tokens at ``{url}/token/{collection}``).
PC_SAS_URL = "https://planetarycomputer.microsoft.com/api/sas/v1"
PC_SAS_URL_ENV = "ASMSPOTTER_PC_SAS_URL"
#: Signing methods a query resolves to (``auto`` is resolved by :func:`resolve_signing`).
SIGNING: tuple[str, ...] = ("none", "planetary-computer")

#: Sentinel-2 band ids per canonical (Earth Search v1) asset key, for STAC APIs that key
#: their assets by band id (Planetary Computer: ``B04``, ``SCL``).
S2_BAND_IDS: Mapping[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
    "qa60": "QA60",
}


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts and retries for every request to a STAC API or its assets.

    Attributes:
        timeout: seconds to wait for a connection or an answer.
        retries: how many times a failed request (5xx, 429, connection error, timeout)
            is retried before giving up.
        backoff: backoff factor in seconds; the n-th retry waits about
            ``backoff * 2 ** (n - 1)``.

    """

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"HTTP timeout must be positive, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"HTTP retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"HTTP backoff must be >= 0, got {self.backoff}")

    @classmethod
    def from_env(cls) -> HttpSettings:
        """Read the settings from the environment (defaults where unset).

        Raises:
            InputError: a variable is not a valid number.

        """
        try:
            return cls(
                timeout=float(os.environ.get(TIMEOUT_ENV) or cls.timeout),
                retries=int(os.environ.get(RETRIES_ENV) or cls.retries),
                backoff=float(os.environ.get(BACKOFF_ENV) or cls.backoff),
            )
        except ValueError as exc:
            raise InputError(
                f"invalid HTTP setting in {TIMEOUT_ENV}/{RETRIES_ENV}/{BACKOFF_ENV}: {exc}"
            ) from None

    def retry(self) -> Any:
        """Return the urllib3 ``Retry`` policy for requests sessions."""
        from urllib3.util.retry import Retry

        return Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff,
            status_forcelist=RETRY_STATUS,
            allowed_methods=None,  # retry POST searches too: they are idempotent
            raise_on_status=False,
        )

    def session(self) -> Any:
        """Return a ``requests.Session`` that retries with backoff (pass ``self.timeout``)."""
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(max_retries=self.retry())
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration for reading remote COGs with the same timeouts and retries."""
        seconds = str(max(1, math.ceil(self.timeout)))
        return {
            "GDAL_HTTP_TIMEOUT": seconds,
            "GDAL_HTTP_CONNECTTIMEOUT": seconds,
            "GDAL_HTTP_MAX_RETRY": str(self.retries),
            "GDAL_HTTP_RETRY_DELAY": str(max(self.backoff, 0.01)),
            "GDAL_HTTP_RETRY_CODES": ",".join(str(c) for c in RETRY_STATUS),
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MULTIRANGE": "SINGLE_GET",
            "CPL_VSIL_CURL_USE_HEAD": "NO",
            "VSI_CACHE": "TRUE",
        }


@dataclass(frozen=True)
class StacQuery:
    """A STAC item search for one region and period.

    Attributes:
        region: region id.
        period: period id.
        stac_url: STAC API root.
        collection: the collection searched.
        bbox: (min lon, min lat, max lon, max lat) searched.
        start: first day (ISO date), inclusive.
        end: last day (ISO date), inclusive.
        max_cloud: maximum ``eo:cloud_cover`` in percent.
        level: ``L2A`` (SCL masks) or ``L1C`` (s2cloudless or QA60 masks).
        sign: how the found items' asset hrefs are signed before reading (``none`` or
            ``planetary-computer``). Not part of :meth:`as_dict`: signing changes how
            the files are read, not their values.

    """

    region: str
    period: str
    stac_url: str
    collection: str
    bbox: tuple[float, float, float, float]
    start: str
    end: str
    max_cloud: float
    level: str = "L2A"
    sign: str = "none"

    def __post_init__(self) -> None:
        assert self.stac_url.startswith(("http://", "https://")), self.stac_url
        assert self.start <= self.end, (self.start, self.end)
        assert 0 <= self.max_cloud <= 100, self.max_cloud
        assert self.level in ("L2A", "L1C"), self.level
        assert self.sign in SIGNING, self.sign

    @property
    def datetime(self) -> str:
        """The STAC ``datetime`` interval searched."""
        return f"{self.start}T00:00:00Z/{self.end}T23:59:59Z"

    def describe(self) -> str:
        """One line naming the region, dates, collection and API searched."""
        return (
            f"region {self.region!r} period {self.period!r} ({self.start} to {self.end}) in "
            f"collection {self.collection!r} at {self.stac_url} with cloud cover <= "
            f"{self.max_cloud:g}%"
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the query as JSON-ready provenance."""
        return {
            "stac_url": self.stac_url,
            "collection": self.collection,
            "bbox": list(self.bbox),
            "datetime": self.datetime,
            "max_cloud": self.max_cloud,
            "level": self.level,
        }


@dataclass(frozen=True)
class StacScenes:
    """The items a :class:`StacQuery` found (at least one), oldest first."""

    query: StacQuery
    items: tuple[pystac.Item, ...] = field(repr=False)

    def __post_init__(self) -> None:
        assert self.items, "a search result holds at least one item"

    @property
    def ids(self) -> list[str]:
        """The item ids."""
        return [i.id for i in self.items]


@dataclass(frozen=True)
class LocalScene:
    """A local GeoTIFF holding a period's imagery.

    Attributes:
        region: region id.
        period: period id.
        path: the file (it exists).
        bands: canonical band names of its bands, in order.
        radiometry: how its values are to be read.

    """

    region: str
    period: str
    path: Path
    bands: tuple[str, ...]
    radiometry: Radiometry

    def __post_init__(self) -> None:
        assert self.bands, "a local scene has bands"
        assert self.radiometry in ("reflectance", "display"), self.radiometry

    def as_dict(self) -> dict[str, Any]:
        """Return the source as JSON-ready provenance."""
        return {
            "type": "local",
            "file": str(self.path),
            "bands": list(self.bands),
            "radiometry": self.radiometry,
        }


def stac_query(
    region: Region,
    period: Period,
    *,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
) -> StacQuery:
    """Build the STAC search for a region and period from its source (overridable).

    Periods before the source's ``l2a_from`` search its L1C collection unless a collection
    is given. ``sign`` (default: the source's) is resolved with :func:`resolve_signing`.

    Raises:
        InputError: the URL is not http(s), ``max_cloud`` is outside 0..100 or ``sign``
            is not a signing method.

    """
    source = region.source
    url = (stac_url or source.stac_url).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"STAC API URL must start with http:// or https://, got {url!r}")
    cloud = source.max_cloud if max_cloud is None else float(max_cloud)
    if not 0 <= cloud <= 100:
        raise InputError(f"max cloud cover must be within 0..100 percent, got {cloud:g}")
    coll = collection or source.collection_for(period)
    level = "L1C" if "l1c" in coll.lower() else "L2A"
    return StacQuery(
        region=region.id,
        period=period.id,
        stac_url=url,
        collection=coll,
        bbox=tuple(round(v, 7) for v in region.bbox),  # type: ignore[arg-type]
        start=period.start.isoformat(),
        end=period.end.isoformat(),
        max_cloud=cloud,
        level=level,
        sign=resolve_signing(sign or source.sign, url),
    )


def resolve_signing(sign: str, stac_url: str) -> str:
    """Return the signing method (one of :data:`SIGNING`) for a STAC API.

    ``auto`` signs for Planetary Computer when the URL's host is (a subdomain of)
    planetarycomputer.microsoft.com and does not sign otherwise.

    Raises:
        InputError: ``sign`` is not one of the catalogue's sign methods.

    """
    if sign not in SIGN_METHODS:
        raise InputError(
            f"unknown signing method {sign!r}; expected one of {', '.join(SIGN_METHODS)}"
        )
    if sign != "auto":
        return sign
    host = (urlsplit(stac_url).hostname or "").lower()
    return "planetary-computer" if host == PC_HOST or host.endswith("." + PC_HOST) else "none"


def local_scene(region: Region, period: Period) -> LocalScene | None:
    """Return the region's local GeoTIFF for ``period``, or None to search STAC instead.

    Raises:
        InputError: the source has no file for this period.
        DataError: the file is absent and the source has no STAC fallback.

    """
    source = region.source
    if source.kind != "local":
        return None
    name = source.local_files.get(period.id)
    if name is None:
        if source.fallback == "stac":
            return None
        raise InputError(f"region {region.id!r} has no local file for period {period.id!r}")
    assert source.local_dir is not None
    path = source.local_dir / name
    if path.is_file():
        return LocalScene(region.id, period.id, path, source.bands, source.radiometry)
    if source.fallback == "stac":
        log.info("%s not found; searching %s instead", path, source.stac_url)
        return None
    raise DataError(
        f"region {region.id!r} period {period.id!r}: local scene not found: {path} "
        f"(set {paths.SHARED_DATA_ENV} to the shared data folder)"
    )


def plan_source(
    region: Region,
    period: Period,
    *,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
) -> LocalScene | StacQuery:
    """Decide where a period's imagery comes from, without any network access.

    Local sources use their file when present; otherwise (and for STAC sources) the
    region's STAC API is searched, with ``stac_url``, ``collection``, ``max_cloud`` and
    ``sign`` overriding the catalogue.
    """
    local = local_scene(region, period)
    if local is not None:
        return local
    return stac_query(
        region,
        period,
        stac_url=stac_url,
        collection=collection,
        max_cloud=max_cloud,
        sign=sign,
    )


def search_stac(query: StacQuery, http: HttpSettings | None = None) -> StacScenes:
    """Run a STAC item search.

    Items above the cloud limit are dropped even when the API ignores the ``query``
    extension. Requests time out after ``http.timeout`` seconds and 5xx answers, connection
    errors and timeouts are retried with exponential backoff.

    Raises:
        FetchError: the API failed, timed out or answered something that is not STAC.
        InputError: the search found no scene (the message names region, dates and
            collection).

    """
    import pystac
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    http = http or HttpSettings.from_env()
    stac_io = StacApiIO(timeout=http.timeout, max_retries=http.retry())
    try:
        client = Client.open(query.stac_url, stac_io=stac_io, timeout=http.timeout)
        search = client.search(
            collections=[query.collection],
            bbox=list(query.bbox),
            datetime=query.datetime,
            query={"eo:cloud_cover": {"lte": query.max_cloud}},
            limit=100,
        )
        items = list(search.items())
    except APIError as exc:
        raise FetchError(_api_error_message(query, exc, http)) from None
    except (pystac.STACError, ValueError, KeyError, TypeError) as exc:
        raise FetchError(
            f"STAC API {query.stac_url} answered something that is not STAC: {_first_line(exc)}"
        ) from None
    items = [i for i in items if _cloud_cover(i) <= query.max_cloud]
    if not items:
        raise NoScenesError(
            f"no Sentinel-2 scenes found for {query.describe()}; try a longer period or a "
            "higher --max-cloud"
        )
    items.sort(key=lambda i: (i.datetime.isoformat() if i.datetime else "", i.id))
    log.info("found %d scenes for %s", len(items), query.describe())
    return StacScenes(query, tuple(items))


def find_scenes(
    region: Region,
    period: Period,
    *,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
    http: HttpSettings | None = None,
) -> LocalScene | StacScenes:
    """Return a period's imagery: the local GeoTIFF, or the items a STAC search found.

    Found items are returned as the API gave them; :class:`PlanetaryComputerSigner` signs
    their hrefs when ``StacScenes.query.sign`` asks for it.
    """
    plan = plan_source(
        region,
        period,
        stac_url=stac_url,
        collection=collection,
        max_cloud=max_cloud,
        sign=sign,
    )
    if isinstance(plan, LocalScene):
        return plan
    return search_stac(plan, http)


def asset_key(item: pystac.Item, band: str) -> str:
    """Return the key of the asset holding canonical ``band`` in ``item``.

    Accepts Earth Search keys (``red``), band ids (``B04``, case-insensitive) and assets
    whose ``eo:bands`` common name is the band.

    Raises:
        DataError: the item has no such asset.

    """
    assets = item.assets
    if band in assets:
        return band
    lower = {k.lower(): k for k in assets}
    for candidate in (band, S2_BAND_IDS.get(band, ""), S2_BAND_IDS.get(band, "") + "_10m"):
        if candidate and candidate.lower() in lower:
            return lower[candidate.lower()]
    for key, asset in assets.items():
        for eo_band in asset.extra_fields.get("eo:bands") or []:
            if eo_band.get("common_name") == band or eo_band.get("name") == band:
                return key
    raise DataError(
        f"scene {item.id} has no {band!r} band (assets: {', '.join(sorted(assets)) or 'none'})"
    )


@dataclass(frozen=True)
class BandScaling:
    """How to turn a band's digital numbers into reflectance: ``dn * scale + offset``.

    Attributes:
        scale: multiplier.
        offset: added after scaling (-0.1 for processing baseline 04.00).
        origin: where the values came from (``raster:bands`` or ``processing baseline``).

    """

    scale: float
    offset: float
    origin: str

    def __post_init__(self) -> None:
        assert self.scale > 0, f"scale must be positive, got {self.scale}"


#: Processing baseline 04.00 (offset -1000 DN) applies to scenes from this day on.
BASELINE_04_FROM = "2022-01-25"


def band_scaling(item: pystac.Item, key: str) -> BandScaling:
    """Return the scale and offset of asset ``key`` of ``item``.

    Uses the asset's ``raster:bands`` metadata; without scale or offset there (Planetary
    Computer's items), falls back on the item's ``s2:processing_baseline`` (or, without
    one, its date) to apply the -0.1 offset of baseline 04.00 and later.
    """
    raster = item.assets[key].extra_fields.get("raster:bands") or []
    if raster and ("scale" in raster[0] or "offset" in raster[0]):
        return BandScaling(
            float(raster[0].get("scale", 1.0)),
            float(raster[0].get("offset", 0.0)),
            "raster:bands",
        )
    baseline = _baseline_number(item.properties.get("s2:processing_baseline"))
    if baseline is not None:
        new = baseline >= 4.0
    else:
        when = item.datetime
        new = when is not None and when.date().isoformat() >= BASELINE_04_FROM
    return BandScaling(1e-4, -0.1 if new else 0.0, "processing baseline")


def _baseline_number(value: Any) -> float | None:
    """``s2:processing_baseline`` as a number (``"05.09"``, ``"4.00"``, ``"N0400"``)."""
    import re

    m = re.fullmatch(r"N?(\d{1,2})\.?(\d{2})", str(value or "").strip())
    return int(m.group(1)) + int(m.group(2)) / 100 if m else None


def _cloud_cover(item: pystac.Item) -> float:
    value = item.properties.get("eo:cloud_cover")
    return float(value) if value is not None else 0.0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _api_error_message(query: StacQuery, exc: Any, http: HttpSettings) -> str:
    status = getattr(exc, "status_code", None)
    tries = f"{http.retries + 1} tries"
    if status is not None:
        return (
            f"STAC API {query.stac_url} answered HTTP {status} ({tries}) while searching "
            f"{query.describe()}"
        )
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return (
            f"STAC API {query.stac_url} did not answer within {http.timeout:g} s ({tries}); "
            f"set {TIMEOUT_ENV} for a longer timeout"
        )
    if "Max retries" in text or "Connection" in text:
        return f"cannot reach STAC API {query.stac_url} ({tries}): {_first_line(exc)}"
    return f"STAC API {query.stac_url} failed: {_first_line(exc)}"


def require_assets(items: Sequence[pystac.Item], bands: Sequence[str]) -> dict[str, str]:
    """Resolve each band's asset key, the same for every item.

    Returns:
        band -> asset key.

    Raises:
        DataError: an item lacks a band, or items key a band differently.

    """
    keys: dict[str, str] = {}
    for item in items:
        for band in bands:
            key = asset_key(item, band)
            if keys.setdefault(band, key) != key:
                raise DataError(
                    f"scenes key band {band!r} differently ({keys[band]!r} and {key!r} in "
                    f"{item.id}); search one collection at a time"
                )
    return keys


# -- Planetary Computer signing -------------------------------------------------------------

#: A cached token is renewed when fewer seconds than this remain before it expires.
TOKEN_MARGIN_S = 300.0
#: How long a token is assumed to last when the SAS API gives no readable ``msft:expiry``.
DEFAULT_TOKEN_LIFETIME_S = 600.0


@dataclass(frozen=True)
class SasToken:
    """A Planetary Computer SAS token granting read access to one collection's assets.

    Attributes:
        collection: the collection.
        token: the query string appended to asset hrefs. A secret: it is never logged,
            recorded in provenance or shown in error messages.
        expiry: when it expires (UTC).

    """

    collection: str
    token: str = field(repr=False)
    expiry: dt.datetime

    def remaining(self, now: dt.datetime) -> float:
        """Seconds left before the token expires (negative once expired)."""
        return (self.expiry - now).total_seconds()


_TOKEN_CACHE: dict[tuple[str, str], SasToken] = {}
_TOKEN_LOCK = threading.Lock()


def clear_token_cache() -> None:
    """Forget every cached SAS token (the next signing asks the SAS API again)."""
    with _TOKEN_LOCK:
        _TOKEN_CACHE.clear()


class PlanetaryComputerSigner:
    """Sign asset hrefs with Planetary Computer SAS tokens.

    Tokens come from ``GET {sas_url}/token/{collection}`` (JSON ``{"msft:expiry": ...,
    "token": ...}``), requested with :class:`HttpSettings`' timeout and retries with
    backoff, and are cached per SAS API and collection (shared by all signers of the
    process) until fewer than ``margin`` seconds of their life remain.

    Args:
        sas_url: SAS API root (default: ``ASMSPOTTER_PC_SAS_URL``, else :data:`PC_SAS_URL`).
        http: timeouts and retries of the token requests (default from the environment).
        margin: seconds before expiry from which a cached token is renewed.
        clock: returns the current time as an aware datetime (for tests).

    Raises:
        InputError: the SAS API URL is not http(s).

    """

    method = "planetary-computer"

    def __init__(
        self,
        sas_url: str | None = None,
        http: HttpSettings | None = None,
        *,
        margin: float = TOKEN_MARGIN_S,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        url = (sas_url or os.environ.get(PC_SAS_URL_ENV) or PC_SAS_URL).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InputError(
                f"Planetary Computer SAS API URL ({PC_SAS_URL_ENV}) must start with http:// "
                f"or https://, got {url!r}"
            )
        self.sas_url = url
        self.http = http or HttpSettings.from_env()
        self.margin = float(margin)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._used: dict[str, SasToken] = {}

    def token(self, collection: str) -> SasToken:
        """Return a token for ``collection``: the cached one unless it expires soon.

        Raises:
            FetchError: the SAS API failed, timed out or answered no token.

        """
        key = (self.sas_url, collection)
        with _TOKEN_LOCK:
            cached = _TOKEN_CACHE.get(key)
        if cached is None or cached.remaining(self._clock()) <= self.margin:
            cached = self._request(collection)
            with _TOKEN_LOCK:
                _TOKEN_CACHE[key] = cached
        self._used[collection] = cached
        return cached

    def sign_href(self, href: str, collection: str) -> str:
        """Return ``href`` with the collection's token appended to its query.

        Hrefs that are not http(s) or already carry a SAS signature are returned unchanged.
        """
        if not href.startswith(("http://", "https://")) or is_signed(href):
            return href
        token = self.token(collection).token
        sep = "" if href.endswith(("?", "&")) else ("&" if "?" in href else "?")
        return f"{href}{sep}{token}"

    def sign_item(
        self, item: pystac.Item, keys: Sequence[str] | None = None, *, collection: str = ""
    ) -> pystac.Item:
        """Return a copy of ``item`` with the hrefs of its assets ``keys`` (default all) signed.

        The item's own collection is used, else ``collection``.

        Raises:
            DataError: the item names no collection and none is given.
            FetchError: no token could be had.

        """
        coll = item.collection_id or collection
        if not coll:
            raise DataError(f"scene {item.id} names no collection to get a SAS token for")
        signed = item.clone()
        for key, asset in signed.assets.items():
            if keys is None or key in keys:
                asset.href = self.sign_href(asset.href, coll)
        return signed

    def provenance(self) -> dict[str, Any]:
        """Return what was signed, for provenance: never the tokens, only their expiry."""
        return {
            "method": self.method,
            "sas_url": self.sas_url,
            "collections": {
                c: {"token_expiry": t.expiry.isoformat()} for c, t in sorted(self._used.items())
            },
        }

    def _request(self, collection: str) -> SasToken:
        import requests

        http = self.http
        url = f"{self.sas_url}/token/{collection}"
        what = f"Planetary Computer SAS API {url}"
        tries = f"{http.retries + 1} tries"
        try:
            with http.session() as session:
                response = session.get(url, timeout=http.timeout)
        except requests.RequestException as exc:
            text = str(exc).lower()
            if isinstance(exc, requests.Timeout) or "timed out" in text or "timeout" in text:
                raise FetchError(
                    f"{what} did not answer within {http.timeout:g} s ({tries}); set "
                    f"{TIMEOUT_ENV} for a longer timeout"
                ) from None
            raise FetchError(f"cannot reach {what} ({tries}): {_first_line(exc)}") from None
        status = response.status_code
        if status != 200:
            tried = f" ({tries})" if status in RETRY_STATUS else ""
            raise FetchError(
                f"{what} answered HTTP {status}{tried} when asked for a token for collection "
                f"{collection!r}"
            )
        try:
            body = response.json()
            token = body["token"]
            if not isinstance(token, str) or not token.strip("?&"):
                raise TypeError("empty token")
        except (ValueError, KeyError, TypeError):
            raise FetchError(
                f"{what} answered something that is not a SAS token (expected JSON with "
                "'token' and 'msft:expiry')"
            ) from None
        expiry = _parse_expiry(body.get("msft:expiry"))
        if expiry is None:
            log.warning(
                "%s gave no readable msft:expiry; assuming %g s", what, DEFAULT_TOKEN_LIFETIME_S
            )
            expiry = self._clock() + dt.timedelta(seconds=DEFAULT_TOKEN_LIFETIME_S)
        log.info(
            "got a SAS token for %s from %s (expires %s)",
            collection,
            self.sas_url,
            expiry.isoformat(),
        )
        return SasToken(collection, token.strip("?&"), expiry)


def is_signed(href: str) -> bool:
    """Return whether an href already carries a SAS signature (a ``sig`` parameter)."""
    from urllib.parse import parse_qs

    return "sig" in parse_qs(urlsplit(href).query)


def strip_query(href: str) -> str:
    """Return ``href`` without its query string (which may hold a SAS token)."""
    return href.split("?", 1)[0]


def _parse_expiry(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
