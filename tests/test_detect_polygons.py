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
