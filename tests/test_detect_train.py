"""Tests of asmspotter.detect.train and the ``train`` / ``evaluate-chips`` commands."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asmspotter.bands import L2A_BANDS
from asmspotter.detect.augment import make_batch, random_stretch
from asmspotter.detect.card import load_card
from asmspotter.detect.loss import mil_loss
from asmspotter.detect.metrics import threshold_for_specificity
from asmspotter.detect.model import ModelConfig
from asmspotter.detect.recipe import TrainConfig
from asmspotter.detect.synthetic import (
    make_gallery,
    make_multiband_gallery,
    make_multiband_scene,
    write_composite,
)
from asmspotter.detect.train import set_sampling_weights, train
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
        max_steps=4,
        ema_decay=0.9,
        topk_fraction=0.5,
        model=ModelConfig(widths=(8, 8, 8, 8), version=2),
    )
    result = train(cfg, chips_dir, tmp_path / "out")
    card, _ = load_card(result.card)
    assert card.training["config"]["model"]["version"] == 2
    assert "moving average" in card.training["method"]
    assert "context block" in card.training["architecture"]


@pytest.fixture(scope="module")
def multiband_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GeoTIFF galleries of the ten L2A bands whose non-mining chips include look-alikes:
    patches of the workings' visible colour with a vegetation-like infrared."""
    d = tmp_path_factory.mktemp("multiband")
    mining = ["mining"] * 12
    make_multiband_gallery(d / "a_positives_clear0.75.tif", mining, seed=1)
    make_multiband_gallery(d / "b_positives_clear0.75.tif", mining, seed=2, dtype="uint16")
    make_multiband_gallery(d / "c_negatives_clear0.75.tif", ["forest", "lookalike"] * 6, seed=3)
    make_multiband_gallery(d / "d_negatives_clear0.75.tif", ["lookalike"] * 12, seed=4)
    make_multiband_gallery(d / "vala_positives_clear0.75.tif", mining, seed=5)
    make_multiband_gallery(d / "valb_negatives_clear0.75.tif", ["lookalike"] * 12, seed=6)
    return d


def test_multiband_model_trains_reads_the_infrared_and_maps(
    multiband_dir: Path, tmp_path: Path, capsys
) -> None:
    import rasterio

    from asmspotter.cli import main
    from asmspotter.detect.inference import detect_composite
    from asmspotter.detect.loader import load_detector

    base = TrainConfig.smoke_config(
        max_steps=60,
        epochs=100,
        test_sets=(),
        val_sets=("vala", "valb"),
        tta="none",
        set_balance=0.0,
    )
    ten = train(replace(base, bands=L2A_BANDS), multiband_dir, tmp_path / "ten")
    rgb = train(replace(base, bands=("red", "green", "blue")), multiband_dir, tmp_path / "rgb")
    # only the infrared tells the workings from the look-alikes of the validation negatives
    assert ten.metrics["validation_chips"]["auc"] >= 0.95
    assert rgb.metrics["validation_chips"]["auc"] <= 0.85
    assert ten.losses[-1] < ten.losses[0]

    card, _ = load_card(ten.card)
    assert card.bands == L2A_BANDS and card.reflectance_max == 1.0
    raw = json.loads(ten.card.read_text())
    assert "clipped to [0, 1]" in raw["input_scaling"]["reflectance"]
    assert raw["training"]["config"]["bands"] == list(L2A_BANDS)
    net = raw["training"]["config"]["model"]
    assert net["bands"] == list(L2A_BANDS)
    # normalised with the training chips: nir between forest (0.32) and workings (0.24)
    nir = L2A_BANDS.index("nir")
    assert 0.24 < net["mean"][nir] < 0.42 and 0.0 < net["std"][nir] < 0.1
    assert "10 bands" in raw["description"] and "--bands blue,green" in raw["regenerate"]
    assert "test_chips_under_other_stretches" not in raw["metrics"]

    # a reflectance composite of the same bands: the workings are mapped, the look-alike not
    scene, truth = make_multiband_scene(300, 400)
    comp = write_composite(tmp_path / "composite.tif", scene, bands=L2A_BANDS)
    det = load_detector(ten.card)
    res = detect_composite(comp, tmp_path / "det", detector=det, progress=False)
    with rasterio.open(res.files["mining_mask.tif"]) as src:
        mask = src.read(1) == 1
    fake = np.zeros_like(truth)
    fake[300 - 37 - 60 : 300 - 37, 400 - 50 - 80 : 400 - 50] = True
    assert mask[truth].mean() > 0.9 and mask[fake].mean() < 0.05
    provenance = json.loads(res.files["detection.json"].read_text())
    assert provenance["input"]["bands"] == list(L2A_BANDS)

    # evaluate-chips: the ten-band model on its galleries, the shipped RGB model on them too
    capsys.readouterr()
    assert main(["evaluate-chips", str(multiband_dir), "--json", "--model", str(ten.card)]) == 0
    res_ten = json.loads(capsys.readouterr().out)
    assert (res_ten["n_pos"], res_ten["n_neg"]) == (36, 36)
    assert res_ten["sensitivity"] >= 0.9 and res_ten["specificity"] >= 0.85
    assert main(["evaluate-chips", str(multiband_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "asm-rgb-v4"
    # PNG galleries cannot feed the ten-band model: one line naming what is missing
    png = tmp_path / "png"
    make_gallery(png / "p_positives.png", [True] * 2)
    assert main(["evaluate-chips", str(png), "--model", str(ten.card)]) == 2
    err = capsys.readouterr().err
    assert "p_positives.png holds bands red, green, blue" in err and "rededge1" in err
    errors = tmp_path / "errors"
    args = ["evaluate-chips", str(multiband_dir), "--model", str(ten.card), "--threshold", "0.99"]
    assert main([*args, "--errors", str(errors)]) == 0
    with Image.open(errors / "missed_mining.png") as sheet:
        assert sheet.mode == "RGB" and sheet.size[1] > 100  # all 36 mining chips missed


def test_cli_train_bands(multiband_dir: Path, tmp_path: Path, capsys) -> None:
    from asmspotter.cli import main

    cmd = ["train", "--smoke", "--chips", str(multiband_dir), "--out", str(tmp_path / "m")]
    assert main([*cmd, "--bands", "nir,swir16,fog"]) == 2
    assert "--bands: fog is not a band name" in capsys.readouterr().err
    assert main([*cmd, "--bands", "coastal,red"]) == 2
    assert "missing: coastal" in capsys.readouterr().err
    assert main([*cmd, "--bands", "red,nir,swir16", "--no-validate"]) == 0
    card, _ = load_card(tmp_path / "m" / f"{TrainConfig.name}.card.json")
    assert card.bands == ("red", "nir", "swir16")
