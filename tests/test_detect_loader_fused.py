"""Folding and fusing (loader, detect.fused): the inference networks keep the function."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from asmspotter.detect.fused import FusedMiningNet, can_fuse
from asmspotter.detect.loader import fold_batch_norm, load_detector
from asmspotter.detect.model import MiningNet, ModelConfig, build_model, view_probabilities
from asmspotter.detect.tiling import predict_array

#: Largest probability difference allowed between the fused and the plain folded network
#: (float32 rounding of reordered sums; the measured figure is about 1e-7).
TOL = 1e-5


def _seeded_model(version: int = 3, local_norm: int = 0) -> MiningNet:
    """A small network with non-trivial batch-norm statistics and biases, in eval mode."""
    torch.manual_seed(0)
    config = ModelConfig(widths=(4, 8, 8, 16), version=version, local_norm=local_norm)
    model = build_model(config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def test_folding_batch_norm_keeps_the_function() -> None:
    model = _seeded_model()
    folded = fold_batch_norm(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 5
    x = torch.rand(2, 3, 40, 56) * 0.3
    with torch.inference_mode():
        want, got = model(x), folded(x)
    assert not torch.equal(want, torch.zeros_like(want))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_fused_network_gives_the_folded_networks_logits() -> None:
    folded = fold_batch_norm(_seeded_model())
    fused = FusedMiningNet(folded)
    x = torch.rand(2, 3, 41, 58, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.inference_mode():
        want, got = folded(x), fused(x)
    assert got.shape == want.shape == (2, 1, 41, 58)
    assert float(want.std()) > 0.01  # a network whose output varies over the input
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    assert not torch.equal(got, want)  # the fused convolutions really ran
    assert torch.equal(fused(x), folded(x))  # needing gradients: the plain network runs
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(fused(x), folded(x))  # bf16 autocast: the plain network too
    with pytest.raises(ValueError, match=r"expected input \(batch, 3, rows, cols\)"):
        fused(torch.zeros(1, 4, 16, 16))
    local = fold_batch_norm(_seeded_model(local_norm=9))  # standardised in a moving window
    with torch.inference_mode():
        torch.testing.assert_close(FusedMiningNet(local)(x), local(x), atol=TOL, rtol=0)


def test_fused_tiles_give_the_plain_probabilities_with_four_views() -> None:
    """Blended rot4 tiles (square, cut and rotated shapes) match the plain folded network."""
    folded = fold_batch_norm(_seeded_model())
    fused = FusedMiningNet(folded)
    rng = np.random.default_rng(2)
    x = (rng.random((3, 300, 250)) * 0.3).astype(np.float32)
    valid = np.ones((300, 250), bool)
    valid[:20, :30] = False
    kw = {"tile_size": 128, "overlap": 16, "views": "rot4"}
    want = predict_array(folded, x, valid, **kw)
    got = predict_array(fused, x, valid, **kw)
    assert np.array_equal(np.isnan(got), ~valid)
    assert np.nanmax(np.abs(got - want)) <= TOL
    assert np.nanstd(want) > 1e-3


def test_can_fuse_only_folded_version_3_on_the_cpu() -> None:
    model = _seeded_model()
    assert not can_fuse(model, "cpu")  # batch norms still there
    folded = fold_batch_norm(copy.deepcopy(model))
    assert can_fuse(folded, "cpu")
    assert not can_fuse(folded, "cuda")
    assert not can_fuse(FusedMiningNet(folded), "cpu")
    assert not can_fuse(fold_batch_norm(_seeded_model(version=2)), "cpu")


def test_load_detector_fuses_fp32_cpu_inference_only() -> None:
    det = load_detector(device="cpu", precision="fp32")
    assert isinstance(det.model, FusedMiningNet)
    plain = load_detector(device="cpu", precision="fp32", fold=False).model
    assert not isinstance(plain, FusedMiningNet)
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())  # trainable as it was
    bf16 = load_detector(device="cpu", precision="bf16").model
    assert not isinstance(bf16, FusedMiningNet)  # autocast needs the plain modules
    # the shipped weights: same probabilities as the unfolded network, four views
    x = torch.rand(1, 3, 96, 72, generator=torch.Generator().manual_seed(3)) * 0.2
    with torch.inference_mode():
        want = view_probabilities(plain, x, "rot4")
        got = view_probabilities(det.model, x, "rot4")
    assert float(want.max() - want.min()) > 0.01
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    assert det.model.bands == plain.bands
