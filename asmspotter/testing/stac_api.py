"""The STAC API documents of the loopback server: landing page, collections, search pages.

:func:`matches` applies an item search's parameters (``collections``, ``ids``, ``bbox``,
``intersects``, ``datetime`` and the ``query`` extension on numeric properties) and
:func:`search_page` pages the matches with ``limit`` and a ``token``, for GET and POST.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode

CONFORMANCE: tuple[str, ...] = (
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/conf/1.0/core",
    "http://www.opengis.net/spec/ogcapi-features-1/conf/1.0/geojson",
)


def landing(url: str) -> dict[str, Any]:
    """Return the landing page of the API at ``url``."""
    return {
        "type": "Catalog",
        "id": "asmspotter-test-stac",
        "title": "ASMSpotter loopback STAC API",
        "description": "Synthetic Sentinel-2 scenes for tests",
        "stac_version": "1.0.0",
        "conformsTo": list(CONFORMANCE),
        "links": [
            {"rel": "self", "href": f"{url}/", "type": "application/json"},
            {"rel": "root", "href": f"{url}/", "type": "application/json"},
            {"rel": "conformance", "href": f"{url}/conformance", "type": "application/json"},
            {"rel": "data", "href": f"{url}/collections", "type": "application/json"},
            {
                "rel": "search",
                "href": f"{url}/search",
                "type": "application/geo+json",
                "method": "GET",
            },
            {
                "rel": "search",
                "href": f"{url}/search",
                "type": "application/geo+json",
                "method": "POST",
            },
        ],
    }


def collection(url: str, cid: str) -> dict[str, Any]:
    """Return the document of collection ``cid`` of the API at ``url``."""
    return {
        "type": "Collection",
        "id": cid,
        "stac_version": "1.0.0",
        "description": f"synthetic {cid}",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [{"rel": "self", "href": f"{url}/collections/{cid}"}],
    }


def search_page(
    items: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    method: str,
    url: str,
    page_size: int,
    serve: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Return the page of matching ``items`` that ``params`` ask for, with its next link.

    Items are sorted by datetime and id; ``serve`` turns a stored item into the served one.
    """
    items = sorted(items, key=lambda i: (i["properties"].get("datetime", ""), i["id"]))
    limit = int(params.get("limit") or page_size)
    start = int(params.get("token") or 0)
    page = items[start : start + limit]
    links: list[dict[str, Any]] = []
    if start + limit < len(items):
        nxt = {**params, "token": str(start + limit)}
        if method == "POST":
            links.append(
                {
                    "rel": "next",
                    "href": f"{url}/search",
                    "method": "POST",
                    "type": "application/geo+json",
                    "body": nxt,
                }
            )
        else:
            query = urlencode({k: as_query(v) for k, v in nxt.items()})
            links.append(
                {
                    "rel": "next",
                    "href": f"{url}/search?{query}",
                    "type": "application/geo+json",
                    "method": "GET",
                }
            )
    return {
        "type": "FeatureCollection",
        "features": [serve(i) for i in page],
        "numberMatched": len(items),
        "numberReturned": len(page),
        "links": links,
    }


def as_query(value: Any) -> str:
    """Return a search parameter as written in a GET query string."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return str(value)


def get_params(query: str) -> dict[str, Any]:
    """Return the search parameters of a GET query string."""
    raw = {k: v[-1] for k, v in parse_qs(query).items()}
    params: dict[str, Any] = dict(raw)
    if "collections" in raw:
        params["collections"] = [c for c in raw["collections"].split(",") if c]
    if "ids" in raw:
        params["ids"] = [c for c in raw["ids"].split(",") if c]
    if "bbox" in raw:
        params["bbox"] = [float(v) for v in raw["bbox"].split(",")]
    for key in ("intersects", "query"):
        if key in raw:
            params[key] = json.loads(raw[key])
    return params


def _parse_instant(text: str, end: bool) -> dt.datetime | None:
    if text in ("", ".."):
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def matches(item: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Return whether a stored item matches the search parameters."""
    props = item.get("properties", {})
    collections = params.get("collections")
    if collections and item.get("collection") not in collections:
        return False
    ids = params.get("ids")
    if ids and item["id"] not in ids:
        return False
    bbox = params.get("bbox")
    if bbox:
        a = item["bbox"]
        if a[0] > bbox[2] or a[2] < bbox[0] or a[1] > bbox[3] or a[3] < bbox[1]:
            return False
    if params.get("intersects"):
        from shapely.geometry import shape

        if not shape(item["geometry"]).intersects(shape(params["intersects"])):
            return False
    if params.get("datetime"):
        text = str(params["datetime"])
        when = _parse_instant(props["datetime"], False)
        assert when is not None
        if "/" in text:
            a, b = text.split("/", 1)
            lo, hi = _parse_instant(a, False), _parse_instant(b, True)
        else:
            lo = hi = _parse_instant(text, False)
        if (lo is not None and when < lo) or (hi is not None and when > hi):
            return False
    for prop, ops in (params.get("query") or {}).items():
        value = props.get(prop)
        for op, ref in ops.items():
            if value is None:
                return False
            ok = {
                "eq": value == ref,
                "neq": value != ref,
                "lt": value < ref,
                "lte": value <= ref,
                "gt": value > ref,
                "gte": value >= ref,
            }.get(op, True)
            if not ok:
                return False
    return True
