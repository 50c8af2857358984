"""Composites of STAC scenes: masked, scaled, per-pixel median over a period.

The scenes a search found are loaded lazily and chunked with odc-stac at 10 m on a grid in
the region's CRS covering its outline. Each scene's digital numbers are turned into
reflectance with that scene's own scale and offset (``raster:bands``; the processing
baseline 04.00 offset of -1000 DN from 25 Jan 2022 on), clouds, shadows, cirrus, snow,
no-data and saturated pixels are masked (:mod:`~asmspotter.composite.masks`), and the
per-pixel median over the period is written window by window
(:func:`~asmspotter.composite.blocks.write_blocks`). Scenes found with ``sign:
planetary-computer`` carry signed hrefs; the provenance says so under ``signing`` (never the
token).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.acquire import (
    BandScaling,
    HttpSettings,
    StacScenes,
    band_scaling,
    clear_token_cache,
    require_assets,
    signing_provenance,
)
from asmspotter.catalogue import Region
from asmspotter.composite.blocks import write_blocks
from asmspotter.composite.masks import (
    S2CLOUDLESS_BANDS,
    clear_mask,
    mask_inputs,
    mask_method,
    mask_provenance,
)
from asmspotter.errors import DataError, FetchError
from asmspotter.layout import PERIOD_TAG, RADIOMETRY_TAG, REGION_TAG

if TYPE_CHECKING:
    import pystac
    import xarray as xr

#: Composite pixel size in metres.
RESOLUTION = 10.0

#: Per-scene scaling: item id -> band -> scale and offset.
Scaling = Mapping[str, Mapping[str, BandScaling]]


def build_stac(
    region: Region,
    scenes: StacScenes,
    bands: Sequence[str],
    tif: Path,
    http: HttpSettings,
    *,
    chunk_size: int,
    progress: bool,
    geobox: Any = None,
) -> dict[str, Any]:
    """Load, mask, scale and reduce the scenes to a median composite COG at ``tif``.

    The composite covers ``geobox`` (an odc-geo GeoBox, e.g. one tile of the region's grid)
    or, by default, the region's outline at :data:`RESOLUTION` in the region's CRS.

    Returns:
        The composite's provenance (without the request and the common fields).

    Raises:
        DataError: a scene lacks a band or a mask, or a scene file is missing, truncated or
            corrupt.
        FetchError: reading a scene file failed or timed out.

    """
    import odc.stac

    items, query = list(scenes.items), scenes.query
    method = mask_method(query.level)
    refl_bands = list(
        dict.fromkeys([*bands, *(S2CLOUDLESS_BANDS if method == "s2cloudless" else ())])
    )
    keys = _asset_keys(items, [*refl_bands, *mask_inputs(method)], method)
    scaling = {i.id: {b: band_scaling(i, keys[b]) for b in refl_bands} for i in items}
    load_keys = tuple(dict.fromkeys(keys[b] for b in [*refl_bands, *mask_inputs(method)]))
    geobox = geobox if geobox is not None else region_geobox(region)
    gdal: dict[str, Any] = dict(http.gdal_options())
    odc.stac.configure_rio(cloud_defaults=False, **gdal)
    load = _Load(keys, tuple(refl_bands), tuple(bands), load_keys, geobox, method, chunk_size)
    median, clear_any = _median(items, scaling, load)
    tags = {RADIOMETRY_TAG: "reflectance", REGION_TAG: region.id, PERIOD_TAG: query.period}
    desc = f"{region.id} {query.period}: {len(items)} scenes"
    signed = query.sign == "planetary-computer"
    try:
        n_clear = write_blocks(
            tif, median.data, clear_any.data, list(bands), geobox, tags, desc, progress, query, http
        )
    except FetchError:
        if signed:  # a refused or expired token: ask for fresh ones next time
            clear_token_cache()
        raise
    rows, cols = geobox.shape.y, geobox.shape.x
    return {
        "source": {"type": "stac", "stac_url": query.stac_url, "collection": query.collection},
        "query": query.as_dict(),
        "signing": signing_provenance(items, load_keys) if signed else {"method": "none"},
        "items": [i.id for i in items],
        "n_scenes": len(items),
        "scaling": _scaling_provenance(scaling, bands),
        "mask": mask_provenance(method),
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
        "file": tif.name,
    }


def region_geobox(region: Region) -> Any:
    """Return the grid of a region's STAC composites: its outline at 10 m in its CRS."""
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry

    return GeoBox.from_geopolygon(
        Geometry(region.outline, "EPSG:4326"), resolution=RESOLUTION, crs=region.crs
    )


def _asset_keys(items: Sequence[pystac.Item], names: Sequence[str], method: str) -> dict[str, str]:
    """Each band's and mask's asset key; a hint to install s2cloudless when QA60 is absent."""
    try:
        return require_assets(items, list(dict.fromkeys(names)))
    except DataError as exc:
        if method == "qa60" and "'qa60'" in str(exc):
            raise DataError(
                f"{exc}; L1C scenes need s2cloudless (pip install 'asmspotter[l1c]') or a "
                "QA60 band for cloud masks"
            ) from None
        raise


@dataclass(frozen=True)
class _Load:
    """How the scenes are loaded and reduced.

    Attributes:
        keys: canonical band or mask name -> asset key.
        refl_bands: bands turned into reflectance (the composite's and the mask's inputs).
        bands: the composite's bands.
        load_keys: asset keys loaded.
        geobox: the composite's grid.
        method: the mask method.
        chunk_size: pixels per side of the chunks.

    """

    keys: Mapping[str, str]
    refl_bands: tuple[str, ...]
    bands: tuple[str, ...]
    load_keys: tuple[str, ...]
    geobox: Any
    method: str
    chunk_size: int


def _median(
    items: Sequence[pystac.Item], scaling: Scaling, load: _Load
) -> tuple[xr.DataArray, xr.DataArray]:
    """Return the lazy per-pixel median (band, y, x) and whether any scene was clear (y, x).

    Scenes are loaded in groups that share scale and offsets (one odc-stac load each).
    """
    import xarray as xr

    groups: dict[tuple[tuple[float, float], ...], list[pystac.Item]] = {}
    for item in items:
        per = scaling[item.id]
        sig = tuple((per[b].scale, per[b].offset) for b in load.refl_bands)
        groups.setdefault(sig, []).append(item)
    stacks, clears = [], []
    for sig, group in groups.items():
        stack, valid = _load_group(group, sig, load)
        stacks.append(stack)
        clears.append(valid)
    stack = xr.concat(stacks, dim="time") if len(stacks) > 1 else stacks[0]
    clear_any = (xr.concat(clears, dim="time") if len(clears) > 1 else clears[0]).any("time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = stack.median("time", skipna=True).transpose("band", "y", "x")
    return median.chunk({"band": -1}), clear_any


def _load_group(
    group: Sequence[pystac.Item], sig: Sequence[tuple[float, float]], load: _Load
) -> tuple[xr.DataArray, xr.DataArray]:
    """Return a group's reflectance (band, time, y, x), NaN but where clear, and the clear."""
    import odc.stac
    import xarray as xr

    ds = odc.stac.load(
        group,
        bands=list(load.load_keys),
        geobox=load.geobox,
        groupby="solar_day",
        chunks={"x": load.chunk_size, "y": load.chunk_size},
        resampling="nearest",
        fail_on_error=True,
    )
    keys = load.keys
    refl = {
        b: (ds[keys[b]].astype("float32") * np.float32(s[0]) + np.float32(s[1])).where(
            ds[keys[b]] != 0
        )
        for b, s in zip(load.refl_bands, sig, strict=True)
    }
    valid = clear_mask(load.method, ds, keys, refl)
    for b in load.bands:
        valid = valid & refl[b].notnull()
    return xr.concat([refl[b].where(valid) for b in load.bands], dim="band"), valid


def _scaling_provenance(scaling: Scaling, bands: Sequence[str]) -> dict[str, Any]:
    return {
        iid: {
            b: {"scale": s.scale, "offset": s.offset, "origin": s.origin}
            for b, s in per.items()
            if b in bands
        }
        for iid, per in scaling.items()
    }
