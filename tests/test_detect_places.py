"""Tests of asmspotter.detect.places, splits and cross-validation by place, warm starts and
recipes (``asmspotter train --recipe/--init/--cv-by place/--record``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asmspotter.detect.card import load_card, sha256_of
from asmspotter.detect.chips import read_galleries, stack_galleries
from asmspotter.detect.crossval import bootstrap_intervals, cross_validate
from asmspotter.detect.model import (
    ModelConfig,
    build_model,
    extend_input,
    extended_config,
    load_weights,
)
from asmspotter.detect.places import (
    assign_place_folds,
    block_key,
    place_folds,
    read_places,
    site_blocks,
    write_held_out_galleries,
)
from asmspotter.detect.recipe import TrainConfig, config_with, read_recipe
from asmspotter.detect.synthetic import multiband_chip, write_untrained_model
from asmspotter.detect.train import load_split
from asmspotter.errors import DataError, InputError
from asmspotter.layout import CHIP_PLACES_NAME

SIX = ("blue", "green", "red", "nir", "swir16", "swir22")
#: Sites per kind: (gallery stems, chip kind, label); the two non-mining galleries are the
#: before and after chips of the same sites, like the shared multispectral galleries.
N_MINING, N_OTHER = 24, 12


def _site_positions(n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions spread over a 4 x 3 grid of 2.5-degree blocks (lon -70..-60, lat -5..2.5)."""
    return np.stack([rng.uniform(-70, -60, n), rng.uniform(-5, 2.5, n)], axis=1)


@pytest.fixture(scope="module")
def place_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded six-band galleries (uint16, as the shared ones) with their chip table."""
    from asmspotter.detect.chips import write_gallery

    d = tmp_path_factory.mktemp("places")
    rng = np.random.default_rng(18)
    rows = ["gallery,chip,sample_id,category,longitude,latitude"]
    mining = np.stack([multiband_chip("mining", rng, SIX) for _ in range(N_MINING)])
    write_gallery(d / "m-t1_positives.tif", mining, SIX, cols=6, dtype="uint16")
    for i, (x, y) in enumerate(_site_positions(N_MINING, rng)):
        rows.append(f"m-t1_positives.tif,{i},mining_{i},mining,{x},{y}")
    other = _site_positions(N_OTHER, rng)
    for window, kind in (("t0", "forest"), ("t1", "lookalike")):
        name = f"o-{window}_negatives.tif"
        chips = np.stack([multiband_chip(kind, rng, SIX) for _ in range(N_OTHER)])
        write_gallery(d / name, chips, SIX, cols=6, dtype="uint16")
        # the after chip of a site lies a few metres from its before chip
        jitter = 1e-5 if window == "t1" else 0.0
        for i, (x, y) in enumerate(other):
            rows.append(f"{name},{i},other_{i},change,{x + jitter},{y}")
    (d / CHIP_PLACES_NAME).write_text("\n".join(rows) + "\n")
    return d


@pytest.fixture(scope="module")
def tiny_rgb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained tiny RGB model with its card (a starting point for warm starts)."""
    config = ModelConfig(widths=(8, 8, 8, 8), version=1)
    return write_untrained_model(tmp_path_factory.mktemp("rgbmodel"), "tiny-rgb", config, seed=3)


def _recipe(**kw: object) -> TrainConfig:
    base = TrainConfig.smoke_config(
        max_steps=None,
        max_chips_per_file=None,
        epochs=3,
        batch_mosaics=4,
        bands=SIX,
        split="place",
        place_folds=4,
        test_fold=4,
        val_fold=3,
        keep_epoch="last",
        tta="none",
        level="L1C",
        sources=("test chips, seeded",),
    )
    return config_with(base, [f"{k}={v}" for k, v in kw.items()])


def test_places_follow_the_stacked_chips(place_dir: Path) -> None:
    galleries = read_galleries(place_dir)
    places = read_places(place_dir, galleries)
    assert len(places) == len(stack_galleries(galleries)) == N_MINING + 2 * N_OTHER
    # galleries are read in name order: m-t1, o-t0, o-t1
    assert places.site[0] == "mining_0" and places.site[N_MINING] == "other_0"
    assert places.site[N_MINING + N_OTHER + 5] == "other_5"
    assert set(places.category) == {"mining", "change"}


def test_places_need_a_complete_table(place_dir: Path, tmp_path: Path) -> None:
    galleries = read_galleries(place_dir)
    with pytest.raises(InputError, match="chips.csv"):
        read_places(tmp_path, galleries)
    lines = (place_dir / CHIP_PLACES_NAME).read_text().splitlines()
    (tmp_path / CHIP_PLACES_NAME).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=f"chip {N_OTHER - 1} of o-t1_negatives.tif"):
        read_places(tmp_path, galleries)
    (tmp_path / CHIP_PLACES_NAME).write_text("gallery,chip,longitude\n")
    with pytest.raises(DataError, match="sample_id, category, latitude"):
        read_places(tmp_path, galleries)


def test_block_keys() -> None:
    assert block_key(-62.4, 4.2, 2.5) == "-62.5_2.5"
    assert block_key(-60.0, -0.1, 2.5) == "-60_-2.5"
    assert block_key(-45.9, -1.39, 3) == "-48_-3"


def test_place_folds_keep_sites_and_blocks_together_and_balance_labels(place_dir: Path) -> None:
    galleries = read_galleries(place_dir)
    chips = stack_galleries(galleries)
    split = place_folds(place_dir, galleries, chips, 4, 2.5, seed=0)
    fold, blocks, site = split.fold, split.blocks, split.places.site
    assert set(fold.tolist()) == {1, 2, 3, 4}
    # a site's chips share a block (the jittered after chips included) and so a fold
    for s in set(site.tolist()):
        assert len(set(blocks[site == s].tolist())) == 1
        assert len(set(fold[site == s].tolist())) == 1
    # folds are disjoint by block
    for b in set(blocks.tolist()):
        assert len(set(fold[blocks == b].tolist())) == 1
    assert sorted(b for f in range(1, 5) for b in split.blocks_of(f)) == sorted(set(blocks))
    # every fold holds chips of both labels, none more than twice its share of a label
    for f in range(1, 5):
        labels = chips.labels[fold == f]
        assert 0 < labels.sum() <= 2 * N_MINING / 4
        assert 0 < (labels == 0).sum() <= 2 * 2 * N_OTHER / 4
    # seeded: the same seed deals the same folds
    again = place_folds(place_dir, galleries, chips, 4, 2.5, seed=0)
    assert (again.fold == fold).all()


def test_assign_place_folds_rules() -> None:
    blocks = np.array(["a", "a", "b", "c", "c", "c", "d", "e"])
    labels = np.array([1, 0, 1, 0, 0, 1, 1, 0])
    folds = [assign_place_folds(blocks, labels, 2, seed=s) for s in range(6)]
    for fold in folds:
        for b in set(blocks.tolist()):
            assert len(set(fold[blocks == b].tolist())) == 1
    # the largest block opens a fold; ties between equal blocks follow the seed
    assert len({tuple(f) for f in folds}) > 1
    with pytest.raises(InputError, match="at least 6 geographic blocks"):
        assign_place_folds(blocks, labels, 6)
    with pytest.raises(InputError, match="at least 2 folds"):
        assign_place_folds(blocks, labels, 1)
    with pytest.raises(InputError, match="positive"):
        site_blocks(_one_place(), 0)


def _one_place():  # type: ignore[no-untyped-def]
    from asmspotter.detect.places import ChipPlaces

    one = np.array(["s"], dtype=object)
    return ChipPlaces(one, one, np.array([-60.0]), np.array([1.0]))


def test_extended_network_on_rgb_input_gives_the_rgb_output() -> None:
    torch.manual_seed(0)
    rgb = build_model(ModelConfig(widths=(8, 8, 8, 8), version=3)).eval()
    for m in rgb.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    cfg = extended_config(rgb.config, SIX, [0.2] * 6, [0.1] * 6)
    # the RGB bands keep the RGB model's normalisation, the new ones take the given one
    assert cfg.mean[SIX.index("red")] == rgb.config.mean[0] and cfg.mean[3] == 0.2
    six = extend_input(rgb, cfg).eval()
    first = six.get_parameter("stem.0.weight")
    assert first.shape[1] == 6 and float(first.detach()[:, 3:].abs().sum()) == 0.0
    x_rgb = torch.rand(2, 3, 40, 40) * 0.2
    x_six = torch.zeros(2, 6, 40, 40)
    for j, b in enumerate(rgb.bands):
        x_six[:, SIX.index(b)] = x_rgb[:, j]
    x_six[:, 3:] = torch.rand(2, 3, 40, 40)  # whatever the new bands hold
    with torch.no_grad():
        assert torch.allclose(six(x_six), rgb(x_rgb), atol=1e-5)
    with pytest.raises(ValueError, match="widths"):
        extend_input(rgb, ModelConfig(bands=SIX, mean=(0.1,) * 6, std=(0.1,) * 6))


def test_init_norm_keeps_or_refits_the_starting_models_normalisation() -> None:
    from asmspotter.detect.chips import ChipArrays
    from asmspotter.detect.train import model_config_for

    rgb = build_model(ModelConfig(widths=(8, 8, 8, 8), version=3))
    rng = np.random.default_rng(0)
    images = np.stack(
        [rng.normal(0.1 * (i + 1), 0.01 * (i + 1), (20, 48, 48)) for i in range(6)], -1
    )
    zeros = np.zeros(20, np.int64)
    chips = ChipArrays(images.astype(np.float32), zeros, zeros, ("g.tif",), SIX)
    keep = model_config_for(TrainConfig(bands=SIX, init="asm-rgb-v4"), chips, rgb)
    assert keep.mean[SIX.index("red")] == rgb.config.mean[rgb.bands.index("red")]
    assert keep.mean[3] == pytest.approx(0.4, abs=2e-3)
    refit = model_config_for(
        TrainConfig(bands=SIX, init="asm-rgb-v4", init_norm="refit"), chips, rgb
    )
    assert refit.widths == rgb.config.widths and refit.bands == SIX
    for i in range(6):  # every band from the chips: means 0.1 .. 0.6, deviations 0.01 .. 0.06
        assert refit.mean[i] == pytest.approx(0.1 * (i + 1), abs=2e-3)
        assert refit.std[i] == pytest.approx(0.01 * (i + 1), rel=0.05)
    with pytest.raises(InputError, match="init_norm is keep or refit"):
        config_with(TrainConfig(), ["init_norm=both"])


def test_recipes_round_trip_and_read_from_files(tmp_path: Path) -> None:
    cfg = _recipe(init="asm-rgb-v4")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "x", "bands": list(SIX), "split": "place", "test_fold": 2}))
    r = read_recipe(str(path))
    assert (r.name, r.bands, r.test_fold, r.epochs) == ("x", SIX, 2, TrainConfig().epochs)
    path.write_text(json.dumps({"nmae": "x"}))
    with pytest.raises(InputError, match="unknown recipe field"):
        read_recipe(str(path))
    path.write_text(json.dumps({"split": "random"}))
    with pytest.raises(InputError, match="split is sample_set or place"):
        read_recipe(str(path))
    with pytest.raises(InputError, match="val_fold differs"):
        config_with(cfg, ["val_fold=4"])
    assert config_with(cfg, ["init=none"]).init is None
    # a trained model's recipe is read back from its card
    shipped = read_recipe("asm-rgb-v4")
    assert shipped.set_balance == 0.5 and shipped.split == "sample_set"


def test_split_by_place_holds_the_test_fold_out(place_dir: Path) -> None:
    cfg = _recipe()
    train, val, test, galleries = load_split(place_dir, cfg)
    split = place_folds(place_dir, galleries, stack_galleries(galleries), 4, 2.5, 0)
    assert len(test) == int((split.fold == 4).sum()) > 0
    assert len(val) == int((split.fold == 3).sum()) > 0
    assert len(train) + len(val) + len(test) == N_MINING + 2 * N_OTHER
    assert train.bands == SIX


def test_cross_validation_by_place_leaves_out_the_held_out_fold(place_dir: Path) -> None:
    cfg = _recipe(epochs=4, lr=0.02)
    cv = cross_validate(cfg, place_dir, k=3, by="place", specificity=0.95)
    assert cv.by == "place" and len(cv.folds) == 3
    galleries = read_galleries(place_dir)
    split = place_folds(place_dir, galleries, stack_galleries(galleries), 4, 2.5, 0)
    held_out_blocks = set(split.blocks_of(4))
    blocks = [b for f in cv.folds for b in f.sets]
    assert len(blocks) == len(set(blocks)) and not held_out_blocks & set(blocks)
    assert sum(f.n_pos + f.n_neg for f in cv.folds) == int((split.fold != 4).sum())
    for f in cv.folds:
        assert set(f.sensitivity_at) == {"0.95", "0.97"}
        assert set(f.called) <= {"m-t1_positives", "o-t0_negatives", "o-t1_negatives"}
    d = cv.to_dict()
    assert "geographic blocks" in d["definitions"]["fold"]
    assert set(d["pooled_auc_by_set"]) <= {"o-t0_negatives", "o-t1_negatives"}
    assert "sensitivity_at_0.95_mean" in d and "auc" in d["intervals_95"]
    lo, hi = d["intervals_95"]["auc"]
    assert lo <= cv.pooled_auc <= hi  # type: ignore[operator]


def test_bootstrap_intervals_resample_whole_groups() -> None:
    labels = np.array([1, 1, 0, 0] * 10)
    groups = np.repeat(np.arange(10), 4).astype(str)
    perfect = labels.astype(float)
    iv = bootstrap_intervals(labels, perfect, groups, n=200)
    assert iv["auc"] == [1.0, 1.0] and iv["sensitivity_at_0.95"] == [1.0, 1.0]
    noisy = np.random.default_rng(1).random(40)
    lo, hi = bootstrap_intervals(labels, noisy, groups, n=200)["auc"]
    assert 0.0 <= lo < hi <= 1.0


def test_cli_trains_from_a_recipe_with_a_warm_start_and_records_cv(
    place_dir: Path, tiny_rgb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asmspotter.cli import main

    recipe = _recipe(init=str(tiny_rgb)).to_dict()
    recipe.update(name="tiny-six", smoke=False, max_chips_per_file=None)
    del recipe["model"]
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    out = tmp_path / "models"
    args = ["train", "--chips", str(place_dir), "--recipe", str(path), "--out", str(out)]
    assert main(args) == 0
    card, cpath = load_card(out / "tiny-six.card.json")
    assert card.level == "L1C" and card.bands == SIX
    d = json.loads(cpath.read_text())
    assert d["input_scaling"]["reflectance"].startswith("float Level-1C top-of-atmosphere")
    assert d["training"]["data_sources"] == ["test chips, seeded"]
    assert d["training"]["init"] == {
        "model": "tiny-rgb",
        "sha256": sha256_of(tiny_rgb.with_name("tiny-rgb.pt")),
    }
    assert "fold 4 is held out" in d["training"]["split_rule"]
    assert d["training"]["test_held_out_places"]["n_pos"] > 0
    assert "held-out places (fold 4" in d["limitations"]
    # the network started from the RGB model: same architecture, RGB normalisation kept
    net = load_weights(out / "tiny-six.pt")
    assert net.config.widths == (8, 8, 8, 8) and net.config.version == 1
    assert (
        net.config.mean[SIX.index("red")]
        == load_weights(tiny_rgb.with_name("tiny-rgb.pt")).config.mean[0]
    )
    # the recipe recorded in the card rebuilds the same weights
    again = tmp_path / "again"
    assert (
        main(["train", "--chips", str(place_dir), "--recipe", str(cpath), "--out", str(again)]) == 0
    )
    assert (again / "tiny-six.pt").read_bytes() == (out / "tiny-six.pt").read_bytes()
    # cross-validation by place, recorded in the card and its prose
    cv_args = [
        "--cv",
        "3",
        "--cv-by",
        "place",
        "--out",
        str(tmp_path / "cv"),
        "--record",
        str(cpath),
    ]
    assert main(["train", "--chips", str(place_dir), "--recipe", str(cpath), *cv_args]) == 0
    d = json.loads(cpath.read_text())
    assert d["metrics"]["crossval"]["by"] == "place" and len(d["metrics"]["crossval"]["folds"]) == 3
    assert "Cross-validated over 3 folds of geographic blocks" in d["limitations"]
    assert "Cross-validated over 3 folds" in (out / "tiny-six.md").read_text()
    capsys.readouterr()
    assert main(["train", "--chips", str(place_dir), "--record", str(cpath)]) == 2
    assert "--record MODEL goes with --cv" in capsys.readouterr().err


def test_held_out_galleries_hold_the_test_fold(place_dir: Path, tmp_path: Path) -> None:
    cfg = _recipe()
    written = write_held_out_galleries(cfg, place_dir, tmp_path / "held")
    assert written[-1].name == CHIP_PLACES_NAME
    galleries = read_galleries(place_dir)
    split = place_folds(place_dir, galleries, stack_galleries(galleries), 4, 2.5, 0)
    source = stack_galleries(galleries).images[split.fold == 4]
    held = read_galleries(tmp_path / "held")
    got = stack_galleries(held)
    assert len(got) == len(source)
    # uint16 x 10000 both ways: the same reflectance, chip for chip
    assert np.array_equal(got.images, source)
    assert {g.name for g in held} <= {g.name for g in galleries}
    places = read_places(tmp_path / "held", held)
    assert set(places.site.tolist()) == set(split.places.site[split.fold == 4].tolist())
    with pytest.raises(InputError, match="holds out no place fold"):
        write_held_out_galleries(_recipe(test_fold=0), place_dir, tmp_path / "none")


def test_shipped_six_band_model_card() -> None:
    card, path = load_card("asm-l1c6-v1")
    assert card.bands == SIX and card.level == "L1C" and card.reflectance_max == 1.0
    assert card.sha256 == sha256_of(path.with_name(card.weights))
    d = json.loads(path.read_text())
    assert d["input_scaling"]["reflectance"].startswith("float Level-1C top-of-atmosphere")
    sources = " ".join(d["training"]["data_sources"])
    for credit in (
        "Copernicus",
        "Amazon Mining Watch (CC BY 4.0)",
        "joelibaceta/sat-mining-detector",
    ):
        assert credit in sources
    assert "states no licence" in sources
    recipe = read_recipe("asm-l1c6-v1")
    assert (recipe.split, recipe.init, recipe.level) == ("place", "asm-rgb-v4", "L1C")
    assert d["training"]["init"]["sha256"] == load_card("asm-rgb-v4")[0].sha256
    held = d["training"]["test_held_out_places"]
    assert held["n_pos"] == d["metrics"]["test_chips"]["n_pos"] > 0
    cv = d["metrics"]["crossval"]
    assert cv["by"] == "place" and len(cv["folds"]) == recipe.place_folds - 1
    held_out = set(d["training"]["place_folds"][str(recipe.test_fold)]["blocks"])
    assert not held_out & {b for f in cv["folds"] for b in f["sets"]}
    assert "Cross-validated over" in d["limitations"] and "held-out places" in d["limitations"]


def test_evaluate_chips_with_the_six_band_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asmspotter.cli import main
    from asmspotter.detect.loader import load_detector
    from asmspotter.detect.scoring import chip_scores
    from asmspotter.detect.synthetic import make_gallery, make_multiband_gallery

    make_multiband_gallery(
        tmp_path / "s_positives.tif", ["mining"] * 6, SIX, dtype="uint16", seed=1
    )
    make_multiband_gallery(
        tmp_path / "s_negatives.tif", ["lookalike"] * 6, SIX, dtype="uint16", seed=2
    )
    assert main(["evaluate-chips", str(tmp_path), "--model", "asm-l1c6-v1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    det = load_detector("asm-l1c6-v1", device="cpu")
    assert got["threshold"] == pytest.approx(det.card.chip_threshold)
    galleries = {g.name: g for g in read_galleries(tmp_path)}
    for f in got["files"]:
        chips = galleries[f["file"]].chips
        scores = chip_scores(det.model, chips, 0.5, views=det.card.tta, clip=1.0)
        called = int((scores >= det.card.chip_threshold).sum())
        if f["label"]:
            assert (f["tp"], f["fn"]) == (called, 6 - called)
        else:
            assert (f["fp"], f["tn"]) == (called, 6 - called)
    rgb = tmp_path / "rgb"
    make_gallery(rgb / "x_positives.png", [True] * 4, cols=2, seed=3)
    assert main(["evaluate-chips", str(rgb), "--model", "asm-l1c6-v1"]) == 2
    assert "(missing: nir, swir16, swir22)" in capsys.readouterr().err


def test_held_out_places_reproduce_the_card(shared_data: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from asmspotter.cli import main

    recipe = read_recipe("asm-l1c6-v1")
    write_held_out_galleries(recipe, shared_data / "multispectral", tmp_path)
    assert main(["evaluate-chips", str(tmp_path), "--model", "asm-l1c6-v1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    card = json.loads(load_card("asm-l1c6-v1")[1].read_text())
    test = card["metrics"]["test_chips"]
    for key in ("tp", "fn", "tn", "fp"):
        assert got[key] == test[key], key
