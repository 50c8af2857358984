"""The map of one region (ipyleaflet): mining per period, overlays, reference, image, legend.

Offline first: the map starts without any tile layer (``Map(layers=())``); the online
basemap is added only when the user asks for it. Every layer is built once and kept;
a period or layer switch only sets which layers the map holds (one message to the
browser), so redrawing stays quick. The satellite image and the reference footprints are
built the first time they are shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

import ipyleaflet
import ipywidgets as widgets

from asmspotter import layout
from asmspotter.app import display, panel
from asmspotter.app.raster import composite_image
from asmspotter.app.source import RegionAnalysis
from asmspotter.app.state import LayerRef, Selection, visible_layers
from asmspotter.errors import AsmSpotterError

log = logging.getLogger(__name__)

#: Online basemap offered as an option (off by default; it needs internet).
BASEMAP_NAME = "OpenStreetMap"
#: Credit shown with the satellite image (the Copernicus licence asks for it).
IMAGE_CREDIT = "Contains modified Copernicus Sentinel data"


class SharedStyleGeoJSON(ipyleaflet.GeoJSON):
    """A GeoJSON layer whose ``style`` is sent once for the layer, not copied into each feature.

    ipyleaflet's layer copies its ``style`` into every feature's properties before sending
    them; the browser applies the layer's ``style`` to every feature by itself, so the copy
    only adds bytes to the page.
    """

    def _get_data(self) -> display.FeatureCollection:
        return cast(display.FeatureCollection, self.data)


def layer_style(data: display.FeatureCollection) -> dict[str, Any]:
    """Return the style the features of a collection share (empty when it has none)."""
    features = data["features"]
    return dict(features[0]["properties"].get("style", {})) if features else {}


class Coordinates:
    """A geometry's coordinates, sent as JSON lists but not searched for binary buffers.

    ipywidgets searches every nested list of a widget's state for binary buffers each time
    it sends the state: when the widget is made, and again when the page asks for every
    widget's state. For Madre de Dios's 22,000 vertices that took 0.17 s of the kernel
    each time, while the page waited. The kernel's JSON encoder writes any other iterable
    as a list (``jupyter_client.jsonutil.json_default``), so the JSON sent is the same.
    """

    __slots__ = ("nested",)

    def __init__(self, nested: Any) -> None:
        self.nested = nested

    def __iter__(self) -> Iterator[Any]:
        return iter(self.nested)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Coordinates) and other.nested == self.nested

    __hash__ = None  # type: ignore[assignment]


def _wrapped(geometry: dict[str, Any]) -> dict[str, Any]:
    if "coordinates" in geometry:
        return {**geometry, "coordinates": Coordinates(geometry["coordinates"])}
    return {**geometry, "geometries": [_wrapped(g) for g in geometry.get("geometries", [])]}


def browser_copy(data: display.FeatureCollection) -> display.FeatureCollection:
    """Return what the browser gets of a collection: each feature's geometry and index.

    A click reports the feature's index, and the server shows its own copy of that
    feature's properties (period, area, name), so none of them needs to be sent. The
    coordinates are wrapped in :class:`Coordinates`.
    """
    features = [
        {
            "type": "Feature",
            "id": i,
            "properties": {},
            "geometry": _wrapped(f["geometry"]),
        }
        for i, f in enumerate(data["features"])
    ]
    return {"type": "FeatureCollection", "features": features}


class RegionMap:
    """The map widget of one region's analysis and the layers it can show.

    Args:
        analysis: the region's analysis for the source shown.
        shapes: what its map draws (:func:`~asmspotter.app.display.region_display`).
        reference: a callable returning the reference analysis (called the first time the
            reference footprints are shown; None when the region has none).

    """

    def __init__(
        self,
        analysis: RegionAnalysis,
        shapes: display.RegionDisplay,
        reference: Callable[[], RegionAnalysis] | None = None,
    ) -> None:
        self.analysis = analysis
        self._reference = reference
        region = analysis.region
        centre, zoom = display.map_view(region.bbox)
        self.map = ipyleaflet.Map(
            layers=(),
            center=centre,
            zoom=zoom,
            zoom_snap=display.ZOOM_SNAP,
            zoom_delta=0.5,
            scroll_wheel_zoom=True,
            layout=widgets.Layout(height=f"{display.MAP_SIZE_PX[1]}px", width="100%"),
        )
        self.map.add_class("asm-map")
        self.map.add(ipyleaflet.ScaleControl(position="bottomright", imperial=False))
        self.outline = ipyleaflet.GeoJSON(data=shapes.outline, name="Region outline")
        self.mining = {
            period: self._geojson(data, f"Mining {period}")
            for period, data in shapes.mining.items()
        }
        self.overlays = shapes.overlays
        # per overlay kind (one layer toggle each), its layers with features in the region
        self.overlay_layers: dict[str, list[ipyleaflet.GeoJSON]] = {}
        for o in self.overlays:
            if o.data["features"]:
                self.overlay_layers.setdefault(o.kind, []).append(self._geojson(o.data, o.label))
        self._reference_layers: dict[str, ipyleaflet.GeoJSON] | None = None
        self._images: dict[str, ipyleaflet.ImageOverlay | None] = {}
        self._basemap: ipyleaflet.TileLayer | None = None
        # what a click on a feature shows: a box in the map's corner, written by the server
        self.info = widgets.HTML(layout=widgets.Layout(display="none", max_width="300px"))
        self.info.add_class("asm-info")
        self.map.add(ipyleaflet.WidgetControl(widget=self.info, position="topright"))
        self.legend = widgets.HTML()
        self.legend.add_class("asm-legend-box")
        self.map.add(ipyleaflet.WidgetControl(widget=self.legend, position="bottomleft"))

    @property
    def overlay_kinds(self) -> tuple[str, ...]:
        """The overlay kinds the region has features of."""
        return tuple(self.overlay_layers)

    def _geojson(self, data: display.FeatureCollection, name: str) -> ipyleaflet.GeoJSON:
        rows = [f["properties"] for f in data["features"]]
        layer = SharedStyleGeoJSON(data=browser_copy(data), style=layer_style(data), name=name)

        def on_click(**event: Any) -> None:
            self._show_feature(rows, event)

        layer.on_click(on_click)
        return layer

    def _show_feature(self, rows: list[dict[str, Any]], event: dict[str, Any]) -> None:
        """Show the clicked feature's period and area (or name), from the server's own copy."""
        index = event.get("id")
        if not isinstance(index, int) or not 0 <= index < len(rows):
            return  # not a feature this server sent: ignore it
        self.info.value = panel.popup_html(rows[index])
        self.info.layout.display = None

    def clear_feature(self) -> None:
        """Hide the clicked feature's box."""
        self.info.layout.display = "none"
        self.info.value = ""

    def reference_layers(self) -> dict[str, ipyleaflet.GeoJSON]:
        """Return the reference footprints per period (built on first use)."""
        if self._reference_layers is None:
            self._reference_layers = {}
            if self._reference is not None:
                ref = self._reference()
                collections = display.reference_collections(ref.result, ref.label)
                self._reference_layers = {
                    p: self._geojson(d, f"Reference {p}") for p, d in collections.items()
                }
        return self._reference_layers

    def image(self, period: str) -> ipyleaflet.ImageOverlay | None:
        """Return the satellite image of ``period`` (None when no composite exists)."""
        if period not in self._images:
            tif = layout.composite_files(self.analysis.region.id, period).tif
            overlay = None
            if tif.is_file():
                try:
                    img = composite_image(tif)
                except AsmSpotterError as exc:
                    log.warning("satellite image of %s: %s", period, exc)
                else:
                    overlay = ipyleaflet.ImageOverlay(
                        url=img.url,
                        bounds=list(map(list, img.bounds)),
                        name=f"Image {period}",
                        attribution=IMAGE_CREDIT,
                    )
            self._images[period] = overlay
        return self._images[period]

    def has_image(self, period: str) -> bool:
        """Whether ``period`` has a composite to show."""
        return self.image(period) is not None

    def _layers(self, ref: LayerRef) -> list[Any]:
        if ref.key == "mining":
            found = self.mining.get(ref.period or "")
        elif ref.key == "satellite":
            found = self.image(ref.period or "")
        elif ref.key == "reference":
            found = self.reference_layers().get(ref.period or "")
        else:
            return list(self.overlay_layers.get(ref.key, ()))
        return [found] if found is not None else []

    def basemap(self) -> ipyleaflet.TileLayer:
        """Return the online basemap layer (created when first asked for)."""
        if self._basemap is None:
            import xyzservices

            self._basemap = ipyleaflet.basemap_to_tiles(xyzservices.providers.OpenStreetMap.Mapnik)
            self._basemap.name = BASEMAP_NAME
        return self._basemap

    def show(self, selection: Selection) -> None:
        """Draw what ``selection`` asks for: its layers, in order, and its legend."""
        wanted: list[Any] = [self.basemap()] if selection.basemap else []
        for ref in visible_layers(selection, self.overlay_kinds):
            if ref.key != "satellite" and self.outline not in wanted:
                wanted.append(self.outline)  # above the image, below everything else
            wanted.extend(self._layers(ref))
        if self.outline not in wanted:
            wanted.append(self.outline)
        if tuple(wanted) != tuple(self.map.layers):
            self.map.layers = tuple(wanted)
        self.legend.value = panel.legend_html(selection, self.analysis.label, self.overlays)
