"""Tests of asmspotter.detect.crossval and ``asmspotter train --cv``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asmspotter.detect.chips import (
    ChipArrays,
    Gallery,
    list_galleries,
    read_gallery,
    sample_set_of,
)
from asmspotter.detect.crossval import (
    SampleSet,
    assign_folds,
    cross_validate,
    sample_sets,
)
from asmspotter.detect.metrics import sensitivity_at_specificity
from asmspotter.detect.model import ModelConfig
from asmspotter.detect.recipe import TrainConfig, config_with
from asmspotter.detect.synthetic import make_gallery
from asmspotter.detect.train import FitResult, fit, load_split
from asmspotter.errors import DataError, InputError

#: (file stem, label, chips, seed); p2 and n1 have both clear-sky composites.
FIXTURE = (
    ("p1_positives_S2L1C_clear0.75_2019", True, 16, 1),
    ("p2_positives_S2L1C_clear0.05_2019", True, 6, 2),
    ("p2_positives_S2L1C_clear0.75_2019", True, 6, 3),
    ("p3_positives_S2L1C_clear0.75_2019", True, 8, 4),
    ("n1_negatives_S2L1C_clear0.05_2019", False, 10, 5),
    ("n1_negatives_S2L1C_clear0.75_2019", False, 10, 6),
    ("n2_negatives_S2L1C_clear0.75_2019", False, 12, 7),
    ("n3_negatives_S2L1C_clear0.75_2019", False, 9, 8),
    ("heldout_positives_S2L1C_clear0.75_2019", True, 5, 9),
    ("heldout_negatives_S2L1C_clear0.75_2019", False, 5, 10),
)


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cvchips")
    for stem, bright, n, seed in FIXTURE:
        make_gallery(d / f"{stem}.png", [bright] * n, cols=5, seed=seed)
    return d


def _config(**kw: object) -> TrainConfig:
    base = TrainConfig.smoke_config(
        max_steps=None,
        epochs=4,
        batch_mosaics=4,
        model=ModelConfig(widths=(8, 8, 8, 8), version=1),
        test_sets=("heldout",),
        val_sets=("p3", "n3"),
        tta="none",
    )
    return config_with(base, [f"{k}={v}" for k, v in kw.items()])


def test_sample_sets_join_clear_sky_composites(pool_dir: Path) -> None:
    sets = {s.key: s for s in sample_sets([read_gallery(f) for f in list_galleries(pool_dir)])}
    assert sets["p2_positives_S2L1C_2019"] == SampleSet("p2_positives_S2L1C_2019", 1, 12)
    assert sets["n1_negatives_S2L1C_2019"].n_chips == 20
    assert len(sets) == 8


def test_sample_set_with_both_labels_is_a_data_error() -> None:
    chips = np.zeros((2, 48, 48, 3), np.uint8)
    galleries = [
        Gallery(Path(f"s_clear{c}.png"), label, "s", chips, 48)
        for c, label in (("0.05", 1), ("0.75", 0))
    ]
    with pytest.raises(DataError, match="both labels"):
        sample_sets(galleries)


def test_assign_folds_deals_every_set_once_with_both_labels() -> None:
    sets = [SampleSet(f"p{i}", 1, n) for i, n in enumerate([1000, 478, 244, 210, 188, 140, 25])]
    sets += [SampleSet(f"n{i}", 0, n) for i, n in enumerate([2000, 1213, 566, 304, 232, 85, 21])]
    folds = assign_folds(sets, 3)
    assert len(folds) == 3
    flat = [k for f in folds for k in f]
    assert sorted(flat) == sorted(s.key for s in sets)
    size = {s.key: s for s in sets}
    for f in folds:
        assert {size[k].label for k in f} == {0, 1}
    # greedy dealing: no fold's mining load exceeds another's by more than the largest set
    loads = [sum(size[k].n_chips for k in f if size[k].label == 1) for f in folds]
    assert max(loads) - min(loads) <= 1000
    # the largest sets open the folds, in order of size
    assert [("p0" in f, "p1" in f, "p2" in f) for f in folds] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]
    assert assign_folds(list(reversed(sets)), 3) == folds  # order of input does not matter


def test_assign_folds_rejects_impossible_requests() -> None:
    sets = [SampleSet("p0", 1, 5), SampleSet("p1", 1, 5), SampleSet("n0", 0, 9)]
    with pytest.raises(InputError, match="at least 2 folds"):
        assign_folds(sets, 1)
    with pytest.raises(InputError, match="2 non-mining sample sets"):
        assign_folds(sets, 2)
    with pytest.raises(ValueError):
        SampleSet("x", 2, 1)


def test_sensitivity_at_specificity() -> None:
    labels = np.array([0] * 100 + [1] * 10)
    scores = np.concatenate([np.linspace(0, 0.5, 100), np.linspace(0.3, 1.0, 10)]).astype(
        np.float32
    )
    thr, sens = sensitivity_at_specificity(labels, scores, 0.97)
    assert np.mean(scores[:100] < thr) >= 0.97
    assert sens == pytest.approx(np.mean(scores[100:] >= thr))
    assert 0.7 <= sens < 1.0


def test_config_with_parses_types_and_rejects_mistakes() -> None:
    cfg = config_with(
        TrainConfig(),
        ["set_balance=0", "epochs=3", "balance_negatives=false", "tta=d4", "max_steps=none"],
    )
    assert (cfg.set_balance, cfg.epochs, cfg.balance_negatives, cfg.tta) == (0.0, 3, False, "d4")
    assert isinstance(cfg.set_balance, float) and cfg.max_steps is None
    assert config_with(TrainConfig(), ["max_chips_per_file=7"]).max_chips_per_file == 7
    for bad, message in [
        ("widths=3", "FIELD one of"),
        ("epochs", "FIELD=VALUE"),
        ("epochs=many", "not a valid int"),
        ("balance_negatives=maybe", "not a valid bool"),
        ("tta=d8", "invalid recipe"),
        ("lr=-0.1", "lr > 0"),
        ("topk_fraction=1.5", "0 < topk_fraction <= 1"),
    ]:
        with pytest.raises(InputError, match=message):
            config_with(TrainConfig(), [bad])


def test_fit_keeps_the_last_epoch_when_asked(pool_dir: Path) -> None:
    cfg = _config(epochs=3)
    tr, va, _, _ = load_split(pool_dir, cfg)
    last = fit(cfg, tr, va, select_best=False)
    assert last.epoch == len(last.history) == 3
    best = fit(cfg, tr, va)
    scores = [(h["auc"], h["sensitivity"]) for h in best.history]
    assert scores[best.epoch - 1] == max(scores)


def test_cross_validation_trains_on_other_folds_and_leaves_out_held_out_sets(
    pool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asmspotter.detect import train as train_module

    trained_on: list[set[str]] = []
    real_fit = train_module.fit

    def spy(config: TrainConfig, train_set: ChipArrays, *a: object, **kw: object) -> FitResult:
        trained_on.append({sample_set_of(f) for f in train_set.files})
        return real_fit(config, train_set, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module, "fit", spy)
    cfg = _config(epochs=12, lr=0.02)
    lines: list[str] = []
    cv = cross_validate(cfg, pool_dir, k=3, log=lines.append)
    assert len(cv.folds) == 3
    keys = [k for f in cv.folds for k in f.sets]
    assert len(keys) == len(set(keys)) == 6
    assert not any("heldout" in k for k in keys)
    # each fold's network saw exactly the other folds' sample sets
    assert trained_on == [set(keys) - set(f.sets) for f in cv.folds]
    # every pool chip is scored exactly once, in its own fold
    assert sum(f.n_pos for f in cv.folds) == 16 + 12 + 8
    assert sum(f.n_neg for f in cv.folds) == 20 + 12 + 9
    # the synthetic mining chips (bright patches) are learnable: every fold separates them
    for f in cv.folds:
        assert f.auc is not None and f.auc > 0.8, f
        assert set(f.called) == set(f.sets)
        assert f.epochs == 12
    assert cv.pooled_auc is not None and cv.pooled_auc > 0.8
    d = cv.to_dict()
    assert d["specificity"] == 0.97 and len(d["folds"]) == 3
    assert d["config"]["lr"] == 0.02
    assert "fold mean AUC" in cv.format_table()
    assert any(line.startswith("fold 3/3") for line in lines)


def test_cli_cross_validation_writes_json(pool_dir: Path, tmp_path: Path, capsys) -> None:
    from asmspotter.cli import main

    out = tmp_path / "cv"
    args = ["train", "--smoke", "--chips", str(pool_dir), "--out", str(out), "--cv", "2"]
    assert main([*args, "--set", "test_sets=heldout"]) == 2  # tuples are not settable
    assert "FIELD one of" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--set", "max_steps=3"]) == 0
    printed = capsys.readouterr().out
    assert "pooled out-of-fold" in printed
    result = json.loads((out / "crossval.json").read_text())
    assert len(result["folds"]) == 2
    assert result["config"]["max_steps"] == 3
    assert not list(out.glob("*.pt"))  # cross-validation writes no weights
    assert main([*args[:-1], "1"]) == 2
    assert "at least 2 folds" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*args[:4], "--out", str(blocker / "cv"), "--cv", "2"]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
