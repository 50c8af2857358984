"""Checks of footprint files given by the user: mistakes become one-line errors, not 0 ha.

- :func:`check_footprint_frame`: points or lines instead of polygons, and coordinates
  that cannot be longitude/latitude in a file that declares no other CRS (a GeoJSON in
  metres without a ``crs`` member reads as EPSG:4326);
- :func:`check_overlap`: footprints none of which overlaps the region (coordinates of
  another place, longitude and latitude swapped) are refused unless the caller allows an
  empty analysis (``--allow-empty``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

from asmspotter.errors import InputError

_POLYGONAL = {"Polygon", "MultiPolygon", "GeometryCollection"}


def _bounds_text(bounds: Sequence[float]) -> str:
    return ", ".join(f"{v:.6g}" for v in bounds)


def check_footprint_frame(frame: Any, source: str) -> None:
    """Refuse footprints that are not areas, or whose coordinates cannot be lon/lat.

    Args:
        frame: the file's features (a GeoDataFrame).
        source: the file, for messages.

    Raises:
        InputError: points or lines among the features; coordinates beyond ±180/±90 in a
            file whose CRS is geographic (none declared).

    """
    geoms = frame.geometry
    present = geoms[~geoms.isna() & ~geoms.is_empty]
    if not len(present):
        return
    types = present.geom_type
    wrong = types[~types.isin(list(_POLYGONAL))]
    if len(wrong):
        kinds = ", ".join(sorted(set(wrong)))
        raise InputError(
            f"footprints {source}: {len(wrong)} of {len(present)} features are {kinds}, not "
            "polygons; mining footprints must be areas (polygons)"
        )
    crs = frame.crs
    if crs is not None and crs.is_geographic:
        x0, y0, x1, y1 = (float(v) for v in present.total_bounds)
        if not (-180.5 <= x0 <= x1 <= 360.5 and -90.5 <= y0 <= y1 <= 90.5):
            raise InputError(
                f"footprints {source}: coordinates ({_bounds_text((x0, y0, x1, y1))}) cannot "
                f"be longitude/latitude, but the file declares no other CRS (it reads as "
                f"{crs.to_string()}); save it with the CRS its coordinates are in "
                "(e.g. EPSG:32719)"
            )


def _extent_4326(frames: Sequence[Any]) -> Any:
    parts = []
    for frame in frames:
        if frame.crs is None or not len(frame):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts.append(frame.to_crs("EPSG:4326").geometry.values)
    if not parts:
        return None
    geoms = np.concatenate([np.asarray(p, dtype=object) for p in parts])
    geoms = geoms[~shapely.is_missing(geoms)]
    return shapely.union_all(shapely.make_valid(geoms)) if len(geoms) else None


def check_overlap(
    frames: Sequence[Any], sources: Sequence[str], outline: Any, region: str, allow_empty: bool
) -> None:
    """Refuse footprints none of which overlaps the region's outline.

    Args:
        frames: every footprint file's features.
        sources: the files, for messages.
        outline: the region's outline in EPSG:4326.
        region: the region id, for messages.
        allow_empty: accept footprints outside the region (analysed as 0 ha).

    Raises:
        InputError: there are features but none overlaps the region (the message says when
            longitude and latitude look swapped).

    """
    total = sum(len(f) for f in frames)
    if allow_empty or outline is None or total == 0:
        return
    extent = _extent_4326(frames)
    if extent is None or extent.is_empty or shapely.intersects(extent, outline):
        return
    hint = "check that they belong to this region and carry the right CRS"
    swapped = shapely.transform(extent, lambda xy: xy[:, ::-1])
    if shapely.intersects(swapped, outline):
        hint = "their longitude and latitude look swapped"
    raise InputError(
        f"none of the {total} footprint features of {', '.join(sources)} overlaps region "
        f"{region!r} (footprints within {_bounds_text(extent.bounds)}, region within "
        f"{_bounds_text(outline.bounds)}): {hint}; or pass --allow-empty to analyse them as "
        "0 ha"
    )
