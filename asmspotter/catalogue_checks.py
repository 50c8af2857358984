"""Checks of the region catalogue that run when it is loaded, with messages in plain words.

:mod:`asmspotter.catalogue` parses the entries; this module holds what it checks them with:

- :func:`read_yaml`: the YAML, refusing duplicate keys (a second ``la-pampa:`` would
  silently replace the first), with errors on one line naming the line and column;
- :func:`check_crs`: a CRS that is unknown or not projected in metres;
- :func:`check_outline_bbox`: a bounding box that lies outside where its declared CRS is
  meant to be used (a UTM zone's area of use), with a hint when longitude and latitude
  look swapped;
- :func:`check_outline_file`: an outline file's filter that matches no feature, a column
  that does not exist, and outlines outside the CRS's area of use;
- :func:`check_periods`: periods that overlap or end before Sentinel-2's first scenes.

Values are shown as the catalogue writes them (:func:`asmspotter.periods.plain`), never as
Python's ``repr`` (``datetime.date(2020, 7, 1)``).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from asmspotter.errors import CatalogueError
from asmspotter.periods import Period, plain

#: The first Sentinel-2 scenes (Sentinel-2A's first products).
SENTINEL2_FIRST_DAY = dt.date(2015, 6, 23)
#: Degrees an outline may reach beyond its CRS's area of use (regions straddle UTM zones).
AREA_OF_USE_MARGIN_DEG = 3.0


def _yaml_problem(exc: Any) -> str:
    """One line from a PyYAML error: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    more = f" ({' '.join(str(context).split())})" if context else ""
    return f"{where}{problem}{more}"


@functools.cache
def _loader() -> Any:
    """Return a safe YAML loader that refuses a key given twice in one mapping."""
    import yaml
    from yaml.constructor import ConstructorError

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges may be overridden by design
            key = loader.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:
                continue  # an unhashable key: the constructor below says so
            if first != key_node.start_mark.line:
                raise ConstructorError(
                    None,
                    None,
                    f"key {plain(key)!r} is given twice (first on line {first + 1}); each key once",
                    key_node.start_mark,
                )
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    return UniqueKeyLoader


def read_yaml(path: Path) -> Any:
    """Read a catalogue's YAML.

    Raises:
        CatalogueError: the file is missing or unreadable, is not valid YAML, or gives a
            key twice in one mapping; one line naming the line and column.

    """
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CatalogueError(f"region catalogue not found: {path}") from None
    except OSError as exc:
        raise CatalogueError(f"cannot read the region catalogue {path}: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: not valid YAML at {_yaml_problem(exc)}") from None


def _area_of_use(crs: str) -> tuple[float, float, float, float] | None:
    from pyproj import CRS

    area = CRS.from_user_input(crs).area_of_use
    if area is None:
        return None
    return (area.west, area.south, area.east, area.north)


def _inside(bounds: Sequence[float], area: Sequence[float], margin: float) -> bool:
    x0, y0, x1, y1 = bounds
    w, s, e, n = area
    return x0 >= w - margin and x1 <= e + margin and y0 >= s - margin and y1 <= n + margin


def _outside_message(what: str, bounds: Sequence[float], crs: str) -> str | None:
    area = _area_of_use(crs)
    if area is None or _inside(bounds, area, AREA_OF_USE_MARGIN_DEG):
        return None
    w, s, e, n = area
    shown = ", ".join(f"{v:g}" for v in bounds)
    message = (
        f"{what} [{shown}] lies outside where {crs} is used (longitude {w:g} to {e:g}, "
        f"latitude {s:g} to {n:g})"
    )
    x0, y0, x1, y1 = bounds
    if _inside((y0, x0, y1, x1), area, AREA_OF_USE_MARGIN_DEG):
        return (
            f"{message}: longitude and latitude look swapped (a bbox is [min_lon, min_lat, "
            "max_lon, max_lat])"
        )
    return f"{message}; check the coordinates and the crs"


def check_crs(crs: str) -> None:
    """Refuse a CRS that pyproj does not know or that is not projected (areas need metres).

    Raises:
        ValueError: naming the CRS, on one line.

    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(crs)
    except CRSError:
        raise ValueError(f"crs {crs!r} is not a known coordinate reference system") from None
    if not parsed.is_projected:
        raise ValueError(f"crs {crs!r} must be projected in metres (UTM or equal-area)")


def check_outline_bbox(bbox: Sequence[float], crs: str) -> None:
    """Refuse a bounding box outside the area of use of the region's CRS.

    Raises:
        ValueError: the box lies outside (the message says when the axes look swapped).

    """
    message = _outside_message("outline bbox", bbox, crs)
    if message is not None:
        raise ValueError(message)


@functools.cache
def _outline_file_bounds(
    path: Path, mtime_ns: int, where: tuple[tuple[str, Any], ...]
) -> tuple[float, float, float, float] | str:
    """Bounds (EPSG:4326) of the features matching ``where``, or why there are none."""
    import numpy as np
    import pyogrio
    from pyogrio.raw import read

    info = pyogrio.read_info(path)
    fields = [str(f) for f in info["fields"]]
    for column, _ in where:
        if column not in fields:
            return f"the outline file has no column {column!r} (columns: {', '.join(fields)})"
    fids, bounds = pyogrio.read_bounds(path)
    keep = np.ones(len(fids), dtype=bool)
    if where:
        columns = [c for c, _ in where]
        _, read_fids, _, values = read(path, columns=columns, read_geometry=False, return_fids=True)
        order = {int(f): i for i, f in enumerate(read_fids)}
        rows = np.array([order.get(int(f), -1) for f in fids])
        for (_, value), data in zip(where, values, strict=True):
            keep &= np.array([r >= 0 and data[r] == value for r in rows], dtype=bool)
    if not keep.any():
        shown = ", ".join(f"{c} = {plain(v)}" for c, v in where) or "(none)"
        return f"no feature of the outline file matches {shown}"
    sel = bounds[:, keep]
    box = (float(sel[0].min()), float(sel[1].min()), float(sel[2].max()), float(sel[3].max()))
    crs = info.get("crs")
    if crs and crs not in ("EPSG:4326", "OGC:CRS84"):
        from pyproj import Transformer

        box = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform_bounds(*box)
    return box


def filtered_bounds(
    path: Path, where: Mapping[str, Any] | None, what: str = "outline"
) -> tuple[float, float, float, float]:
    """Return the EPSG:4326 bounds of a file's features that match ``where``.

    Raises:
        ValueError: no feature matches, a filter column is missing, or the file is
            unreadable.

    """
    try:
        found = _outline_file_bounds(
            path,
            path.stat().st_mtime_ns,
            tuple(sorted((str(k), v) for k, v in (where or {}).items())),
        )
    except Exception as exc:  # pyogrio raises several types for unreadable files
        from asmspotter.errors import first_line

        raise ValueError(f"cannot read the {what} file {path}: {first_line(exc)}") from None
    if isinstance(found, str):
        raise ValueError(found.replace("outline", what))
    return found


def check_outline_file(path: Path, where: Mapping[str, Any] | None, crs: str) -> None:
    """Refuse an outline file whose filter matches no feature or that lies outside the CRS.

    Raises:
        ValueError: as :func:`filtered_bounds`, or the outline lies outside the CRS's area
            of use.

    """
    message = _outside_message(f"outline of {path.name}", filtered_bounds(path, where), crs)
    if message is not None:
        raise ValueError(message)


def check_periods(periods: Sequence[Period], satellite: bool) -> None:
    """Refuse periods that overlap, or (for satellite sources) predate Sentinel-2.

    Raises:
        ValueError: naming the periods and their dates.

    """
    for a, b in zip(periods, periods[1:], strict=False):
        if b.start <= a.end:
            raise ValueError(
                f"periods {a.id} ({a.start} to {a.end}) and {b.id} ({b.start} to {b.end}) "
                "overlap; new and cumulative areas need periods that follow each other"
            )
    if satellite:
        for p in periods:
            if p.end < SENTINEL2_FIRST_DAY:
                raise ValueError(
                    f"period {p.id} ({p.start} to {p.end}) ends before the first Sentinel-2 "
                    f"scenes ({SENTINEL2_FIRST_DAY})"
                )
