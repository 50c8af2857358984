"""Cut labelled multispectral chip galleries from Sentinel-2 around sample points.

Amazon Mining Watch's sample sets come with their points (``*.geojson``, chip i = point i),
but the shared chips are true-colour PNGs. :func:`make_gallery_from_points` builds the
GeoTIFF gallery (see :mod:`asmspotter.detect.chips`) of any band set for such points: for
each point, the cloud-masked median composite of the period over the 480 m square centred on
it, in its UTM zone, made by :func:`asmspotter.composite.fetch_composite` (cached per point,
so an interrupted run resumes where it stopped), cut to the 48 x 48 px chip on the 10 m grid.

The gallery keeps the point order. Points without any scene or clear observation in the
period give no chip; so that chip i stays point i, a GeoJSON of the points that gave chips
is written with the gallery's stem (each with its ``source_index`` in the input), and the
provenance JSON lists the points left out with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter import geoio, layout
from asmspotter.bands import CANONICAL_BANDS, L2A_BANDS
from asmspotter.detect.chips import CHIP_SIZE, label_from_name, write_gallery
from asmspotter.errors import InputError, NoScenesError

if TYPE_CHECKING:
    from asmspotter.catalogue import Period, Source

#: Side of a chip in metres (48 px at 10 m).
CHIP_METRES = CHIP_SIZE * 10.0


@dataclass(frozen=True)
class PointChip:
    """What became of one sample point.

    Attributes:
        index: the point's position in the input (0-based).
        lon: longitude (EPSG:4326).
        lat: latitude.
        chip: the chip's position in the gallery, or None when the point gave no chip.
        clear_fraction: share of the chip's pixels with a clear observation.
        note: why the point gave no chip (empty when it gave one).

    """

    index: int
    lon: float
    lat: float
    chip: int | None
    clear_fraction: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class GalleryResult:
    """The files :func:`make_gallery_from_points` wrote and the fate of each point."""

    gallery: Path
    points: Path
    provenance: Path
    chips: tuple[PointChip, ...]

    @property
    def n_chips(self) -> int:
        """Number of chips in the gallery."""
        return sum(c.chip is not None for c in self.chips)


def read_points(path: str | Path) -> list[tuple[float, float]]:
    """Return the (lon, lat) of every point of a GeoJSON (or any vector file) of points.

    Raises:
        InputError: the file is missing, unreadable, empty, or holds other geometries.

    """
    import geopandas as gpd

    p = Path(path)
    if not p.is_file():
        raise InputError(f"sample points not found: {p}")
    try:
        gdf = gpd.read_file(p)
    except Exception as exc:  # noqa: BLE001 - pyogrio raises several unrelated types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read sample points from {p}: {first}") from None
    if gdf.empty:
        raise InputError(f"{p} holds no sample points")
    if gdf.crs is not None and gdf.crs.to_epsg() != 4326:
        gdf = gdf.to_crs("EPSG:4326")
    bad = [i for i, g in enumerate(gdf.geometry) if g is None or g.geom_type != "Point"]
    if bad:
        raise InputError(
            f"{p}: feature {bad[0]} is not a point ({len(bad)} of {len(gdf)} are not); "
            "a gallery is cut around points"
        )
    return [(float(g.x), float(g.y)) for g in gdf.geometry]


def chip_bounds(lon: float, lat: float) -> tuple[str, tuple[float, float, float, float]]:
    """Return the UTM CRS and the bounds of the 48-px chip centred on a point.

    The chip lies on the 10 m grid of the composites (multiples of 10 m), with the point in
    its central 10 m cell block: its left and bottom edges are the point's coordinates
    minus 240 m, rounded to the grid.
    """
    from pyproj import Transformer

    from asmspotter.catalogue import utm_crs

    crs = utm_crs(lon, lat)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    half = CHIP_METRES / 2
    x0 = round((x - half) / 10.0) * 10.0
    y0 = round((y - half) / 10.0) * 10.0
    return crs, (x0, y0, x0 + CHIP_METRES, y0 + CHIP_METRES)


def _point_region(
    name: str, index: int, lon: float, lat: float, period: Any, source: Any
) -> tuple[Any, tuple[float, float, float, float]]:
    """Return a one-chip region around a point (with a 20 m margin) and the chip bounds."""
    from pyproj import Transformer

    from asmspotter.catalogue import Region

    crs, (x0, y0, x1, y1) = chip_bounds(lon, lat)
    m = 20.0
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lons, lats = to_lonlat.transform(
        [x0 - m, x1 + m, x1 + m, x0 - m], [y0 - m, y0 - m, y1 + m, y1 + m]
    )
    region = Region(
        id=f"chips-{name}-{index:05d}",
        name=f"chip {index} of {name}",
        country="",
        outline_spec={"bbox": [min(lons), min(lats), max(lons), max(lats)]},
        crs=crs,
        periods=(period,),
        source=source,
    )
    return region, (x0, y0, x1, y1)


def _cut_chip(
    composite: Path, bands: Sequence[str], bounds: tuple[float, float, float, float]
) -> np.ndarray:
    """Read the (48, 48, bands) chip at ``bounds`` from a reflectance composite (NaN outside)."""
    import rasterio
    from rasterio.windows import from_bounds

    with rasterio.open(composite) as src:
        names = list(src.descriptions)
        win = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        data = src.read(
            [names.index(b) + 1 for b in bands],
            window=win,
            boundless=True,
            fill_value=np.nan,
            out_shape=(len(bands), CHIP_SIZE, CHIP_SIZE),
        )
    return np.moveaxis(data.astype(np.float32), 0, -1)


def make_gallery_from_points(
    points_file: str | Path,
    period: str,
    out_dir: str | Path,
    *,
    name: str | None = None,
    bands: Sequence[str] = (),
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    cols: int = 20,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> GalleryResult:
    """Cut a GeoTIFF gallery of ``bands`` around every point of ``points_file``.

    Args:
        points_file: GeoJSON (or other vector file) of sample points.
        period: the composites' period: a year, quarter (``2020-Q3``), month or date range
            (``2020-07-01/2020-09-30``).
        out_dir: folder of the gallery (``<name>.tif``), its points (``<name>.geojson``) and
            provenance (``<name>.json``).
        name: the gallery's file stem; it must carry the label (``..._positives_...``).
            Default: the points file's stem with ``_S2L2A_<period>``.
        bands: canonical bands (default: the ten L2A bands of 10 and 20 m).
        stac_url: STAC API (default Earth Search).
        collection: collection (default ``sentinel-2-l2a``).
        max_cloud: maximum scene cloud cover in percent (default 40).
        cols: cells per gallery row.
        progress: show a progress bar (on terminals).
        log: callable receiving a line per point left out (None = silent).

    Returns:
        The files written and the fate of each point.

    Raises:
        InputError: bad points file, period, bands or name (checked before any download).
        FetchError: the STAC API or the scene files failed (chips made so far stay cached,
            so the same command resumes).
        DataError: a scene is corrupt.

    """
    say = log or (lambda _m: None)
    wanted, per, source = _request(bands, period, cols, stac_url, collection, max_cloud)
    points = read_points(points_file)
    stem = name or f"{Path(points_file).stem}_S2L2A_{per.id}"
    label_from_name(stem)  # the label must be in the name, before any download
    key = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(points_file).stem)
    fates, chips = _cut_chips(points, key, per, source, wanted, stem, progress, say)
    if not chips:
        raise InputError(f"none of the {len(points)} points of {points_file} gave a chip")
    files = layout.GalleryFiles(Path(out_dir), stem)
    cells = np.nan_to_num(np.stack(chips), nan=0.0)  # no-data inside a chip is read as 0
    gallery = write_gallery(files.tif, cells, wanted, cols=cols)
    _write_points(files.points, fates)
    prov = {
        **geoio.provenance_base(),
        "kind": "chip gallery",
        "points": str(points_file),
        "period": {"id": per.id, "start": per.start.isoformat(), "end": per.end.isoformat()},
        "bands": list(wanted),
        "values": "float32 surface reflectance, NaN = empty cell; chip i = feature i of "
        f"{files.points.name}",
        "source": {
            "stac_url": source.stac_url,
            "collection": source.collection,
            "max_cloud": source.max_cloud,
        },
        "chip": f"{CHIP_SIZE} x {CHIP_SIZE} px at 10 m centred on the point in its UTM zone",
        "n_points": len(points),
        "n_chips": len(chips),
        "left_out": [
            {"index": f.index, "lon": f.lon, "lat": f.lat, "reason": f.note}
            for f in fates
            if f.chip is None
        ],
    }
    prov_path = geoio.write_json(files.provenance, prov)
    return GalleryResult(gallery, files.points, prov_path, tuple(fates))


def _request(
    bands: Sequence[str],
    period: str,
    cols: int,
    stac_url: str | None,
    collection: str | None,
    max_cloud: float | None,
) -> tuple[tuple[str, ...], Period, Source]:
    """Check a gallery request; return its bands, period and STAC source.

    Raises:
        InputError: unknown or repeated bands, a bad period, cols < 1 or a bad source.

    """
    from asmspotter.catalogue import Period, Source

    wanted = tuple(bands) or L2A_BANDS
    unknown = [b for b in wanted if b not in CANONICAL_BANDS]
    if unknown or len(set(wanted)) != len(wanted):
        raise InputError(
            f"bands {', '.join(wanted)}: each must be named once, as one of "
            + ", ".join(CANONICAL_BANDS)
        )
    try:
        per = Period.parse(period)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if cols < 1:
        raise InputError(f"cols must be at least 1, got {cols}")
    src_kw: dict[str, Any] = {}
    if stac_url:
        src_kw["stac_url"] = stac_url
    if collection:
        src_kw["collection"] = collection
    if max_cloud is not None:
        src_kw["max_cloud"] = max_cloud
    try:
        source = Source(**src_kw)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return wanted, per, source


def _cut_chips(
    points: Sequence[tuple[float, float]],
    key: str,
    per: Period,
    source: Source,
    wanted: tuple[str, ...],
    stem: str,
    progress: bool,
    say: Callable[[str], None],
) -> tuple[list[PointChip], list[np.ndarray]]:
    """Make each point's composite and cut its chip; return every point's fate and the chips."""
    from tqdm.auto import tqdm

    from asmspotter.composite import CloudyCompositeWarning, fetch_composite

    chips: list[np.ndarray] = []
    fates: list[PointChip] = []
    for i, (lon, lat) in enumerate(
        tqdm(points, desc=f"chips {stem}", disable=not progress, unit="point")
    ):
        region, bounds = _point_region(key, i, lon, lat, per, source)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CloudyCompositeWarning)
                comp = fetch_composite(region, per, bands=wanted, progress=False)
        except NoScenesError:
            fates.append(PointChip(i, lon, lat, None, 0.0, "no scene in the period"))
            say(f"point {i} ({lon:.5f}, {lat:.5f}): no scene in the period")
            continue
        chip = _cut_chip(comp.path, wanted, bounds)
        valid = np.isfinite(chip).all(axis=-1)
        clear = float(valid.mean())
        if not valid.any():
            fates.append(PointChip(i, lon, lat, None, 0.0, "no clear observation"))
            say(f"point {i} ({lon:.5f}, {lat:.5f}): no clear observation in the period")
            continue
        fates.append(PointChip(i, lon, lat, len(chips), clear))
        chips.append(chip)
    return fates, chips


def _write_points(path: Path, fates: Sequence[PointChip]) -> None:
    """Write the points that gave chips, in chip order, as GeoJSON (EPSG:4326)."""
    import geopandas as gpd
    from shapely.geometry import Point

    kept = [f for f in fates if f.chip is not None]
    gdf = gpd.GeoDataFrame(
        {
            "source_index": [f.index for f in kept],
            "clear_fraction": [f.clear_fraction for f in kept],
        },
        geometry=[Point(f.lon, f.lat) for f in kept],
        crs="EPSG:4326",
    )
    with geoio.atomic_output(path) as tmp:
        gdf.to_file(tmp, driver="GeoJSON", layer=path.stem)  # not the temporary name
