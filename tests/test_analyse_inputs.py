"""What analyse refuses to read: mixed detections, broken sets, footprints that miss the region.

Detections are written by :func:`asmspotter.testing.detections.write_detection` (a seeded
mask on a 10 m UTM grid, with the provenance the detector writes); each case is one mistake
that used to give a silent wrong number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Transformer

from asmspotter import geoio, layout
from asmspotter.analyse import analyse_region, detector_layers
from asmspotter.catalogue import load_catalogue
from asmspotter.cli import main
from asmspotter.errors import DataError
from asmspotter.testing.detections import default_settings, write_detection

UTM = "EPSG:32719"
GRID = Affine(10, 0, 400_000, 0, -10, 8_601_000)  # 1 km x 1 km from (400000, 8600000)
TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def _mask(seed: int) -> np.ndarray:
    """A seeded mask: a block of mining, scattered mining pixels and an unobserved strip."""
    rng = np.random.default_rng(seed)
    mask = (rng.random((100, 100)) > 0.97).astype("uint8")
    mask[20:50, 20:60] = 1
    mask[90:, :] = layout.MASK_NODATA
    return mask


def _settings(**changes: Any) -> dict[str, Any]:
    s = default_settings()
    for key, value in changes.items():
        if key in ("tile_size", "tta"):
            s["inference"] = {**s["inference"], key: value}
        elif key == "weights_sha256":
            s["model"] = {**s["model"], key: value}
        else:
            s[key] = value
    return s


@pytest.fixture()
def catalogue(tmp_path: Path) -> Path:
    bbox = TO_LONLAT.transform_bounds(399_000, 8_599_000, 402_000, 8_602_000)
    path = tmp_path / "regions.yaml"
    path.write_text(
        "regions:\n  r:\n    name: R\n    country: Peru\n"
        f"    outline: {{bbox: [{', '.join(f'{v:.6f}' for v in bbox)}]}}\n"
        "    crs: EPSG:32719\n    periods: [2019, 2020, 2021]\n"
    )
    return path


def _detect(period: str, seed: int, **settings: Any) -> layout.DetectionFiles:
    return write_detection(
        "r", period, _mask(seed), crs=UTM, transform=GRID, settings=_settings(**settings)
    )


def _analyse_cli(
    catalogue: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    rc = main(["analyse", "r", "--catalogue", str(catalogue), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Warning:" not in err
    return rc, err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("asmspotter: error: ")
    return lines[0]


def test_detections_with_other_settings_are_not_combined(
    catalogue: Path, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _detect("2019", 1, threshold=0.2, tta="none")
    _detect("2020", 2)
    _detect("2021", 3)
    rc, err = _analyse_cli(catalogue, capsys)
    line = _one_line(err)
    assert rc == 2
    assert "the detections of r were made with different settings" in line
    card = default_settings()
    assert f"threshold 0.2 (2019) vs {card['threshold']:g} (2020, 2021)" in line
    assert f"tta none (2019) vs {card['inference']['tta']} (2020, 2021)" in line
    command = (
        f"`asmspotter detect r -p 2019 --threshold {card['threshold']:g} "
        f"--tta {card['inference']['tta']}`"
    )
    assert line.endswith(command)
    assert not layout.analysis_files("r").folder.exists()
    # redone alike, the same detections are analysed
    _detect("2019", 1)
    rc, err = _analyse_cli(catalogue, capsys)
    assert rc == 0, err


def test_detections_of_older_weights_are_redone_with_the_current_ones(
    catalogue: Path, workdirs: dict[str, Path]
) -> None:
    _detect("2019", 1)
    _detect("2020", 2, weights_sha256="0" * 64)
    _detect("2021", 3, weights_sha256="0" * 64)
    region = load_catalogue(catalogue)["r"]
    with pytest.raises(DataError) as err:
        analyse_region(region)
    message = str(err.value)
    assert "weights_sha256 " in message and "000000000000 (2020, 2021)" in message
    # the current card's weights win even against the majority
    assert message.endswith("`asmspotter detect r -p 2020 -p 2021`")


def test_analysis_records_each_periods_model_and_threshold(
    catalogue: Path, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for period, seed in (("2019", 1), ("2020", 2), ("2021", 3)):
        _detect(period, seed, threshold=0.35)
    rc, err = _analyse_cli(catalogue, capsys)
    assert rc == 0, err
    record = json.loads(layout.analysis_files("r").json.read_text())
    card = default_settings()
    for entry in record["inputs"]["footprints"]:
        detection = entry["detection"]
        assert detection["model"] == card["model"]["name"]
        assert detection["weights_sha256"] == card["model"]["weights_sha256"]
        assert detection["threshold"] == 0.35
        assert detection["tta"] == card["inference"]["tta"]


@pytest.mark.parametrize("left", [("mask",), ("mask", "gpkg"), ("probability", "gpkg")])
def test_a_set_without_its_provenance_is_refused(
    left: tuple[str, ...], workdirs: dict[str, Path]
) -> None:
    _detect("2019", 1)
    files = _detect("2020", 2)
    for path in files.files:
        if path.name not in {getattr(files, name).name for name in left}:
            path.unlink()
    with pytest.raises(DataError) as err:
        detector_layers("r", load_catalogue_periods())
    message = str(err.value)
    assert "the detection of r 2020" in message and "is incomplete" in message
    assert message.endswith("redo it with `asmspotter detect r -p 2020`")


def load_catalogue_periods() -> tuple[Any, ...]:
    from asmspotter.periods import Period

    return tuple(Period.parse(y) for y in ("2019", "2020", "2021"))


def test_files_of_two_runs_are_never_combined(workdirs: dict[str, Path], tmp_path: Path) -> None:
    """A kill between the moves of a detection's files leaves new polygons by the old record."""
    files = _detect("2020", 2)
    other = write_detection("r", "2020", _mask(7), crs=UTM, transform=GRID, base=tmp_path)
    for name in ("gpkg", "mask"):
        getattr(other, name).replace(getattr(files, name))
        with pytest.raises(
            DataError, match=r"the files of the detection of r 2020 are not of one run"
        ):
            detector_layers("r", load_catalogue_periods()[1:2])
        _detect("2020", 2)
    # a recorded checksum catches a changed file even when its figures agree
    prov = geoio.read_json(files.provenance)
    prov["files"] = {files.probability.name: geoio.file_digest(files.probability)}
    geoio.write_json(files.provenance, prov)
    detector_layers("r", load_catalogue_periods()[1:2])
    files.probability.write_bytes(files.probability.read_bytes()[:-10])
    with pytest.raises(DataError, match="mining_probability.tif: it holds"):
        detector_layers("r", load_catalogue_periods()[1:2])


def test_a_detection_of_a_composite_rebuilt_since_is_refused(workdirs: dict[str, Path]) -> None:
    comp = layout.composite_files("r", "2020")
    comp.folder.mkdir(parents=True)
    comp.tif.write_bytes(b"composite made after the detection")
    geoio.write_json(comp.provenance, {"checksum": geoio.file_digest(comp.tif)})
    old = {"composite": str(comp.tif), "bytes": 10, "sha256": "f" * 64}
    write_detection("r", "2020", _mask(2), crs=UTM, transform=GRID, composite=old)
    with pytest.raises(DataError) as err:
        detector_layers("r", load_catalogue_periods()[1:2])
    assert "was made from another composite than the one now in" in str(err.value)
    assert str(err.value).endswith("redo it with `asmspotter detect r -p 2020`")
    same = {"composite": str(comp.tif), **geoio.file_digest(comp.tif)}
    write_detection("r", "2020", _mask(2), crs=UTM, transform=GRID, composite=same)
    assert len(detector_layers("r", load_catalogue_periods()[1:2]).layers) == 1
    size_only = {"composite": str(comp.tif), "bytes": 3}  # older records: the size
    write_detection("r", "2020", _mask(2), crs=UTM, transform=GRID, composite=size_only)
    with pytest.raises(DataError, match="another composite"):
        detector_layers("r", load_catalogue_periods()[1:2])


# --------------------------------------------------------------------------------------
# footprint files
# --------------------------------------------------------------------------------------


def _footprints(path: Path, geoms: list[Any], crs: str | None, driver: str = "GeoJSON") -> Path:
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"year": [2019] * len(geoms)}, geometry=geoms, crs=crs)
    frame.to_file(path, driver=driver)
    return path


def _inside_lonlat() -> shapely.Polygon:
    x0, y0, x1, y1 = TO_LONLAT.transform_bounds(400_100, 8_600_100, 400_400, 8_600_400)
    return shapely.box(x0, y0, x1, y1)


@pytest.mark.parametrize(
    ("geoms", "crs", "message"),
    [
        ([shapely.box(10, 10, 11, 11)], "EPSG:4326", "none of the 1 footprint features of"),
        (
            [shapely.transform(_inside_lonlat(), lambda xy: xy[:, ::-1])],
            "EPSG:4326",
            "their longitude and latitude look swapped",
        ),
        (
            [shapely.box(400_100, 8_600_100, 400_400, 8_600_400)],  # metres, read as lon/lat
            None,
            "cannot be longitude/latitude, but the file declares no other CRS",
        ),
        (
            [shapely.Point(-69.9, -12.7), _inside_lonlat()],
            "EPSG:4326",
            "1 of 2 features are Point, not polygons",
        ),
    ],
)
def test_footprint_mistakes_are_one_line_errors(
    geoms: list[Any],
    crs: str | None,
    message: str,
    catalogue: Path,
    tmp_path: Path,
    workdirs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _footprints(tmp_path / "fp.geojson", geoms, crs)
    rc, err = _analyse_cli(catalogue, capsys, "--footprints", str(path), "--no-write")
    assert rc == 2
    assert message in _one_line(err)


def test_allow_empty_analyses_footprints_outside_the_region_as_zero(
    catalogue: Path, tmp_path: Path, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    far = _footprints(tmp_path / "far.geojson", [shapely.box(10, 10, 11, 11)], "EPSG:4326")
    near = _footprints(tmp_path / "near.geojson", [_inside_lonlat()], "EPSG:4326")
    argv = ["--footprints", str(far), "--json", "--no-write"]
    rc = main(["analyse", "r", "--catalogue", str(catalogue), *argv, "--allow-empty"])
    out = capsys.readouterr().out
    assert rc == 0
    assert json.loads(out)["periods"][0]["cumulative_ha"] == 0.0
    rc = main(["analyse", "r", "--catalogue", str(catalogue), "--footprints", str(near), "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["periods"][0]["cumulative_ha"] == pytest.approx(
        9.0, rel=0.01
    )
