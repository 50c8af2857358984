"""Footprint layers: reading them, giving each its period, and cleaning their geometry.

A *period layer* is the set of mining polygons of one period. It comes from a
detector run (the polygons or the mask of :class:`asmspotter.layout.DetectionFiles`) or
from files a user supplies (one file per period, or files with a ``year`` column).

All area work happens in one equal-area CRS per analysis (:func:`area_crs`), a
Lambert azimuthal equal-area projection centred on the region, so hectares are
right at any latitude and across UTM zone borders.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from asmspotter import layout, paths
from asmspotter.detect.polygons import mask_polygons
from asmspotter.errors import DataError, InputError
from asmspotter.layout import MASK_NODATA
from asmspotter.periods import Period

log = logging.getLogger(__name__)

#: What a period layer holds. ``active``: all mining visible in that period (a detector's
#: mask); ``new``: only what was first seen in that period (the first period holding
#: everything up to it), as in the Amazon Mining Watch yearly files.
FootprintKind = Literal["new", "active"]
FOOTPRINT_KINDS: tuple[str, ...] = ("new", "active")

#: Square metres per hectare.
M2_PER_HA = 10_000.0

#: Names accepted for the period column of footprint files (compared case-insensitively).
YEAR_COLUMNS: tuple[str, ...] = ("year", "period")


@dataclass(frozen=True, eq=False)
class PeriodLayer:
    """The footprint polygons of one period.

    Attributes:
        period: the period they belong to.
        frame: polygons in any CRS (it must be defined); may be empty.
        sources: where they were read from, for provenance and messages.
        unobserved: polygons the period could not observe (mask no-data, e.g. clouds),
            if known; mining there is not counted as stopped.

    """

    period: Period
    frame: gpd.GeoDataFrame
    sources: tuple[str, ...] = ()
    unobserved: gpd.GeoDataFrame | None = None

    @property
    def label(self) -> str:
        """A short description for messages: the sources, or the period id."""
        return ", ".join(self.sources) if self.sources else f"period {self.period.id}"


@dataclass(frozen=True)
class CleanReport:
    """What cleaning did to a set of geometries.

    Attributes:
        repaired: invalid geometries made valid.
        dropped: features without any polygon area (points, lines, empty) left out.

    """

    repaired: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class LayerAssignment:
    """Period layers built from user files, with notes on how periods were chosen.

    Attributes:
        layers: one layer per period, in chronological order.
        notes: how the periods were determined (for the analysis record).
        warnings: things the user should know (reordering, years outside the catalogue).
        records: for the detector's outputs, each layer's detection record
            (:class:`asmspotter.analyse.detections.DetectionRecord`), in the same order.

    """

    layers: tuple[PeriodLayer, ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    records: tuple[Any, ...] = ()


# --------------------------------------------------------------------------------------
# CRS and geometry helpers
# --------------------------------------------------------------------------------------


def area_crs(geometry_4326: Any) -> CRS:
    """Return an equal-area CRS centred on a geometry given in EPSG:4326.

    A Lambert azimuthal equal-area projection keeps areas exact everywhere, so areas
    do not depend on the distance to a UTM central meridian.

    Args:
        geometry_4326: a shapely geometry in longitude/latitude (the region outline).

    Raises:
        InputError: the geometry is empty or not in degrees.

    """
    if geometry_4326 is None or shapely.is_empty(geometry_4326):
        raise InputError("cannot choose an area projection for an empty region outline")
    minx, miny, maxx, maxy = shapely.bounds(geometry_4326)
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InputError(
            f"region outline bounds {minx:.1f}, {miny:.1f}, {maxx:.1f}, {maxy:.1f} are not "
            "longitude/latitude degrees (EPSG:4326)"
        )
    lon, lat = (minx + maxx) / 2, (miny + maxy) / 2
    return CRS.from_proj4(
        f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
    )


def to_crs_checked(frame: gpd.GeoDataFrame, crs: CRS, what: str) -> gpd.GeoDataFrame:
    """Reproject a frame, refusing frames without a CRS.

    Args:
        frame: the data.
        crs: the target CRS.
        what: the layer's name for the error message.

    Raises:
        InputError: the frame has no CRS, so its coordinates cannot be interpreted.

    """
    if frame.crs is None:
        raise InputError(
            f"{what} has no coordinate reference system; save it with one (e.g. EPSG:4326)"
        )
    if len(frame) == 0:
        return frame.set_crs(crs, allow_override=True)
    return frame.to_crs(crs)


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygon parts of each geometry (None where nothing is left)."""
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            out[i] = None
        elif g.geom_type in ("Polygon", "MultiPolygon"):
            out[i] = g
        elif g.geom_type == "GeometryCollection":
            parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
            out[i] = shapely.union_all(parts) if parts else None
        else:
            out[i] = None
    return out


def clean_polygons(geoms: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, CleanReport]:
    """Make geometries valid and polygonal.

    Args:
        geoms: shapely geometries (None allowed).

    Returns:
        The cleaned geometries (None where a feature had no polygon area) and a report of
        how many were repaired and dropped.

    """
    arr = np.asarray(geoms, dtype=object)
    if len(arr) == 0:
        return arr, CleanReport()
    present = ~shapely.is_missing(arr)
    invalid = present & ~shapely.is_valid(arr)
    if invalid.any():
        arr = arr.copy()
        arr[invalid] = shapely.make_valid(arr[invalid])
    cleaned = polygonal(arr)
    nonempty = np.array([g is not None and not g.is_empty for g in cleaned], dtype=bool)
    return cleaned, CleanReport(repaired=int(invalid.sum()), dropped=int((~nonempty).sum()))


def clip_to(geoms: np.ndarray, outline: Any | None) -> np.ndarray:
    """Clip geometries to an outline (same CRS); features outside become None.

    Args:
        geoms: polygons (None allowed).
        outline: the clipping polygon, or None to keep everything.

    """
    if outline is None or len(geoms) == 0:
        return geoms
    shapely.prepare(outline)
    present = np.array([g is not None for g in geoms], dtype=bool)
    out = np.empty(len(geoms), dtype=object)
    safe = np.where(present, geoms, shapely.Point())
    inside = present & shapely.contains_properly(outline, safe)
    touching = present & ~inside & shapely.intersects(outline, safe)
    out[inside] = geoms[inside]
    if touching.any():
        cut = polygonal(shapely.intersection(geoms[touching], outline))
        out[touching] = cut
    return out


def project_outline(outline_4326: Any, crs: CRS) -> Any:
    """Reproject an EPSG:4326 outline to ``crs`` and make it valid."""
    projected = gpd.GeoSeries([outline_4326], crs="EPSG:4326").to_crs(crs).iloc[0]
    return shapely.make_valid(projected) if not projected.is_valid else projected


# --------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------


def read_vector(path: str | os.PathLike[str], what: str) -> gpd.GeoDataFrame:
    """Read a vector file (first layer), with user-facing errors.

    Args:
        path: GeoJSON, GeoPackage, shapefile, ... anything OGR reads.
        what: what the file is, for messages ("footprints", "overlay 'x'").

    Raises:
        DataError: the file is missing, unreadable or not a vector layer.

    """
    import pyogrio

    p = Path(path)
    if not p.exists():
        raise DataError(f"{what}: file not found: {p}{paths.shared_data_hint(p)}")
    try:
        layers = pyogrio.list_layers(p)
        layer = str(layers[0][0]) if len(layers) else None
        frame = gpd.read_file(p, layer=layer, engine="pyogrio")
    except Exception as exc:  # pyogrio raises several types for corrupt files
        raise DataError(f"{what}: cannot read {p} as a vector layer ({exc})") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame.columns:
        raise DataError(f"{what}: {p} holds no geometry column")
    return frame


def files_layer(period: Period, files: Sequence[str | os.PathLike[str]], what: str) -> PeriodLayer:
    """Read one period's footprint files into one layer (their polygons together).

    Raises:
        DataError: a file is missing or unreadable (see :func:`read_vector`).

    """
    frames = [read_vector(f, what) for f in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return PeriodLayer(period, frame, tuple(str(f) for f in files))


def _year_column(frame: pd.DataFrame) -> str | None:
    lower = {str(c).lower(): str(c) for c in frame.columns}
    for name in YEAR_COLUMNS:
        if name in lower:
            return lower[name]
    return None


def parse_year(value: Any, source: str) -> int:
    """Turn a year value into a calendar year.

    Accepts ``2019``, ``"2019"``, ``2019.0`` and Amazon Mining Watch's ``201900`` form.

    Raises:
        DataError: the value is not a year.

    """
    try:
        number = int(float(str(value).strip()))
    except ValueError:
        raise DataError(f"{source}: year value {value!r} is not a year") from None
    if 1900 <= number <= 2100:
        return number
    if 190000 <= number <= 210099:
        return number // 100
    raise DataError(f"{source}: year value {value!r} is not a year (expected e.g. 2019)")


def _resolve_period(spec: str, catalogue_periods: Sequence[Period]) -> tuple[Period, bool]:
    """Return the catalogue period with this id, or one parsed from ``spec``.

    Returns:
        The period and whether it comes from the catalogue.

    """
    for p in catalogue_periods:
        if p.id == spec:
            return p, True
    try:
        return Period.parse(spec), False
    except ValueError as exc:
        known = ", ".join(p.id for p in catalogue_periods) or "none"
        raise InputError(f"period {spec!r}: {exc}; catalogue periods: {known}") from None


def order_periods(layers: Sequence[PeriodLayer]) -> tuple[tuple[PeriodLayer, ...], list[str]]:
    """Sort layers chronologically and check that their periods neither repeat nor overlap.

    Returns:
        The sorted layers and warnings (e.g. that the input was out of order).

    Raises:
        InputError: a period is given twice or two periods overlap.

    """
    seen: dict[str, str] = {}
    for layer in layers:
        if layer.period.id in seen:
            raise InputError(
                f"period {layer.period.id} is given twice ({seen[layer.period.id]}; "
                f"{layer.label}); give each period once"
            )
        seen[layer.period.id] = layer.label
    ordered = tuple(sorted(layers, key=lambda la: (la.period.start, la.period.end)))
    warnings: list[str] = []
    if [la.period.id for la in ordered] != [la.period.id for la in layers]:
        warnings.append(
            "periods were given out of chronological order ("
            + ", ".join(la.period.id for la in layers)
            + "); analysed in order "
            + ", ".join(la.period.id for la in ordered)
        )
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.period.start <= a.period.end:
            raise InputError(
                f"periods {a.period.id} ({a.period.start}..{a.period.end}) and {b.period.id} "
                f"({b.period.start}..{b.period.end}) overlap; new and cumulative areas need "
                "periods that follow each other"
            )
    return ordered, warnings


def layers_from_files(
    files: Sequence[str | os.PathLike[str]],
    catalogue_periods: Sequence[Period],
    period_ids: Sequence[str] | None = None,
) -> LayerAssignment:
    """Build period layers from user-supplied footprint files.

    Periods are chosen, in order of precedence:

    1. ``period_ids``: one id per file (a catalogue period id, or a year / quarter /
       month / date range);
    2. a ``year`` (or ``period``) column present in every file: each year becomes a
       period (the catalogue's period of that id if there is one, else the calendar
       year); a file may hold several years;
    3. the catalogue's periods, in order, one per file (the counts must match).

    Args:
        files: footprint files.
        catalogue_periods: the region's periods.
        period_ids: explicit period per file.

    Raises:
        InputError: counts do not match, a period repeats, periods overlap, or files mix
            having and lacking a year column.
        DataError: a file is missing or unreadable, or a year value is not a year.

    """
    if not files:
        raise InputError("no footprint files given")
    from asmspotter.analyse.footprints import check_footprint_frame

    frames = [(str(f), read_vector(f, f"footprints {f}")) for f in files]
    for src, read in frames:
        check_footprint_frame(read, src)
    notes: list[str] = []
    warnings: list[str] = []
    layers: list[PeriodLayer] = []
    if period_ids:
        if len(period_ids) != len(frames):
            raise InputError(
                f"{len(period_ids)} period ids for {len(frames)} footprint files; "
                "give one period per file"
            )
        for (src, frame), pid in zip(frames, period_ids, strict=True):
            period, known = _resolve_period(str(pid), catalogue_periods)
            if not known:
                warnings.append(
                    f"period {pid} is not in the catalogue; using {period.start}..{period.end}"
                )
            layers.append(PeriodLayer(period, frame, (src,)))
        notes.append("periods given on the command line, one per file")
    else:
        with_year = [(src, fr, _year_column(fr)) for src, fr in frames]
        nonempty = [(s, f, c) for s, f, c in with_year if len(f)]
        has = [c is not None for _, _, c in nonempty]
        if nonempty and all(has):
            by_period: dict[str, list[tuple[str, gpd.GeoDataFrame]]] = {}
            periods: dict[str, Period] = {}
            synthetic: list[str] = []
            for src, frame, col in nonempty:
                assert col is not None
                years = np.array([parse_year(v, src) for v in frame[col]], dtype=int)
                for year in sorted(set(years.tolist())):
                    period, known = _resolve_period(str(year), catalogue_periods)
                    if not known and period.id not in synthetic:
                        synthetic.append(period.id)
                    periods[period.id] = period
                    by_period.setdefault(period.id, []).append((src, frame[years == year]))
            for pid, parts in by_period.items():
                if len(parts) > 1:
                    raise InputError(
                        f"period {pid} is given twice ({'; '.join(s for s, _ in parts)}); "
                        "give each period once"
                    )
                src, frame = parts[0]
                layers.append(PeriodLayer(periods[pid], frame, (src,)))
            for src_name, empty, _ in with_year:
                if not len(empty):
                    warnings.append(f"{src_name} is empty and names no period: it adds nothing")
            notes.append("periods taken from the footprints' year column")
            if synthetic:
                notes.append(
                    "years not among the catalogue's periods were analysed as calendar years: "
                    + ", ".join(synthetic)
                )
        elif nonempty and any(has):
            raise InputError(
                "some footprint files have a year column and some do not; "
                "name each file's period with --periods"
            )
        else:
            if len(frames) != len(catalogue_periods):
                known_ids = ", ".join(p.id for p in catalogue_periods)
                raise InputError(
                    f"{len(frames)} footprint file(s) but {len(catalogue_periods)} catalogue "
                    f"period(s) ({known_ids}), and no year column; name each file's period "
                    "with --periods"
                )
            for (src, frame), period in zip(frames, catalogue_periods, strict=True):
                layers.append(PeriodLayer(period, frame, (src,)))
            notes.append("periods taken from the catalogue, in order, one per file")
    if not layers:
        raise InputError("the footprint files are all empty and name no period")
    ordered, order_warnings = order_periods(layers)
    return LayerAssignment(ordered, tuple(notes), tuple(warnings + order_warnings))


#: How masks are vectorised here: 4-connected pixel groups, the whole raster at once, as
#: found (see :func:`asmspotter.detect.polygons.mask_polygons`).
_MASK_POLYGONS: dict[str, Any] = {"connectivity": 4, "rows": None, "repair": False}


def detector_layers(
    region_id: str, periods: Sequence[Period], out_dir: str | os.PathLike[str] | None = None
) -> LayerAssignment:
    """Find the detector's outputs for a region's periods.

    Reads each period's complete detection (:mod:`asmspotter.analyse.detections`): its
    polygons (:attr:`~asmspotter.layout.DetectionFiles.gpkg` below ``out_dir``, default the
    output folder), after checking they and the mask belong to its provenance
    (``detection.json``, written last). The mask's no-data pixels (:data:`MASK_NODATA`)
    become the period's *unobserved* area. Periods without any file are skipped with a
    warning; detections made with different settings are refused.

    Raises:
        DataError: no period of the region has detector outputs; a period's set is
            incomplete (a mask alone, files without their provenance) or mixes files of
            two runs; periods were detected with different settings or from another
            composite than the one now cached.

    """
    from asmspotter.analyse import detections

    layers: list[PeriodLayer] = []
    records: list[Any] = []
    missing: list[str] = []
    for period in periods:
        files = layout.detection_files(region_id, period.id, base=out_dir)
        record = detections.read_record(region_id, period.id, files)
        if record is None:
            missing.append(period.id)
            continue
        frame = read_vector(files.gpkg, "detector polygons")
        detections.check_belongs(record, frame)
        detections.check_composite(record)
        unobserved = mask_polygons(files.mask, MASK_NODATA, **_MASK_POLYGONS)
        layers.append(PeriodLayer(period, frame, (str(files.gpkg),), unobserved))
        records.append(record)
    names = layout.detection_files(region_id, "<period>", base=out_dir)
    if not layers:
        raise DataError(
            f"no detector outputs for region {region_id!r} under {names.folder.parent} (looked "
            f"for <period>/{names.provenance.name} with {names.gpkg.name} and "
            f"{names.mask.name} for periods {', '.join(p.id for p in periods)}); run "
            f"`asmspotter detect {region_id}` first, or pass --footprints FILE ..."
        )
    detections.check_same_settings(region_id, records)
    warnings = []
    if missing:
        warnings.append(
            f"no detector output for period(s) {', '.join(missing)}: they are left out, so the "
            "next period's new area includes anything that appeared in them"
        )
    ordered, more = order_periods(layers)
    by_period = {r.period: r for r in records}
    note = f"detector outputs ({names.gpkg.name} and {names.mask.name} of {names.provenance.name})"
    return LayerAssignment(
        ordered,
        (note,),
        tuple(warnings + more),
        tuple(by_period[la.period.id] for la in ordered),
    )


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the provenance record of an input file (path, size, modification time)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p)}
    modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(timespec="seconds")
    return {"path": str(p), "bytes": st.st_size, "modified": modified}
