"""The briefing's static figures: a map of mining per period and a chart of mined area.

Builders return :class:`matplotlib.figure.Figure` objects made without pyplot (no backend is
selected, so they work in notebook kernels, scripts and the app alike); :func:`figure_png`
turns one into PNG bytes with fixed metadata, so that the same inputs give byte-identical
images. Colours come from :mod:`asmspotter.palette`.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from matplotlib.figure import Figure
from matplotlib.patches import Patch, PathPatch, Rectangle
from matplotlib.path import Path as MplPath
from matplotlib.ticker import FuncFormatter

from asmspotter import palette
from asmspotter.report.language import Language, as_language

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from asmspotter.analyse import AnalysisResult

#: Resolution of the PNGs (pixels per inch).
DPI = 150
#: Width of the figures in inches (fits an A4 page's text width).
WIDTH_IN = 7.2
#: A region wider or taller than this (km) gets an overview and a zoom panel.
ZOOM_FROM_KM = 60.0
#: Side of the zoom window (km).
ZOOM_KM = 25.0
#: Longest side (px) of the background image read from a composite.
BACKGROUND_PX = 1400
#: Legend entries per row, and the height of a row (inches).
LEGEND_COLUMNS = 3
LEGEND_ROW_IN = 0.17
#: Opacity over a composite of the first period's mining and of each later expansion: the
#: imagery shows through the old mining, the expansion stands out.
MINING_ALPHA_ON_IMAGE = (0.5, 0.95)
#: Largest pieces considered when looking for the densest expansion.
MAX_ZOOM_PIECES = 3000
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQUATOR = 111.320
_SCALE_STEPS_KM = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)

Bounds = tuple[float, float, float, float]


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Return a figure as PNG bytes with fixed metadata (no software version stamped)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _to_lonlat(geoms: Any, crs: Any) -> Any:
    from pyproj import Transformer

    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, project)


def polygons_path(geoms: Any) -> MplPath | None:
    """Return (multi)polygons as one matplotlib path, holes included (None when empty).

    Rings are oriented (exteriors counter-clockwise, holes clockwise) so that the non-zero
    fill rule leaves holes empty; one path draws thousands of polygons at once.
    """
    parts = shapely.get_parts(np.asarray(geoms, dtype=object).ravel())
    parts = parts[(shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)]
    if not len(parts):
        return None
    rings = shapely.get_rings(shapely.orient_polygons(parts))
    coords, index = shapely.get_coordinates(rings, return_index=True)
    if not len(coords):
        return None
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], len(coords)] - 1
    codes[starts] = MplPath.MOVETO
    codes[ends] = MplPath.CLOSEPOLY
    return MplPath(coords, codes)


def _draw(ax: Axes, geoms: Any, **style: Any) -> None:
    path = polygons_path(geoms)
    if path is not None:
        ax.add_artist(PathPatch(path, **style))  # limits are set explicitly: skip autoscaling


def _km_per_deg_lon(lat: float) -> float:
    return KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat))


def _size_km(bounds: Bounds) -> tuple[float, float]:
    x0, y0, x1, y1 = bounds
    lat = (y0 + y1) / 2
    return (x1 - x0) * _km_per_deg_lon(lat), (y1 - y0) * KM_PER_DEG_LAT


def _pad(bounds: Bounds, share: float = 0.04) -> Bounds:
    x0, y0, x1, y1 = bounds
    dx, dy = (x1 - x0) * share or 0.01, (y1 - y0) * share or 0.01
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def read_background(path: str | os.PathLike[str], bounds: Bounds) -> np.ndarray | None:
    """Read a composite's true colour over ``bounds`` (lon/lat) as an RGBA image (0..1).

    Display composites are read as they are, reflectance composites stretched to
    :data:`asmspotter.bands.DISPLAY_REFLECTANCE_MAX`; no-data is transparent. Returns None
    when the composite lacks the true-colour bands.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds
    from rasterio.warp import reproject

    from asmspotter import bands, layout
    from asmspotter.errors import InputError

    with rasterio.open(path) as src:
        try:
            idx = bands.band_indexes(list(src.descriptions), bands.TRUE_COLOUR, str(path))
        except InputError:
            return None
        scale = max(src.width, src.height) / BACKGROUND_PX
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        data = src.read(
            [i + 1 for i in idx], out_shape=(3, *shape), resampling=Resampling.average
        ).astype("float32")
        display = src.tags().get(layout.RADIOMETRY_TAG) == "display"
        transform = src.transform * src.transform.scale(src.width / shape[1], src.height / shape[0])
        crs = src.crs
    if display:
        data[:, (data == 0).all(axis=0)] = np.nan
        data /= 255.0
    else:
        data /= bands.DISPLAY_REFLECTANCE_MAX
    x0, y0, x1, y1 = bounds
    w_km, h_km = _size_km(bounds)
    width = BACKGROUND_PX if w_km >= h_km else max(1, round(BACKGROUND_PX * w_km / h_km))
    height = BACKGROUND_PX if h_km > w_km else max(1, round(BACKGROUND_PX * h_km / w_km))
    out = np.full((3, height, width), np.nan, dtype="float32")
    reproject(
        data,
        out,
        src_transform=transform,
        src_crs=crs,
        src_nodata=np.nan,
        dst_transform=from_bounds(x0, y0, x1, y1, width, height),
        dst_crs="EPSG:4326",
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    alpha = np.isfinite(out).all(axis=0).astype("float32")
    rgb = np.clip(np.nan_to_num(out, nan=1.0), 0.0, 1.0)
    return np.dstack([rgb[0], rgb[1], rgb[2], alpha])


def _degree_formatter(lang: Language, axis: str, span: float) -> FuncFormatter:
    digits = 2 if span < 0.5 else 1 if span < 5 else 0
    hemi = lang.raw("map.hemispheres")

    def fmt(value: float, _pos: Any) -> str:
        side = ("E" if value >= 0 else "W") if axis == "x" else ("N" if value >= 0 else "S")
        return f"{lang.number(abs(value), digits)}°{hemi[side]}"

    return FuncFormatter(fmt)


def _scale_bar(ax: Axes, bounds: Bounds, lang: Language) -> None:
    x0, y0, x1, y1 = bounds
    km_deg = _km_per_deg_lon((y0 + y1) / 2)
    target = (x1 - x0) * km_deg / 5
    length = max([s for s in _SCALE_STEPS_KM if s <= target] or [_SCALE_STEPS_KM[0]])
    bx, by = x0 + (x1 - x0) * 0.05, y0 + (y1 - y0) * 0.05
    dx, dy = length / km_deg, (y1 - y0) * 0.015
    ax.add_patch(Rectangle((bx, by), dx, dy, facecolor="black", edgecolor="black", zorder=6))
    ax.add_patch(Rectangle((bx, by), dx / 2, dy, facecolor="white", edgecolor="black", zorder=6))
    label = lang.text("map.km", value=lang.number(length, 0 if length >= 1 else 1))
    ax.text(
        bx + dx / 2,
        by + dy * 2.2,
        label,
        ha="center",
        va="bottom",
        fontsize=7,
        zorder=6,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1},
    )


def _north_arrow(ax: Axes, lang: Language) -> None:
    ax.annotate(
        lang.text("map.north"),
        xy=(0.93, 0.96),
        xytext=(0.93, 0.84),
        xycoords="axes fraction",
        ha="center",
        va="center",
        fontsize=9,
        fontweight="bold",
        arrowprops={"facecolor": "black", "width": 2.5, "headwidth": 8, "headlength": 7},
        zorder=7,
    )


def densest_window(
    points: np.ndarray, weights: np.ndarray, size_km: float = ZOOM_KM
) -> Bounds | None:
    """Return the ``size_km`` square (lon/lat) around where ``weights`` are densest.

    Args:
        points: (n, 2) lon/lat of the mining pieces' centroids.
        weights: their hectares.
        size_km: side of the window.

    """
    if len(points) == 0 or not np.any(weights > 0):
        return None
    lat = float(np.average(points[:, 1], weights=weights))
    half_x, half_y = size_km / 2 / _km_per_deg_lon(lat), size_km / 2 / KM_PER_DEG_LAT
    # the window centred on each piece: keep the one holding the most hectares
    inside = (np.abs(points[:, None, 0] - points[None, :, 0]) <= half_x) & (
        np.abs(points[:, None, 1] - points[None, :, 1]) <= half_y
    )
    best = int(np.argmax(inside.astype(float) @ weights))
    sel = inside[best]
    cx = float(np.average(points[sel, 0], weights=weights[sel] + 1e-12))
    cy = float(np.average(points[sel, 1], weights=weights[sel] + 1e-12))
    return cx - half_x, cy - half_y, cx + half_x, cy + half_y


@dataclass(frozen=True, eq=False)
class MapLayers:
    """What a map draws, in longitude/latitude.

    Attributes:
        periods: the period ids, in order.
        outline: the region outline (None when the analysis was not clipped).
        pieces: the mining pieces, each first mapped in one period.
        piece_period: index into ``periods`` of each piece.
        piece_ha: hectares of each piece.
        overlays: per overlay layer with features in the region: (label, kind, polygons).

    """

    periods: tuple[str, ...]
    outline: Any
    pieces: np.ndarray
    piece_period: np.ndarray
    piece_ha: np.ndarray
    overlays: tuple[tuple[str, str, np.ndarray], ...]

    @property
    def bounds(self) -> Bounds:
        """The outline's bounds, else the pieces', else a small box around (0, 0)."""
        if self.outline is not None and not self.outline.is_empty:
            return tuple(self.outline.bounds)
        if len(self.pieces):
            return tuple(shapely.total_bounds(self.pieces))
        return (-0.05, -0.05, 0.05, 0.05)


def map_layers(result: AnalysisResult) -> MapLayers:
    """Return the analysis's geometries in longitude/latitude, ready to draw."""
    acc = result.accounting
    overlays = []
    for o in result.overlays:
        geoms = np.asarray(result.overlay_geoms.get(o.id, []), dtype=object)
        if len(geoms):
            overlays.append((o.label, o.kind, _to_lonlat(geoms, acc.crs)))
    return MapLayers(
        periods=tuple(acc.period_ids),
        outline=_to_lonlat(acc.outline, acc.crs) if acc.outline is not None else None,
        pieces=_to_lonlat(acc.pieces, acc.crs) if len(acc.pieces) else acc.pieces,
        piece_period=acc.piece_period,
        piece_ha=acc.piece_ha(),
        overlays=tuple(overlays),
    )


def zoom_window(layers: MapLayers, size_km: float = ZOOM_KM) -> Bounds | None:
    """Return where a zoom panel should look: the densest expansion (None: no zoom needed).

    A region no wider or taller than :data:`ZOOM_FROM_KM` needs none. The expansion is the
    mining of every period after the first (all mining when there is one period).
    """
    if max(_size_km(layers.bounds)) <= ZOOM_FROM_KM or not len(layers.pieces):
        return None
    later = layers.piece_period > 0
    sel = later if np.any(layers.piece_ha[later] > 0) else np.ones(len(layers.pieces), bool)
    order = np.argsort(-layers.piece_ha[sel])[:MAX_ZOOM_PIECES]
    centroids = shapely.get_coordinates(shapely.centroid(layers.pieces[sel][order]))
    return densest_window(centroids, layers.piece_ha[sel][order], size_km)


def _panel(
    ax: Axes, layers: MapLayers, bounds: Bounds, lang: Language, image: np.ndarray | None
) -> None:
    x0, y0, x1, y1 = bounds
    if image is not None:
        ax.imshow(
            image, extent=(x0, x1, y0, y1), origin="upper", interpolation="bilinear", zorder=0
        )
    for k in range(len(layers.periods)):
        colour = palette.period_colour(k)
        sel = layers.piece_period == k
        alpha = 1.0 if image is None else MINING_ALPHA_ON_IMAGE[min(k, 1)]
        _draw(
            ax,
            layers.pieces[sel],
            facecolor=colour,
            edgecolor=colour,
            linewidth=0.5,
            alpha=alpha,
            zorder=3,
        )
    for _label, kind, geoms in layers.overlays:
        _draw(
            ax,
            geoms,
            facecolor="none",
            edgecolor=palette.overlay_colour(kind),
            linewidth=0.9,
            zorder=4,
        )
    if layers.outline is not None:
        _draw(ax, [layers.outline], facecolor="none", edgecolor="black", linewidth=1.0, zorder=5)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(1 / math.cos(math.radians((y0 + y1) / 2)))
    ax.xaxis.set_major_formatter(_degree_formatter(lang, "x", x1 - x0))
    ax.yaxis.set_major_formatter(_degree_formatter(lang, "y", y1 - y0))
    ax.tick_params(labelsize=7)
    ax.locator_params(nbins=4)
    _scale_bar(ax, bounds, lang)
    _north_arrow(ax, lang)


def _legend(layers: MapLayers, lang: Language) -> list[Patch]:
    handles = []
    for k, period in enumerate(layers.periods):
        key = "map.up_to" if k == 0 else "map.new_in"
        colour = palette.period_colour(k)
        handles.append(
            Patch(facecolor=colour, edgecolor=colour, label=lang.text(key, period=period))
        )
    for label, kind, _ in layers.overlays:
        handles.append(Patch(facecolor="none", edgecolor=palette.overlay_colour(kind), label=label))
    if layers.outline is not None:
        handles.append(Patch(facecolor="none", edgecolor="black", label=lang.text("map.outline")))
    return handles


def map_figure(
    result: AnalysisResult,
    *,
    language: str | Language = "en",
    background: str | os.PathLike[str] | None = None,
) -> Figure:
    """Draw the map of mining per period: one colour per period's expansion, overlays outlined.

    A department-sized region (see :data:`ZOOM_FROM_KM`) gets an overview and a zoom on the
    densest expansion. Every panel has longitude/latitude labels, a scale bar and a north
    arrow; the legend names each period's colour and each overlay.

    Args:
        result: the analysis.
        language: a language code or :class:`Language` (labels and number format).
        background: a composite to draw under the mining (the last period's, usually).

    """
    lang = as_language(language)
    layers = map_layers(result)
    full = _pad(layers.bounds)
    zoom = zoom_window(layers)
    handles = _legend(layers, lang)
    height = 4.3 if zoom else 6.2
    legend_in = LEGEND_ROW_IN * math.ceil(len(handles) / LEGEND_COLUMNS) + 0.1
    fig = Figure(figsize=(WIDTH_IN, height))
    fig.subplots_adjust(
        left=0.1,
        right=0.98,
        top=0.93 if zoom else 0.97,
        bottom=(0.32 + legend_in) / height,
        wspace=0.3,
    )
    axes = fig.subplots(1, 2) if zoom else [fig.subplots()]
    views = [full, zoom] if zoom else [full]
    for ax, bounds in zip(axes, views, strict=True):
        image = read_background(background, bounds) if background is not None else None
        _panel(ax, layers, bounds, lang, image)
    if zoom:
        x0, y0, x1, y1 = zoom
        axes[0].add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                facecolor="none",
                edgecolor="black",
                linewidth=1.2,
                linestyle="--",
                zorder=8,
            )
        )
        axes[0].set_title(lang.text("map.overview"), fontsize=8)
        axes[1].set_title(lang.text("map.zoom"), fontsize=8)
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.01),
        ncol=LEGEND_COLUMNS,
        fontsize=7,
        frameon=False,
    )
    return fig


def chart_figure(result: AnalysisResult, *, language: str | Language = "en") -> Figure:
    """Draw cumulative (stacked by the period each part was first mined) and new area per period.

    Per-period masks (the detector) add the active area of each period as markers.
    """
    lang = as_language(language)
    figs = result.accounting.figures
    x = np.arange(len(figs))
    labels = [f.period for f in figs]
    colours = palette.period_colours(len(figs))
    new = np.array([f.new_ha for f in figs], dtype=float)
    fig = Figure(figsize=(WIDTH_IN, 3.1))
    fig.subplots_adjust(left=0.09, right=0.99, top=0.91, bottom=0.09, wspace=0.22)
    left, right = fig.subplots(1, 2)
    for j in range(len(figs)):  # the part of each cumulative bar first mined in period j
        heights = np.where(x >= j, new[j], 0.0)
        bottoms = np.array([new[:j].sum() if k >= j else 0.0 for k in x])
        left.bar(x, heights, bottom=bottoms, color=colours[j], width=0.6)
    right.bar(x, new, color=colours, width=0.6)
    cumulative = [f.cumulative_ha for f in figs]
    for ax, values in ((left, cumulative), (right, new)):
        top = max([*values, 1.0])
        for xi, v in zip(x, values, strict=True):
            ax.text(xi, v + top * 0.02, lang.area(v), ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, top * 1.15)
        ax.set_xticks(x, labels, fontsize=7)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: lang.number(v, 0)))
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    if result.accounting.kind == "active":
        active = [f.active_ha if f.active_ha is not None else np.nan for f in figs]
        left.plot(x, active, "D", color="black", markersize=4, label=lang.text("chart.active"))
        left.legend(fontsize=7, frameon=False, loc="upper left")
    left.set_title(lang.text("chart.cumulative"), fontsize=8)
    right.set_title(lang.text("chart.new"), fontsize=8)
    return fig
