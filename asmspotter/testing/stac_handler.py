"""The HTTP request handler of the loopback STAC server (:mod:`asmspotter.testing.stac_server`).

It routes the STAC API (landing page, conformance, collections, search), the SAS token
endpoint, asset files with range requests, and, as an HTTP proxy, the requests for the
server's own blob storage account; injected faults are applied first.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from asmspotter.testing.stac_api import CONFORMANCE, get_params

if TYPE_CHECKING:
    from asmspotter.testing.stac_server import StacServer


def make_handler(server: StacServer) -> type[BaseHTTPRequestHandler]:
    """Return a request handler class serving ``server``."""
    return type("Handler", (StacRequestHandler,), {"stac": server})


class StacRequestHandler(BaseHTTPRequestHandler):
    """Answers one request for a :class:`~asmspotter.testing.stac_server.StacServer`."""

    protocol_version = "HTTP/1.1"
    stac: ClassVar[StacServer]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Log nothing."""
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
        parts = urlsplit(self.path)  # absolute when the request came as to a proxy
        host = parts.netloc if parts.netloc not in ("", self.stac.proxy) else ""
        path = parts.path.rstrip("/") or "/"
        body = b""
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        fault = self.stac._record(method, path, self.headers.get("Range"), parts.query, host)
        if fault is not None:
            if fault.kind == "hang":
                self.stac._wait(fault.seconds)
            elif fault.kind == "garbage":
                self._send_garbage(head=method == "HEAD")
                return
            else:
                self._error(fault.status, f"injected fault: HTTP {fault.status}")
                return
        try:
            if host:
                self._blob(host, path, parts.query, head=method == "HEAD")
            else:
                self._route(method, path, parts.query, body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            self._error(400, f"bad request: {exc}")

    def _route(self, method: str, path: str, query: str, body: bytes) -> None:
        head = method == "HEAD"
        if path == "/":
            self._send_json(self.stac._landing(), head=head)
        elif path == "/conformance":
            self._send_json({"conformsTo": list(CONFORMANCE)}, head=head)
        elif path == "/collections":
            self._send_json({"collections": self.stac._collections(), "links": []}, head=head)
        elif path.startswith("/collections/"):
            cid = path.split("/")[2]
            found = [c for c in self.stac._collections() if c["id"] == cid]
            if found:
                self._send_json(found[0], head=head)
            else:
                self._error(404, f"no collection {cid}")
        elif path == "/search":
            params = json.loads(body or b"{}") if method == "POST" else get_params(query)
            self._send_json(self.stac._search(params, method), head=head)
        elif path.startswith("/data/"):
            name = path[len("/data/") :]
            problem = self.stac._token_problem(name, query)
            if problem is not None:
                self._error(403, problem)
            else:
                self._send_file(name, head)
        elif self.stac.sas and path.startswith("/token/"):
            collection = path[len("/token/") :]
            token = self.stac._issue_token(collection)
            if token is None:
                self._error(404, f"no collection {collection}")
            else:
                self._send_json(token, head=head)
        else:
            self._error(404, f"not found: {path}")

    def _blob(self, host: str, path: str, query: str, head: bool) -> None:
        """Serve ``/<container>/<file>`` of the server's blob storage account."""
        container, _, name = path.lstrip("/").partition("/")
        if not self.stac.sas or host != self.stac.blob_host:
            self._error(502, f"the test server is no proxy for {host}")
        elif self.stac._file_collection.get(name) != container:
            self._error(404, f"BlobNotFound: {container}/{name}")
        else:
            problem = self.stac._token_problem(name, query)
            if problem is not None:
                self._error(403, problem)
            else:
                self._send_file(name, head)

    def _send_garbage(self, head: bool) -> None:
        body = b"<html><body>Service temporarily rerouted</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_file(self, name: str, head: bool) -> None:
        data = self.stac._file(name)
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
        """Answer a GET request."""
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        """Answer a POST request."""
        self._handle("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        """Answer a HEAD request."""
        self._handle("HEAD")
