"""Tests of asmspotter.detect.model: shapes, band handling, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asmspotter.bands import L2A_BANDS, band_indexes
from asmspotter.detect.model import (
    ModelConfig,
    build_model,
    count_parameters,
    load_weights,
    save_weights,
    view_probabilities,
)
from asmspotter.errors import DataError, InputError

TINY = ModelConfig(widths=(4, 4, 4, 4), version=2)


@pytest.mark.parametrize("size", [(48, 48), (37, 101), (1, 1), (96, 64)])
def test_output_has_input_size(size: tuple[int, int]) -> None:
    model = build_model(TINY).eval()
    with torch.inference_mode():
        y = model(torch.rand(2, 3, *size) * 0.3)
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all()


def test_band_set_is_configuration() -> None:
    bands = L2A_BANDS
    assert len(bands) == 10 and "swir22" in bands
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
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
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


def test_band_lookup() -> None:
    # the one band lookup (0-based; rasterio's band indexes are one more)
    have, want = ["blue", "green", "red", "nir"], ["red", "green", "blue"]
    assert [i + 1 for i in band_indexes(have, want, "x")] == [3, 2, 1]
    with pytest.raises(InputError, match="missing: blue"):
        band_indexes(["red", "green"], ["red", "green", "blue"], "x")


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


@pytest.mark.parametrize("size", [(40, 40), (24, 56)])
def test_views_average_back_into_the_input_orientation(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    x = torch.rand(2, 3, *size) * 0.3
    with torch.inference_mode():
        single = torch.sigmoid(model(x)[:, 0])
        one = view_probabilities(model, x, "none")
        rot = view_probabilities(model, x, "rot4")
        rot_of_turned = view_probabilities(model, torch.rot90(x, 1, (-2, -1)), "rot4")
        d4 = view_probabilities(model, x, "d4")
        d4_of_mirrored = view_probabilities(model, torch.flip(x, (-1,)), "d4")
    torch.testing.assert_close(one, single)
    assert rot.shape == d4.shape == (2, *size)
    # A random network is not rotation invariant: the views differ, so averaging matters ...
    assert (rot - single).abs().max() > 1e-3
    # ... and the average over the four rotations turns with its input (rows and cols of
    # non-square inputs swap and swap back), the dihedral average mirrors with it too.
    torch.testing.assert_close(rot_of_turned, torch.rot90(rot, 1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(d4_of_mirrored, torch.flip(d4, (-1,)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown test-time views"):
        view_probabilities(model, x, "rot8")
    # the one-batch path (used on CUDA for square tiles) gives the same average
    with torch.inference_mode():
        batched = view_probabilities(model, x, "d4", batch_views=True)
    torch.testing.assert_close(batched, d4, atol=1e-6, rtol=0)


def test_loaded_weights_run_channels_last_with_the_same_output(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(TINY).eval()
    path = save_weights(model, tmp_path / "m.pt")
    loaded = load_weights(path)
    conv = next(w for w in loaded.parameters() if w.dim() == 4 and w.shape[-1] == 3)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert save_weights(loaded, tmp_path / "again.pt").read_bytes() == path.read_bytes()
    x = torch.rand(1, 3, 33, 47) * 0.3
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-5)
