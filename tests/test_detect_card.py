"""Tests of asmspotter.detect.card and of the shipped model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asmspotter.detect.card import (
    card_from_dict,
    load_card,
    render_markdown,
    sha256_of,
    to_model_input,
    weights_path,
)
from asmspotter.errors import DataError, InputError


def test_shipped_card_is_valid_and_matches_weights() -> None:
    card, path = load_card()
    assert card.bands == ("red", "green", "blue")
    w = weights_path(card, path)
    assert w.stat().st_size < 20 * 1024 * 1024
    assert sha256_of(w) == card.sha256
    d = json.loads(path.read_text())
    assert set(d["input_scaling"]) == {"reflectance", "display"}
    assert "test_chips" in d["metrics"]
    assert "definitions" in d
    assert "# Model card" in render_markdown(card)
    assert card.tta == d["inference"]["tta"] == "rot4"


def test_test_time_views_round_trip_and_are_checked() -> None:
    base = {
        "name": "x",
        "weights": "x.pt",
        "bands": ["red", "green", "blue"],
        "pixel_threshold": 0.5,
        "chip_score": {"topk_fraction": 0.5, "threshold": 0.6},
    }
    assert card_from_dict(base).tta == "none"  # cards written before views existed
    card = card_from_dict(
        {**base, "inference": {"tile_size": 256, "tile_overlap": 32, "tta": "d4"}}
    )
    assert (card.tta, card.tile_size) == ("d4", 256)
    assert card_from_dict(card.to_dict()) == card
    with pytest.raises(DataError, match="unknown inference.tta 'rot3'"):
        card_from_dict({**base, "inference": {"tta": "rot3"}})


def test_invalid_cards() -> None:
    with pytest.raises(DataError, match="lacks"):
        card_from_dict({"name": "x"})
    bad = {
        "name": "x",
        "weights": "x.pt",
        "bands": ["red"],
        "pixel_threshold": 1.5,
        "chip_score": {"topk_fraction": 0.05, "threshold": 0.5},
    }
    with pytest.raises(DataError, match="thresholds"):
        card_from_dict(bad)
    with pytest.raises(DataError, match="not found"):
        load_card(Path("/nonexistent/model.card.json"))


def test_input_scaling() -> None:
    disp = np.array([[[0, 255]], [[0, 85]], [[0, 0]]], np.uint8)
    x, valid = to_model_input(disp, "display")
    assert valid.tolist() == [[False, True]]
    assert x[:, 0, 1] == pytest.approx([0.3, 0.1, 0.0])
    refl = np.array([[[np.nan, 0.5]], [[0.1, 0.05]], [[0.1, -0.1]]], np.float32)
    x, valid = to_model_input(refl, "reflectance")
    assert valid.tolist() == [[False, True]]
    assert x[:, 0, 1] == pytest.approx([0.3, 0.05, 0.0])
    assert np.all(x[:, 0, 0] == 0)
    with pytest.raises(InputError, match="radiometry"):
        to_model_input(refl, "dn")


def test_limitations_are_written_from_the_cards_own_figures() -> None:
    from asmspotter.detect.card_text import rgb_limitations

    card, _ = load_card()
    text = rgb_limitations(card.metrics, 507_089, card.tta)
    test = card.metrics["test_chips"]
    assert f"{test['sensitivity']:.2f} at specificity {test['specificity']:.2f}" in text
    assert f"ROC AUC {test['auc']:.2f}" in text and "below the 0.90 target" in text
    lp = card.metrics["la_pampa_2019"]
    cover = lp["detected_inside_ha"] / lp["footprint_ha_in_tile"]
    assert f"cover {cover:.0%} of AMW's footprint" in text
    assert "about 0.5 M parameters" in text and "four test-time views" in text
    # a model measured on nothing says nothing about held-out chips or La Pampa
    bare = rgb_limitations({}, 1_234, "none")
    assert bare == "RGB only, 48-px chip labels, 1,234 parameters."
