"""From mask rasters to polygons: the one raster-to-polygon function of the package.

:func:`mask_polygons` turns the pixels of one value of a mask GeoTIFF into polygons. The
detector vectorises its mining masks with it (8-connected pixel groups, read strip by
strip, repaired, with a minimum mapping unit), and the analysis vectorises the mining and
unobserved pixels of masks it is given with it too (:mod:`asmspotter.analyse.layers`).
:func:`pixel_polygons` does the same for an array in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.errors import DataError
from asmspotter.layout import MASK_NODATA

if TYPE_CHECKING:
    import geopandas as gpd

#: Rows of a mask read at once by :func:`mask_polygons` (bounded memory for any raster).
STRIP_ROWS = 1024


def pixel_polygons(
    values: np.ndarray, selected: np.ndarray, transform: Any, connectivity: int = 8
) -> list[Any]:
    """Polygons of the connected groups of ``selected`` pixels (shapely, in map units).

    Args:
        values: (rows, cols) pixel values; a group holds pixels of one value.
        selected: boolean (rows, cols): the pixels to vectorise.
        transform: affine transform of the array.
        connectivity: 4 (edge neighbours) or 8 (edge and corner neighbours).

    """
    from rasterio.features import shapes
    from shapely.geometry import shape

    return [
        shape(g)
        for g, _ in shapes(
            values.astype(np.uint8, copy=False),
            mask=selected,
            transform=transform,
            connectivity=connectivity,
        )
    ]


def mask_polygons(
    path: str | os.PathLike[str],
    value: int = 1,
    *,
    min_area_ha: float = 0.0,
    connectivity: int = 8,
    rows: int | None = STRIP_ROWS,
    repair: bool = True,
) -> gpd.GeoDataFrame:
    """Polygons of the pixels of one value of a mask GeoTIFF, read strip by strip.

    The detector's masks hold 1 (mining), 0 (not) and :data:`~asmspotter.layout.MASK_NODATA`
    (no data); ``value=1`` gives the mining polygons, ``value=MASK_NODATA`` what a period
    could not observe. Any other value equal to the file's no-data value gives nothing.
    Polygons cut by strip borders are merged.

    Args:
        path: the mask GeoTIFF.
        value: the pixel value to vectorise.
        min_area_ha: drop polygons smaller than this (the minimum mapping unit).
        connectivity: 4 or 8 (pixels touching at a corner join one polygon).
        rows: rows per strip; None reads the whole raster at once.
        repair: make self-touching polygons (8-connected groups meeting at a corner)
            valid, splitting them into valid parts.

    Returns:
        The polygons (geometry only) in the raster's CRS, row-major as found.

    Raises:
        DataError: the file is unreadable or has no CRS.

    """
    import geopandas as gpd
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise DataError(f"mining mask {path} has no CRS")
            skip = value != MASK_NODATA and src.nodata is not None and src.nodata == value
            polys = [] if skip else _strip_polygons(src, value, connectivity, rows)
            crs = src.crs
    except RasterioIOError as exc:
        raise DataError(f"mining mask: cannot read {path} ({exc})") from None
    if repair:
        polys = [q for p in polys for q in _valid_parts(p)]
    min_m2 = min_area_ha * 1e4
    kept = [p for p in polys if p.area >= min_m2 and p.area > 0]
    return gpd.GeoDataFrame(geometry=kept, crs=crs)


def _strip_polygons(src: Any, value: int, connectivity: int, rows: int | None) -> list[Any]:
    """Polygons of ``value`` in an open raster, strip by strip, merged across strip borders."""
    import shapely
    from rasterio.windows import Window

    step = rows or src.height
    inner: list[Any] = []
    edge: list[Any] = []
    for r0 in range(0, src.height, step):
        n = min(step, src.height - r0)
        win = Window(0, r0, src.width, n)
        m = src.read(1, window=win)
        sel = m == value
        if not sel.any():
            continue
        tr = src.window_transform(win)
        top, bottom = tr.f, tr.f + tr.e * n
        for poly in pixel_polygons(m, sel, tr, connectivity):
            b = poly.bounds
            touches = (r0 > 0 and abs(b[3] - top) < 1e-6) or (
                r0 + n < src.height and abs(b[1] - bottom) < 1e-6
            )
            (edge if touches else inner).append(poly)
    if edge:
        merged = shapely.union_all(edge)
        edge = list(getattr(merged, "geoms", [merged]))
    return inner + [p for p in edge if not p.is_empty]


def _valid_parts(poly: Any) -> list[Any]:
    """Return ``poly`` made valid, as a list of polygons (unchanged when already valid)."""
    import shapely

    if poly.is_valid:
        return [poly]
    fixed = shapely.make_valid(poly)
    parts = getattr(fixed, "geoms", [fixed])
    return [g for g in parts if g.geom_type == "Polygon" and not g.is_empty]


def polygons_frame(polys: list[Any], crs: Any, region: str, period: str) -> gpd.GeoDataFrame:
    """Return the detector's polygon table: ``id``, ``region``, ``period``, ``area_ha``."""
    import geopandas as gpd

    return gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(polys) + 1, dtype=np.int64),
            "region": [region] * len(polys),
            "period": [period] * len(polys),
            "area_ha": np.array([p.area / 1e4 for p in polys], dtype=np.float64),
        },
        geometry=gpd.GeoSeries(polys, crs=crs),
        crs=crs,
    )


def write_vector(gdf: gpd.GeoDataFrame, path: Path, driver: str, layer: str | None = None) -> None:
    """Write polygons atomically (an empty table still declares MultiPolygon geometry).

    The layer is named ``layer``, by default the file's stem (never the temporary file's:
    GeoJSON writes it as its ``name`` member, and re-runs give byte-identical files).
    """
    from asmspotter.geoio import atomic_output

    with atomic_output(path) as tmp:
        kw: dict[str, Any] = {"driver": driver, "engine": "pyogrio", "layer": layer or path.stem}
        if len(gdf) == 0:
            kw["geometry_type"] = "MultiPolygon"
        gdf.to_file(tmp, **kw)
