"""Tests of asmspotter.detect.inference: tiling, blending, outputs and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from asmspotter.detect.card import ModelCard
from asmspotter.detect.inference import detect_composite
from asmspotter.detect.loader import Detector
from asmspotter.detect.model import ModelConfig, build_model
from asmspotter.detect.synthetic import make_scene, write_composite
from asmspotter.detect.tiling import blend_window, blended_strips, predict_array, tile_spans
from asmspotter.errors import DataError
from asmspotter.geoio import write_json

OUT_FILES = {
    "mining_probability.tif",
    "mining_mask.tif",
    "mining.gpkg",
    "mining.geojson",
    "detection.json",
}


def constant_model(p: float) -> nn.Module:
    """A MiningNet whose output is sigmoid(logit(p)) everywhere."""
    model = build_model(ModelConfig(widths=(4, 4, 4, 4)))
    with torch.no_grad():
        for prm in model.parameters():
            prm.zero_()
        model.head.bias.fill_(float(np.log(p / (1 - p))))
    return model.eval()


class Pointwise(nn.Module):
    """A per-pixel model (1 x 1 convolution): tiled output must equal the direct output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[20.0]], [[-10.0]], [[5.0]]]]))
            self.conv.bias.fill_(-1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def card(**kw: object) -> ModelCard:
    base = dict(
        name="test",
        weights="t.pt",
        sha256="",
        bands=("red", "green", "blue"),
        chip_topk_fraction=0.05,
        chip_threshold=0.5,
        pixel_threshold=0.5,
        min_area_ha=0.0,
        tile_size=64,
        tile_overlap=16,
    )
    base.update(kw)
    return ModelCard(**base)  # type: ignore[arg-type]


def detector(model: nn.Module, **kw: object) -> Detector:
    return Detector(model, card(**kw), Path("test.card.json"), "cpu")  # type: ignore[arg-type]


def test_tile_spans_cover_everything_with_no_more_than_the_overlap() -> None:
    for n in (1, 63, 64, 65, 200, 1000):
        spans = tile_spans(n, 64, 16)
        covered = np.zeros(n, int)
        for s, e in spans:
            covered[s:e] += 1
            assert 0 <= s < e <= n and e - s <= 64
        assert (covered >= 1).all()
        # every tile but the last is whole; tiles share only the overlap
        assert all(e - s == 64 for s, e in spans[:-1])
        assert covered.sum() <= n + 16 * (len(spans) - 1)
    # a raster no longer than a tile is one tile (La Pampa's 654 x 667 px at 1024 px)
    assert tile_spans(654, 1024, 32) == [(0, 654)] and tile_spans(667, 1024, 32) == [(0, 667)]
    w = blend_window(64, 16)
    assert w.min() > 0 and w.max() == 1.0


def test_constant_model_gives_seamless_constant_map() -> None:
    x = np.random.default_rng(0).random((3, 150, 201), dtype=np.float32) * 0.3
    prob = predict_array(constant_model(0.3), x, tile_size=64, overlap=16)
    assert prob.shape == (150, 201)
    np.testing.assert_allclose(prob, 0.3, atol=1e-6)


def test_constant_model_gives_constant_map_with_views() -> None:
    x = np.random.default_rng(0).random((3, 90, 130), dtype=np.float32) * 0.3
    for views in ("rot4", "d4"):
        prob = predict_array(constant_model(0.3), x, tile_size=64, overlap=16, views=views)
        np.testing.assert_allclose(prob, 0.3, atol=1e-6)


def test_blending_has_no_seams() -> None:
    x = np.random.default_rng(1).random((3, 130, 170), dtype=np.float32) * 0.3
    model = Pointwise().eval()
    with torch.inference_mode():
        direct = torch.sigmoid(model(torch.from_numpy(x)[None]))[0, 0].numpy()
    tiled = predict_array(model, x, tile_size=48, overlap=12)
    np.testing.assert_allclose(tiled, direct, atol=1e-5)


def test_rows_are_read_ahead_in_order_and_read_errors_reach_the_caller() -> None:
    import threading

    x = np.random.default_rng(2).random((3, 200, 90), dtype=np.float32) * 0.3
    ok = np.ones((200, 90), bool)
    calls: list[tuple[int, int, str]] = []

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append((r0, r1, threading.current_thread().name))
        return x[:, r0:r1], ok[r0:r1]

    strips = list(blended_strips(read, 200, 90, constant_model(0.4), tile_size=64, overlap=16))
    assert [(r0, r1) for r0, r1, _ in calls] == tile_spans(200, 64, 16)
    assert all(name.startswith("asmspotter-read") for _, _, name in calls)
    assert [s.row for s in strips] == sorted(s.row for s in strips)
    assert sum(s.prob.shape[0] for s in strips) == 200
    np.testing.assert_allclose(np.concatenate([s.prob for s in strips]), 0.4, atol=1e-6)

    def failing(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        if r0 > 0:
            raise OSError("block 3 is corrupt")
        return x[:, r0:r1], ok[r0:r1]

    with pytest.raises(OSError, match="block 3 is corrupt"):
        list(blended_strips(failing, 200, 90, constant_model(0.4), tile_size=64, overlap=16))


@pytest.mark.parametrize(("h", "w"), [(37, 201), (130, 64), (5, 7)])
def test_any_size_round_trips(tmp_path: Path, h: int, w: int) -> None:
    comp = write_composite(tmp_path / "c.tif", make_scene(h, w, seed=h))
    res = detect_composite(
        comp, tmp_path / "out", detector=detector(constant_model(0.7)), progress=False
    )
    assert {p.name for p in (tmp_path / "out").iterdir()} == OUT_FILES
    with rasterio.open(comp) as src, rasterio.open(res.files["mining_probability.tif"]) as prob:
        assert (prob.width, prob.height) == (w, h)
        assert prob.crs == src.crs and prob.transform == src.transform
        np.testing.assert_allclose(prob.read(1), 0.7, atol=1e-6)
    with rasterio.open(res.files["mining_mask.tif"]) as m:
        assert (m.read(1) == 1).all()
    assert res.mining_area_ha == pytest.approx(h * w * 0.01)


def test_detect_outputs_polygons_and_provenance(tmp_path: Path) -> None:
    import geopandas as gpd

    scene = make_scene(160, 140, seed=3, n_patches=0)
    scene[:, 20:40, 30:60] = 0.25  # 600 px = 6 ha
    scene[:, 100:103, 100:103] = 0.25  # 9 px = 0.09 ha, below the MMU
    scene[:, 150:, :] = np.nan  # no-data rows
    comp = write_composite(tmp_path / "c.tif", scene)
    det = detector(Pointwise().eval(), tile_size=48, tile_overlap=12)
    res = detect_composite(
        comp,
        tmp_path / "out",
        detector=det,
        region="r",
        period="p",
        region_crs="EPSG:32619",
        min_area_ha=0.5,
        progress=False,
    )
    gpkg = gpd.read_file(res.files["mining.gpkg"])
    gj = gpd.read_file(res.files["mining.geojson"])
    assert gpkg.crs.to_epsg() == 32619 and gj.crs.to_epsg() == 4326
    assert len(gpkg) == 1 and gpkg["area_ha"].iloc[0] == pytest.approx(6.0)
    assert gj.geometry.iloc[0].bounds[0] == pytest.approx(-69.92, abs=0.01)
    prov = json.loads(res.files["detection.json"].read_text())
    assert prov["software"] == "asmspotter" and prov["model"]["name"] == "test"
    assert prov["threshold"] == 0.5 and prov["min_area_ha"] == 0.5
    assert prov["input"]["composite"] == str(comp)
    assert prov["inference"]["tta"] == "none"  # the card's
    with rasterio.open(res.files["mining_mask.tif"]) as m:
        mask = m.read(1)
    assert (mask[150:] == 255).all() and mask[:150].max() == 1
    assert res.valid_fraction == pytest.approx(150 / 160)


def test_display_composite(tmp_path: Path) -> None:
    scene = make_scene(64, 64, seed=5)
    comp = write_composite(tmp_path / "c.tif", scene, radiometry="display")
    res = detect_composite(
        comp, tmp_path / "out", detector=detector(constant_model(0.2)), progress=False
    )
    assert res.mining_area_ha == 0 and res.n_polygons == 0
    assert json.loads(res.files["detection.json"].read_text())["input"]["radiometry"] == "display"


def _bad(tmp_path: Path, kind: str) -> Path:
    scene = make_scene(40, 40)
    p = tmp_path / "bad.tif"
    if kind == "bands":
        return write_composite(p, scene, bands=("nir", "swir16", "swir22"))
    if kind == "dtype":
        from rasterio.transform import from_origin

        from asmspotter.geoio import write_cog

        return write_cog(
            p,
            (scene * 1000).astype(np.int16),
            crs="EPSG:32719",
            transform=from_origin(0, 0, 10, 10),
            band_names=["red", "green", "blue"],
            tags={"ASMSPOTTER_RADIOMETRY": "reflectance"},
        )
    if kind == "nodata":
        return write_composite(p, np.full_like(scene, np.nan))
    if kind == "corrupt":
        write_composite(p, scene)
        data = p.read_bytes()
        p.write_bytes(data[:200] + b"\x00" * 100)
        return p
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("bands", "needs red, green, blue"),
        ("dtype", "expected float32"),
        ("nodata", "no valid pixel"),
        ("corrupt", "cannot read composite"),
    ],
)
def test_bad_inputs_leave_no_outputs(tmp_path: Path, kind: str, message: str) -> None:
    comp = _bad(tmp_path, kind)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message):
        detect_composite(comp, out, detector=detector(constant_model(0.5)), progress=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_views_follow_the_card_unless_given(tmp_path: Path) -> None:
    from asmspotter.errors import InputError

    scene = make_scene(70, 90, seed=4)
    comp = write_composite(tmp_path / "c.tif", scene)
    det = detector(build_model(ModelConfig(widths=(4, 4, 4, 4))).eval(), tta="rot4")
    res = detect_composite(comp, tmp_path / "a", detector=det, progress=False)
    with rasterio.open(res.files["mining_probability.tif"]) as src:
        prob = src.read(1)
    x = scene.astype(np.float32).clip(0, 0.3)
    np.testing.assert_allclose(
        prob, predict_array(det.model, x, tile_size=64, overlap=16, views="rot4"), atol=1e-6
    )
    assert res.provenance["inference"]["tta"] == "rot4"
    res = detect_composite(comp, tmp_path / "b", detector=det, views="none", progress=False)
    assert res.provenance["inference"]["tta"] == "none"
    with pytest.raises(InputError, match="unknown test-time views 'rot2'"):
        detect_composite(comp, tmp_path / "c", detector=det, views="rot2", progress=False)
    assert not (tmp_path / "c").exists()


def test_missing_composite(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="composite not found"):
        detect_composite(
            tmp_path / "nope.tif",
            tmp_path / "out",
            detector=detector(constant_model(0.5)),
            progress=False,
        )


def test_cli_detect_uses_catalogue_paths(workdirs: dict[str, Path], capsys) -> None:
    from asmspotter.cli import main

    comp = workdirs["cache"] / "la-pampa" / "2019" / "composite.tif"
    write_composite(comp, make_scene(120, 90, seed=7), radiometry="display")
    # a composite without its provenance is an unfinished cache entry: refused
    assert main(["detect", "la-pampa", "--period", "2019", "--no-progress"]) == 2
    assert "asmspotter fetch la-pampa" in capsys.readouterr().err
    write_json(comp.with_name("composite.json"), {"clear_fraction": 1.0})
    assert main(["detect", "la-pampa", "--period", "2019", "--no-progress"]) == 0
    out = workdirs["output"] / "la-pampa" / "2019"
    assert {p.name for p in out.iterdir()} == OUT_FILES
    assert "la-pampa 2019" in capsys.readouterr().out
    assert json.loads((out / "detection.json").read_text())["inference"]["tta"] == "rot4"
    assert main(["detect", "la-pampa", "-p", "2019", "--tta", "none", "--no-progress"]) == 0
    assert json.loads((out / "detection.json").read_text())["inference"]["tta"] == "none"
    assert main(["detect", "la-pampa", "--period", "2021", "--no-progress"]) == 2
    assert "asmspotter fetch la-pampa" in capsys.readouterr().err
