"""A small STAC API on 127.0.0.1 for tests, with fault injection.

:class:`StacServer` serves a landing page, ``/conformance``, ``/collections``, an item
``/search`` endpoint (GET and POST, with ``collections``, ``bbox``, ``intersects``,
``datetime``, ``ids``, the ``query`` extension on numeric properties, ``limit`` and paging)
and the assets under ``/data/<file>`` with HTTP range requests, so that pystac-client and
GDAL's ``/vsicurl/`` talk to it as to Earth Search. Asset hrefs in the served items point at
the server itself.

With ``sas=True`` the server acts like Microsoft Planetary Computer and its Azure blob
storage. The items' asset hrefs point at a blob storage account of the server's own
(``http://<account>.blob.core.windows.net/<collection>/<file>``, :attr:`StacServer.blob_host`;
one container per collection), so that the ``planetary-computer`` package signs them; while
the server runs, ``GDAL_HTTP_PROXY`` points at it, so GDAL's requests for those hrefs come to
it as to an HTTP proxy, and nothing leaves the machine. ``/token/<account>/<container>`` (and
``/token/<collection>``) hand out SAS tokens (JSON ``{"msft:expiry", "token"}``, the SAS API
root being :attr:`StacServer.sas_url`), and asset requests whose query lacks a valid,
unexpired token of the asset's container are refused with HTTP 403, as Azure blob storage
refuses unsigned reads.

Faults, for testing error handling: :meth:`StacServer.fail_next` (answer N requests with an
HTTP error), :meth:`StacServer.hang_next` (sleep before answering, longer than a client
timeout), :meth:`StacServer.garble_next` (answer 200 with a body that is not what was asked),
:meth:`StacServer.truncate` (serve only the first bytes of a file),
:meth:`StacServer.remove_band` (drop a band's asset from the items and its files) and
:meth:`StacServer.expire_tokens` (refuse the SAS tokens handed out so far). All but the
last two take a ``path_prefix``; ``"/token"`` aims them at the SAS token endpoint.

GDAL clients in the same process must set ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` (as
:meth:`asmspotter.acquire.HttpSettings.gdal_options` does): GDAL lists the folder of a file
while holding Python's GIL, which would starve the server's threads.

GDAL's ``/vsicurl/`` keeps what it read in a process-wide cache keyed by URL. A server that
gets the port of an earlier one in the same process serves other files under the same URLs,
so :meth:`StacServer.start` empties GDAL's cache (:func:`forget_gdal_reads`).

Example:
    >>> with StacServer(scenes.items, scenes.files) as server:      # doctest: +SKIP
    ...     client = pystac_client.Client.open(server.url)

"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import datetime as dt
import functools
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from asmspotter.testing.stac_api import collection, landing, matches, search_page
from asmspotter.testing.stac_handler import make_handler

#: Domain of Azure blob storage accounts (the hosts the ``planetary-computer`` package signs).
BLOB_DOMAIN = ".blob.core.windows.net"
#: GDAL's HTTP proxy setting, pointed at the server while it runs with ``sas=True``.
PROXY_ENV = "GDAL_HTTP_PROXY"


def _gdal_libraries() -> list[ctypes.CDLL]:
    """Return every GDAL library loaded into this process (rasterio, pyogrio: one each)."""
    import rasterio  # noqa: F401  (loads GDAL)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgdal" in line}
    except OSError:  # not Linux
        found = ctypes.util.find_library("gdal")
        paths = {found} if found else set()
    libraries = []
    for path in sorted(paths):
        try:
            libraries.append(_open_library(path))
        except OSError:
            continue
    return libraries


@functools.cache
def _open_library(path: str) -> ctypes.CDLL:
    return ctypes.CDLL(path)


def forget_gdal_reads() -> int:
    """Drop everything GDAL's ``/vsicurl/`` cached in this process.

    Each copy of GDAL in the process (the wheels of rasterio and pyogrio bring their own)
    has its own cache; all are emptied. (GDAL 3.10's ``VSICurlPartialClearCache`` keeps the
    cached file contents of a URL prefix, so the whole cache goes.)

    Returns:
        How many GDAL libraries were found and emptied.

    """
    libraries = _gdal_libraries()
    for gdal in libraries:
        gdal.VSICurlClearCache()
    return len(libraries)


@dataclass(frozen=True)
class RequestRecord:
    """One request the server received.

    Attributes:
        method: HTTP method.
        path: URL path without the query string.
        range: the ``Range`` header, if any.
        query: the query string (where signed asset requests carry their SAS token).
        host: the host a proxied request was for (the blob storage account), else empty.

    """

    method: str
    path: str
    range: str | None = None
    query: str = ""
    host: str = ""


@dataclass
class _Fault:
    remaining: int
    kind: str  # "status", "hang" or "garbage"
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
        port: port to bind; 0 (the default) lets the system choose a free one.
        page_size: default number of items per search page.
        sas: act like Planetary Computer: serve the assets from a blob storage account of
            the server's own (through ``GDAL_HTTP_PROXY`` while it runs), SAS tokens at
            ``/token/<account>/<container>``, and refuse (403) asset requests without a
            valid token of the asset's container (its collection).
        token_lifetime: seconds the SAS tokens handed out are valid.

    """

    def __init__(
        self,
        items: Iterable[Mapping[str, Any]],
        files: Mapping[str, Path | bytes],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int = 10,
        sas: bool = False,
        token_lifetime: float = 3600.0,
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
        self.sas = sas
        self.token_lifetime = token_lifetime
        #: Blob storage account name (``sas=True``), unique per server.
        self.account = f"asmspotter{secrets.token_hex(4)}"
        self._saved_proxy: str | None = None
        self._tokens: dict[str, tuple[str, str, dt.datetime]] = {}  # sig -> (coll, token, end)
        self._file_collection = {
            Path(a["href"]).name: str(i.get("collection"))
            for i in self._items
            for a in i.get("assets", {}).values()
        }
        self._httpd = ThreadingHTTPServer((host, port), make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Root URL of the API, e.g. ``http://127.0.0.1:43211``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def proxy(self) -> str:
        """``host:port`` of the server as an HTTP proxy (for ``GDAL_HTTP_PROXY``)."""
        host, port = self._httpd.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> StacServer:
        """Start serving in a background thread (``sas=True``: and set ``GDAL_HTTP_PROXY``)."""
        if self._thread is None:
            forget_gdal_reads()
            self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
            self._thread.start()
            if self.sas:
                self._saved_proxy = os.environ.get(PROXY_ENV)
                os.environ[PROXY_ENV] = self.proxy
        return self

    def stop(self) -> None:
        """Stop serving and release hanging requests (``sas=True``: restore the proxy)."""
        self._stop.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
            if self.sas:
                if self._saved_proxy is None:
                    os.environ.pop(PROXY_ENV, None)
                else:
                    os.environ[PROXY_ENV] = self._saved_proxy
        self._httpd.server_close()

    def __enter__(self) -> StacServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def sas_url(self) -> str:
        """Root of the SAS API (``sas=True``): tokens at ``{sas_url}/token/<account>/<c>``."""
        return self.url

    @property
    def blob_host(self) -> str:
        """Host of the server's blob storage account (``sas=True``)."""
        return f"{self.account}{BLOB_DOMAIN}"

    def blob_url(self, collection: str) -> str:
        """URL of the blob storage container holding a collection's assets (``sas=True``)."""
        return f"http://{self.blob_host}/{collection}"

    # -- inspection -------------------------------------------------------------------------

    def issued_tokens(self, collection: str | None = None) -> list[str]:
        """Return the SAS tokens handed out so far (of one collection, or all), oldest first."""
        with self._lock:
            return [t for c, t, _ in self._tokens.values() if collection in (None, c)]

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def asset_requests(self) -> list[RequestRecord]:
        """Return the requests for asset files (under ``/data/`` or to the blob account)."""
        return [r for r in self.requests if r.host or r.path.startswith("/data/")]

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

    def garble_next(self, n: int = 1, path_prefix: str | None = None) -> None:
        """Answer the next ``n`` requests with HTTP 200 and a body that is not JSON or data."""
        with self._lock:
            self._faults.append(_Fault(n, "garbage", path_prefix=path_prefix))

    def expire_tokens(self) -> None:
        """Make every SAS token handed out so far expired (assets refuse them with 403)."""
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        with self._lock:
            self._tokens = {s: (c, t, past) for s, (c, t, _) in self._tokens.items()}

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

    def _record(
        self, method: str, path: str, range_: str | None, query: str = "", host: str = ""
    ) -> _Fault | None:
        with self._lock:
            self._log.append(RequestRecord(method, path, range_, query, host))
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

    def _issue_token(self, container: str) -> dict[str, str] | None:
        """Hand out a Planetary-Computer-like SAS token for a container or collection.

        ``container`` is ``<account>/<container>`` or a collection id (each collection's
        assets are in the container of its name). None when unknown.
        """
        account, _, collection = container.rpartition("/")
        with self._lock:
            known = {str(i.get("collection")) for i in self._items}
        if collection not in known or account not in ("", self.account):
            return None
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        end = now + dt.timedelta(seconds=self.token_lifetime)
        sig = secrets.token_urlsafe(24)
        token = urlencode(
            {
                "st": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "se": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sp": "rl",
                "sv": "2021-06-08",
                "sr": "c",
                "skoid": secrets.token_hex(8),
                "sig": sig,
            }
        )
        with self._lock:
            self._tokens[sig] = (collection, token, end)
        return {"msft:expiry": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": token}

    def _token_problem(self, name: str, query: str) -> str | None:
        """Why an asset request may not be served (``sas=True``), None when it may."""
        if not self.sas:
            return None
        sig = parse_qs(query).get("sig", [""])[-1]
        with self._lock:
            found = self._tokens.get(sig)
            collection = self._file_collection.get(name)
        if not sig or found is None:
            return "AuthenticationFailed: no valid SAS token in the request"
        if found[0] != collection:
            return f"AuthorizationFailure: the SAS token is for collection {found[0]}"
        if found[2] <= dt.datetime.now(dt.UTC):
            return "AuthenticationFailed: the SAS token has expired"
        return None

    def _served_item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(item))
        for asset in out.get("assets", {}).values():
            href = asset["href"]
            if not re.match(r"[a-z]+://", href):
                asset["href"] = (
                    f"{self.blob_url(str(out.get('collection')))}/{Path(href).name}"
                    if self.sas
                    else f"{self.url}/{href.lstrip('/')}"
                )
        out["links"] = [
            {
                "rel": "self",
                "href": f"{self.url}/collections/{out.get('collection')}/items/{out['id']}",
                "type": "application/geo+json",
            },
            {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
        ]
        return out

    def _landing(self) -> dict[str, Any]:
        return landing(self.url)

    def _collections(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = sorted({str(i.get("collection")) for i in self._items})
        return [collection(self.url, cid) for cid in ids]

    def _search(self, params: Mapping[str, Any], method: str) -> dict[str, Any]:
        with self._lock:
            items = [i for i in self._items if matches(i, params)]
        return search_page(items, params, method, self.url, self.page_size, self._served_item)


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
