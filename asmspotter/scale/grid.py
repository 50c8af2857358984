"""A region's tile grid: square cores and the halo the detector needs, as frozen dataclasses.

A tiled run cuts the region's pixel grid (the grid of its single-process composite) into
*cores* of ``tile_size`` pixels a side, row-major (the last row and column of tiles take what
is left). Each tile's composite covers its core. Its detection reads a *window*, the core and
a halo taken from the neighbours' composites, runs the detector's own blended tiling over
it (``detector_tile`` px tiles stepping by ``detector_tile - detector_overlap``) and keeps the
core.

The halo makes the tiled probabilities the single-process ones: cores start on multiples of
the detector's stride, and windows reach one stride before the core and one overlap after it
(or to the raster's end; the detector cuts its last tile there, see
:func:`asmspotter.detect.tiling.tile_spans`). The window's
detector tiles are then exactly the raster's detector tiles that touch the core, with the
same blending weights; no other tile reaches a core pixel. Memory per task is set by the
window, so by ``tile_size``, never by the region.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from asmspotter.errors import InputError

#: Aim of the default core size in pixels (rounded to the detector's stride).
DEFAULT_TILE_PX = 4096


@dataclass(frozen=True)
class PixelBox:
    """A box of pixels: rows ``row0..row1`` and columns ``col0..col1`` (ends exclusive)."""

    row0: int
    row1: int
    col0: int
    col1: int

    def __post_init__(self) -> None:
        assert 0 <= self.row0 < self.row1 and 0 <= self.col0 < self.col1, self

    @property
    def height(self) -> int:
        """Rows."""
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        """Columns."""
        return self.col1 - self.col0

    @property
    def pixels(self) -> int:
        """Number of pixels."""
        return self.height * self.width

    def intersection(self, other: PixelBox) -> PixelBox | None:
        """Return the pixels both boxes hold (None when they share none)."""
        r0, r1 = max(self.row0, other.row0), min(self.row1, other.row1)
        c0, c1 = max(self.col0, other.col0), min(self.col1, other.col1)
        return PixelBox(r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None

    def within(self, outer: PixelBox) -> PixelBox:
        """Return this box in the coordinates of ``outer`` (which must hold it)."""
        assert outer.intersection(self) == self, (self, outer)
        return PixelBox(
            self.row0 - outer.row0,
            self.row1 - outer.row0,
            self.col0 - outer.col0,
            self.col1 - outer.col0,
        )

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices of an array of the whole grid."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    def window(self) -> Any:
        """Return the box as a rasterio ``Window``."""
        from rasterio.windows import Window

        return Window(self.col0, self.row0, self.width, self.height)

    def as_list(self) -> list[int]:
        """``[row0, row1, col0, col1]`` (for records)."""
        return [self.row0, self.row1, self.col0, self.col1]


@dataclass(frozen=True)
class RasterGrid:
    """A georeferenced pixel grid: CRS, affine transform and size.

    Attributes:
        crs: the CRS as WKT.
        transform: the affine transform's six numbers (a, b, c, d, e, f).
        height: rows.
        width: columns.

    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int

    @classmethod
    def of(cls, crs: Any, transform: Any, height: int, width: int) -> RasterGrid:
        """Build from anything rasterio accepts as a CRS and an ``Affine``."""
        from rasterio.crs import CRS

        six = tuple(float(v) for v in tuple(transform)[:6])
        return cls(CRS.from_user_input(crs).to_wkt(), six, int(height), int(width))  # type: ignore[arg-type]

    @property
    def affine(self) -> Any:
        """The transform as an ``Affine``."""
        from affine import Affine

        return Affine(*self.transform)

    @property
    def box(self) -> PixelBox:
        """The whole grid."""
        return PixelBox(0, self.height, 0, self.width)

    def box_transform(self, box: PixelBox) -> Any:
        """Return the ``Affine`` transform of a box of the grid."""
        from rasterio.windows import transform

        return transform(box.window(), self.affine)

    def box_bounds(self, box: PixelBox) -> tuple[float, float, float, float]:
        """Return (min x, min y, max x, max y) of a box in the grid's CRS."""
        from rasterio.windows import bounds

        left, bottom, right, top = bounds(box.window(), self.affine)
        return (min(left, right), min(bottom, top), max(left, right), max(bottom, top))

    @property
    def pixel_area_m2(self) -> float:
        """Area of one pixel in square map units."""
        a, b, _, d, e, _ = self.transform
        return abs(a * e - b * d)


@dataclass(frozen=True)
class Tile:
    """One tile of a grid.

    Attributes:
        row: tile row in the grid.
        col: tile column in the grid.
        core: the pixels the tile's outputs cover (cores tile the raster without overlap).
        window: the pixels its detection reads (the core and its halo).
        inner: whether each side of the core (top, bottom, left, right) borders another
            tile's core rather than the raster's edge: polygons touching those sides are
            merged with the neighbours'.

    """

    row: int
    col: int
    core: PixelBox
    window: PixelBox
    inner: tuple[bool, bool, bool, bool]

    @property
    def id(self) -> str:
        """The tile's name, e.g. ``r002_c013`` (its folder below the grid's)."""
        return f"r{self.row:03d}_c{self.col:03d}"


@dataclass(frozen=True)
class TileGrid:
    """A region's raster cut into tiles for a detector's tiling.

    Attributes:
        raster: the region's pixel grid.
        tile_size: side of the cores in pixels (a multiple of the detector's stride).
        detector_tile: the detector's tile side.
        detector_overlap: the detector's tile overlap.

    """

    raster: RasterGrid
    tile_size: int
    detector_tile: int
    detector_overlap: int

    def __post_init__(self) -> None:
        if self.detector_tile <= 2 * self.detector_overlap or self.detector_overlap < 0:
            raise InputError(
                f"detector tile {self.detector_tile} must exceed twice its overlap "
                f"{self.detector_overlap}"
            )
        if self.tile_size < self.stride or self.tile_size % self.stride:
            raise InputError(
                f"tile size {self.tile_size} px must be a multiple of the detector's stride "
                f"{self.stride} px (tile {self.detector_tile} - overlap {self.detector_overlap})"
            )

    @property
    def stride(self) -> int:
        """The detector's tile stride."""
        return self.detector_tile - self.detector_overlap

    @property
    def name(self) -> str:
        """The grid's folder name: its core size (``2240px``)."""
        return f"{self.tile_size}px"

    @cached_property
    def tiles(self) -> tuple[Tile, ...]:
        """Every tile, row-major."""
        rows = _spans(self.raster.height, self.tile_size, self.detector_tile, self.stride)
        cols = _spans(self.raster.width, self.tile_size, self.detector_tile, self.stride)
        out = []
        for i, (r0, r1, wr0, wr1) in enumerate(rows):
            for j, (c0, c1, wc0, wc1) in enumerate(cols):
                inner = (i > 0, i < len(rows) - 1, j > 0, j < len(cols) - 1)
                out.append(
                    Tile(i, j, PixelBox(r0, r1, c0, c1), PixelBox(wr0, wr1, wc0, wc1), inner)
                )
        return tuple(out)

    @property
    def shape(self) -> tuple[int, int]:
        """(tile rows, tile columns)."""
        last = self.tiles[-1]
        return last.row + 1, last.col + 1

    def neighbours(self, tile: Tile) -> tuple[Tile, ...]:
        """Return the tiles whose cores hold pixels of ``tile``'s window (itself included)."""
        return tuple(t for t in self.tiles if t.core.intersection(tile.window) is not None)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def __len__(self) -> int:
        return len(self.tiles)


def _spans(length: int, size: int, dtile: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Cores and windows along one axis: (core start, core end, window start, window end)."""
    overlap = dtile - stride
    if length <= dtile or length <= size:
        return [(0, length, 0, length)]
    starts = list(range(0, length, size))
    if length - starts[-1] <= overlap:  # too short to hold a detector tile of its own
        starts.pop()
    ends = [*starts[1:], length]
    return [
        (c0, c1, max(0, c0 - stride), min(c1 + overlap, length))
        for c0, c1 in zip(starts, ends, strict=True)
    ]


def default_tile_size(detector_tile: int, detector_overlap: int) -> int:
    """Return the core size near :data:`DEFAULT_TILE_PX` that fits a detector's stride."""
    stride = detector_tile - detector_overlap
    return stride * max(1, round(DEFAULT_TILE_PX / stride))
