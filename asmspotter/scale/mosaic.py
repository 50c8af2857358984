"""Whole-region rasters from tile rasters: GDAL VRTs over the tiles, then a mosaic COG.

:func:`write_vrt` writes a virtual raster of the region's grid whose pixels come from the
tiles' files (their cores, which tile the grid without overlap), with one overview VRT for
each level the mosaic COG will hold. The overviews are read from the tiles' own overviews
(every tile file is a COG, with overviews made in its tile task, in parallel), and the levels
coarser than a tile's coarsest are resampled from that one. :func:`mosaic_cog` translates
the VRT into the COG a single-process run would have written: the same pixels, the same
overview levels, block by block with a bounded GDAL cache, so memory does not grow with the
region. It only copies: no overview is computed again from the full resolution, which was
the bulk of the work of a mosaic done in one task.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np

from asmspotter import geoio
from asmspotter.layout import MosaicFiles
from asmspotter.scale.grid import PixelBox, RasterGrid

#: GDAL block cache (MiB) while mosaicking.
GDAL_CACHE_MB = 128
#: How tiles are resampled into a mosaic's overviews when theirs do not line up (coarser
#: levels than a tile's coarsest; GDAL's rounding of sizes): as the COG driver resamples.
OVERVIEW_RESAMPLING = "cubic"

_GDAL_TYPES = {
    "uint8": "Byte",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


@dataclass(frozen=True)
class _Tile:
    """A tile file as a source of a mosaic: its box, block and overview factors."""

    file: Path
    box: PixelBox
    block: tuple[int, int]
    factors: tuple[int, ...]


@dataclass(frozen=True)
class _Bands:
    """The bands every source shares: data types, no-data, descriptions, dataset tags."""

    types: tuple[str, ...]
    nodata: float | None
    descriptions: tuple[str | None, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class _Level:
    """One resolution of a mosaic: 1/``factor`` of the full one, on ``grid``."""

    factor: int
    grid: RasterGrid
    full: RasterGrid

    @property
    def scale(self) -> tuple[float, float]:
        """The level's pixels per full-resolution pixel, along x and y."""
        return self.grid.width / self.full.width, self.grid.height / self.full.height


def overview_factors(width: int, height: int, block: int = geoio.COG_BLOCK) -> list[int]:
    """Return the overview factors GDAL's COG driver gives a raster: halving until a block."""
    out, factor = [], 1
    while max(overview_size(width, height, factor)) > block:
        factor *= 2
        out.append(factor)
    return out


def overview_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """Return GDAL's size of a raster's overview at 1/``factor``: rounded down (at least 1)."""
    return max(1, width // factor), max(1, height // factor)


def write_vrt(path: Path, raster: RasterGrid, sources: Sequence[tuple[Path, PixelBox]]) -> Path:
    """Write a VRT of ``raster`` whose pixels come from tile files covering its boxes.

    Band count, data types, no-data value, band descriptions and dataset tags are the first
    source's; every source must have the same bands. Sources are referenced relative to
    the VRT, so the folder can move as a whole. Each overview level of the COG that
    :func:`mosaic_cog` makes of it is a VRT of its own beside it
    (:meth:`~asmspotter.layout.MosaicFiles.overview`), read from the tiles' overviews.

    Args:
        path: the ``.vrt`` to write (atomically; its overview VRTs first).
        raster: the whole grid.
        sources: each tile's file and the box of the grid it covers.

    Returns:
        The VRT's path.

    """
    import rasterio

    assert sources, "a mosaic needs at least one tile"
    tiles = []
    for file, box in sources:
        with rasterio.open(file) as src:
            tiles.append(_Tile(file, box, src.block_shapes[0], tuple(src.overviews(1))))
            if not tiles[1:]:
                bands = _Bands(
                    tuple(_GDAL_TYPES[t] for t in src.dtypes),
                    src.nodata,
                    tuple(src.descriptions),
                    src.tags(),
                )
    levels = []
    for factor in overview_factors(raster.width, raster.height):
        level = MosaicFiles.overview(path, factor)
        _write(level, _Level(factor, _level_grid(raster, factor), raster), bands, tiles, [])
        levels.append(level)
    return _write(path, _Level(1, raster, raster), bands, tiles, levels)


def _level_grid(raster: RasterGrid, factor: int) -> RasterGrid:
    """Return the grid of an overview at 1/``factor`` (GDAL's size, the same extent)."""
    width, height = overview_size(raster.width, raster.height, factor)
    a, b, c, d, e, f = raster.transform
    sx, sy = raster.width / width, raster.height / height
    return RasterGrid(raster.crs, (a * sx, b, c, d, e * sy, f), height, width)


def _write(
    path: Path, level: _Level, bands: _Bands, tiles: Sequence[_Tile], overviews: Sequence[Path]
) -> Path:
    """Write the VRT of one ``level`` of the mosaic, naming its ``overviews``."""
    grid = level.grid
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = grid.crs
    a, b, c, d, e, f = grid.transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in (c, a, b, f, d, e))
    _metadata(root, bands.tags)
    for index, gdal_type in enumerate(bands.types, start=1):
        vb = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(index))
        nodata = bands.nodata
        if nodata is not None:
            ET.SubElement(vb, "NoDataValue").text = "nan" if np.isnan(nodata) else repr(nodata)
        if bands.descriptions[index - 1]:
            ET.SubElement(vb, "Description").text = bands.descriptions[index - 1]
        for tile in tiles:
            _source(vb, path.parent, tile, index, gdal_type, level)
        for overview in overviews:
            ov = ET.SubElement(vb, "Overview")
            ET.SubElement(ov, "SourceFilename", relativeToVRT="1").text = overview.name
            ET.SubElement(ov, "SourceBand").text = str(index)
    with geoio.atomic_output(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="unicode")
    return path


def _metadata(parent: ET.Element, tags: dict[str, str]) -> None:
    if tags:
        md = ET.SubElement(parent, "Metadata")
        for key, value in tags.items():
            ET.SubElement(md, "MDI", key=key).text = value


def _source(
    band: ET.Element, folder: Path, tile: _Tile, index: int, gdal_type: str, level: _Level
) -> None:
    """Add a tile to a band of an overview ``level`` (1: the full resolution).

    The tile is read from its own overview of the level's factor when it has one, else from
    its coarsest finer one, resampled (as where GDAL's rounding of overview sizes makes the
    tile's overview pixels and the level's differ).
    """
    read = max(g for g in (1, *tile.factors) if g <= level.factor)
    box, sx, sy = tile.box, level.scale[0], level.scale[1]
    width, height = overview_size(box.width, box.height, read)
    dst = (box.col0 * sx, box.row0 * sy, box.width * sx, box.height * sy)
    src = ET.SubElement(band, "SimpleSource")
    if read < level.factor or dst[2:] != (width, height):
        src.set("resampling", OVERVIEW_RESAMPLING)
    name = ET.SubElement(src, "SourceFilename", relativeToVRT="1")
    name.text = Path(os.path.relpath(tile.file, folder)).as_posix()
    if read > 1:
        options = ET.SubElement(src, "OpenOptions")
        ET.SubElement(options, "OOI", key="OVERVIEW_LEVEL").text = str(tile.factors.index(read))
    ET.SubElement(src, "SourceBand").text = str(index)
    if read == 1:
        ET.SubElement(
            src,
            "SourceProperties",
            RasterXSize=str(width),
            RasterYSize=str(height),
            DataType=gdal_type,
            BlockXSize=str(tile.block[1]),
            BlockYSize=str(tile.block[0]),
        )
    ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(width), ySize=str(height))
    x, y, w, h = (_num(v) for v in dst)
    ET.SubElement(src, "DstRect", xOff=x, yOff=y, xSize=w, ySize=h)


def _num(value: float) -> str:
    """Return a pixel offset or size as VRT text: an integer when it is one."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def mosaic_cog(vrt: Path, cog: Path) -> Path:
    """Translate a VRT into a COG (atomically), with a bounded GDAL block cache.

    The COG's overviews are copied from the VRT's (:func:`write_vrt`).
    """
    import rasterio

    env: dict[str, Any] = {"GDAL_CACHEMAX": GDAL_CACHE_MB}
    with rasterio.Env(**env):
        return geoio.translate_to_cog(vrt, cog, blocksize=geoio.COG_BLOCK)
