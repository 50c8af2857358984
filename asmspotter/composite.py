"""Cloud-free per-period composites, cached as COGs with provenance.

:func:`fetch_composite` turns a region and a period into ``composite.tif`` (and
``composite.json`` beside it) under ``paths.cache_dir()/<region>/<period>/``:

- STAC sources: the scenes a search finds are loaded lazily and chunked with odc-stac at
  10 m on a grid in the region's CRS covering its outline. Each scene's digital numbers are
  turned into reflectance with that scene's own scale and offset (``raster:bands``; the
  processing baseline 04.00 offset of -1000 DN from 25 Jan 2022 on), cloud, cloud shadow,
  cirrus, snow, no-data and saturated pixels are masked with the SCL band (L2A) or with
  s2cloudless / QA60 (L1C), and the per-pixel median over the period is written window by
  window (bounded memory, a progress bar while the scenes load), then made a COG. Assets of
  Planetary Computer (or of sources with ``sign: planetary-computer``) are read through hrefs
  signed with SAS tokens; the provenance says so under ``signing`` (never the token).
- Local sources (the La Pampa demo): the period's GeoTIFF is copied to the cache keeping its
  grid, CRS and values exactly.

The composite COG follows the contract in CONTRIBUTING.md: one band per canonical band name
(the band description), and the ``ASMSPOTTER_RADIOMETRY`` tag (``reflectance``: float32, no-data
NaN; ``display``: uint8, no-data 0). ``composite.json`` is written last, so a composite without
its JSON is incomplete and treated as absent; a second call reuses the cache unless
``refresh=True``.

Example:
    >>> from asmspotter.composite import fetch_composite, open_composite
    >>> result = fetch_composite("la-pampa", "2019")                     # doctest: +SKIP
    >>> open_composite(result.path).sel(band="red")                      # doctest: +SKIP

"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter import geoio, paths
from asmspotter.acquire import (
    HttpSettings,
    LocalScene,
    PlanetaryComputerSigner,
    StacQuery,
    StacScenes,
    band_scaling,
    clear_token_cache,
    plan_source,
    require_assets,
    search_stac,
)
from asmspotter.catalogue import Period, Region, get_region
from asmspotter.errors import AsmSpotterError, DataError, FetchError, InputError

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

#: Canonical band names (Earth Search v1 asset keys), in spectral order.
CANONICAL_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "red",
    "rededge1",
    "rededge2",
    "rededge3",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
)
#: The ten 10 m and 20 m bands of Sentinel-2 L2A, in spectral order (all canonical bands but
#: the 60 m ones): the default bands of multispectral chip galleries.
L2A_BANDS: tuple[str, ...] = tuple(
    b for b in CANONICAL_BANDS if b not in ("coastal", "nir09", "cirrus")
)
#: Bands the detector needs (its model card); composites hold these plus true colour.
DETECTOR_BANDS: tuple[str, ...] = ("red", "green", "blue")
#: True-colour bands for display.
TRUE_COLOUR: tuple[str, ...] = ("red", "green", "blue")
#: SCL classes masked: no-data, saturated, cloud shadow, cloud medium/high, cirrus, snow.
SCL_MASKED: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
#: QA60 bits masked on L1C scenes when s2cloudless is not installed: opaque cloud, cirrus.
QA60_BITS: tuple[int, ...] = (10, 11)
#: s2cloudless input bands (B01 B02 B04 B05 B08 B8A B09 B10 B11 B12) and its 10 m settings.
S2CLOUDLESS_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "red",
    "rededge1",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
)
S2CLOUDLESS_SETTINGS: Mapping[str, Any] = {
    "threshold": 0.4,
    "average_over": 22,
    "dilation_size": 11,
}
#: Dataset tag saying how to read the composite's values.
RADIOMETRY_TAG = "ASMSPOTTER_RADIOMETRY"
#: Composite pixel size in metres.
RESOLUTION = 10.0
#: Warn when fewer of the composite's pixels than this have a clear observation.
LOW_CLEAR_FRACTION = 0.05
#: Pixels per side of the chunks scenes are loaded and reduced in.
CHUNK_SIZE = 512

COMPOSITE_NAME = "composite.tif"
PROVENANCE_NAME = "composite.json"


class CloudyCompositeWarning(UserWarning):
    """Few or none of a composite's pixels had a clear observation."""


@dataclass(frozen=True)
class CompositeResult:
    """A composite on disk.

    Attributes:
        region: region id.
        period: period id.
        path: the composite COG.
        provenance: the contents of ``composite.json``.
        reused: True when the cache was reused rather than rebuilt.

    """

    region: str
    period: str
    path: Path
    provenance: Mapping[str, Any] = field(repr=False)
    reused: bool = False

    def __post_init__(self) -> None:
        assert self.path.name == COMPOSITE_NAME, self.path
        assert "clear_fraction" in self.provenance, "provenance lacks clear_fraction"

    @property
    def provenance_path(self) -> Path:
        """The provenance JSON beside the composite."""
        return self.path.with_name(PROVENANCE_NAME)

    @property
    def clear_fraction(self) -> float:
        """Fraction of the composite's pixels with at least one clear observation."""
        return float(self.provenance["clear_fraction"])

    @property
    def bands(self) -> tuple[str, ...]:
        """Canonical names of the composite's bands."""
        return tuple(self.provenance["bands"])

    @property
    def radiometry(self) -> str:
        """``reflectance`` or ``display``."""
        return str(self.provenance["radiometry"])


def composite_path(region_id: str, period_id: str) -> Path:
    """Return where the composite of a region and period is cached."""
    return paths.cache_dir() / region_id / period_id / COMPOSITE_NAME


def fetch_composite(
    region: Region | str,
    period: Period | str,
    *,
    refresh: bool = False,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
    bands: Sequence[str] | None = None,
    http: HttpSettings | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
) -> CompositeResult:
    """Return the composite of a region and period, building and caching it if needed.

    Args:
        region: a region or its id in the catalogue.
        period: one of the region's periods or its id.
        refresh: rebuild even when a cached composite exists.
        stac_url: STAC API to search instead of the region's (for local sources: used
            when the local scene is absent).
        collection: collection to search instead of the region's.
        max_cloud: maximum scene cloud cover in percent instead of the region's.
        sign: how asset hrefs are signed instead of the region's source says: ``auto``
            (Planetary Computer SAS tokens when the STAC URL's host is
            planetarycomputer.microsoft.com), ``planetary-computer`` (the SAS API is
            ``ASMSPOTTER_PC_SAS_URL`` or Planetary Computer's) or ``none``. Signing is not
            part of the cache key: signed and unsigned reads give the same values.
        bands: canonical bands the composite must hold (default :data:`DETECTOR_BANDS`);
            true colour is always added for STAC sources.
        http: timeouts and retries (default from the environment).
        chunk_size: pixels per side of the processing chunks.
        progress: show a progress bar while scenes load (on terminals).

    Returns:
        The composite's path and provenance.

    Raises:
        InputError: unknown region, period or band, or no scene in the period.
        FetchError: the STAC API or the scene files failed or timed out.
        DataError: a scene or local file is corrupt, truncated or lacks a band.

    """
    reg = region if isinstance(region, Region) else get_region(region)
    per = period if isinstance(period, Period) else reg.period(period)
    wanted = _check_bands(bands)
    plan = plan_source(
        reg, per, stac_url=stac_url, collection=collection, max_cloud=max_cloud, sign=sign
    )
    out_bands = (
        tuple(b for b in CANONICAL_BANDS if b in {*wanted, *TRUE_COLOUR})
        if isinstance(plan, StacQuery)
        else wanted
    )
    request = _request(plan, out_bands)
    tif = composite_path(reg.id, per.id)
    meta = tif.with_name(PROVENANCE_NAME)
    if not refresh:
        cached = _cached_provenance(tif, meta)
        if cached is not None and cached.get("request") == request:
            log.info("reusing cached composite %s", tif)
            return CompositeResult(reg.id, per.id, tif, cached, reused=True)
        if cached is not None:
            log.info("cached composite %s was made with other settings; rebuilding", tif)
    # Invalidate first: from here until the JSON is written the entry counts as absent.
    meta.unlink(missing_ok=True)
    prov: dict[str, Any] = {
        **geoio.provenance_base(),
        "kind": "composite",
        "region": reg.id,
        "period": {"id": per.id, "start": per.start.isoformat(), "end": per.end.isoformat()},
        "request": request,
    }
    if isinstance(plan, LocalScene):
        prov.update(_build_local(plan, wanted, tif))
    else:
        scenes = search_stac(plan, http)
        prov.update(
            _build_stac(
                reg,
                scenes,
                out_bands,
                tif,
                http or HttpSettings.from_env(),
                chunk_size=chunk_size,
                progress=progress,
            )
        )
    geoio.write_json(meta, prov)
    if prov["clear_fraction"] < LOW_CLEAR_FRACTION:
        warnings.warn(
            f"{reg.id} {per.id}: only {prov['clear_fraction']:.1%} of the composite's pixels "
            "had a clear observation; the rest is no-data",
            CloudyCompositeWarning,
            stacklevel=2,
        )
    return CompositeResult(reg.id, per.id, tif, prov, reused=False)


def open_composite(
    path: str | os.PathLike[str], *, bands: Sequence[str] | None = None
) -> xr.DataArray:
    """Read a composite COG into a (band, y, x) DataArray.

    The band coordinate holds the canonical band names; ``attrs`` hold ``radiometry``,
    ``crs`` (WKT), ``transform`` (affine, 6 numbers) and ``nodata``.

    Args:
        path: the ``composite.tif``.
        bands: bands to read (default all), in this order.

    Raises:
        DataError: the file is absent, truncated or corrupt, lacks the radiometry tag or
            band names, or lacks a requested band.

    """
    import rasterio
    import xarray as xr
    from rasterio.errors import RasterioError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"composite not found: {p}")
    try:
        with rasterio.open(p) as src:
            names = list(src.descriptions)
            radiometry = src.tags().get(RADIOMETRY_TAG)
            if radiometry not in ("reflectance", "display"):
                raise DataError(f"{p} is not an ASMSpotter composite (no {RADIOMETRY_TAG} tag)")
            if any(n not in CANONICAL_BANDS for n in names):
                raise DataError(f"{p}: band descriptions {names} are not canonical band names")
            wanted = list(bands) if bands is not None else names
            missing = [b for b in wanted if b not in names]
            if missing:
                raise DataError(
                    f"{p} lacks band(s) {', '.join(missing)} (it holds {', '.join(names)})"
                )
            data = src.read([names.index(b) + 1 for b in wanted])
            transform, crs, nodata = src.transform, src.crs, src.nodata
            rows, cols = src.height, src.width
    except RasterioError as exc:
        raise DataError(f"composite {p} is truncated or corrupt: {_first_line(exc)}") from None
    xs = transform.c + transform.a * (np.arange(cols) + 0.5)
    ys = transform.f + transform.e * (np.arange(rows) + 0.5)
    return xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": wanted, "y": ys, "x": xs},
        attrs={
            "radiometry": radiometry,
            "crs": crs.to_wkt() if crs else None,
            "transform": tuple(transform)[:6],
            "nodata": nodata,
            "path": str(p),
        },
        name="composite",
    )


# -- cache ----------------------------------------------------------------------------------


def _check_bands(bands: Sequence[str] | None) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(bands if bands is not None else DETECTOR_BANDS))
    unknown = [b for b in wanted if b not in CANONICAL_BANDS]
    if unknown or not wanted:
        raise InputError(
            f"unknown band(s) {unknown or '(none given)'}; canonical bands: "
            f"{', '.join(CANONICAL_BANDS)}"
        )
    return wanted


def _request(plan: LocalScene | StacQuery, bands: Sequence[str]) -> dict[str, Any]:
    """Return what the composite depends on (a cache entry is reused only if equal)."""
    if isinstance(plan, LocalScene):
        return {"type": "local", "file": plan.path.name, "bands": list(bands)}
    return {"type": "stac", **plan.as_dict(), "bands": list(bands), "resolution": RESOLUTION}


def composite_complete(tif: Path) -> bool:
    """Return True when a cached composite and its provenance (written last) both exist.

    A ``composite.tif`` without its ``composite.json`` is an unfinished cache entry.
    """
    return tif.is_file() and tif.with_name(PROVENANCE_NAME).is_file()


def _cached_provenance(tif: Path, meta: Path) -> dict[str, Any] | None:
    """Return the provenance of a complete cache entry, None when absent or incomplete."""
    if not composite_complete(tif):
        return None
    try:
        prov = geoio.read_json(meta)
    except DataError:
        return None
    if not isinstance(prov, dict) or "clear_fraction" not in prov:
        return None
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(tif) as src:
            if list(src.descriptions) != list(prov.get("bands", [])):
                return None
    except RasterioError:
        return None
    return prov


# -- local source ---------------------------------------------------------------------------


def _build_local(scene: LocalScene, wanted: Sequence[str], tif: Path) -> dict[str, Any]:
    """Copy a local GeoTIFF to the cache, keeping grid, CRS and values."""
    import rasterio
    from rasterio.errors import RasterioError

    missing = [b for b in wanted if b not in scene.bands]
    if missing:
        raise DataError(f"{scene.path} holds {', '.join(scene.bands)}, not {', '.join(missing)}")
    try:
        with rasterio.open(scene.path) as src:
            if src.count != len(scene.bands):
                raise DataError(
                    f"{scene.path} has {src.count} bands, the catalogue names "
                    f"{len(scene.bands)} ({', '.join(scene.bands)})"
                )
            data = src.read()
            crs, transform, src_nodata = src.crs, src.transform, src.nodata
    except RasterioError as exc:
        raise DataError(
            f"local scene {scene.path} is truncated or corrupt: {_first_line(exc)}"
        ) from None
    if crs is None:
        raise DataError(f"local scene {scene.path} has no CRS")
    if scene.radiometry == "display":
        if data.dtype != np.uint8:
            raise DataError(f"{scene.path}: display scenes must be uint8, not {data.dtype}")
        nodata: float | None = 0
        valid = (data != 0).any(axis=0)
    else:
        nodata = (
            src_nodata
            if src_nodata is not None
            else (float("nan") if np.issubdtype(data.dtype, np.floating) else None)
        )
        valid = np.ones(data.shape[1:], dtype=bool)
        if nodata is not None:
            same = np.isnan(data) if np.isnan(nodata) else data == nodata
            valid = ~same.all(axis=0)
    geoio.write_cog(
        tif,
        data,
        crs=crs,
        transform=transform,
        nodata=nodata,
        band_names=scene.bands,
        tags={
            RADIOMETRY_TAG: scene.radiometry,
            "ASMSPOTTER_REGION": scene.region,
            "ASMSPOTTER_PERIOD": scene.period,
        },
    )
    return {
        "source": scene.as_dict(),
        "items": [scene.path.name],
        "n_scenes": 1,
        "bands": list(scene.bands),
        "radiometry": scene.radiometry,
        "nodata": nodata,
        "mask": {"method": "none", "note": "single local scene, values copied unchanged"},
        "reducer": "none",
        "crs": crs.to_string(),
        "transform": list(transform)[:6],
        "shape": [int(data.shape[1]), int(data.shape[2])],
        "clear_fraction": round(float(valid.mean()), 6),
        "file": COMPOSITE_NAME,
    }


# -- STAC source ----------------------------------------------------------------------------


def _mask_method(level: str) -> str:
    if level == "L2A":
        return "scl"
    try:
        import s2cloudless  # noqa: F401
    except ImportError:
        return "qa60"
    return "s2cloudless"


def _build_stac(
    region: Region,
    scenes: StacScenes,
    bands: Sequence[str],
    tif: Path,
    http: HttpSettings,
    *,
    chunk_size: int,
    progress: bool,
) -> dict[str, Any]:
    """Load, mask, scale and reduce the scenes to a median composite COG."""
    import odc.stac
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry

    items = list(scenes.items)
    query = scenes.query
    method = _mask_method(query.level)
    mask_bands = {"scl": ["scl"], "qa60": ["qa60"], "s2cloudless": list(S2CLOUDLESS_BANDS)}
    refl_bands = list(
        dict.fromkeys([*bands, *(S2CLOUDLESS_BANDS if method == "s2cloudless" else ())])
    )
    try:
        keys = require_assets(
            items,
            [
                *refl_bands,
                *(["scl"] if method == "scl" else []),
                *(["qa60"] if method == "qa60" else []),
            ],
        )
    except DataError as exc:
        if method == "qa60" and "'qa60'" in str(exc):
            raise DataError(
                f"{exc}; L1C scenes need s2cloudless (pip install 'asmspotter[l1c]') or a "
                "QA60 band for cloud masks"
            ) from None
        raise
    scaling = {i.id: {b: band_scaling(i, keys[b]) for b in refl_bands} for i in items}
    load_keys = list(dict.fromkeys(keys[b] for b in [*refl_bands, *mask_bands[method]]))
    signing: dict[str, Any] = {"method": "none"}
    signer = None
    if query.sign == "planetary-computer":
        signer = PlanetaryComputerSigner(http=http)
        items = [signer.sign_item(i, load_keys, collection=query.collection) for i in items]
        signing = signer.provenance()
    geobox = GeoBox.from_geopolygon(
        Geometry(region.outline, "EPSG:4326"), resolution=RESOLUTION, crs=region.crs
    )
    gdal: dict[str, Any] = dict(http.gdal_options())
    odc.stac.configure_rio(cloud_defaults=False, **gdal)

    groups: dict[tuple[tuple[float, float], ...], list[Any]] = {}
    for item in items:
        sig = tuple((scaling[item.id][b].scale, scaling[item.id][b].offset) for b in refl_bands)
        groups.setdefault(sig, []).append(item)
    stacks, clears = [], []
    for sig, group in groups.items():
        ds = odc.stac.load(
            group,
            bands=load_keys,
            geobox=geobox,
            groupby="solar_day",
            chunks={"x": chunk_size, "y": chunk_size},
            resampling="nearest",
            fail_on_error=True,
        )
        refl = {
            b: (ds[keys[b]].astype("float32") * np.float32(s[0]) + np.float32(s[1])).where(
                ds[keys[b]] != 0
            )
            for b, s in zip(refl_bands, sig, strict=True)
        }
        if method == "scl":
            scl = ds[keys["scl"]]
            clear = ~scl.isin(list(SCL_MASKED))
        elif method == "qa60":
            bits = sum(1 << b for b in QA60_BITS)
            clear = (ds[keys["qa60"]] & bits) == 0
        else:
            clear = ~_s2cloudless_clouds(refl)
        valid = clear
        for b in bands:
            valid = valid & refl[b].notnull()
        stacks.append(xr.concat([refl[b].where(valid) for b in bands], dim="band"))
        clears.append(valid)
    stack = xr.concat(stacks, dim="time") if len(stacks) > 1 else stacks[0]
    clear_any = (xr.concat(clears, dim="time") if len(clears) > 1 else clears[0]).any("time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = stack.median("time", skipna=True).transpose("band", "y", "x")
    median = median.chunk({"band": -1})

    rows, cols = geobox.shape.y, geobox.shape.x
    tags = {
        RADIOMETRY_TAG: "reflectance",
        "ASMSPOTTER_REGION": region.id,
        "ASMSPOTTER_PERIOD": query.period,
    }
    desc = f"{region.id} {query.period}: {len(items)} scenes"
    try:
        n_clear = _write_blocks(
            tif,
            median.data,
            clear_any.data,
            list(bands),
            geobox,
            tags,
            desc,
            progress,
            query,
        )
    except FetchError:
        if signer is not None:  # a refused or expired token: ask for fresh ones next time
            clear_token_cache()
        raise
    return {
        "source": {"type": "stac", "stac_url": query.stac_url, "collection": query.collection},
        "query": query.as_dict(),
        "signing": signing,
        "items": [i.id for i in items],
        "n_scenes": len(items),
        "scaling": {
            iid: {
                b: {"scale": s.scale, "offset": s.offset, "origin": s.origin}
                for b, s in per.items()
                if b in bands
            }
            for iid, per in scaling.items()
        },
        "mask": _mask_provenance(method),
        "bands": list(bands),
        "radiometry": "reflectance",
        "nodata": "NaN",
        "reducer": "median",
        "groupby": "solar_day",
        "crs": region.crs,
        "resolution": RESOLUTION,
        "transform": list(geobox.transform)[:6],
        "shape": [rows, cols],
        "clear_fraction": round(n_clear / float(rows * cols), 6),
        "file": COMPOSITE_NAME,
    }


def _mask_provenance(method: str) -> dict[str, Any]:
    if method == "scl":
        return {
            "method": "scl",
            "masked_classes": list(SCL_MASKED),
            "note": "no-data, saturated, cloud shadow, cloud medium/high, cirrus, snow",
        }
    if method == "qa60":
        return {
            "method": "qa60",
            "masked_bits": list(QA60_BITS),
            "note": "opaque clouds and cirrus; s2cloudless not installed",
        }
    import s2cloudless

    return {
        "method": "s2cloudless",
        "version": getattr(s2cloudless, "__version__", None),
        **S2CLOUDLESS_SETTINGS,
    }


def _s2cloudless_clouds(refl: Mapping[str, xr.DataArray]) -> xr.DataArray:
    """Cloud mask (time, y, x) from s2cloudless, computed chunk by chunk."""
    import dask.array as da
    import xarray as xr

    stack = xr.concat([refl[b].fillna(0) for b in S2CLOUDLESS_BANDS], dim="s2band")
    stack = stack.transpose("time", "y", "x", "s2band").chunk({"s2band": -1, "time": 1})

    def detect(block: np.ndarray) -> np.ndarray:
        from s2cloudless import S2PixelCloudDetector

        detector = S2PixelCloudDetector(all_bands=False, **S2CLOUDLESS_SETTINGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return detector.get_cloud_masks(block.astype(np.float32)).astype(bool)

    data = da.map_blocks(detect, stack.data, drop_axis=3, dtype=bool)
    return xr.DataArray(
        data,
        dims=("time", "y", "x"),
        coords={
            "time": stack.time,
            "y": stack.y,
            "x": stack.x,
        },
    )


class _WindowWriter:
    """A ``da.store`` target writing (band, y, x) blocks into an open rasterio dataset."""

    def __init__(self, dst: Any) -> None:
        self.dst = dst

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        from rasterio.windows import Window

        bands, ys, xs = key
        window = Window.from_slices(ys, xs)
        indexes = list(range(bands.start + 1, bands.stop + 1))
        self.dst.write(value, indexes=indexes, window=window)


class _Counter:
    """A ``da.store`` target summing boolean blocks."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        with self._lock:
            self.total += int(np.count_nonzero(value))


@contextlib.contextmanager
def _progress(desc: str, enabled: bool) -> Iterator[None]:
    """Show a tqdm bar over dask tasks while the scenes load."""
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    class _Bar(Callback):
        def _start_state(self, dsk: Any, state: Any) -> None:
            self.bar = tqdm(
                total=len(dsk),
                desc=desc,
                unit="task",
                disable=None if enabled else True,
                leave=False,
            )

        def _posttask(self, *args: Any) -> None:
            self.bar.update(1)

        def _finish(self, *args: Any) -> None:
            self.bar.close()

    with _Bar():
        yield


class _OdcReadErrors(logging.Filter):
    """Keep odc's "Failed to load" log lines for the error message instead of printing them.

    Installed once on odc's reader logger: the same failure is raised as one clear
    :class:`DataError` or :class:`FetchError`, and reads still in flight on other threads
    when it is raised would otherwise print their own lines after it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Failed to load"):
            return True
        with self._lock:
            self.messages = [*self.messages[-20:], message]
        return False

    def take(self) -> list[str]:
        with self._lock:
            taken, self.messages = self.messages, []
        return taken


_ODC_READ_ERRORS = _OdcReadErrors()


@contextlib.contextmanager
def _quiet_odc() -> Iterator[list[str]]:
    """Collect odc's read-error log lines; yields the list filled when a read fails."""
    logger = logging.getLogger("odc.loader._rio")
    if _ODC_READ_ERRORS not in logger.filters:
        logger.addFilter(_ODC_READ_ERRORS)
    _ODC_READ_ERRORS.take()
    collected: list[str] = []
    try:
        yield collected
    except BaseException:
        collected.extend(_ODC_READ_ERRORS.take())
        raise


def _write_blocks(
    tif: Path,
    median: Any,
    clear: Any,
    bands: list[str],
    geobox: Any,
    tags: Mapping[str, str],
    desc: str,
    progress: bool,
    query: StacQuery,
) -> int:
    """Compute the composite block by block into a tiled GeoTIFF, then make it a COG."""
    import dask
    import dask.array as da
    import rasterio
    from rasterio.errors import RasterioError

    tif.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".composite.work-", suffix=".tif", dir=tif.parent)
    os.close(fd)
    work = Path(name)
    counter = _Counter()
    try:
        with rasterio.open(
            work,
            "w",
            driver="GTiff",
            width=geobox.shape.x,
            height=geobox.shape.y,
            count=len(bands),
            dtype="float32",
            crs=geobox.crs.to_wkt(),
            transform=geobox.transform,
            nodata=float("nan"),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
            BIGTIFF="IF_SAFER",
        ) as dst:
            for i, b in enumerate(bands, start=1):
                dst.set_band_description(i, b)
            dst.update_tags(**tags)
            with _quiet_odc() as odc_log:
                try:
                    with (
                        _progress(desc, progress),
                        dask.config.set(scheduler="threads"),
                        warnings.catch_warnings(),
                    ):
                        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN medians
                        targets: list[Any] = [_WindowWriter(dst), counter]
                        da.store([median, clear], targets, lock=threading.Lock())
                except (RasterioError, OSError) as exc:
                    odc_log.extend(_ODC_READ_ERRORS.take())
                    raise _read_error(exc, query, odc_log) from None
        geoio.translate_to_cog(work, tif)
    finally:
        for p in (work, work.with_name(work.name + ".aux.xml")):
            p.unlink(missing_ok=True)
    return counter.total


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _access_hint(query: StacQuery) -> str:
    if query.sign == "none":
        return (
            "its assets need signed URLs: for Planetary Computer pass --sign "
            "planetary-computer (or set 'sign: planetary-computer' in the region's source)"
        )
    return (
        "the Planetary Computer SAS token was refused (expired, or not for this "
        "collection); run again for a fresh token"
    )


def _read_error(
    exc: BaseException, query: StacQuery, logged: Sequence[str] = ()
) -> AsmSpotterError:
    """Turn a failed scene read into a one-line FetchError or DataError."""
    import re
    from urllib.parse import urlsplit

    def redact(text: str) -> str:  # drop URL queries: they may hold a SAS token
        return re.sub(r"(https?://[^\s'\"?]+)\?[^\s'\"]*", r"\1", text)

    chain: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 5:
        chain.append(redact(str(seen)))
        seen = seen.__cause__ or seen.__context__
    text = " | ".join([*chain, *(redact(line) for line in logged)])
    m = re.search(r"(https?://[^\s'\"]+)", text)
    where = (
        re.sub(r":\d+$", "", m.group(1).rstrip(":.,")) if m else (f"a scene of {query.describe()}")
    )
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        return FetchError(f"reading {where} timed out; set ASMSPOTTER_HTTP_TIMEOUT to wait longer")
    code = re.search(r"http (?:response )?(?:code|status)\D{0,3}(\d{3})", low)
    if code and code.group(1).startswith("5"):
        return FetchError(f"server error HTTP {code.group(1)} reading {where} (after retries)")
    azure = (urlsplit(where).hostname or "").endswith(".blob.core.windows.net")
    if code and (
        code.group(1) in ("401", "403")
        or (azure and query.sign == "none" and code.group(1) in ("404", "409"))
    ):
        return FetchError(
            f"access denied (HTTP {code.group(1)}) reading {where}; {_access_hint(query)}"
        )
    if (code and code.group(1) == "404") or "does not exist" in low or "no such file" in low:
        return DataError(f"scene file missing (HTTP 404): {where}")
    detail = next((c for c in reversed(chain) if c.strip()), "")
    detail = detail.strip().splitlines()[0][:160] if detail.strip() else type(exc).__name__
    return DataError(f"scene file truncated or corrupt: {where} ({detail})")
