"""Recipe options of the six-band search: local band standardisation and a frozen encoder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from asmspotter.detect.chips import ChipArrays
from asmspotter.detect.model import (
    TRAINABLE_BLOCKS,
    ModelConfig,
    build_model,
    freeze_except,
    load_weights,
    local_standardise,
    save_weights,
)
from asmspotter.detect.recipe import TrainConfig, config_with, initial_network, model_config_for
from asmspotter.detect.synthetic import multiband_chip, write_untrained_model
from asmspotter.detect.train import fit
from asmspotter.errors import InputError

SIX = ("blue", "green", "red", "nir", "swir16", "swir22")


def test_local_standardisation_removes_each_bands_brightness_and_contrast() -> None:
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.normal(0.0, 2.0, (2, 3, 48, 48)).astype(np.float32))
    scale = torch.tensor([0.5, 2.0, 3.0]).view(1, 3, 1, 1)
    shift = torch.tensor([1.0, -4.0, 0.3]).view(1, 3, 1, 1)
    a, b = local_standardise(x, 47), local_standardise(x * scale + shift, 47)
    # the same up to the deviation floor (0.1 against local deviations of about 1 to 6)
    assert torch.allclose(a, b, atol=0.02)
    assert float(a.abs().mean()) > 0.5  # not flattened: the pattern stays
    # a flat band gives zeros, not noise or NaN, and every size works (edges cut the window)
    flat = local_standardise(torch.full((1, 2, 30, 21), 7.0), 47)
    assert flat.shape == (1, 2, 30, 21) and float(flat.abs().max()) < 1e-3


def test_local_window_agrees_with_a_direct_window_mean() -> None:
    x = torch.from_numpy(np.random.default_rng(5).random((1, 1, 20, 20)).astype(np.float32))
    y = local_standardise(x, 5)
    r, c = 7, 0  # the window is cut at the left edge: rows 5..9, cols 0..2
    w = x[0, 0, 5:10, 0:3].double()
    expected = (x[0, 0, r, c].double() - w.mean()) / torch.sqrt(w.var(unbiased=False) + 0.01)
    assert float(y[0, 0, r, c]) == pytest.approx(float(expected), abs=1e-4)


def test_networks_with_local_norm_ignore_per_band_brightness_and_round_trip(
    tmp_path: Path,
) -> None:
    cfg = ModelConfig(bands=SIX, widths=(8, 8, 8, 8), mean=(0.1,) * 6, std=(0.05,) * 6)
    assert "local_norm" not in cfg.to_dict()  # files of models without it keep their bytes
    torch.manual_seed(0)
    net = build_model(replace(cfg, local_norm=47)).eval()
    plain = build_model(cfg).eval()
    plain.load_state_dict(net.state_dict())
    rng = np.random.default_rng(6)
    chip = torch.from_numpy(np.stack([multiband_chip("mining", rng, SIX)]).transpose(0, 3, 1, 2))
    hazy = chip * 0.8 + 0.05  # a brighter, flatter rendering of the same place
    with torch.no_grad():
        assert torch.allclose(net(chip), net(hazy), atol=0.05)
        assert not torch.allclose(plain(chip), plain(hazy), atol=0.05)
    path = save_weights(net, tmp_path / "n.pt")
    again = load_weights(path)
    assert again.config.local_norm == 47 and again.config.to_dict()["local_norm"] == 47
    with torch.no_grad():
        assert torch.equal(again(chip), net(chip))
    with pytest.raises(ValueError, match="odd window"):
        ModelConfig(local_norm=48)


def test_recipe_options_are_checked() -> None:
    with pytest.raises(InputError, match="local_norm is 0 or odd"):
        config_with(TrainConfig(), ["local_norm=46"])
    with pytest.raises(InputError, match="a frozen encoder needs init"):
        config_with(TrainConfig(), ["trainable=ends"])
    with pytest.raises(InputError, match="trainable is all, ends, decoder or head"):
        config_with(TrainConfig(init="asm-rgb-v4"), ["trainable=neck"])
    cfg = config_with(TrainConfig(), ["init=asm-rgb-v4", "trainable=ends", "local_norm=31"])
    assert (cfg.trainable, cfg.local_norm) == ("ends", 31)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.fixture(scope="module")
def tiny_rgb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained tiny RGB model with its card (the start of warm starts)."""
    config = ModelConfig(widths=(8, 8, 8, 8), version=3)
    return write_untrained_model(tmp_path_factory.mktemp("rgbstart"), "tiny-rgb", config, seed=3)


def _chips(n: int, seed: int) -> ChipArrays:
    rng = np.random.default_rng(seed)
    kinds = ["mining", "lookalike", "forest"]
    labels = np.array([1 if i % 2 == 0 else 0 for i in range(n)], np.int64)
    images = np.stack(
        [
            multiband_chip("mining" if y else kinds[1 + i % 2], rng, SIX)
            for i, y in enumerate(labels)
        ]
    )
    return ChipArrays(images, labels, np.zeros(n, np.int64), ("g-t1_positives.tif",), SIX)


def test_trainable_ends_trains_the_first_layer_and_decoder_only(tiny_rgb: Path) -> None:
    recipe = TrainConfig.smoke_config(
        max_chips_per_file=None,
        max_steps=6,
        bands=SIX,
        init=str(tiny_rgb),
        init_norm="refit",
        trainable="ends",
        local_norm=15,
        tta="none",
        set_balance=0.0,
        keep_epoch="last",
    )
    train, val = _chips(32, 1), _chips(12, 2)
    start = initial_network(recipe)
    assert start is not None
    fitted = fit(recipe, train, val).model
    assert fitted.config.local_norm == 15
    assert fitted.frozen == () and all(p.requires_grad for p in fitted.parameters())
    assert model_config_for(recipe, train, start) == fitted.config
    before = start.state_dict()
    after = fitted.state_dict()
    for key, value in after.items():
        block = key.split(".")[0]
        if "." in key and block not in TRAINABLE_BLOCKS["ends"]:  # weights, BN statistics kept
            assert torch.equal(value, before[key]), key
    assert not torch.equal(after["stem.1.running_mean"], torch.zeros(8))  # the stem's BN learnt
    assert not torch.allclose(after["stem.0.weight"][:, :3], before["stem.0.weight"])
    for key in ("fuse1.0.weight", "head.weight"):
        assert not torch.allclose(after[key], before[key]), key
    # without the option the whole encoder learns
    free = fit(
        TrainConfig.from_dict({**recipe.to_dict(), "trainable": "all"}), train, val
    ).model.state_dict()
    assert not torch.equal(free["down2.0.0.weight"], before["down2.0.0.weight"])


def test_frozen_blocks_stay_in_eval_mode_and_take_no_gradients() -> None:
    net = freeze_except(build_model(ModelConfig(widths=(8, 8, 8, 8))), TRAINABLE_BLOCKS["ends"])
    net.train()
    assert net.training and net.stem.training and net.head.training
    assert not net.down1.training and not net.down3.training
    assert all(not p.requires_grad for p in net.down2.parameters())
    assert all(p.requires_grad for p in net.stem.parameters())
    head = freeze_except(build_model(ModelConfig(widths=(8, 8, 8, 8))), TRAINABLE_BLOCKS["head"])
    head.train()
    assert not head.stem.training and not head.fuse1.training and head.head.training
    assert [n for n, p in head.named_parameters() if p.requires_grad] == [
        "head.weight",
        "head.bias",
    ]
    with pytest.raises(ValueError, match="no block neck"):
        freeze_except(head, ("neck",))
