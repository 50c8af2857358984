from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from asmspotter.errors import DataError
from asmspotter.geoio import atomic_output, provenance_base, read_json, write_cog, write_json


def test_write_cog_round_trips_values_names_and_tags(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((3, 300, 257), dtype=np.float32)
    data[:, :5, :5] = np.nan
    transform = from_origin(399690.0, 8565910.0, 10.0, 10.0)
    path = write_cog(
        tmp_path / "c.tif",
        data,
        crs="EPSG:32719",
        transform=transform,
        nodata=float("nan"),
        band_names=["red", "green", "blue"],
        tags={"ASMSPOTTER_RADIOMETRY": "reflectance"},
    )
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32719
        assert src.transform == transform
        assert src.descriptions == ("red", "green", "blue")
        assert src.tags()["ASMSPOTTER_RADIOMETRY"] == "reflectance"
        assert src.block_shapes[0] == (256, 256)  # cloud-optimised: tiled ...
        assert src.overviews(1)  # ... with overviews
        np.testing.assert_array_equal(src.read(), data)
    assert [p.name for p in tmp_path.iterdir()] == ["c.tif"]


def test_atomic_output_leaves_nothing_on_error(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_output_keeps_old_file_until_success(tmp_path: Path) -> None:
    final = write_json(tmp_path / "p.json", {"a": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(final) as tmp:
            tmp.write_text("{")
            raise KeyboardInterrupt
    assert read_json(final) == {"a": 1}


def test_write_cog_rejects_bad_shapes_without_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 band names for 3 bands"):
        write_cog(
            tmp_path / "x.tif",
            np.zeros((3, 4, 4), np.uint8),
            crs="EPSG:32719",
            transform=from_origin(0, 0, 10, 10),
            band_names=["a", "b"],
        )
    assert list(tmp_path.iterdir()) == []


def test_read_json_errors_are_user_facing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_provenance_names_software_and_version() -> None:
    prov = provenance_base()
    assert prov["software"] == "asmspotter" and prov["version"]
