"""Sign Planetary Computer asset hrefs with SAS tokens (the ``planetary-computer`` package).

Microsoft Planetary Computer keeps its assets in Azure blob storage that can only be read
with a SAS token. Queries sign when the STAC URL's host is planetarycomputer.microsoft.com
(:func:`resolve_signing`); :func:`signing_modifier` is the pystac-client modifier that signs
each page of search results as it arrives, with :func:`planetary_computer.sign_inplace`.

The package signs an href with a token for its blob storage container, which it asks the SAS
API for (``{sas_url}/token/{account}/{container}``) and keeps in its token cache. Before it
signs, :func:`sign` puts the tokens it will need into that cache, asked for with this
project's timeouts and retries (:class:`~asmspotter.acquire.http.HttpSettings`) and with
every failure turned into a one-line :class:`~asmspotter.errors.FetchError`; a cached token
is renewed when fewer than :data:`TOKEN_MARGIN_S` seconds of its life remain. Tokens are
secrets: they are never logged, recorded in provenance (:func:`signing_provenance` records
when they expire) or shown in error messages.

The SAS API is ``ASMSPOTTER_PC_SAS_URL`` (its root) when set, else the package's own setting
(``PC_SDK_SAS_URL``, its token endpoint ``{root}/token``), else Planetary Computer's.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlparse, urlsplit

from asmspotter.acquire.http import RETRY_STATUS, HttpSettings, connection_failure
from asmspotter.catalogue import SIGN_METHODS
from asmspotter.errors import FetchError, InputError, first_line

if TYPE_CHECKING:
    import pystac

log = logging.getLogger(__name__)

#: Host of Microsoft Planetary Computer's APIs; STAC URLs on it sign assets by default.
PC_HOST = "planetarycomputer.microsoft.com"
#: Planetary Computer's SAS API (tokens at ``{url}/token/{account}/{container}``).
PC_SAS_URL = "https://planetarycomputer.microsoft.com/api/sas/v1"
PC_SAS_URL_ENV = "ASMSPOTTER_PC_SAS_URL"
#: Signing methods a query resolves to (``auto`` is resolved by :func:`resolve_signing`).
SIGNING: tuple[str, ...] = ("none", "planetary-computer")
#: A cached token is renewed when fewer seconds than this remain before it expires (more
#: than the package's own minute, so that the package never asks for one itself).
TOKEN_MARGIN_S = 300.0

T = TypeVar("T")
_LOCK = threading.Lock()


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


def sas_url() -> str:
    """Return the root of the SAS API that tokens are asked from.

    ``ASMSPOTTER_PC_SAS_URL`` when set, else the ``planetary-computer`` package's setting
    (``PC_SDK_SAS_URL`` or its settings file, without the ``/token`` of its endpoint), else
    :data:`PC_SAS_URL`.

    Raises:
        InputError: the URL is not http(s).

    """
    from planetary_computer.settings import Settings

    url, name = os.environ.get(PC_SAS_URL_ENV), PC_SAS_URL_ENV
    if not url:  # a fresh Settings reads the environment now, not at first use
        url, name = (Settings().sas_url or "").rstrip("/").removesuffix("/token"), "PC_SDK_SAS_URL"
    url = url.rstrip("/") or PC_SAS_URL
    if not url.startswith(("http://", "https://")):
        raise InputError(
            f"Planetary Computer SAS API URL ({name}) must start with http:// or https://, "
            f"got {url!r}"
        )
    return url


def sign(obj: T, http: HttpSettings | None = None, *, copy: bool = True) -> T:
    """Sign the blob storage hrefs of ``obj`` with :func:`planetary_computer.sign`.

    Args:
        obj: an href, a ``pystac.Item`` or ``ItemCollection``, or an item or a page of
            search results as a dict. Hrefs outside Azure blob storage and hrefs already
            signed are left as they are.
        http: timeouts and retries of the token requests (default from the environment).
        copy: sign a copy (True) or ``obj`` itself.

    Returns:
        The signed copy, or ``obj`` signed in place.

    Raises:
        InputError: the SAS API URL is not http(s).
        FetchError: the SAS API failed, timed out or answered no token.

    """
    import planetary_computer

    _cache_tokens(_hrefs(obj), http)
    signed: T = planetary_computer.sign(obj, copy=copy)
    return signed


def signing_modifier(http: HttpSettings | None = None) -> Callable[[Any], None]:
    """Return a pystac-client ``modifier`` that signs search results in place (:func:`sign`)."""

    def modify(obj: Any) -> None:
        sign(obj, http, copy=False)

    return modify


def signing_provenance(
    items: Sequence[pystac.Item], keys: Iterable[str] | None = None
) -> dict[str, Any]:
    """Return what was signed, for provenance: the SAS API and when the tokens expire.

    Args:
        items: signed items.
        keys: the asset keys that are read (default all).

    Returns:
        ``{"method": "planetary-computer", "sas_url": ..., "collections": {collection:
        {"token_expiry": ISO time}}}``, the earliest expiry of the tokens in each
        collection's hrefs. Never a token.

    """
    wanted = None if keys is None else set(keys)
    expiry: dict[str, dt.datetime] = {}
    for item in items:
        for key, asset in item.assets.items():
            when = _signed_expiry(asset.href) if wanted is None or key in wanted else None
            if when is not None:
                coll = item.collection_id or ""
                expiry[coll] = min(when, expiry.get(coll, when))
    return {
        "method": "planetary-computer",
        "sas_url": sas_url(),
        "collections": {c: {"token_expiry": t.isoformat()} for c, t in sorted(expiry.items())},
    }


def clear_token_cache() -> None:
    """Forget every cached SAS token (the next signing asks the SAS API again)."""
    from planetary_computer.sas import TOKEN_CACHE

    with _LOCK:
        TOKEN_CACHE.clear()


# -- tokens ---------------------------------------------------------------------------------


def _cache_tokens(hrefs: Iterable[str], http: HttpSettings | None) -> None:
    """Put a fresh token for each container of ``hrefs`` into the package's token cache."""
    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    endpoint = f"{sas_url()}/token"
    Settings.get().sas_url = endpoint  # the package's cache keys and its signing use this
    urls = sorted({u for u in (_token_url(h, endpoint) for h in hrefs) if u is not None})
    with _LOCK:
        for url in urls:
            cached = TOKEN_CACHE.get(url)
            if cached is None or cached.ttl() <= TOKEN_MARGIN_S:
                http = http or HttpSettings.from_env()
                TOKEN_CACHE[url] = _request_token(url, http)


def _token_url(href: str, endpoint: str) -> str | None:
    """Return the package's token URL (its cache key) for ``href``, None if left unsigned.

    The package signs hrefs in Azure blob storage (but for its public assets account) that
    carry no SAS token yet, with the token of their account and container.
    """
    from planetary_computer.sas import BLOB_STORAGE_DOMAIN
    from planetary_computer.utils import parse_blob_url

    parsed = urlparse(href.rstrip("/"))
    host = parsed.netloc
    if not host.endswith(BLOB_STORAGE_DOMAIN) or host.startswith("ai4edatasetspublicassets."):
        return None
    if set(parse_qs(parsed.query)) & {"st", "se", "sp"}:
        return None  # signed already
    try:
        account, container = parse_blob_url(parsed)
    except ValueError:
        return None  # the package says what is wrong with it when it signs
    return f"{endpoint}/{account}/{container}"


def _request_token(url: str, http: HttpSettings) -> Any:
    """Ask the SAS API for a token, with timeouts and retries; one-line FetchErrors."""
    import requests
    from planetary_computer.sas import SASToken
    from planetary_computer.settings import Settings

    what = f"Planetary Computer SAS API {url}"
    key = Settings.get().subscription_key
    headers = {"Ocp-Apim-Subscription-Key": key} if key else None
    try:
        with http.session() as session:
            response = session.get(url, timeout=http.timeout, headers=headers)
    except requests.RequestException as exc:
        text = str(exc).lower()
        if isinstance(exc, requests.Timeout) or "timed out" in text or "timeout" in text:
            raise FetchError(http.timeout_message(what)) from None
        reason = connection_failure(str(exc)) or first_line(exc)
        raise FetchError(f"cannot reach {what} ({http.tries}): {reason}") from None
    status = response.status_code
    if status != 200:
        tried = f" ({http.tries})" if status in RETRY_STATUS else ""
        container = "/".join(url.rsplit("/", 2)[-2:])
        raise FetchError(
            f"{what} answered HTTP {status}{tried} when asked for a token for storage "
            f"container {container!r}"
        )
    try:
        body = response.json()
        token = SASToken(**body)
        if not token.token.strip("?&"):
            raise ValueError("empty token")
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        raise FetchError(
            f"{what} answered something that is not a SAS token (expected JSON with "
            "'token' and 'msft:expiry')"
        ) from None
    if token.expiry.tzinfo is None:
        token.expiry = token.expiry.replace(tzinfo=dt.UTC)
    log.info("got a SAS token from %s (expires %s)", url, token.expiry.isoformat())
    return token


def _hrefs(obj: Any) -> list[str]:
    """Return the asset hrefs of an href, an item, an item collection or a (page) dict."""
    import pystac

    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, pystac.Item):
        return [a.href for a in obj.assets.values()]
    if isinstance(obj, pystac.ItemCollection):
        return [a.href for item in obj for a in item.assets.values()]
    if isinstance(obj, Mapping):
        features = obj.get("features") if obj.get("type") == "FeatureCollection" else [obj]
        return [
            str(a.get("href", "")) for f in features or [] for a in (f.get("assets") or {}).values()
        ]
    return []


def _signed_expiry(href: str) -> dt.datetime | None:
    """Return when the SAS token in ``href`` expires (its ``se`` field), None when unsigned."""
    se = parse_qs(urlsplit(href).query).get("se")
    if not se:
        return None
    try:
        when = dt.datetime.fromisoformat(se[-1].replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
