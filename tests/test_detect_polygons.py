from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.transform import from_origin

from asmspotter.detect.polygons import mask_polygons
from asmspotter.geoio import write_cog


def test_corner_touching_pixels_give_valid_polygons(tmp_path: Path) -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[5:15, 5:15] = 1  # 1 ha block
    mask[15:25, 15:25] = 1  # touches the first only at a corner (8-connected)
    mask[30:32, 30:32] = 1  # 0.04 ha speck, below the minimum mapping unit
    path = write_cog(
        tmp_path / "m.tif",
        mask,
        crs="EPSG:32719",
        transform=from_origin(399690.0, 8565910.0, 10.0, 10.0),
        nodata=255,
    )
    polys = list(mask_polygons(path, min_area_ha=0.5).geometry)
    assert all(p.is_valid for p in polys)
    assert sorted(round(p.area) for p in polys) == [10_000, 10_000]
    assert len(mask_polygons(path, min_area_ha=0.0)) and len(mask_polygons(path)) == 3


def test_one_function_serves_the_detector_and_the_analysis(tmp_path: Path) -> None:
    import pytest

    from asmspotter.errors import DataError
    from asmspotter.layout import MASK_NODATA

    mask = np.zeros((40, 40), np.uint8)
    mask[5:15, 5:15] = 1
    mask[15:25, 15:25] = 1  # touches the first at a corner
    mask[3:30, 30:33] = 1  # a tall block cut by the borders of 7-row strips
    mask[35:40, 0:5] = MASK_NODATA  # unobserved
    tr = from_origin(399690.0, 8565910.0, 10.0, 10.0)
    path = write_cog(tmp_path / "m.tif", mask, crs="EPSG:32719", transform=tr, nodata=255)
    whole = mask_polygons(path, rows=None)
    strips = mask_polygons(path, rows=7)
    assert sorted(strips.area.round()) == sorted(whole.area.round()) == [8_100, 10_000, 10_000]
    assert strips.crs == whole.crs == "EPSG:32719"
    # 8-connected, the corner-touching blocks are one (self-touching) group until repaired
    joined = mask_polygons(path, repair=False)
    assert sorted(joined.area.round()) == [8_100, 20_000] and not joined.is_valid.all()
    # the analysis' setting: 4-connected groups, as found
    four = mask_polygons(path, connectivity=4, rows=None, repair=False)
    assert sorted(four.area.round()) == [8_100, 10_000, 10_000] and four.is_valid.all()
    assert mask_polygons(path, MASK_NODATA).area.sum() == pytest.approx(2_500)
    # pixels of another value that is the file's no-data are not polygons
    zero = write_cog(tmp_path / "z.tif", mask, crs="EPSG:32719", transform=tr, nodata=0)
    assert len(mask_polygons(zero, 0)) == 0 and len(mask_polygons(zero, 1)) == 3
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(DataError, match="mining mask: cannot read"):
        mask_polygons(bad)
