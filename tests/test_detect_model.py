"""Tests of asmspotter.detect.model: shapes, band handling, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asmspotter.detect.model import (
    ModelConfig,
    build_model,
    count_parameters,
    load_weights,
    save_weights,
    select_bands,
)
from asmspotter.errors import DataError

TINY = ModelConfig(widths=(4, 4, 4, 4))


@pytest.mark.parametrize("size", [(48, 48), (37, 101), (1, 1), (96, 64)])
def test_output_has_input_size(size: tuple[int, int]) -> None:
    model = build_model(TINY).eval()
    with torch.inference_mode():
        y = model(torch.rand(2, 3, *size) * 0.3)
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all()


def test_band_set_is_configuration() -> None:
    bands = (
        "blue",
        "green",
        "red",
        "rededge1",
        "rededge2",
        "rededge3",
        "nir",
        "nir08",
        "swir16",
        "swir22",
    )
    cfg = ModelConfig(bands=bands, widths=(4, 4, 4, 4), mean=(0.1,) * 10, std=(0.05,) * 10)
    model = build_model(cfg).eval()
    assert model.bands == bands
    with torch.inference_mode():
        assert model(torch.rand(1, 10, 40, 40)).shape == (1, 1, 40, 40)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(1, 3, 40, 40))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ModelConfig(bands=("red",), mean=(0.1, 0.1), std=(0.1,))
    with pytest.raises(ValueError):
        ModelConfig(bands=())


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = build_model(TINY).eval()
    path = save_weights(model, tmp_path / "m.pt")
    loaded = load_weights(path)
    assert loaded.config == model.config
    x = torch.rand(1, 3, 50, 30) * 0.3
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert count_parameters(loaded) == count_parameters(model)


def test_saved_file_depends_only_on_the_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    a = save_weights(model, tmp_path / "a" / "one.pt")
    # Same weights in another memory layout, under another name: the same bytes.
    b = save_weights(model.to(memory_format=torch.channels_last), tmp_path / "b" / "two.pt")
    assert a.read_bytes() == b.read_bytes()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    c = save_weights(model, tmp_path / "c.pt")
    assert c.read_bytes() != a.read_bytes()


def test_load_bad_weights(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a valid"):
        load_weights(bad)


def test_select_bands() -> None:
    assert select_bands(["blue", "green", "red", "nir"], ["red", "green", "blue"]) == [3, 2, 1]
    with pytest.raises(KeyError, match="blue"):
        select_bands(["red", "green"], ["red", "green", "blue"])


def test_architecture_versions() -> None:
    v1 = ModelConfig(widths=(4, 4, 4, 4), version=1)
    d = v1.to_dict()
    del d["version"]  # weight files written before versions existed
    assert ModelConfig.from_dict(d).version == 1
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    x = torch.rand(1, 3, 40, 56) * 0.3
    v3 = ModelConfig(widths=(4, 4, 8, 8), version=3)
    for cfg in (v1, TINY, v3):
        with torch.inference_mode():
            assert build_model(cfg).eval()(x).shape == (1, 1, 40, 56)
    # Versions differ in their blocks: the same widths give different parameter sets.
    assert set(build_model(v3).state_dict()) != set(
        build_model(ModelConfig(widths=(4, 4, 8, 8), version=1)).state_dict()
    )
    with pytest.raises(ValueError, match="version"):
        ModelConfig(version=4)
