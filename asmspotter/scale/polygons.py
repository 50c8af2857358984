"""Polygons of a tiled run: per tile, then merged across tile borders without seams.

:func:`vectorise_tile` turns one tile's mining mask into polygons (the detector's own
vectorising, without the minimum mapping unit) and marks those that touch a side the tile
shares with a neighbour. :func:`merge_polygons` unions the marked polygons of all tiles, so a
polygon crossing tile borders becomes one polygon again and its area is counted once, then
applies the minimum mapping unit, as the single-process vectorising does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asmspotter import layout
from asmspotter.scale.grid import RasterGrid, Tile
from asmspotter.scale.records import (
    TileRecord,
    reuse,
    start_clock,
    tile_key,
    worker_task,
    write_record,
)

#: Distance (map units) within which a polygon's bound lies on a tile side.
_ON_SIDE = 1e-6


@dataclass(frozen=True)
class PolygonsJob:
    """One tile's vectorising.

    Attributes:
        period: the period id.
        raster: the region's grid.
        tile: the tile.
        files: the tile's detection files (the mask is read, the polygons written).
        refresh: make it again even when a record says it is there.

    """

    period: str
    raster: RasterGrid
    tile: Tile
    files: layout.TileDetectionFiles
    refresh: bool = False


@worker_task
def vectorise_tile(job: PolygonsJob, detection: TileRecord) -> TileRecord:
    """Vectorise one tile's mask (after its detection); a Dask task.

    The tile's ``mining.gpkg`` holds every polygon of its core with an ``edge`` column:
    True for polygons touching a side shared with another tile (merged later).
    """
    import geopandas as gpd

    from asmspotter.detect.polygons import mask_polygons, write_vector

    files, tile = job.files, job.tile
    key = tile_key("polygons", detection=detection.key, inner=list(tile.inner))
    record = files.polygons_record
    done = (
        None if job.refresh else reuse("polygons", job.period, tile.id, record, key, [files.gpkg])
    )
    if done is not None:
        return done
    record.unlink(missing_ok=True)
    started = start_clock()
    polys = list(mask_polygons(files.mask, min_area_ha=0.0).geometry)
    edge = on_inner_side(polys, job.raster, tile)
    frame = gpd.GeoDataFrame({"edge": edge}, geometry=polys, crs=job.raster.crs)
    write_vector(frame, files.gpkg, "GPKG", layer="mining")
    stats = {
        "polygons": len(polys),
        "edge_polygons": int(edge.sum()),
        "area_m2": float(sum(p.area for p in polys)),
    }
    return write_record("polygons", job.period, tile.id, record, key, stats, started)


def on_inner_side(polys: Sequence[Any], raster: RasterGrid, tile: Tile) -> np.ndarray:
    """Return whether each polygon touches a side of the core shared with another tile."""
    minx, miny, maxx, maxy = raster.box_bounds(tile.core)
    top, bottom, left, right = tile.inner
    flags = np.zeros(len(polys), bool)
    for i, p in enumerate(polys):
        x0, y0, x1, y1 = p.bounds
        flags[i] = (
            (top and abs(y1 - maxy) < _ON_SIDE)
            or (bottom and abs(y0 - miny) < _ON_SIDE)
            or (left and abs(x0 - minx) < _ON_SIDE)
            or (right and abs(x1 - maxx) < _ON_SIDE)
        )
    return flags


def merge_polygons(
    tile_files: Sequence[layout.TileDetectionFiles], min_area_ha: float
) -> list[Any]:
    """Return the polygons of all tiles, merged across tile borders, above the mapping unit.

    Polygons inside a tile are kept as they are; those touching a shared side are unioned
    with every other such polygon and split into their connected parts.
    """
    import geopandas as gpd
    import shapely

    inner: list[Any] = []
    edge: list[Any] = []
    for files in tile_files:
        frame = gpd.read_file(files.gpkg, layer="mining", engine="pyogrio")
        if len(frame) == 0:
            continue
        flags = frame["edge"].to_numpy(bool)
        geoms = list(frame.geometry)
        inner.extend(g for g, f in zip(geoms, flags, strict=True) if not f)
        edge.extend(g for g, f in zip(geoms, flags, strict=True) if f)
    if edge:
        merged = shapely.union_all(edge)
        edge = [g for g in shapely.get_parts(merged) if g.geom_type == "Polygon"]
    min_m2 = min_area_ha * 1e4
    return [p for p in inner + edge if p.area >= min_m2 and p.area > 0]
