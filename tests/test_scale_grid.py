"""asmspotter.scale.grid: cores tile the raster, and windows give the single-process blending."""

from __future__ import annotations

import numpy as np
import pytest

from asmspotter.detect.tiling import blend_window, tile_spans
from asmspotter.errors import InputError
from asmspotter.scale.grid import RasterGrid, TileGrid, _spans, default_tile_size


def _weights(length: int, dtile: int, overlap: int) -> list[dict[int, float]]:
    """Per pixel: detector tile start -> normalised blending weight, as the detector blends."""
    out: list[dict[int, float]] = [{} for _ in range(length)]
    for start, end in tile_spans(length, dtile, overlap):
        ramp = blend_window(end - start, overlap if length > dtile else 0)
        for i in range(end - start):
            out[start + i][start] = float(ramp[i])
    return [{k: round(v / sum(w.values()), 6) for k, v in w.items()} for w in out]


def _cases(n: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(length, detector tile, overlap, core size): seeded, plus the shipped model's tiling."""
    rng = np.random.default_rng(seed)
    cases = [(654, 512, 64, 448), (667, 512, 64, 448), (3000, 512, 64, 896)]
    for _ in range(n):
        dtile = int(rng.choice([8, 16, 32]))
        overlap = int(rng.integers(0, dtile // 2))
        size = (dtile - overlap) * int(rng.integers(1, 6))
        cases.append((int(rng.integers(1, 10 * dtile)), dtile, overlap, size))
    return cases


def test_windows_blend_every_core_pixel_as_the_whole_raster_does() -> None:
    for length, dtile, overlap, size in _cases(300):
        stride = dtile - overlap
        whole = _weights(length, dtile, overlap)
        spans = _spans(length, size, dtile, stride)
        # the cores tile the axis without gaps or overlap
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        for c0, c1, w0, w1 in spans:
            assert w0 <= c0 < c1 <= w1
            local = _weights(w1 - w0, dtile, overlap)
            for y in range(c0, c1):
                shifted = {k + w0: v for k, v in local[y - w0].items()}
                assert shifted == whole[y], (length, dtile, overlap, size, (c0, c1, w0, w1), y)


def _grid(height: int, width: int, tile: int = 96) -> TileGrid:
    raster = RasterGrid.of("EPSG:32719", (10, 0, 399690, 0, -10, 8565910), height, width)
    return TileGrid(raster, tile, 32, 8)


def test_tiles_cover_the_raster_once_and_know_their_inner_sides() -> None:
    grid = _grid(250, 290)
    cover = np.zeros((250, 290), int)
    for t in grid:
        cover[t.core.slices] += 1
        assert t.window.intersection(t.core) == t.core
    assert (cover == 1).all()
    assert grid.shape == (3, 3)  # the last 2 columns join the last tile (too few for its own)
    assert grid.tiles[2].core.width == 290 - 192
    first, middle, last = grid.tiles[0], grid.tiles[4], grid.tiles[-1]
    assert first.id == "r000_c000" and first.inner == (False, True, False, True)
    assert middle.inner == (True, True, True, True)
    assert last.inner == (True, False, True, False)
    # a middle tile reads from its eight neighbours and itself
    assert len(grid.neighbours(middle)) == 9
    # the window reaches one stride before the core and one overlap after it
    assert middle.window.row0 == middle.core.row0 - 24
    assert middle.window.row1 == middle.core.row1 + 8


def test_grid_bounds_and_transforms_follow_the_raster() -> None:
    grid = _grid(250, 290)
    t = grid.tiles[4]
    x0, y0, x1, y1 = grid.raster.box_bounds(t.core)
    assert (x1 - x0, y1 - y0) == (10.0 * t.core.width, 10.0 * t.core.height)
    tr = grid.raster.box_transform(t.core)
    assert (tr.c, tr.f) == (399690 + 10 * t.core.col0, 8565910 - 10 * t.core.row0)
    assert grid.raster.pixel_area_m2 == 100.0


def test_tile_size_must_fit_the_detector_stride() -> None:
    with pytest.raises(InputError, match="multiple of the detector's stride 24"):
        _grid(100, 100, tile=100)
    assert default_tile_size(512, 64) == 448 * 9
    assert default_tile_size(32, 8) % 24 == 0


def test_small_rasters_are_one_tile() -> None:
    grid = _grid(30, 90)
    assert len(grid) == 1 and grid.tiles[0].window == grid.tiles[0].core == grid.raster.box


def test_windows_are_bounded_by_the_tile_size_whatever_the_region() -> None:
    """A task's memory is set by its window: never larger than the tile size allows."""
    dtile, overlap = 512, 64  # the shipped model's tiling
    stride = dtile - overlap
    for size in (1792, default_tile_size(dtile, overlap)):
        bound = size + stride + dtile  # a core (the last takes up to an overlap more) + halo
        # sides of 1/64 and 1/4 of Madre de Dios, the department, the Amazon basin's length
        for length in (3644, 14577, 29155, 2_915_000):
            spans = _spans(length, size, dtile, stride)
            windows = [w1 - w0 for _, _, w0, w1 in spans]
            cores = [c1 - c0 for c0, c1, _, _ in spans]
            assert max(windows) <= bound and max(cores) <= size + overlap
            if length > 3 * size:  # inner tiles: one stride before the core, one overlap after
                assert stride + size + overlap in windows
