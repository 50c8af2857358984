"""The model card's text, written from the recipe and from the figures measured on the model.

Every number in the card's prose comes from the run's configuration or from its
``metrics`` section: nothing measured is typed into a sentence here, so a retrained model's
card describes that model. :func:`card_texts` gives the description, the limitations and
how to regenerate the model; :func:`training_section` the card's ``training`` section;
:func:`definitions` what each metric means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.detect import DEFAULT_MODEL
from asmspotter.detect.card import VIEW_SETS
from asmspotter.detect.chips import ChipArrays, reflectance_max

if TYPE_CHECKING:
    from asmspotter.detect.model import ModelConfig
    from asmspotter.detect.recipe import TrainConfig

#: Held-out chip sensitivity the RGB model was asked to reach (issue 3), at specificity 0.97.
SENSITIVITY_TARGET = 0.90

RGB_DESCRIPTION = (
    "RGB artisanal gold-mining segmentation model for Sentinel-2 at 10 m: a small fully "
    "convolutional encoder-decoder (plain torch) trained from chip-level labels by multiple-"
    "instance learning, giving a per-pixel mining probability."
)

RGB_REGENERATE = (
    "`asmspotter train` (seeded; reads the shared data's amw/chips via ASMSPOTTER_SHARED_DATA, "
    f"writes data/models/{DEFAULT_MODEL}.pt, .card.json, .md and docs/figures/"
    "la_pampa_2019_validation.png), then `python benchmarks/bench_detect.py --record` to add "
    "the speed figures. `asmspotter train --smoke --out DIR` runs a few steps."
)

_VIEW_WORDS = {1: "one", 4: "four", 8: "eight"}


def definitions(config: TrainConfig) -> dict[str, str]:
    """Return what each figure of the card means (the card's ``definitions``)."""
    return {
        "chip score": (
            "mean of the top topk_fraction of the chip's pixel probabilities (averaged over the "
            "card's test-time views, inference.tta)"
        ),
        "tta": (
            "test-time views: the model runs on rotated (and for d4 mirrored) copies of each "
            "tile or chip and the probabilities, turned back, are averaged"
        ),
        "TP / FN": "mining chips with score >= chip threshold / below it",
        "TN / FP": "non-mining chips with score below the chip threshold / at or above it",
        "sensitivity": "TP / (TP + FN)",
        "specificity": "TN / (TN + FP)",
        "auc": "area under the ROC curve of chip scores (threshold-free)",
        "chip threshold": (
            "lowest score giving the target specificity on the validation sample sets"
        ),
        "pixel threshold": (
            "probability >= threshold -> mining pixel (mask, polygons); fixed at "
            f"{config.pixel_threshold:g}"
        ),
        "la_pampa precision": (
            "share of the detected mining area (mask, pixel threshold, after the minimum "
            "mapping unit) lying within Amazon Mining Watch's footprint up to 2019 "
            "(mining_201800 + mining_201900) buffered by 100 m"
        ),
        "la_pampa polygon recall": (
            "share of that footprint's polygons (single parts, clipped to the tile, at least "
            "1 ha inside it) that contain detected mining"
        ),
        "speed": "benchmarks/bench_detect.py: full detect pipeline on seeded rasters (CPU)",
        "speed_cuda": "the same on a GPU (machine named in the entry)",
        "speed_none / speed_cuda_none": (
            "the same with one pass per tile (bench_detect --tta none, detect --tta none) "
            "where the card's test-time views are more"
        ),
        "inference_km2_per_s": (
            "tiled, blended inference alone, composite held in memory (bench_detect --inference)"
        ),
    }


def describe_architecture(m: ModelConfig) -> str:
    """Describe a network's architecture and size in one sentence (the card's ``training``)."""
    from asmspotter.detect.model import build_model, count_parameters

    n = count_parameters(build_model(m))
    w = ", ".join(str(x) for x in m.widths)
    if m.version == 1:
        return f"small encoder-decoder FCN (version 1), widths {w}, {n:,} parameters"
    if m.version == 3:
        return (
            f"encoder-decoder FCN (version 3): widths {w} at 1, 1/2, 1/4, 1/8 resolution; "
            "one 3 x 3 convolution at 10 m, two per coarser resolution (stride-2 downsampling, "
            "BatchNorm + ReLU) and a dilated one at 1/8; decoder: 1 x 1 lateral connections, "
            f"1 x 1 + 3 x 3 fusion per resolution and a 1 x 1 logit head; {n:,} parameters"
        )
    return (
        f"encoder-decoder FCN (version 2): widths {w} at 1, 1/2, 1/4, 1/8 resolution "
        "(3 stride-2 downsamplings, BatchNorm + ReLU), a context block at 1/8 resolution "
        "(residual 3 x 3 convolutions with dilation 2 and 4 plus a 7 x 7-cell local mean, "
        "receptive field well beyond one 48-px chip), skip connections back to 10 m and a "
        f"1 x 1 logit head; {n:,} parameters"
    )


def _stretch_text(config: TrainConfig) -> str:
    k = config.stretch_strength
    if config.stretch_keep >= 1.0:
        return "no display stretches (chips' own scaling only)"
    return (
        f"random display stretches on {1 - config.stretch_keep:.0%} of mosaics (strength "
        f"{k:g}: gain {0.7**k:.2f}-{1.7**k:.2f}, gamma {0.7**k:.2f}-{1.4**k:.2f}, offset, "
        "per-channel jitter, haze, noise, uint8 quantisation)"
    )


def _sampling_text(config: TrainConfig) -> str:
    if not config.set_balance:
        return "chips drawn uniformly within each label"
    which = "each label" if config.balance_negatives else "the mining label"
    return (
        f"chips drawn within {which} with probability proportional to (chips in their "
        f"sample set)^-{config.set_balance:g}"
        + ("" if config.balance_negatives else ", non-mining chips uniformly")
    )


def describe_method(config: TrainConfig) -> str:
    """Describe the training recipe of ``config`` in one paragraph (the card's ``training``)."""
    text = (
        "multiple-instance learning on 2 x 2 mosaics of chips: per chip, the mean of the top "
        f"{config.topk_fraction:.0%} pixel logits is supervised by the chip label (BCE), plus "
        f"{config.neg_pixel_weight} x per-pixel BCE to 0 on non-mining chips; "
        f"{config.pos_fraction:.0%} mining chips per batch, {_sampling_text(config)}; "
        f"augmentation: flips/rotations and {_stretch_text(config)}; AdamW + one-cycle LR; "
    )
    if config.ema_decay > 0:
        text += (
            f"exponential moving average of the weights (decay {config.ema_decay}) is "
            "validated and shipped; "
        )
    if config.init:
        text += (
            f"the network starts from the weights of {config.init} (its first layer extended "
            "to the input bands, the bands it lacks starting at zero); "
        )
    text += (
        "best epoch by validation ROC AUC (one view per chip)"
        if config.keep_epoch == "best"
        else f"the last of {config.epochs} epochs is kept"
    )
    if config.tta != "none":
        n = len(VIEW_SETS[config.tta])
        text += (
            f"; the shipped model averages the pixel probabilities of {n} test-time views "
            f"({config.tta}: "
            + (
                "the four 90-degree rotations"
                if config.tta == "rot4"
                else "rotations and mirror images"
            )
            + "), with which the chip threshold is "
            "chosen and every figure is measured"
        )
    return text


def split_rule(config: TrainConfig) -> str:
    """Describe how the chips were split into training, validation and held-out chips."""
    if config.split != "place":
        return (
            "whole sample sets (clear0.05 and clear0.75 composites of the same points "
            "together); held-out categories are never seen in training or threshold selection"
        )
    held = (
        f"fold {config.test_fold} is held out (never seen in training or threshold selection)"
        if config.test_fold
        else "no fold is held out"
    )
    val = (
        f"fold {config.val_fold} chooses the chip threshold"
        + (" and the epoch" if config.keep_epoch == "best" else "")
        if config.val_fold
        else "the training chips choose the chip threshold"
    )
    return (
        f"by place: each site (before and after chips together) goes to the "
        f"{config.place_block_deg:g}-degree block of its longitude and latitude; the blocks "
        f"are dealt into {config.place_folds} folds balanced by label (seed "
        f"{config.place_seed}); {held}; {val}; the other folds train the weights"
    )


def training_section(
    config: TrainConfig,
    chips_dir: Path,
    sets: Sequence[ChipArrays],
    history: Sequence[dict[str, Any]],
    notes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the card's ``training`` section: data, split, recipe and per-epoch history.

    Args:
        config: the recipe as trained (its ``model`` is the network's configuration).
        chips_dir: the galleries' folder.
        sets: the train, validation and held-out test chips.
        history: the per-epoch validation figures.
        notes: further entries (e.g. the blocks of each part, the starting weights).

    """
    import torch

    from asmspotter.detect.card import LEVELS

    train_set, val_set, test_set = sets
    if train_set.images.dtype == np.uint8:
        data = (
            "Amazon Mining Watch gallery chips (real Sentinel-2 L1C true colour, B4/B3/B2, "
            "value/3000 x 255, 48 x 48 px at 10 m), shared data amw/chips "
            "(Earth Genome, CC BY 4.0)"
        )
    else:
        what = LEVELS[config.level] if config.level else "surface reflectance"
        data = (
            f"GeoTIFF gallery chips of bands {', '.join(train_set.bands)} ({what} clipped "
            f"to [0, {reflectance_max(train_set.images):g}], 48 x 48 px at 10 m)"
        )

    def part(chips: ChipArrays) -> dict[str, Any]:
        return {"files": list(chips.files), "n_pos": chips.n_pos, "n_neg": chips.n_neg}

    held = "test_held_out_places" if config.split == "place" else "test_held_out_categories"
    section: dict[str, Any] = {
        "data": data,
        "chips_dir": str(chips_dir.name),
        "train": part(train_set),
        "validation": part(val_set),
        held: part(test_set),
        "split_rule": split_rule(config),
    }
    if config.sources:
        section["data_sources"] = list(config.sources)
    section.update(notes or {})
    section.update(
        {
            "architecture": describe_architecture(config.model),
            "method": describe_method(config),
            "config": config.to_dict(),
            "history": list(history),
            "torch": torch.__version__,
        }
    )
    return section


def rgb_limitations(metrics: Mapping[str, Any], n_parameters: int, tta: str) -> str:
    """Write the limitations of an RGB (PNG-gallery) model from its measured ``metrics``.

    Args:
        metrics: the card's metrics (``test_chips``, ``test_chips_under_other_stretches``
            and ``la_pampa_2019`` are used where present).
        n_parameters: the network's trainable parameters.
        tta: the card's test-time views.

    """
    n_views = len(VIEW_SETS[tta])
    size = (
        f"about {n_parameters / 1e6:.1f} M parameters"
        if n_parameters >= 100_000
        else f"{n_parameters:,} parameters"
    )
    text = f"RGB only, 48-px chip labels, {size}"
    if n_views > 1:
        words = _VIEW_WORDS.get(n_views, str(n_views))
        text += (
            f"; {words} test-time views per chip and tile (inference.tta {tta}), so inference "
            f"costs {words} passes"
        )
    parts = [text + "."]
    test = metrics.get("test_chips")
    if test and test.get("sensitivity") is not None:
        sens = test["sensitivity"]
        side = "below" if sens < SENSITIVITY_TARGET else "at or above"
        auc = "" if test.get("auc") is None else f", ROC AUC {test['auc']:.2f}"
        parts.append(
            "On the held-out categories the chip sensitivity at the validation-chosen "
            f"threshold is {side} the {SENSITIVITY_TARGET:.2f} target: {sens:.2f} at "
            f"specificity {test['specificity']:.2f}{auc} (see metrics.test_chips)."
        )
    others = [
        f"{name}: sensitivity {m['sensitivity']:.2f}, specificity {m['specificity']:.2f}"
        for name, m in metrics.get("test_chips_under_other_stretches", {}).items()
        if not name.startswith("chips ")
    ]
    if others:
        parts.append(
            "Other renderings shift the operating point ("
            + "; ".join(others)
            + "; see metrics.test_chips_under_other_stretches)."
        )
    lp = metrics.get("la_pampa_2019")
    if lp and lp.get("footprint_ha_in_tile"):
        cover = lp["detected_inside_ha"] / lp["footprint_ha_in_tile"]
        outside = lp["detected_ha"] - lp["detected_inside_ha"]
        parts.append(
            f"On La Pampa 2019 the maps cover {cover:.0%} of AMW's footprint "
            f"({lp['detected_inside_ha']:.0f} of {lp['footprint_ha_in_tile']:.0f} ha), with "
            f"{outside:.0f} ha detected outside it; they mark bare sediment and ponds of "
            "active mining and miss older, revegetating pits, so areas are underestimates."
        )
    return " ".join(parts)


def card_texts(
    config: TrainConfig,
    chips_dir: Path,
    metrics: Mapping[str, Any],
    png_chips: bool,
    n_parameters: int,
) -> dict[str, str]:
    """Return the card's ``description``, ``limitations`` and ``regenerate`` texts.

    Args:
        config: the recipe as trained.
        chips_dir: the galleries' folder.
        metrics: the figures measured on the model.
        png_chips: the model was trained on the true-colour PNG galleries.
        n_parameters: the network's trainable parameters.

    """
    if png_chips:
        return {
            "description": RGB_DESCRIPTION,
            "limitations": rgb_limitations(metrics, n_parameters, config.tta),
            "regenerate": RGB_REGENERATE,
        }
    bands = config.model.bands
    level = f" {config.level}" if config.level else ""
    return {
        "description": (
            f"artisanal gold-mining segmentation model for Sentinel-2{level} at 10 m on "
            f"{len(bands)} bands ({', '.join(bands)}): a fully convolutional encoder-decoder "
            "(plain torch) trained from chip-level labels by multiple-instance learning, giving "
            "a per-pixel mining probability. It reads reflectance composites holding these "
            "bands" + (f" made from {config.level} scenes." if config.level else ".")
        ),
        "limitations": multiband_limitations(config, chips_dir, metrics),
        "regenerate": (
            f"`asmspotter train --chips {chips_dir.name} --bands {','.join(bands)} "
            f"--name {config.name}` with the settings in training.config (seeded), i.e. "
            f"`asmspotter train --chips {chips_dir.name} --recipe {config.name}`, which reads "
            "them from this card (with --out elsewhere it leaves the shipped files alone)"
            + (
                f"; then `asmspotter train --chips {chips_dir.name} --recipe {config.name} "
                f"--cv {len(metrics['crossval'].get('folds', []))} --cv-by "
                f"{metrics['crossval'].get('by', 'sample_set')} --cv-specificity "
                f"{metrics['crossval'].get('specificity', 0.97):g} --record {config.name}` "
                "for the cross-validated figures"
                if "crossval" in metrics
                else ""
            )
            + "."
        ),
    }


def _mean_sd(summary: Mapping[str, Any], key: str) -> str:
    mean, sd = summary.get(f"{key}_mean"), summary.get(f"{key}_sd")
    if mean is None:
        return "n/a"
    return f"{mean:.2f}" + (f" +- {sd:.2f}" if sd is not None else "")


def crossval_sentence(cv: Mapping[str, Any]) -> str:
    """Summarise a recorded cross-validation (``metrics.crossval``) in one sentence."""
    by = "geographic blocks" if cv.get("by") == "place" else "sample sets"
    n = len(cv.get("folds", []))
    iv = cv.get("intervals_95", {})

    def interval(key: str) -> str:
        return f" (95 % interval {iv[key][0]:.2f}-{iv[key][1]:.2f})" if key in iv else ""

    parts = [
        f"ROC AUC {_mean_sd(cv, 'auc')} over folds, pooled {cv['pooled_auc']:.2f}" + interval("auc")
    ]
    for spec in ("0.95", "0.97"):
        key = f"pooled_sensitivity_at_{spec}"
        if key in cv:
            parts.append(
                f"sensitivity at specificity {spec} {_mean_sd(cv, f'sensitivity_at_{spec}')}, "
                f"pooled {cv[key]:.2f}" + interval(f"sensitivity_at_{spec}")
            )
    return f"Cross-validated over {n} folds of {by} (mean +- sd): " + "; ".join(parts) + "."


def multiband_limitations(config: TrainConfig, chips_dir: Path, metrics: Mapping[str, Any]) -> str:
    """Write the limitations of a GeoTIFF-gallery model from its measured ``metrics``."""
    parts = [
        f"Trained on the galleries of {chips_dir.name}. It needs reflectance composites with "
        "its bands"
        + (f", made from {config.level} scenes" if config.level else "")
        + " (display-stretched true colour cannot feed it), and was not checked on the La "
        "Pampa scene, which is true colour only."
    ]
    if "crossval" in metrics:
        parts.append(crossval_sentence(metrics["crossval"]))
    test = metrics.get("test_chips")
    if test and test.get("sensitivity") is not None and test.get("specificity") is not None:
        where = (
            f"the held-out places (fold {config.test_fold}, never seen in training or "
            "threshold choice)"
            if config.split == "place"
            else "the held-out categories"
        )
        auc_text = "" if test.get("auc") is None else f", ROC AUC {test['auc']:.2f}"
        parts.append(
            f"On {where}, at the threshold chosen for specificity "
            f"{config.target_specificity:g} on validation, it finds {test['sensitivity']:.2f} "
            f"of the {test['n_pos']} mining chips at specificity {test['specificity']:.2f} "
            f"({test['n_neg']} non-mining chips){auc_text}; with so few chips each figure is "
            "uncertain by several points (see the cross-validation's intervals)."
        )
    return " ".join(parts)


def record_metrics(model: str | Path, key: str, value: Mapping[str, Any]) -> Path:
    """Write figures into a model's card as ``metrics[key]`` and re-render its Markdown.

    The prose of a card trained on GeoTIFF galleries is rewritten from the new figures
    (cards of the PNG-gallery RGB models keep theirs).

    Args:
        model: model name in the models folder or a card path.
        key: the metrics entry (e.g. ``crossval``).
        value: the figures.

    Returns:
        The card's path.

    Raises:
        DataError: the card cannot be read.

    """
    from asmspotter.bands import DISPLAY_REFLECTANCE_MAX
    from asmspotter.detect.card import card_from_dict, load_card, render_markdown
    from asmspotter.detect.recipe import TrainConfig
    from asmspotter.geoio import atomic_output, read_json, write_json
    from asmspotter.layout import ModelFiles

    card, path = load_card(model)
    d = read_json(path)
    d.setdefault("metrics", {})[key] = dict(value)
    if card.reflectance_max != DISPLAY_REFLECTANCE_MAX and "config" in d.get("training", {}):
        config = TrainConfig.from_dict(d["training"]["config"])
        chips_dir = Path(str(d["training"].get("chips_dir", "chips")))
        d.update(card_texts(config, chips_dir, d["metrics"], False, 0))
    write_json(path, d)
    card = card_from_dict(d, str(path))
    with atomic_output(ModelFiles(path.parent, card.name).markdown) as tmp:
        tmp.write_text(render_markdown(card))
    return path
