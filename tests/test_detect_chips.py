"""Tests of asmspotter.detect.chips: gallery parsing, labels, sample sets and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asmspotter.bands import L2A_BANDS, TRUE_COLOUR
from asmspotter.detect.chips import (
    label_from_name,
    list_galleries,
    read_gallery,
    reflectance_max,
    sample_set_of,
    split_galleries,
    stack_galleries,
)
from asmspotter.detect.synthetic import (
    make_gallery,
    make_multiband_gallery,
    multiband_chip,
)
from asmspotter.errors import DataError, InputError


def test_labels_from_names() -> None:
    assert label_from_name("v3.3_2023_positives_S2L1C_clear0.75_2023.png") == 1
    assert label_from_name("riverbank_negatives_v2025-08_S2L1C_clear0.05.png") == 0
    assert label_from_name("BD_MineriaAurifera_Peru-curated2025-09_S2L1C_clear0.75.png") == 1
    assert label_from_name("MinesPos2018-2020Sentinel_points_S2L1C_clear0.75.png") == 1
    with pytest.raises(InputError, match="positives"):
        label_from_name("something.png")


def test_sample_set_joins_clear_thresholds() -> None:
    a = sample_set_of("x_negatives_S2L1C_clear0.05_2019-01-01_2020-01-01.png")
    b = sample_set_of("x_negatives_S2L1C_clear0.75_2019-01-01_2020-01-01.png")
    assert a == b == "x_negatives_S2L1C_2019-01-01_2020-01-01"


def test_gallery_skips_black_cells(tmp_path: Path) -> None:
    p = make_gallery(tmp_path / "a_positives_S2L1C_clear0.75.png", [True, False, True], cols=2)
    g = read_gallery(p)
    assert g.label == 1
    assert g.cell_size == 48
    assert g.chips.shape == (3, 48, 48, 3)
    assert g.chips.dtype == np.uint8


def test_32px_cells_are_resampled(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = np.zeros((96, 96, 3), np.uint8)  # 3 x 3 cells of 32 px, 7 filled
    for i in range(7):
        r, c = divmod(i, 3)
        img[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32] = rng.integers(20, 240, 3)
    p = tmp_path / "b_negatives_rgb_preview.png"
    Image.fromarray(img).save(p)
    g = read_gallery(p)
    assert g.cell_size == 32
    assert g.chips.shape == (7, 48, 48, 3)


def test_bad_galleries(tmp_path: Path) -> None:
    bad = tmp_path / "c_negatives.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable PNG"):
        read_gallery(bad)
    odd = tmp_path / "d_negatives.png"
    Image.fromarray(np.ones((50, 50, 3), np.uint8)).save(odd)
    with pytest.raises(DataError, match="grid"):
        read_gallery(odd)
    with pytest.raises(InputError):
        list_galleries(tmp_path / "nowhere")


def test_split_keeps_sample_sets_together(tmp_path: Path) -> None:
    names = [
        "s1_negatives_S2L1C_clear0.05_2019.png",
        "s1_negatives_S2L1C_clear0.75_2019.png",
        "s2_positives_S2L1C_clear0.75_2019.png",
        "s3_negatives_S2L1C_clear0.05_2019.png",
        "s3_negatives_S2L1C_clear0.75_2019.png",
        "s4_positives_S2L1C_clear0.75_2019.png",
    ]
    gs = [read_gallery(make_gallery(tmp_path / n, [True] * 2, seed=i)) for i, n in enumerate(names)]
    split = split_galleries(gs, test_sets=["s3_neg"], val_sets=["s1_neg", "s4_pos"])
    assert {g.name for g in split.test} == set(names[3:5])
    assert {g.name for g in split.val} == {names[0], names[1], names[5]}
    assert {g.name for g in split.train} == {names[2]}
    arr = stack_galleries(split.val)
    assert len(arr) == 6 and arr.n_pos == 2 and arr.n_neg == 4


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_geotiff_gallery_holds_reflectance_of_its_bands(tmp_path: Path, dtype: str) -> None:
    kinds = ["mining", "forest", "lookalike", "mining", "forest"]
    p = make_multiband_gallery(
        tmp_path / f"x_positives_clear0.75_{dtype}.tif", kinds, cols=3, seed=4, dtype=dtype
    )
    g = read_gallery(p)
    assert (g.label, g.bands, g.cell_size) == (1, L2A_BANDS, 48)
    assert g.chips.shape == (5, 48, 48, 10) and g.chips.dtype == np.float32  # one empty cell
    assert reflectance_max(g.chips) == 1.0
    rng = np.random.default_rng(4)
    expected = np.stack([multiband_chip(k, rng) for k in kinds])
    # uint16 galleries store reflectance x 10000: rounding costs at most 0.5e-4
    np.testing.assert_allclose(g.chips, expected, atol=6e-5 if dtype == "uint16" else 0)
    assert g.sample_set == f"x_positives_{dtype}"
    assert list_galleries(tmp_path) == [p]


def test_geotiff_chip_no_data_becomes_zero_and_empty_cells_are_skipped(tmp_path: Path) -> None:
    import rasterio

    p = make_multiband_gallery(tmp_path / "y_negatives.tif", ["forest", "forest"], cols=2)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(p, "r+") as dst:
        data = dst.read()
        data[:, 0, 0] = np.nan  # a no-data pixel inside the first chip
        data[:, 48:, :] = np.nan  # second row: already empty
        dst.write(data)
    g = read_gallery(p)
    assert len(g.chips) == 2
    assert (g.chips[0, 0, 0] == 0).all() and (g.chips[0, 1, 1] > 0).all()


def test_geotiff_gallery_errors(tmp_path: Path) -> None:
    import rasterio

    good = make_multiband_gallery(tmp_path / "g_negatives.tif", ["forest"], bands=("red", "nir"))
    cases = {
        "unnamed": ("must name each band once", None),
        "int8": ("float reflectance or uint16", "int8"),
        "odd": ("not a grid of 48-px cells", None),
    }
    for name, (message, dtype) in cases.items():
        p = tmp_path / f"{name}_negatives.tif"
        width = 50 if name == "odd" else 96
        profile = {"driver": "GTiff", "width": width, "height": 96, "count": 2}
        profile["dtype"] = dtype or "float32"
        with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
            with rasterio.open(p, "w", **profile) as dst:
                dst.write(np.ones((2, 96, width), profile["dtype"]))
                if name != "unnamed":
                    dst.descriptions = ("red", "nir")
        with pytest.raises(DataError, match=message):
            read_gallery(p)
        p.unlink()
    corrupt = tmp_path / "c_negatives.tif"
    corrupt.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="not a readable GeoTIFF gallery"):
        read_gallery(corrupt)
    with pytest.raises(DataError, match="gallery not found"):
        read_gallery(tmp_path / "gone_negatives.tif")


def test_stacking_needs_one_kind_and_selects_bands(tmp_path: Path) -> None:
    tif = read_gallery(make_multiband_gallery(tmp_path / "m_positives.tif", ["mining"] * 3))
    png = read_gallery(make_gallery(tmp_path / "p_negatives.png", [False] * 2))
    assert png.bands == TRUE_COLOUR
    mixed = r"m_positives.tif \(blue.*float32\) and p_negatives.png \(red, green, blue, uint8\)"
    with pytest.raises(DataError, match=mixed):
        stack_galleries([tif, png])
    arrays = stack_galleries([tif])
    rgb = arrays.select(("red", "green", "blue"))
    assert rgb.bands == TRUE_COLOUR and rgb.images.shape == (3, 48, 48, 3)
    np.testing.assert_array_equal(rgb.images[..., 0], tif.chips[..., L2A_BANDS.index("red")])
    assert arrays.select(L2A_BANDS) is arrays
    with pytest.raises(InputError, match="missing: coastal"):
        arrays.select(("coastal", "red"))
    empty = stack_galleries([], like=arrays)
    assert empty.bands == L2A_BANDS and empty.images.dtype == np.float32 and len(empty) == 0


def test_non_mining_names_are_not_mining() -> None:
    for name in (
        "riverbank_non-mining_S2L1C_clear0.75.png",
        "Sites_NonMining_2023.png",
        "x_not_mining_chips.png",
        "dredges-nonmining.png",
    ):
        assert label_from_name(name) == 0, name
    assert label_from_name("mining_sites_2023.png") == 1
    with pytest.raises(InputError, match="cannot tell the label of a_non-mining_positives"):
        label_from_name("a_non-mining_positives.png")  # says both


def _png(path: Path, img: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(img, mode=mode).save(path) if mode else Image.fromarray(img).save(path)
    return path


def test_png_galleries_that_are_not_8_bit_rgb_are_refused_naming_the_file(tmp_path: Path) -> None:
    rgb = make_gallery(tmp_path / "a_negatives.png", [True, False, True], cols=3, seed=2)
    img = np.asarray(Image.open(rgb))
    cases = {
        "grey_negatives.png": (img[..., 0], "8-bit grayscale"),
        "alpha_negatives.png": (
            np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]),
            "8-bit RGBA",
        ),
        "deep_negatives.png": (img[..., 0].astype(np.uint16) * 257, "16-bit grayscale"),
    }
    for name, (data, kind) in cases.items():
        p = _png(tmp_path / name, data)
        with pytest.raises(DataError, match=rf"^PNG gallery {p} is {kind}: expected 8-bit RGB"):
            read_gallery(p)
    # 16-bit RGB (Pillow would silently read it as 8 bits): a 48-bit PNG written by hand
    import struct
    import zlib

    rows = b"".join(b"\x00" + (img[r].astype(">u2") * 257).tobytes() for r in range(img.shape[0]))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    deep = tmp_path / "deep_rgb_negatives.png"
    ihdr = struct.pack(">IIBBBBB", img.shape[1], img.shape[0], 16, 2, 0, 0, 0)
    deep.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    assert Image.open(deep).mode == "RGB"  # what Pillow says of it
    with pytest.raises(DataError, match=rf"^PNG gallery {deep} is 16-bit RGB"):
        read_gallery(deep)
    # a palette PNG holds RGB colours exactly: read as the RGB gallery
    pal = tmp_path / "pal_negatives.png"
    Image.open(rgb).quantize(256, method=Image.Quantize.MAXCOVERAGE).save(pal)
    expect = np.asarray(Image.open(pal).convert("RGB"))
    np.testing.assert_array_equal(read_gallery(pal).chips[0], expect[:48, :48])


def test_a_png_that_is_not_a_grid_is_named(tmp_path: Path) -> None:
    p = _png(tmp_path / "odd_positives.png", np.full((50, 70, 3), 90, np.uint8))
    with pytest.raises(DataError, match=rf"^{p}: gallery of 70 x 50 px is not a grid"):
        read_gallery(p)


def test_evaluate_chips_cli_refuses_an_rgba_gallery_on_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    make_gallery(tmp_path / "a_non-mining_chips.png", [False, False], seed=3)
    done = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", "evaluate-chips", str(tmp_path), "--json"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    import json

    figures = json.loads(done.stdout)
    assert (figures["n_pos"], figures["n_neg"]) == (0, 2)  # non-mining: not mining
    rgba = np.asarray(Image.open(tmp_path / "a_non-mining_chips.png").convert("RGBA"))
    bad = _png(tmp_path / "b_positives.png", rgba)
    done = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", "evaluate-chips", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"asmspotter: error: PNG gallery {bad} is 8-bit RGBA: expected 8-bit RGB "
        "(reflectance / 0.3 x 255); convert it to 8-bit RGB first"
    ]
