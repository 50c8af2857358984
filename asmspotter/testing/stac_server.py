"""A small STAC API on 127.0.0.1 for tests, with fault injection.

:class:`StacServer` serves a landing page, ``/conformance``, ``/collections``, an item
``/search`` endpoint (GET and POST, with ``collections``, ``bbox``, ``intersects``,
``datetime``, ``ids``, the ``query`` extension on numeric properties, ``limit`` and paging)
and the assets under ``/data/<file>`` with HTTP range requests, so that pystac-client and
GDAL's ``/vsicurl/`` talk to it as to Earth Search. Asset hrefs in the served items point at
the server itself.

Faults, for testing error handling: :meth:`StacServer.fail_next` (answer N requests with an
HTTP error), :meth:`StacServer.hang_next` (sleep before answering, longer than a client
timeout), :meth:`StacServer.truncate` (serve only the first bytes of a file) and
:meth:`StacServer.remove_band` (drop a band's asset from the items and its files).

GDAL clients in the same process must set ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` (as
:meth:`asmspotter.acquire.HttpSettings.gdal_options` does): GDAL lists the folder of a file
while holding Python's GIL, which would starve the server's threads.

Example:
    >>> with StacServer(scenes.items, scenes.files) as server:      # doctest: +SKIP
    ...     client = pystac_client.Client.open(server.url)

"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

CONFORMANCE: tuple[str, ...] = (
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/conf/1.0/core",
    "http://www.opengis.net/spec/ogcapi-features-1/conf/1.0/geojson",
)


@dataclass(frozen=True)
class RequestRecord:
    """One request the server received.

    Attributes:
        method: HTTP method.
        path: URL path without the query string.
        range: the ``Range`` header, if any.

    """

    method: str
    path: str
    range: str | None = None


@dataclass
class _Fault:
    remaining: int
    kind: str  # "status" or "hang"
    status: int = 500
    seconds: float = 0.0
    path_prefix: str | None = None

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


class StacServer:
    """A threaded STAC API on 127.0.0.1 serving given items and files.

    Args:
        items: STAC items as dicts; asset hrefs ``data/<file>`` are served from ``files``.
        files: file name -> local path (or bytes) served under ``/data/<file>``.
        host: interface to bind (loopback only).
        page_size: default number of items per search page.

    """

    def __init__(
        self,
        items: Iterable[Mapping[str, Any]],
        files: Mapping[str, Path | bytes],
        *,
        host: str = "127.0.0.1",
        page_size: int = 10,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the test STAC server only binds to the loopback interface")
        self._items = [copy.deepcopy(dict(i)) for i in items]
        self._files: dict[str, bytes] = {
            name: (data if isinstance(data, bytes) else Path(data).read_bytes())
            for name, data in files.items()
        }
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._log: list[RequestRecord] = []
        self._stop = threading.Event()
        self.page_size = page_size
        self._httpd = ThreadingHTTPServer((host, 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Root URL of the API, e.g. ``http://127.0.0.1:43211``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StacServer:
        """Start serving in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release hanging requests."""
        self._stop.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> StacServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._log.clear()

    # -- faults -----------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, path_prefix: str | None = None) -> None:
        """Answer the next ``n`` requests (optionally only those under a path) with ``status``."""
        with self._lock:
            self._faults.append(_Fault(n, "status", status=status, path_prefix=path_prefix))

    def hang_next(self, n: int = 1, seconds: float = 5.0, path_prefix: str | None = None) -> None:
        """Sleep ``seconds`` before answering the next ``n`` requests (then answer normally)."""
        with self._lock:
            self._faults.append(_Fault(n, "hang", seconds=seconds, path_prefix=path_prefix))

    def truncate(self, name: str, size: int | None = None) -> None:
        """Serve only the first ``size`` bytes of a file (default: half of it)."""
        with self._lock:
            data = self._files[name]
            self._files[name] = data[: len(data) // 2 if size is None else size]

    def remove_file(self, name: str) -> None:
        """Answer 404 for a file."""
        with self._lock:
            self._files.pop(name, None)

    def remove_band(self, band: str, item_ids: Sequence[str] | None = None) -> None:
        """Drop asset ``band`` from the items (all, or those listed) and 404 its files."""
        with self._lock:
            for item in self._items:
                if item_ids is not None and item["id"] not in item_ids:
                    continue
                asset = item["assets"].pop(band, None)
                if asset is not None:
                    self._files.pop(Path(asset["href"]).name, None)

    # -- request handling (called from the handler threads) ---------------------------------

    def _record(self, method: str, path: str, range_: str | None) -> _Fault | None:
        with self._lock:
            self._log.append(RequestRecord(method, path, range_))
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(path):
                    fault.remaining -= 1
                    return fault
        return None

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _file(self, name: str) -> bytes | None:
        with self._lock:
            return self._files.get(name)

    def _served_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(item))
        for asset in out.get("assets", {}).values():
            href = asset["href"]
            if not re.match(r"[a-z]+://", href):
                asset["href"] = f"{self.url}/{href.lstrip('/')}"
        out["links"] = [
            {"rel": "self", "href": f"{self.url}/collections/{out.get('collection')}/items/"
             f"{out['id']}", "type": "application/geo+json"},
            {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
        ]
        return out

    def _landing(self) -> dict[str, Any]:
        u = self.url
        return {
            "type": "Catalog",
            "id": "asmspotter-test-stac",
            "title": "ASMSpotter loopback STAC API",
            "description": "Synthetic Sentinel-2 scenes for tests",
            "stac_version": "1.0.0",
            "conformsTo": list(CONFORMANCE),
            "links": [
                {"rel": "self", "href": f"{u}/", "type": "application/json"},
                {"rel": "root", "href": f"{u}/", "type": "application/json"},
                {"rel": "conformance", "href": f"{u}/conformance", "type": "application/json"},
                {"rel": "data", "href": f"{u}/collections", "type": "application/json"},
                {"rel": "search", "href": f"{u}/search", "type": "application/geo+json",
                 "method": "GET"},
                {"rel": "search", "href": f"{u}/search", "type": "application/geo+json",
                 "method": "POST"},
            ],
        }

    def _collections(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = sorted({str(i.get("collection")) for i in self._items})
        return [
            {
                "type": "Collection", "id": cid, "stac_version": "1.0.0",
                "description": f"synthetic {cid}", "license": "CC-BY-4.0",
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [[None, None]]}},
                "links": [{"rel": "self", "href": f"{self.url}/collections/{cid}"}],
            }
            for cid in ids
        ]

    def _search(self, params: Mapping[str, Any], method: str) -> dict[str, Any]:
        with self._lock:
            items = [i for i in self._items if _matches(i, params)]
        items.sort(key=lambda i: (i["properties"].get("datetime", ""), i["id"]))
        limit = int(params.get("limit") or self.page_size)
        start = int(params.get("token") or 0)
        page = items[start : start + limit]
        links: list[dict[str, Any]] = []
        if start + limit < len(items):
            nxt = {**params, "token": str(start + limit)}
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST",
                              "type": "application/geo+json", "body": nxt})
            else:
                from urllib.parse import urlencode

                query = urlencode({k: _as_query(v) for k, v in nxt.items()})
                links.append({"rel": "next", "href": f"{self.url}/search?{query}",
                              "type": "application/geo+json", "method": "GET"})
        return {
            "type": "FeatureCollection",
            "features": [self._served_item(i) for i in page],
            "numberMatched": len(items),
            "numberReturned": len(page),
            "links": links,
        }


def _as_query(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return str(value)


def _get_params(query: str) -> dict[str, Any]:
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


def _matches(item: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
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
                "eq": value == ref, "neq": value != ref, "lt": value < ref, "lte": value <= ref,
                "gt": value > ref, "gte": value >= ref,
            }.get(op, True)
            if not ok:
                return False
    return True


def _make_handler(server: StacServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # keep test output quiet

        def _send_json(self, obj: Any, status: int = 200, head: bool = False) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            ctype = "application/geo+json" if obj and "features" in obj else "application/json"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send_json({"code": str(status), "description": message}, status)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            body = b""
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            fault = server._record(method, path, self.headers.get("Range"))
            if fault is not None:
                if fault.kind == "hang":
                    server._wait(fault.seconds)
                else:
                    self._error(fault.status, f"injected fault: HTTP {fault.status}")
                    return
            try:
                self._route(method, path, parts.query, body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except (ValueError, KeyError, json.JSONDecodeError) as exc:
                self._error(400, f"bad request: {exc}")

        def _route(self, method: str, path: str, query: str, body: bytes) -> None:
            head = method == "HEAD"
            if path == "/":
                self._send_json(server._landing(), head=head)
            elif path == "/conformance":
                self._send_json({"conformsTo": list(CONFORMANCE)}, head=head)
            elif path == "/collections":
                self._send_json({"collections": server._collections(), "links": []}, head=head)
            elif path.startswith("/collections/"):
                cid = path.split("/")[2]
                found = [c for c in server._collections() if c["id"] == cid]
                if found:
                    self._send_json(found[0], head=head)
                else:
                    self._error(404, f"no collection {cid}")
            elif path == "/search":
                params = json.loads(body or b"{}") if method == "POST" else _get_params(query)
                self._send_json(server._search(params, method), head=head)
            elif path.startswith("/data/"):
                self._send_file(path[len("/data/"):], head)
            else:
                self._error(404, f"not found: {path}")

        def _send_file(self, name: str, head: bool) -> None:
            data = server._file(name)
            if data is None:
                self._error(404, f"no such file: {name}")
                return
            total = len(data)
            rng = self.headers.get("Range")
            start, end, status = 0, total - 1, 200
            if rng:
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                if not m or (not m.group(1) and not m.group(2)):
                    self._error(400, f"unsupported range {rng}")
                    return
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
                else:  # suffix range: last N bytes
                    start = max(0, total - int(m.group(2)))
                if start >= total:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{total}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            chunk = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(chunk)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
            self.end_headers()
            if not head:
                self.wfile.write(chunk)

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_HEAD(self) -> None:  # noqa: N802
            self._handle("HEAD")

    return Handler


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def forbid_remote_connections() -> Any:
    """Context manager making Python sockets refuse any address but the loopback.

    Tests wrap themselves in it so that a mistake can never reach a real server (GDAL's
    own HTTP client is kept local by only ever giving it this server's URLs).
    """
    import contextlib
    import socket

    @contextlib.contextmanager
    def _guard() -> Any:
        original = socket.socket.connect

        def connect(self: socket.socket, address: Any) -> Any:
            host = address[0] if isinstance(address, tuple) else address
            if self.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOOPBACK:
                raise ConnectionRefusedError(f"tests may not connect to {address!r}")
            return original(self, address)

        socket.socket.connect = connect  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            socket.socket.connect = original  # type: ignore[method-assign]

    return _guard()
