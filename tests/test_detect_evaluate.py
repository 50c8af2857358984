"""Tests of asmspotter.detect.evaluate: exact counts on a generated fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from asmspotter.detect.card import ModelCard
from asmspotter.detect.chips import read_gallery
from asmspotter.detect.evaluate import chip_errors, evaluate_galleries, write_errors
from asmspotter.detect.metrics import Counts, count
from asmspotter.detect.scoring import chip_scores, topk_mean
from asmspotter.detect.synthetic import make_gallery


class Brightness(nn.Module):
    """A stand-in model: logit = 100 x (pixel mean reflectance - 0.15)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.mean(dim=1, keepdim=True) - 0.15) * 100.0


class Ramp(nn.Module):
    """Logits rising from left to right, whatever the input: orientation is all it sees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = torch.linspace(-3.0, 3.0, x.shape[-1])
        return (cols + 0 * x[:, :1]).expand(len(x), 1, *x.shape[-2:])


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


def test_errors_are_listed_and_drawn_most_confident_first(tmp_path: Path) -> None:
    import csv

    from PIL import Image

    pos = make_gallery(tmp_path / "p_positives_x.png", [True, False, True, False], seed=2)
    neg = make_gallery(tmp_path / "n_negatives_x.png", [False, True, False], seed=3)
    gs = [read_gallery(pos), read_gallery(neg)]
    ev = evaluate_galleries(gs, Brightness(), CARD)  # type: ignore[arg-type]
    missed, alarms = chip_errors(ev)
    # the two dark mining chips are missed, the lower score (the surer miss) first
    assert [(e.file, e.index, e.label) for e in missed] == [(gs[0].name, 1, 1), (gs[0].name, 3, 1)]
    assert missed[0].score < missed[1].score
    assert [(e.file, e.index, e.label) for e in alarms] == [(gs[1].name, 1, 0)]
    assert all(e.score < CARD.chip_threshold for e in missed)
    assert alarms[0].score >= CARD.chip_threshold

    out = tmp_path / "errors"
    written = write_errors(ev, gs, out)
    assert [p.name for p in written] == ["errors.csv", "missed_mining.png", "false_alarms.png"]
    rows = list(csv.DictReader((out / "errors.csv").open()))
    assert len(rows) == ev.total.fn + ev.total.fp == 3
    assert [r["sheet"] for r in rows] == ["missed_mining.png"] * 2 + ["false_alarms.png"]
    assert [int(r["chip"]) for r in rows] == [e.index for e in missed + alarms]
    # the first cell of the false-alarm sheet is that chip, shown at twice its size
    sheet = np.asarray(Image.open(out / "false_alarms.png").convert("RGB"))
    chip = gs[1].chips[1]
    np.testing.assert_array_equal(sheet[4 : 4 + 96 : 2, 4 : 4 + 96 : 2], chip)
    # a cap on the sheets keeps every error in the table, without a position beyond the cap
    write_errors(ev, gs, out, max_chips=1)
    rows = list(csv.DictReader((out / "errors.csv").open()))
    assert [r["position"] for r in rows] == ["1", "", "1"]
    assert not list(out.glob(".*partial*"))


def test_chips_are_scored_with_the_cards_test_time_views(tmp_path: Path) -> None:
    from dataclasses import replace

    g = read_gallery(make_gallery(tmp_path / "p_positives_x.png", [True, False, True]))
    one = chip_scores(Ramp(), g.chips, 0.05)  # type: ignore[arg-type]
    rot4 = chip_scores(Ramp(), g.chips, 0.05, views="rot4")  # type: ignore[arg-type]
    # One pass: the right-hand columns of each chip score high. The four rotations of a
    # ramp cancel: sigmoid(a) + sigmoid(-a) = 1, so every averaged pixel is exactly 0.5.
    assert (one > 0.75).all()
    np.testing.assert_allclose(rot4, 0.5, atol=1e-6)
    card = replace(CARD, chip_threshold=0.6)
    assert evaluate_galleries([g], Ramp(), card).files[0].counts == Counts(tp=3)  # type: ignore[arg-type]
    card = replace(card, tta="rot4")
    assert evaluate_galleries([g], Ramp(), card).files[0].counts == Counts(fn=3)  # type: ignore[arg-type]


def test_evaluate_chips_reproduces_the_cards_held_out_figures(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user gets from `evaluate-chips` on the held-out galleries is the card's figure."""
    import json

    from asmspotter.cli import main
    from asmspotter.detect.card import load_card

    card, _ = load_card()
    chips = shared_data / "amw" / "chips"
    held_out = tmp_path / "held-out"
    held_out.mkdir()
    for name in card.training["test_held_out_categories"]["files"]:
        if not (chips / name).is_file():
            pytest.skip(f"held-out gallery {name} not in the shared data")
        (held_out / name).symlink_to(chips / name)  # read in place, never copied
    errors = tmp_path / "errors"
    assert main(["evaluate-chips", str(held_out), "--json", "--errors", str(errors)]) == 0
    got = json.loads(capsys.readouterr().out)  # the --errors note goes to stderr
    with (errors / "errors.csv").open() as fh:
        assert sum(1 for _ in fh) - 1 == got["fn"] + got["fp"]
    assert (errors / "missed_mining.png").stat().st_size > 10_000
    want = card.metrics["test_chips"]
    assert (got["n_pos"], got["n_neg"]) == (want["n_pos"], want["n_neg"])
    # chip scores may differ in the last bits from the training run's; a chip or two at the
    # threshold may flip, no more
    assert got["sensitivity"] == pytest.approx(want["sensitivity"], abs=2 / want["n_pos"])
    assert got["specificity"] == pytest.approx(want["specificity"], abs=2 / want["n_neg"])
