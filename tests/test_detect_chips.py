"""Tests of asmspotter.detect.chips: gallery parsing, labels, sample sets and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asmspotter.detect.chips import (
    label_from_name,
    list_galleries,
    read_gallery,
    sample_set_of,
    split_galleries,
    stack_galleries,
)
from asmspotter.detect.synthetic import make_gallery
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
