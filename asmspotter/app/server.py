"""Serving the app: Voila, restricted to the one app notebook and the regions' briefings.

:class:`AppServer` is Voila with a narrower set of routes. It serves

* ``/`` : the app notebook (``notebooks/app.ipynb``), whose only accepted query
  parameters are :data:`~asmspotter.app.state.QUERY_KEYS`;
* ``/briefing/<region>`` : the region's HTML briefing (``asmspotter report``), for a
  catalogue region only, with a content security policy that lets it run no script;
* what the page itself needs: Voila's and the widgets' static files, and the kernel's
  websocket.

There is no file tree, no other notebook, no file download route and no Jupyter page.
Voila reads its settings only from ``voila.json`` in this package's folder (never from the
working directory or the user's Jupyter folders), and binds to 127.0.0.1 unless told
otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import tornado.web
from traitlets import default
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

from asmspotter import layout
from asmspotter.app import APP_IP_ENV, CATALOGUE_ENV, DEFAULT_PORT, REGION_ENV
from asmspotter.app.kernels import AppKernelManager
from asmspotter.app.panel import BRIEFING_ROUTE
from asmspotter.app.state import QUERY_KEYS, parse_query
from asmspotter.errors import DataError, InputError

#: File name of the app notebook (package data of ``asmspotter.app``).
NOTEBOOK_NAME = "app.ipynb"
#: Folder holding ``voila.json``, the only Voila configuration the app reads.
CONFIG_DIR = Path(__file__).resolve().parent
#: Headers of every briefing response: the briefing is self-contained and runs no script.
BRIEFING_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def app_notebook() -> Path:
    """Return the app notebook, shipped in this package (``notebooks/app.ipynb`` links to it).

    Raises:
        DataError: the notebook is not there (a package built without its data files).

    """
    path = Path(str(resources.files("asmspotter.app").joinpath("notebook", NOTEBOOK_NAME)))
    if not path.is_file():
        raise DataError(f"the app notebook is missing: {path} (reinstall ASMSpotter)")
    return path


class _PlainErrors:
    """Error pages as one line of plain text (no Jupyter error page)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        handler: Any = self
        reason = handler._reason
        handler.set_header("Content-Type", "text/plain; charset=utf-8")
        handler.finish(f"{status_code}: {reason}\n")


#: Stylesheet and script tags that load from another server (Voila's lab template links
#: Font Awesome from a CDN; the widgets bundle their own copy): dropped from the page, so
#: that it asks for nothing off this server.
_REMOTE_TAG = re.compile(
    r"""<(?:link|script)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//[^>]*>(?:</script>)?"""
)


class AppPageHandler(_PlainErrors, TornadoVoilaHandler):
    """The app notebook's page; refuses any query parameter the app does not know."""

    def write(self, chunk: str | bytes | dict[str, Any]) -> None:
        """Write a piece of the page, without tags that load from other servers."""
        if isinstance(chunk, str) and "//" in chunk:
            chunk = _REMOTE_TAG.sub("", chunk)
        super().write(chunk)

    async def prepare(self) -> None:
        """Check the query before a kernel is started for it."""
        try:
            parse_query(self.request.query)
        except InputError as exc:
            raise tornado.web.HTTPError(400, reason=str(exc)[:200]) from None
        if isinstance(self.kernel_manager, AppKernelManager):
            self.kernel_manager.page_requested()  # a pool refill waits until pages rest
        await super().prepare()


class BriefingHandler(_PlainErrors, tornado.web.RequestHandler):
    """A catalogue region's HTML briefing, read from the on-disk layout."""

    def initialize(self, regions: tuple[str, ...]) -> None:
        """Remember the catalogue's region ids (the only ones served)."""
        self.regions = regions

    def get(self, region: str) -> None:
        """Send ``reports/<region>/report.html``."""
        if region not in self.regions:
            raise tornado.web.HTTPError(404, reason=f"unknown region {region!r}")
        path = layout.report_files(region).html
        if not path.is_file():
            raise tornado.web.HTTPError(
                404, reason=f"no briefing for {region}: run `asmspotter report {region}`"
            )
        for name, value in BRIEFING_HEADERS.items():
            self.set_header(name, value)
        self.finish(path.read_bytes())


class AppServer(Voila):
    """Voila serving only the ASMSpotter app notebook (see the module's description)."""

    #: Region ids of the catalogue the app serves (set by :func:`serve`).
    regions: tuple[str, ...] = ()

    def init_settings(self) -> dict[str, Any]:
        """Return Voila's settings; on a loopback address, only local Host headers pass."""
        settings: dict[str, Any] = super().init_settings()
        # Voila accepts any Host header; on 127.0.0.1 that would let a web page rebind a
        # name to this machine and read the app (DNS rebinding), so check it there
        settings["allow_remote_access"] = not ipaddress.ip_address(self.ip).is_loopback
        return settings

    @default("config_file_paths")
    def _config_file_paths_default(self) -> list[str]:
        return [str(CONFIG_DIR)]

    def init_handlers(self) -> list[Any]:
        """Return Voila's routes, less the file, tree and login routes, plus the briefing."""
        kept = []
        page: dict[str, Any] | None = None
        dropped = {"/voila/files/(.*)", "/login", "/logout", "/(.*)"}
        for handler in super().init_handlers():
            route = handler[0]
            relative = "/" + route[len(self.server_url) :].lstrip("/")
            if route.endswith("/(.*)") and len(handler) > 2 and "notebook_path" in handler[2]:
                page = handler[2]
            if relative in dropped:
                continue
            kept.append(handler)
        if page is None:
            raise DataError("the app server needs the app notebook")
        base = self.server_url.rstrip("/")
        return [
            (f"{base}/", AppPageHandler, page),
            (
                f"{base}/{BRIEFING_ROUTE}/([a-z0-9][a-z0-9-]*)",
                BriefingHandler,
                {"regions": self.regions},
            ),
            *kept,
        ]


def check_ip(value: str) -> str:
    """Return ``value`` if it is an IP address this machine can listen on.

    Raises:
        InputError: not an IP address.

    """
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InputError(f"--ip {value!r} is not an IP address (e.g. 127.0.0.1)") from None


def check_port(ip: str, port: int) -> int:
    """Return ``port`` if it is free on ``ip``.

    Raises:
        InputError: out of range or already in use.

    """
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port} must be within 1..65535")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the server itself will: connections closing on the port do not block it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError as exc:
            raise InputError(f"cannot listen on {ip}:{port}: {exc.strerror or exc}") from None
    return port


def server_arguments(ip: str, port: int) -> list[str]:
    """Return the command line Voila is started with (the notebook, address, no browser)."""
    notebook = app_notebook()
    return [
        str(notebook),
        f"--Voila.ip={ip}",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        "--Voila.open_browser=False",
        f"--Voila.root_dir={notebook.parent}",
    ]


def serve(
    port: int = DEFAULT_PORT,
    ip: str = "127.0.0.1",
    region: str | None = None,
    catalogue: str | None = None,
    announce: Callable[[str, str], None] | None = None,
) -> None:
    """Serve the app until interrupted.

    Args:
        port: TCP port.
        ip: address to listen on (127.0.0.1: this machine only).
        region: region the app opens at (None: the landing list).
        catalogue: the region catalogue (None: ``data/regions.yaml``).
        announce: called with the app's address and the IP once the checks passed.

    Raises:
        InputError: bad address, port in use, or unknown region.
        AsmSpotterError: the catalogue or the notebook cannot be read (a subclass).

    """
    from asmspotter.catalogue import load_catalogue

    ip = check_ip(ip)
    check_port(ip, port)
    cat = load_catalogue(catalogue)
    if region is not None:
        cat[region]  # noqa: B018 - raises InputError naming the known regions
    os.environ.pop(REGION_ENV, None)
    if region:
        os.environ[REGION_ENV] = region
    os.environ[CATALOGUE_ENV] = str(cat.path)
    # where a preheated kernel asks for its page's request (Voila's default is 127.0.0.1)
    os.environ[APP_IP_ENV] = "127.0.0.1" if ipaddress.ip_address(ip).is_unspecified else ip
    AppServer.regions = tuple(cat)
    argv = server_arguments(ip, port)
    if announce is not None:
        host = f"[{ip}]" if ":" in ip else ip
        query = f"?region={region}" if region else ""
        announce(f"http://{host}:{port}/{query}", ip)
    try:
        AppServer.launch_instance(argv=argv)
    finally:
        AppServer.clear_instance()


__all__ = ["QUERY_KEYS", "AppServer", "app_notebook", "serve"]
