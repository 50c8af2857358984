"""Tests of asmspotter.detect.evaluate: exact counts on a generated fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from asmspotter.detect.card import ModelCard
from asmspotter.detect.chips import read_gallery
from asmspotter.detect.evaluate import Counts, count, evaluate_galleries, topk_mean
from asmspotter.detect.synthetic import make_gallery


class Brightness(nn.Module):
    """A stand-in model: logit = 100 x (pixel mean reflectance - 0.15)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(dim=1, keepdim=True) - 0.15) * 100.0


CARD = ModelCard(
    name="bright",
    weights="none.pt",
    sha256="",
    bands=("red", "green", "blue"),
    chip_topk_fraction=0.05,
    chip_threshold=0.5,
    pixel_threshold=0.5,
)


def test_counts_and_rates() -> None:
    c = count(np.array([1, 1, 1, 0, 0]), np.array([True, False, True, True, False]))
    assert c == Counts(tp=2, fn=1, tn=1, fp=1)
    assert c.sensitivity == pytest.approx(2 / 3)
    assert c.specificity == pytest.approx(0.5)
    assert Counts().sensitivity is None
    assert (c + c).to_dict()["n_pos"] == 6


def test_topk_mean() -> None:
    p = torch.zeros(1, 10, 10)
    p[0, 0, :5] = 1.0
    assert float(topk_mean(p, 0.05)) == pytest.approx(1.0)
    assert float(topk_mean(p, 0.10)) == pytest.approx(0.5)


def test_exact_counts_on_fixture(tmp_path: Path) -> None:
    pos = make_gallery(tmp_path / "p_positives_S2L1C_clear0.75.png", [True, True, True, False])
    neg = make_gallery(
        tmp_path / "n_negatives_S2L1C_clear0.75.png", [False, False, True, False, False], seed=1
    )
    gs = [read_gallery(pos), read_gallery(neg)]
    ev = evaluate_galleries(gs, Brightness(), CARD)  # type: ignore[arg-type]
    assert ev.files[0].counts == Counts(tp=3, fn=1)
    assert ev.files[1].counts == Counts(tn=4, fp=1)
    total = ev.to_dict()
    assert (total["n_pos"], total["n_neg"]) == (4, 5)
    assert total["sensitivity"] == pytest.approx(0.75)
    assert total["specificity"] == pytest.approx(0.8)
    table = ev.format_table()
    assert "total" in table and "0.750" in table and "0.800" in table
