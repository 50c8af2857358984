"""asmspotter.scale.mosaic: the mosaic COG of tile COGs is the COG of the whole raster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asmspotter import geoio, layout
from asmspotter.scale.grid import RasterGrid, TileGrid
from asmspotter.scale.mosaic import mosaic_cog, overview_factors, overview_size, write_vrt

#: A raster whose tiles (576 px cores) have fewer overview levels than it has, and whose
#: sides are not multiples of the tile size nor of the overview factors.
HEIGHT, WIDTH, TILE = 2300, 2113, 576


def _smooth(rng: np.random.Generator, bands: int) -> np.ndarray:
    """Seeded smooth fields (so that overviews of neighbouring pixels mean something)."""
    coarse = rng.random((bands, HEIGHT // 50 + 2, WIDTH // 50 + 2))
    field = coarse.repeat(50, axis=1).repeat(50, axis=2)[:, :HEIGHT, :WIDTH]
    return field + rng.normal(0, 0.02, field.shape)


def _write_tiles(folder: Path, data: np.ndarray, nodata: float) -> tuple[RasterGrid, list]:
    raster = RasterGrid.of("EPSG:32719", (10, 0, 399690, 0, -10, 8565910), HEIGHT, WIDTH)
    grid = TileGrid(raster, TILE, 32, 8)
    sources = []
    for t in grid:
        path = folder / t.id / "tile.tif"
        path.parent.mkdir(parents=True)
        geoio.write_cog(
            path,
            data[(slice(None), *t.core.slices)],
            crs=raster.crs,
            transform=raster.box_transform(t.core),
            nodata=nodata,
            band_names=[f"b{i}" for i in range(len(data))],
            tags={"KIND": "test"},
        )
        sources.append((path, t.core))
    return raster, sources


def _read_levels(path: Path) -> tuple[list[int], list[np.ndarray]]:
    import rasterio

    with rasterio.open(path) as src:
        factors = src.overviews(1)
        levels = [src.read()]
    for i in range(len(factors)):
        with rasterio.open(path, overview_level=i) as src:
            levels.append(src.read())
    return factors, levels


@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_mosaic_cog_is_the_whole_rasters_cog(tmp_path: Path, kind: str) -> None:
    import rasterio

    rng = np.random.default_rng(3)
    field = _smooth(rng, 3 if kind == "uint8" else 1)
    if kind == "uint8":
        data, nodata, scale = np.clip(field * 200 + 20, 1, 255).astype(np.uint8), 0.0, 255.0
        data[:, :40, :] = 0  # a strip without data, as at a region's edge
    else:
        data, nodata, scale = field.astype(np.float32), float("nan"), 1.0
        data[:, :, :40] = np.nan
    raster, sources = _write_tiles(tmp_path / "tiles", data, nodata)
    vrt = write_vrt(tmp_path / "tiles" / "mosaic.vrt", raster, sources)
    tiled = mosaic_cog(vrt, tmp_path / "tiled.tif")
    whole = geoio.write_cog(
        tmp_path / "whole.tif",
        data,
        crs=raster.crs,
        transform=raster.affine,
        nodata=nodata,
        band_names=[f"b{i}" for i in range(len(data))],
        tags={"KIND": "test"},
    )
    factors = overview_factors(WIDTH, HEIGHT)
    assert factors == [2, 4, 8, 16]  # the tiles have [2]: the coarser levels are resampled
    for factor in factors:
        assert layout.MosaicFiles.overview(vrt, factor).is_file()
    got_f, got = _read_levels(tiled)
    want_f, want = _read_levels(whole)
    assert got_f == want_f == factors
    # full resolution: the very pixels; overviews: the same sizes, values close
    assert np.array_equal(got[0], want[0], equal_nan=True)
    for factor, a, b in zip(factors, got[1:], want[1:], strict=True):
        assert a.shape[1:] == b.shape[1:] == overview_size(WIDTH, HEIGHT, factor)[::-1]
        diff = np.abs(a.astype(float) - b.astype(float))
        assert np.nanmean(diff) / scale < 0.02, (factor, np.nanmean(diff))
        # no-data stays no-data well inside the strip without data
        edge = slice(0, 40 // factor - 2)
        if kind == "uint8":
            assert (a[:, edge, :] == 0).all()
        else:
            assert np.isnan(a[:, :, edge]).all()
    with rasterio.open(tiled) as t, rasterio.open(whole) as w:
        got_p, want_p = dict(t.profile), dict(w.profile)
        nodata = [got_p.pop("nodata"), want_p.pop("nodata")]
        assert got_p == want_p and np.array_equal(*nodata, equal_nan=True)
        assert t.descriptions == w.descriptions and t.tags() == w.tags()
