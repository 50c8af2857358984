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

import os
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
    "request_query",
    "show_app",
    "visible_layers",
]


def request_query() -> str:
    """Return the page's URL query string (empty outside Voila).

    In a kernel Voila started ahead of time (preheated), this waits until a page asks for
    it, so everything done before the call is ready when the page arrives.
    """
    if os.environ.get(PREHEAT_ENV) == "True":
        from voila.utils import wait_for_request

        wait_for_request()
    return os.environ.get(QUERY_ENV, "")


def show_app(
    region: str | None = None,
    source: str | None = None,
    period: str | None = None,
    catalogue: str | None = None,
) -> Any:
    """Build the app for the page being served and return its root widget.

    In a kernel Voila starts ahead of time (preheated), the region named by the arguments
    (or by ``asmspotter app --region``) is opened and every other region's analysis is
    loading in the background before the page's request is awaited, so that the page
    finds them ready. Then what the
    page's address asks for (``?region=madre-de-dios&period=2021``) is shown. Every value
    is checked against the catalogue; a refused one is shown as a message.

    Args:
        region: region to open (None: the one the server was started with, else the list).
        source: ``detector`` or ``reference`` (None: the detector where detections exist).
        period: period to show (None: the last).
        catalogue: catalogue YAML (None: the server's, else ``data/regions.yaml``).

    """
    import ipywidgets as widgets

    from asmspotter.app.panel import esc
    from asmspotter.app.view import App
    from asmspotter.catalogue import load_catalogue
    from asmspotter.errors import AsmSpotterError

    try:
        cat = load_catalogue(catalogue or os.environ.get(CATALOGUE_ENV) or None)
    except AsmSpotterError as exc:
        return widgets.HTML(f"<div class='asm-message'>{esc(exc)}</div>")
    app = App(cat)
    first = region or os.environ.get(REGION_ENV) or None
    if os.environ.get(PREHEAT_ENV) == "True":
        app.preload(first)  # a kernel started ahead of time: load every region meanwhile
    app.start(Request(first, source, period))
    try:
        request = parse_query(request_query())
    except AsmSpotterError as exc:
        app.say(str(exc))
        return app.widget
    if request.region is not None:
        app.apply(request)
    return app.widget
