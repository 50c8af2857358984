"""The interactive map for partners, served by Voila (``asmspotter app``).

A landing list of the catalogue's regions; for each, a map of where mining spread period
by period (each period's expansion in its own colour of :mod:`asmspotter.palette`), with
layer toggles (detected sites, satellite image, protected areas, mining areas, indigenous
areas, reference footprints), click popups, and a side panel with the chosen period's
figures, the briefing's key findings, a link to the briefing and the analysis files.

Modules: :mod:`.state` (the selection as plain Python, validated), :mod:`.source` (which
analysis is shown), :mod:`.display` (geometry and figures to draw), :mod:`.raster`
(composite to map image), :mod:`.panel` (HTML), :mod:`.mapview` (the ipyleaflet map),
:mod:`.view` (the widgets), :mod:`.server` (Voila serving only the app notebook).

The notebook ``notebooks/app.ipynb`` only calls :func:`show_app`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

from asmspotter.app.state import (
    DEFAULT_LAYERS,
    LAYER_KEYS,
    LAYER_LABELS,
    SOURCES,
    AppState,
    LayerRef,
    Request,
    Selection,
    parse_query,
    visible_layers,
)

#: Default port of ``asmspotter app``.
DEFAULT_PORT = 8866
#: Environment variable through which ``asmspotter app --region R`` names the region to open.
REGION_ENV = "ASMSPOTTER_APP_REGION"
#: Environment variable through which ``asmspotter app --catalogue F`` names the catalogue.
CATALOGUE_ENV = "ASMSPOTTER_APP_CATALOGUE"
#: What Voila passes each page's URL query string to its kernel in (CGI convention).
QUERY_ENV = "QUERY_STRING"
#: Set to "True" by Voila in kernels it starts before a page asks for them.
PREHEAT_ENV = "VOILA_PREHEAT"
#: Where Voila's preheated kernels reach the server for their page's request.
APP_IP_ENV = "VOILA_APP_IP"

__all__ = [
    "CATALOGUE_ENV",
    "DEFAULT_PORT",
    "DEFAULT_LAYERS",
    "LAYER_KEYS",
    "LAYER_LABELS",
    "REGION_ENV",
    "SOURCES",
    "AppState",
    "LayerRef",
    "Request",
    "Selection",
    "parse_query",
    "preheated",
    "request_query",
    "show_app",
    "visible_layers",
]


def preheated(env: Mapping[str, str] | None = None) -> bool:
    """Return whether an environment is that of a kernel Voila starts ahead of time.

    Args:
        env: a kernel's environment (None: this process's).

    """
    return (os.environ if env is None else env).get(PREHEAT_ENV) == "True"


def request_query() -> str:
    """Return the page's URL query string (empty outside Voila).

    In a kernel Voila started ahead of time (preheated), this waits until a page asks for
    it, so everything done before the call is ready when the page arrives.
    """
    if preheated():
        _wait_for_page()
    return os.environ.get(QUERY_ENV, "")


def _wait_for_page() -> None:
    """Wait for the page a preheated kernel serves, and take its request's variables.

    What :func:`voila.utils.wait_for_request` does (the same websocket route and
    environment variables), without importing Voila's server packages into the kernel:
    that import costs about 7 s of CPU, which every kernel Voila starts ahead of time paid
    at normal priority while pages were being served.
    """
    try:
        from websockets.sync.client import connect
    except ImportError:  # websockets < 11: Voila's own, heavier helper
        from voila.utils import wait_for_request

        wait_for_request()
        return
    env = os.environ
    base = env.get("VOILA_WS_BASE_URL", env.get("VOILA_SERVER_URL", "/"))
    host = env.get(APP_IP_ENV, "127.0.0.1")
    host = f"[{host}]" if ":" in host else host
    url = (
        f"{env.get('VOILA_WS_PROTOCOL', 'ws')}://{host}:{env.get('VOILA_APP_PORT', '8866')}"
        f"{base}voila/query/{env.get('VOILA_KERNEL_ID')}"
    )
    with connect(url, open_timeout=30, max_size=2**20) as socket:
        info = socket.recv()
    for key, value in json.loads(info).items():
        env[key] = str(value)


def show_app(
    region: str | None = None,
    source: str | None = None,
    period: str | None = None,
    catalogue: str | None = None,
) -> Any:
    """Build the app for the page being served and return its root widget.

    In a kernel Voila starts ahead of time (preheated), everything a page can wait for is
    done ahead in a background thread at the lowest CPU priority (importing the widgets,
    reading the catalogue, loading every region, the one named by the arguments or by
    ``asmspotter app --region`` first), while this thread waits for the page's request;
    Voila starts such a kernel each time a page takes one, and until its page arrives the
    whole kernel runs at the lowest priority (:mod:`asmspotter.app.priority`), so it does
    not slow the pages being served. Then what the page's address asks for
    (``?region=madre-de-dios&period=2021``) is shown. Every value is checked against the
    catalogue; a refused one is shown as a message.

    Args:
        region: region to open (None: the one the server was started with, else the list).
        source: ``detector`` or ``reference`` (None: the detector where detections exist).
        period: period to show (None: the last).
        catalogue: catalogue YAML (None: the server's, else ``data/regions.yaml``).

    """
    from asmspotter.app.cache import RegionCache, warm_up
    from asmspotter.app.priority import serve_at_normal_priority
    from asmspotter.errors import AsmSpotterError

    path = catalogue or os.environ.get(CATALOGUE_ENV) or None
    first = region or os.environ.get(REGION_ENV) or None
    cache: RegionCache | None = None
    if preheated():
        cache, loading = warm_up(path, first)
    query = request_query()  # in a preheated kernel: waits for the page
    if cache is not None:  # a kernel of the app server's pool: it waited at low priority
        serve_at_normal_priority()
    import ipywidgets as widgets

    from asmspotter.app.panel import esc
    from asmspotter.app.view import App
    from asmspotter.catalogue import load_catalogue

    with cache.urgent() if cache is not None else contextlib.nullcontext():
        try:
            cat = loading.result() if cache is not None else load_catalogue(path)
        except AsmSpotterError as exc:
            return widgets.HTML(f"<div class='asm-message'>{esc(exc)}</div>")
        app = App(cat, cache)
        try:
            request = parse_query(query)
        except AsmSpotterError as exc:
            app.start(Request(first, source, period))
            app.say(str(exc))
            return app.widget
        app.start(request if request.region is not None else Request(first, source, period))
    return app.widget
