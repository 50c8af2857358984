"""Whole-region rasters from tile rasters: a GDAL VRT over the tiles, then a mosaic COG.

:func:`write_vrt` writes a virtual raster of the region's grid whose pixels come from the
tiles' files (their cores, which tile the grid without overlap); :func:`mosaic_cog`
translates it into the COG a single-process run would have written, block by block with a
bounded GDAL cache, so memory does not grow with the region.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np

from asmspotter import geoio
from asmspotter.scale.grid import PixelBox, RasterGrid

#: GDAL block cache (MiB) while mosaicking.
GDAL_CACHE_MB = 128

_GDAL_TYPES = {
    "uint8": "Byte",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def write_vrt(path: Path, raster: RasterGrid, sources: Sequence[tuple[Path, PixelBox]]) -> Path:
    """Write a VRT of ``raster`` whose pixels come from tile files covering its boxes.

    Band count, data types, no-data value, band descriptions and dataset tags are the first
    source's; every source must have the same bands. Sources are referenced relative to
    the VRT, so the folder can move as a whole.

    Args:
        path: the ``.vrt`` to write (atomically).
        raster: the whole grid.
        sources: each tile's file and the box of the grid it covers.

    Returns:
        The VRT's path.

    """
    import rasterio

    assert sources, "a mosaic needs at least one tile"
    with rasterio.open(sources[0][0]) as first:
        count, dtypes, nodata = first.count, first.dtypes, first.nodata
        descriptions, tags = first.descriptions, first.tags()
        block = first.block_shapes[0]
    root = ET.Element("VRTDataset", rasterXSize=str(raster.width), rasterYSize=str(raster.height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = raster.crs
    a, b, c, d, e, f = raster.transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in (c, a, b, f, d, e))
    _metadata(root, tags)
    for band in range(1, count + 1):
        gdal_type = _GDAL_TYPES[dtypes[band - 1]]
        vb = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(band))
        if nodata is not None:
            ET.SubElement(vb, "NoDataValue").text = "nan" if np.isnan(nodata) else repr(nodata)
        if descriptions[band - 1]:
            ET.SubElement(vb, "Description").text = descriptions[band - 1]
        for file, box in sources:
            _source(vb, path.parent, file, box, band, gdal_type, block)
    with geoio.atomic_output(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="unicode")
    return path


def _metadata(parent: ET.Element, tags: dict[str, str]) -> None:
    if tags:
        md = ET.SubElement(parent, "Metadata")
        for key, value in tags.items():
            ET.SubElement(md, "MDI", key=key).text = value


def _source(
    band: ET.Element,
    folder: Path,
    file: Path,
    box: PixelBox,
    index: int,
    gdal_type: str,
    block: tuple[int, int],
) -> None:
    src = ET.SubElement(band, "SimpleSource")
    name = ET.SubElement(src, "SourceFilename", relativeToVRT="1")
    name.text = Path(os.path.relpath(file, folder)).as_posix()
    ET.SubElement(src, "SourceBand").text = str(index)
    ET.SubElement(
        src,
        "SourceProperties",
        RasterXSize=str(box.width),
        RasterYSize=str(box.height),
        DataType=gdal_type,
        BlockXSize=str(block[1]),
        BlockYSize=str(block[0]),
    )
    w, h = str(box.width), str(box.height)
    ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=w, ySize=h)
    ET.SubElement(src, "DstRect", xOff=str(box.col0), yOff=str(box.row0), xSize=w, ySize=h)


def mosaic_cog(vrt: Path, cog: Path) -> Path:
    """Translate a VRT into a COG (atomically), with a bounded GDAL block cache."""
    import rasterio

    env: dict[str, Any] = {"GDAL_CACHEMAX": GDAL_CACHE_MB}
    with rasterio.Env(**env):
        return geoio.translate_to_cog(vrt, cog)
