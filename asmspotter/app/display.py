"""What the map and the side panel draw, computed from an analysis (no widgets here).

Geometries are simplified and their coordinates rounded **for display only**: every number
shown (areas in the panel and in popups) comes from the analysis itself, never from the
simplified shapes. Every feature carries the properties its popup shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from asmspotter.analyse import AnalysisResult
from asmspotter.palette import REFERENCE_COLOUR, overlay_colour, period_colours

#: Simplification tolerance of mining polygons, in metres (a pixel at zoom 14 is ~10 m).
MINING_TOLERANCE_M = 5.0
#: Simplification tolerance of overlay outlines, in metres.
OVERLAY_TOLERANCE_M = 25.0
#: Decimal places kept in displayed longitudes and latitudes (1e-5 degrees is about 1 m).
COORD_DIGITS = 5
#: Size in pixels the map is drawn at, to choose its first zoom.
MAP_SIZE_PX: tuple[int, int] = (860, 620)

FeatureCollection = dict[str, Any]


def display_collection(
    geoms: Sequence[Any] | np.ndarray,
    crs: CRS | str,
    properties: Sequence[dict[str, Any]],
    style: dict[str, Any],
    tolerance_m: float,
) -> FeatureCollection:
    """Return polygons as a GeoJSON FeatureCollection in EPSG:4326, simplified for display.

    Args:
        geoms: shapely polygons in ``crs`` (a metric CRS when ``tolerance_m`` > 0).
        crs: their CRS.
        properties: one property mapping per geometry (what its popup shows).
        style: the Leaflet path style of every feature.
        tolerance_m: simplification tolerance in ``crs`` units (0: none).

    """
    arr = np.asarray(list(geoms), dtype=object)
    if len(arr) != len(properties):
        raise ValueError(f"{len(arr)} geometries but {len(properties)} property rows")
    keep = np.array([g is not None and not g.is_empty for g in arr], dtype=bool)
    arr = arr[keep]
    rows = [p for p, k in zip(properties, keep, strict=True) if k]
    if tolerance_m > 0 and len(arr):
        arr = shapely.simplify(arr, tolerance_m, preserve_topology=True)
    source = CRS.from_user_input(crs)
    if len(arr) and not source.equals(CRS.from_epsg(4326)):
        to_wgs84 = Transformer.from_crs(source, 4326, always_xy=True)
        arr = shapely.transform(arr, lambda xy: np.column_stack(to_wgs84.transform(*xy.T)))
    if len(arr):
        arr = shapely.transform(arr, lambda xy: np.round(xy, COORD_DIGITS))
    texts = shapely.to_geojson(arr) if len(arr) else []
    features = []
    for text, props in zip(texts, rows, strict=True):
        geometry = json.loads(text)
        features.append(
            {"type": "Feature", "geometry": geometry, "properties": {**props, "style": style}}
        )
    return {"type": "FeatureCollection", "features": features}


def _fill(colour: str) -> dict[str, Any]:
    return {"color": colour, "weight": 1, "opacity": 1.0, "fillColor": colour, "fillOpacity": 0.65}


def _outline(colour: str, weight: float = 2.0, fill: float = 0.06) -> dict[str, Any]:
    return {
        "color": colour,
        "weight": weight,
        "opacity": 0.9,
        "fillColor": colour,
        "fillOpacity": fill,
    }


def _period_collections(
    analysis: AnalysisResult, label: str, layer: str
) -> dict[str, FeatureCollection]:
    acc = analysis.accounting
    counted = acc.piece_ha()
    polygon = np.asarray(shapely.area(acc.pieces), dtype=float) / 1e4
    colours = period_colours(len(acc.periods))
    out: dict[str, FeatureCollection] = {}
    for k, period in enumerate(acc.periods):
        sel = np.flatnonzero(acc.piece_period == k)
        props = [
            {
                "layer": layer,
                "period": period.id,
                "first": k == 0,
                "area_ha": round(float(counted[i]), 2),
                "polygon_ha": round(float(polygon[i]), 2),
                "source": label,
            }
            for i in sel
        ]
        if layer == "mining":
            style = _fill(colours[k])
        else:
            style = _outline(REFERENCE_COLOUR, weight=1.5, fill=0.0)
        out[period.id] = display_collection(
            acc.pieces[sel], acc.crs, props, style, MINING_TOLERANCE_M
        )
    return out


def mining_collections(analysis: AnalysisResult, label: str) -> dict[str, FeatureCollection]:
    """Return per period the mining first seen in it, filled in the period's palette colour.

    Each feature's properties: ``layer`` (``mining``), ``period``, ``first`` (whether it is
    the first period, which holds everything up to it), ``area_ha`` (the mined area the
    analysis counts for it), ``polygon_ha`` (its polygon's area) and ``source``.
    """
    return _period_collections(analysis, label, "mining")


def reference_collections(analysis: AnalysisResult, label: str) -> dict[str, FeatureCollection]:
    """Return per period the reference footprints first seen in it, as outlines."""
    return _period_collections(analysis, label, "reference")


@dataclass(frozen=True)
class OverlayDisplay:
    """One overlay layer ready to draw.

    Attributes:
        id: catalogue overlay id.
        kind: its kind (the layer toggle it belongs to).
        label: its label.
        colour: its outline colour.
        data: its features (properties ``layer``, ``overlay``, ``name``, ``area_ha``).

    """

    id: str
    kind: str
    label: str
    colour: str
    data: FeatureCollection


def overlay_displays(analysis: AnalysisResult) -> tuple[OverlayDisplay, ...]:
    """Return the analysis's overlay layers (clipped to the region), outlined by kind."""
    acc = analysis.accounting
    out = []
    for o in analysis.overlays:
        geoms = analysis.overlay_geoms.get(o.id, [])
        props = [
            {
                "layer": "overlay",
                "overlay": o.label,
                "name": f.name or f.id,
                "area_ha": round(f.area_ha, 1),
            }
            for f in o.features
        ]
        colour = overlay_colour(o.kind)
        data = display_collection(geoms, acc.crs, props, _outline(colour), OVERLAY_TOLERANCE_M)
        out.append(OverlayDisplay(o.id, o.kind, o.label, colour, data))
    return tuple(out)


def outline_collection(outline: Any) -> FeatureCollection:
    """Return the region outline (EPSG:4326) as a thin, unfilled line."""
    style = {"color": "#555555", "weight": 1.5, "opacity": 0.8, "fill": False, "dashArray": "4 3"}
    return display_collection([outline], "EPSG:4326", [{"layer": "outline"}], style, 0.0)


#: Zoom steps of the map (Leaflet's ``zoomSnap``).
ZOOM_SNAP = 0.25


@dataclass(frozen=True, eq=False)
class RegionDisplay:
    """Everything a region's map draws from one analysis (built once, kept per session).

    Attributes:
        mining: per period, the mining first seen in it.
        overlays: the overlay layers.
        outline: the region's outline.

    """

    mining: dict[str, FeatureCollection]
    overlays: tuple[OverlayDisplay, ...]
    outline: FeatureCollection


def region_display(analysis: AnalysisResult, outline: Any, label: str) -> RegionDisplay:
    """Return what the map of an analysis draws (``label`` names the mining's source)."""
    return RegionDisplay(
        mining_collections(analysis, label),
        overlay_displays(analysis),
        outline_collection(outline),
    )


def map_view(bbox: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
    """Return the centre (lat, lon) and zoom that fit a lon/lat box into the drawn map."""
    west, south, east, north = bbox

    def merc(lat: float) -> float:
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    width, height = MAP_SIZE_PX
    lon_span = max(east - west, 1e-6) / 360.0
    lat_span = max(merc(north) - merc(south), 1e-9) / (2 * math.pi)
    fit = min(math.log2(width / 256 / lon_span), math.log2(height / 256 / lat_span))
    zoom = math.floor(fit / ZOOM_SNAP) * ZOOM_SNAP
    centre_lat = math.degrees(math.atan(math.sinh((merc(north) + merc(south)) / 2)))
    return (centre_lat, (west + east) / 2), max(1.0, min(18.0, zoom))


# --- the side panel's numbers ------------------------------------------------------------


@dataclass(frozen=True)
class ZoneNumbers:
    """Mining inside one overlay layer up to a period.

    Attributes:
        label: the layer's label.
        kind: its kind.
        inside_ha: cumulative mined area inside the layer's zones.
        new_inside_ha: new mined area inside.
        outside_ha: cumulative mined area outside every zone of the layer.
        legal: whether the layer is a legal mining zone.

    """

    label: str
    kind: str
    inside_ha: float
    new_inside_ha: float
    outside_ha: float | None
    legal: bool


@dataclass(frozen=True)
class PeriodNumbers:
    """The side panel's figures for the chosen period.

    Attributes:
        period: the period id.
        first: whether it is the first analysed period (its new area holds everything up
            to it).
        cumulative_ha: all land mined up to and in the period.
        new_ha: land first mined in it.
        zones: per overlay layer, mining inside (and outside, for legal zones).

    """

    period: str
    first: bool
    cumulative_ha: float
    new_ha: float
    zones: tuple[ZoneNumbers, ...]


def period_numbers(analysis: AnalysisResult, period: str) -> PeriodNumbers:
    """Return the figures of one analysed period (as the analysis files hold them)."""
    ids = analysis.accounting.period_ids
    k = ids.index(period)
    fig = analysis.accounting.figures[k]
    zones = tuple(
        ZoneNumbers(
            label=o.label,
            kind=o.kind,
            inside_ha=o.layer[k].inside_ha,
            new_inside_ha=o.layer[k].new_inside_ha,
            outside_ha=o.layer[k].outside_ha,
            legal=o.is_legal_zone,
        )
        for o in analysis.overlays
    )
    return PeriodNumbers(period, k == 0, fig.cumulative_ha, fig.new_ha, zones)
