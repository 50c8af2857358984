"""Tests of asmspotter.detect.train and the ``train`` / ``evaluate-chips`` commands."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from asmspotter.detect.card import load_card
from asmspotter.detect.model import ModelConfig
from asmspotter.detect.synthetic import make_gallery
from asmspotter.detect.train import (
    TrainConfig,
    make_batch,
    mil_loss,
    random_stretch,
    set_sampling_weights,
    threshold_for_specificity,
    train,
)
from asmspotter.errors import InputError


@pytest.fixture(scope="module")
def chips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("chips")
    make_gallery(d / "a_positives_S2L1C_clear0.75_2019.png", [True] * 24, cols=6, seed=1)
    make_gallery(d / "b_negatives_S2L1C_clear0.05_2019.png", [False] * 20, cols=6, seed=2)
    make_gallery(d / "b_negatives_S2L1C_clear0.75_2019.png", [False] * 20, cols=6, seed=3)
    make_gallery(d / "c_positives_S2L1C_clear0.75_2019.png", [True] * 8, cols=4, seed=4)
    make_gallery(d / "d_negatives_S2L1C_clear0.75_2019.png", [False] * 8, cols=4, seed=5)
    return d


def test_mosaic_batch_layout() -> None:
    imgs = np.zeros((4, 48, 48, 3), np.uint8)
    for i in range(4):
        imgs[i] = 60 * (i + 1)
    x = make_batch(imgs, np.array([[0, 1, 2, 3]]), torch.Generator(), augment=False)
    assert x.shape == (1, 3, 96, 96)
    quads = [x[0, 0, :48, :48], x[0, 0, :48, 48:], x[0, 0, 48:, :48], x[0, 0, 48:, 48:]]
    for i, q in enumerate(quads):
        assert torch.allclose(q, torch.full_like(q, 60 * (i + 1) / 255 * 0.3))


def test_mil_loss_prefers_right_answer() -> None:
    labels = torch.tensor([[1, 0, 0, 1]])
    good = torch.full((1, 1, 96, 96), -5.0)
    good[..., :48, :48] = 5.0
    good[..., 48:, 48:] = 5.0
    bad = -good
    assert mil_loss(good, labels, 0.05, 0.5) < mil_loss(bad, labels, 0.05, 0.5)


def test_stretch_stays_in_range_and_varies() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(16, 3, 8, 8)
    s = random_stretch(t, g)
    assert s.min() >= 0 and s.max() <= 1
    assert not torch.allclose(s, t)
    # keep = 1 leaves every image in its own scaling; keep = 0 stretches every image, and a
    # weaker strength stays closer to the original.
    assert torch.equal(random_stretch(t, g, keep=1.0), t)
    changed = random_stretch(t, g, keep=0.0)
    assert all(not torch.allclose(changed[i], t[i]) for i in range(len(t)))
    weak = random_stretch(t, torch.Generator().manual_seed(1), strength=0.1, keep=0.0)
    strong = random_stretch(t, torch.Generator().manual_seed(1), strength=1.0, keep=0.0)
    assert (weak - t).abs().mean() < (strong - t).abs().mean()


def test_threshold_for_specificity() -> None:
    neg = np.linspace(0, 1, 100, dtype=np.float32)
    thr = threshold_for_specificity(neg, 0.97)
    assert np.mean(neg < thr) >= 0.97
    assert np.mean(neg < thr) < 0.99


def test_set_balancing_weights() -> None:
    from asmspotter.detect.chips import ChipArrays

    # three galleries: set "a" (30 chips) split over its clear0.05 and clear0.75 files, "b" (10)
    files = ("a_pos_clear0.05_x.png", "a_pos_clear0.75_x.png", "b_pos_clear0.75_x.png")
    source = np.repeat([0, 1, 2], [10, 20, 10])
    chips = ChipArrays(np.zeros((40, 48, 48, 3), np.uint8), np.ones(40, np.int64), source, files)
    idx = np.arange(40)
    uniform = set_sampling_weights(chips, idx, 0.0)
    np.testing.assert_allclose(uniform, 1 / 40)
    balanced = set_sampling_weights(chips, idx, 1.0)
    assert balanced[source < 2].sum() == pytest.approx(0.5)  # a's two files are one set
    assert balanced[source == 2].sum() == pytest.approx(0.5)
    half = set_sampling_weights(chips, idx, 0.5)
    share_b = half[source == 2].sum()
    assert 0.25 < share_b < 0.5 and share_b == pytest.approx(10**0.5 / (10**0.5 + 30**0.5))


def test_short_training_lowers_loss_and_writes_card(chips_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig.smoke_config(
        max_steps=40, epochs=40, batch_mosaics=4, test_sets=("d_neg", "c_pos"), val_sets=()
    )
    result = train(cfg, chips_dir, tmp_path / "out")
    losses = result.losses
    assert len(losses) >= 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    card, path = load_card(result.card)
    assert card.bands == ("red", "green", "blue")
    assert (path.parent / card.weights).is_file()
    assert (tmp_path / "out" / f"{TrainConfig.name}.md").read_text().startswith("# Model card")
    assert result.metrics["test_chips"]["n_pos"] == 8
    assert result.metrics["test_chips"]["n_neg"] == 8


def test_training_is_seeded(chips_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig.smoke_config(max_steps=3)
    a = train(cfg, chips_dir, tmp_path / "a")
    b = train(cfg, chips_dir, tmp_path / "b")
    assert a.losses == b.losses
    c = train(replace(cfg, seed=1), chips_dir, tmp_path / "c")
    assert c.losses != a.losses
    # sample-set balancing (of both labels, or of the mining chips only) draws other chips,
    # and is seeded too
    both = replace(cfg, set_balance=1.0, balance_negatives=True)
    d = train(both, chips_dir, tmp_path / "d")
    e = train(both, chips_dir, tmp_path / "e")
    assert d.losses == e.losses != a.losses
    f = train(replace(both, balance_negatives=False), chips_dir, tmp_path / "f")
    assert f.losses not in (a.losses, d.losses)


def test_cli_train_smoke_and_evaluate(chips_dir: Path, tmp_path: Path, capsys) -> None:
    from asmspotter.cli import main

    out = tmp_path / "models"
    assert main(["train", "--smoke", "--chips", str(chips_dir), "--out", str(out)]) == 0
    card = out / f"{TrainConfig.name}.card.json"
    assert card.is_file()
    capsys.readouterr()
    assert main(["evaluate-chips", str(chips_dir), "--json", "--model", str(card)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["n_pos"], res["n_neg"]) == (32, 48)
    assert {"sensitivity", "specificity"} <= set(res)
    assert len(res["files"]) == 5
    assert main(["evaluate-chips", str(tmp_path / "nowhere")]) == 2
    capsys.readouterr()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    errors = ["evaluate-chips", str(chips_dir), "--model", str(card), "--errors"]
    assert main([*errors, str(blocker / "e")]) == 2  # checked before any chip is scored
    assert "cannot create the folder for the errors" in capsys.readouterr().err
    assert main([*errors, str(tmp_path / "e")]) == 0
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == [
        "errors.csv",
        "false_alarms.png",
        "missed_mining.png",
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a CUDA device")
def test_training_on_missing_cuda_is_a_clear_error(chips_dir: Path, tmp_path: Path, capsys) -> None:
    from asmspotter.cli import main

    with pytest.raises(InputError, match="no CUDA device"):
        train(TrainConfig.smoke_config(), chips_dir, tmp_path / "out", device="cuda")
    args = ["train", "--smoke", "--chips", str(chips_dir), "--out", str(tmp_path / "m")]
    assert main([*args, "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_version3_model_trains_and_is_described(chips_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig.smoke_config(
        max_steps=30, epochs=30, model=ModelConfig(widths=(8, 8, 16, 16), version=3)
    )
    result = train(cfg, chips_dir, tmp_path / "out")
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    card, _ = load_card(result.card)
    assert card.training["config"]["model"]["version"] == 3
    assert "version 3" in card.training["architecture"]


def test_context_model_with_weight_averaging_trains(chips_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig.smoke_config(
        max_steps=4, ema_decay=0.9, topk_fraction=0.5, model=ModelConfig(widths=(8, 8, 8, 8))
    )
    result = train(cfg, chips_dir, tmp_path / "out")
    card, _ = load_card(result.card)
    assert card.training["config"]["model"]["version"] == 2
    assert "moving average" in card.training["method"]
    assert "context block" in card.training["architecture"]
