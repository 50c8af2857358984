"""Composites of local sources: a period's GeoTIFF copied to the cache unchanged.

The La Pampa demo's scenes are local GeoTIFFs; :func:`build_local` copies one to the cache
as a COG, keeping its grid, CRS and values exactly, and tags it as the catalogue says.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import geoio
from asmspotter.acquire import LocalScene
from asmspotter.errors import DataError, first_line
from asmspotter.layout import PERIOD_TAG, RADIOMETRY_TAG, REGION_TAG


def build_local(
    scene: LocalScene, wanted: Sequence[str], tif: Path, window: Any = None
) -> dict[str, Any]:
    """Copy a local GeoTIFF (or a rasterio ``window`` of it) to ``tif``, keeping its values.

    The copy keeps the file's grid (the window's part of it), CRS and values exactly.

    Returns:
        The composite's provenance (without the request and the common fields).

    Raises:
        DataError: the file lacks a wanted band, does not hold the catalogue's bands, is
            truncated or corrupt, has no CRS, or is tagged display but not uint8.

    """
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
            data = src.read(window=window)
            transform = src.transform if window is None else src.window_transform(window)
            crs, src_nodata = src.crs, src.nodata
    except RasterioError as exc:
        raise DataError(
            f"local scene {scene.path} is truncated or corrupt: {first_line(exc)}"
        ) from None
    if crs is None:
        raise DataError(f"local scene {scene.path} has no CRS")
    nodata, valid = _nodata_and_valid(scene, data, src_nodata)
    geoio.write_cog(
        tif,
        data,
        crs=crs,
        transform=transform,
        nodata=nodata,
        band_names=scene.bands,
        tags={
            RADIOMETRY_TAG: scene.radiometry,
            REGION_TAG: scene.region,
            PERIOD_TAG: scene.period,
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
        "file": tif.name,
    }


def _nodata_and_valid(
    scene: LocalScene, data: np.ndarray, src_nodata: float | None
) -> tuple[float | None, np.ndarray]:
    """Return the no-data value and the pixels with data, by the scene's radiometry."""
    if scene.radiometry == "display":
        if data.dtype != np.uint8:
            raise DataError(f"{scene.path}: display scenes must be uint8, not {data.dtype}")
        return 0, (data != 0).any(axis=0)
    nodata = (
        src_nodata
        if src_nodata is not None
        else (float("nan") if np.issubdtype(data.dtype, np.floating) else None)
    )
    valid = np.ones(data.shape[1:], dtype=bool)
    if nodata is not None:
        same = np.isnan(data) if np.isnan(nodata) else data == nodata
        valid = ~same.all(axis=0)
    return nodata, valid
