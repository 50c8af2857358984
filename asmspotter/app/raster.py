"""A composite as a map image: true colour, reprojected to EPSG:3857, as a PNG data URL.

Leaflet stretches an image overlay linearly between its corners in Web Mercator, so the
composite is warped to EPSG:3857 first; pixels without data become transparent. Large
composites are read decimated (at most :data:`MAX_SIDE_PX` pixels a side), which keeps the
page light; the image is for looking at, never for measuring.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass

import numpy as np

from asmspotter.bands import DISPLAY_REFLECTANCE_MAX, TRUE_COLOUR, band_indexes
from asmspotter.errors import DataError
from asmspotter.layout import RADIOMETRY_TAG

#: Largest side of the image sent to the browser, in pixels.
MAX_SIDE_PX = 1600


@dataclass(frozen=True)
class MapImage:
    """An image overlay for Leaflet.

    Attributes:
        url: ``data:image/png;base64,...``.
        bounds: ((south, west), (north, east)) in degrees.
        size: (width, height) in pixels.

    """

    url: str
    bounds: tuple[tuple[float, float], tuple[float, float]]
    size: tuple[int, int]


def _to_uint8(data: np.ndarray, radiometry: str) -> tuple[np.ndarray, np.ndarray]:
    """Return display values (uint8, band first) and the valid-pixel mask."""
    if radiometry == "display":
        valid = np.any(data > 0, axis=0)
        return np.clip(data, 0, 255).astype(np.uint8), valid
    valid = np.all(np.isfinite(data), axis=0)
    scaled = np.nan_to_num(data / DISPLAY_REFLECTANCE_MAX, nan=0.0)
    return (np.clip(scaled, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), valid


def composite_image(path: str | os.PathLike[str], max_side: int = MAX_SIDE_PX) -> MapImage:
    """Return a composite's true colour as a Web Mercator PNG overlay.

    Args:
        path: the composite COG (``layout.composite_files(...).tif``).
        max_side: largest side of the image in pixels.

    Raises:
        DataError: the file is absent, unreadable, or not an ASMSpotter composite.

    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds

    try:
        with rasterio.open(path) as src:
            radiometry = src.tags().get(RADIOMETRY_TAG)
            if radiometry not in ("reflectance", "display"):
                raise DataError(f"{path} is not an ASMSpotter composite (no {RADIOMETRY_TAG} tag)")
            names = [d or "" for d in src.descriptions]
            indexes = [i + 1 for i in band_indexes(names, TRUE_COLOUR, str(path))]
            scale = max(1.0, max(src.width, src.height) / max_side)
            shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
            data = src.read(indexes, out_shape=(3, *shape), resampling=Resampling.average)
            src_transform = src.transform * src.transform.scale(
                src.width / shape[1], src.height / shape[0]
            )
            src_crs, src_bounds = src.crs, src.bounds
    except RasterioError as exc:
        raise DataError(f"cannot read the composite {path}: {exc}") from None
    rgb, valid = _to_uint8(data.astype("float32"), radiometry)
    dst_transform, width, height = calculate_default_transform(
        src_crs, "EPSG:3857", shape[1], shape[0], *src_bounds
    )
    rgba = np.zeros((4, height, width), dtype=np.uint8)
    stack = np.concatenate([rgb, valid[None].astype(np.uint8) * 255])
    for band in range(4):
        reproject(
            stack[band],
            rgba[band],
            src_transform=src_transform,
            src_crs=src_crs,
            dst_transform=dst_transform,
            dst_crs="EPSG:3857",
            resampling=Resampling.nearest,
            src_nodata=None,
            dst_nodata=0,
        )
    west, north = dst_transform * (0, 0)
    east, south = dst_transform * (width, height)
    lon0, lat0, lon1, lat1 = transform_bounds("EPSG:3857", "EPSG:4326", west, south, east, north)
    return MapImage(_png_data_url(rgba), ((lat0, lon0), (lat1, lon1)), (width, height))


def _png_data_url(rgba: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(rgba, 0, -1), mode="RGBA").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
