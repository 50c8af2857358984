"""Search a STAC API for a query's scenes (pystac-client).

:func:`search_stac` runs a :class:`~asmspotter.acquire.sources.StacQuery` with timeouts and
retries with backoff on server errors (5xx) and connection errors (:class:`HttpSettings`),
and turns every failure into a one-line :class:`~asmspotter.errors.FetchError`. Queries whose
``sign`` is ``planetary-computer`` get their items' asset hrefs signed as the pages arrive
(:func:`asmspotter.acquire.signing.signing_modifier`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from asmspotter.acquire.http import HttpSettings, connection_failure
from asmspotter.acquire.signing import signing_modifier
from asmspotter.acquire.sources import StacQuery, StacScenes
from asmspotter.errors import FetchError, NoScenesError, first_line

if TYPE_CHECKING:
    import pystac

log = logging.getLogger(__name__)


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
        client = Client.open(
            query.stac_url,
            stac_io=stac_io,
            timeout=http.timeout,
            modifier=signing_modifier(http) if query.sign == "planetary-computer" else None,
        )
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
            f"STAC API {query.stac_url} answered something that is not STAC: {first_line(exc)}"
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


def _cloud_cover(item: pystac.Item) -> float:
    value = item.properties.get("eo:cloud_cover")
    return float(value) if value is not None else 0.0


def _api_error_message(query: StacQuery, exc: Any, http: HttpSettings) -> str:
    status = getattr(exc, "status_code", None)
    if status is not None:
        return (
            f"STAC API {query.stac_url} answered HTTP {status} ({http.tries}) while searching "
            f"{query.describe()}"
        )
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return http.timeout_message(f"STAC API {query.stac_url}")
    if "Max retries" in text or "Connection" in text:
        reason = connection_failure(text) or first_line(exc)
        return f"cannot reach STAC API {query.stac_url} ({http.tries}): {reason}"
    return f"STAC API {query.stac_url} failed: {first_line(exc)}"
