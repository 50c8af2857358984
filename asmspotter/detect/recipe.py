"""The training recipe: every setting that determines a training run.

:class:`TrainConfig` holds the recipe (seed, schedule, sampling, loss weights,
augmentation strengths, threshold rule, network and split) and :func:`config_with` sets
its fields from ``FIELD=VALUE`` text (``asmspotter train --set``). The loop that follows a
recipe is :func:`asmspotter.detect.train.fit`; what the recipe does is described in
:mod:`asmspotter.detect.train`. :func:`initial_network` and :func:`model_config_for` give
the network a recipe starts from: its start weights and its input bands and normalisation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter.detect import DEFAULT_MODEL
from asmspotter.detect.card import check_views
from asmspotter.detect.chips import ChipArrays, reflectance_max
from asmspotter.detect.model import MiningNet, ModelConfig, extended_config
from asmspotter.errors import InputError

#: Ways of splitting chips into training, validation and held-out test chips.
SPLITS: tuple[str, ...] = ("sample_set", "place")

DEFAULT_TEST_SETS: tuple[str, ...] = (
    "v3.3_2023_positives",
    "bolivar_2020_thresh_0.8_sumbsample_5_positives",
    "amazonas_2020_thresh_0.8_sumbsample_3_positives",
    "landslide_negatives2025-08",
    "v2.0_bolivar_negatives",
    "v3.1_2023_negatives",
    "v2.4_amazonas_negatives",
)
#: Validation sample sets (early stopping and the threshold).
DEFAULT_VAL_SETS: tuple[str, ...] = (
    "v3.6_2023_positives",
    "v0.5-0.8-0.9ensemble_2023_positives",
    "v3.2_2023_negatives",
    "v2.6_amazon_thresh_0.8_negatives",
    "v3.4_2023_negatives",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Attributes:
        name: model name (file stem of weights and card).
        seed: seed of every random choice.
        epochs: passes over the training chips.
        batch_mosaics: 2 x 2 mosaics per step (4 chips each).
        lr: peak learning rate (one-cycle schedule, AdamW).
        weight_decay: AdamW weight decay.
        pos_fraction: share of mining chips drawn into batches.
        topk_fraction: MIL pooling fraction (also the chip-score rule).
        neg_pixel_weight: weight of the all-pixels-negative term for non-mining chips.
        stretch_strength: scale of the random display stretches (0 = none).
        stretch_keep: share of mosaics left in the chips' own scaling.
        ema_decay: per-step decay of the exponential moving average of the weights (and
            BatchNorm statistics) that is validated and shipped (0 = no averaging).
        set_balance: exponent a of the sample-set balancing: within its label, a chip is
            drawn with probability proportional to (chips in its sample set)^-a; 0 draws
            chips uniformly (large sets dominate), 1 gives every sample set the same share.
        balance_negatives: apply ``set_balance`` to the non-mining chips too (else only to
            the mining chips).
        target_specificity: validation specificity the chip threshold is chosen for.
        tta: test-time views of the shipped model (a key of
            :data:`~asmspotter.detect.card.VIEW_SETS`): the final evaluation, the threshold
            and the card use them; the per-epoch validation uses one view.
        pixel_threshold: probability threshold of the maps (fixed a priori, not tuned).
        bands: input bands of the network, picked from the galleries' bands (None = the
            ``model``'s, true colour). A band set other than the ``model``'s is normalised
            with the per-band mean and standard deviation of the training chips.
        model: architecture, and the bands and normalisation unless ``bands`` is given.
        test_sets: held-out sample sets (``split`` ``sample_set``).
        val_sets: validation sample sets (``split`` ``sample_set``).
        split: how chips are split into training, validation and held-out test chips:
            ``sample_set`` (whole sample sets, ``test_sets`` and ``val_sets``) or ``place``
            (geographic blocks read from the galleries' chip table, dealt into
            ``place_folds`` folds; see :mod:`asmspotter.detect.places`).
        place_folds: folds the blocks are dealt into (``split`` ``place``).
        place_block_deg: side of the blocks in degrees.
        place_seed: seed of the dealing order of the blocks (apart from ``seed``, so that a
            new training seed keeps the same held-out places).
        test_fold: the fold held out from training and threshold choice (1-based; 0 = none).
        val_fold: the fold that chooses the epoch (``keep_epoch`` ``best``) and the chip
            threshold (1-based; 0 = validate on the training chips).
        keep_epoch: ``best`` (the epoch with the best validation AUC) or ``last``.
        init: model (name in the models folder or card path) whose weights start the
            network: its architecture is kept, its first layer is extended to the input
            bands (bands it lacks start with zero weights) and its input normalisation is
            kept for the bands it has (None = random initialisation).
        local_norm: side (odd, pixels) of the window the network standardises each band
            over before its first layer (:attr:`~asmspotter.detect.model.ModelConfig.local_norm`;
            0 = as ``model`` or ``init`` has it, off for the shipped models).
        trainable: ``all`` blocks of the network learn; the others need ``init`` and keep
            the rest of its weights and batch-norm statistics
            (:data:`~asmspotter.detect.model.TRAINABLE_BLOCKS`): ``ends`` trains the first
            layer, the decoder and the head; ``decoder`` the decoder and the head; ``head``
            only the last 1 x 1 convolution (a linear read-out of the start network's
            features). With the first layer frozen, bands ``init`` lacks stay unread.
        init_norm: with ``init``: ``keep`` its input normalisation for the bands it reads,
            or ``refit`` every band's mean and deviation to the training chips (for chips
            of another processing level, e.g. L1C top-of-atmosphere reflectance, whose
            true colour is brighter than the chips ``init`` was trained on).
        level: processing level of the imagery the chips come from (``L1C`` top-of-
            atmosphere or ``L2A`` surface reflectance; None = as the AMW chips). The card
            records it, and ``fetch``/``run --model`` build composites of that level.
        sources: data sources of the chips with their licences, recorded in the card.
        threads: torch CPU threads (0 = leave torch's default).
        max_chips_per_file: cap per gallery (None = all).
        max_steps: stop after this many steps (smoke runs), or None.
        smoke: a few-step run for tests and CI (no La Pampa validation).

    """

    name: str = DEFAULT_MODEL
    seed: int = 20190818
    epochs: int = 40
    batch_mosaics: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    pos_fraction: float = 0.35
    topk_fraction: float = 0.5
    neg_pixel_weight: float = 0.2
    stretch_strength: float = 0.5
    stretch_keep: float = 0.5
    ema_decay: float = 0.0
    set_balance: float = 0.5
    balance_negatives: bool = True
    target_specificity: float = 0.98
    tta: str = "rot4"
    pixel_threshold: float = 0.5
    bands: tuple[str, ...] | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    test_sets: tuple[str, ...] = DEFAULT_TEST_SETS
    val_sets: tuple[str, ...] = DEFAULT_VAL_SETS
    split: str = "sample_set"
    place_folds: int = 5
    place_block_deg: float = 2.5
    place_seed: int = 0
    test_fold: int = 0
    val_fold: int = 0
    keep_epoch: str = "best"
    init: str | None = None
    init_norm: str = "keep"
    local_norm: int = 0
    trainable: str = "all"
    level: str | None = None
    sources: tuple[str, ...] = ()
    threads: int = 2
    max_chips_per_file: int | None = None
    max_steps: int | None = None
    smoke: bool = False

    def __post_init__(self) -> None:
        check_views(self.tta)
        checks = {
            "epochs >= 1": self.epochs >= 1,
            "batch_mosaics >= 1": self.batch_mosaics >= 1,
            "lr > 0": self.lr > 0,
            "weight_decay >= 0": self.weight_decay >= 0,
            "0 < pos_fraction < 1": 0 < self.pos_fraction < 1,
            "0 < topk_fraction <= 1": 0 < self.topk_fraction <= 1,
            "neg_pixel_weight >= 0": self.neg_pixel_weight >= 0,
            "stretch_strength >= 0": self.stretch_strength >= 0,
            "0 <= stretch_keep <= 1": 0 <= self.stretch_keep <= 1,
            "0 <= ema_decay < 1": 0 <= self.ema_decay < 1,
            "set_balance >= 0": self.set_balance >= 0,
            "0 < target_specificity < 1": 0 < self.target_specificity < 1,
            "0 < pixel_threshold < 1": 0 < self.pixel_threshold < 1,
            "threads >= 0": self.threads >= 0,
            "max_chips_per_file >= 1": self.max_chips_per_file is None
            or self.max_chips_per_file >= 1,
            "max_steps >= 1": self.max_steps is None or self.max_steps >= 1,
            "bands name each band once": self.bands is None
            or (len(self.bands) > 0 and len(set(self.bands)) == len(self.bands)),
            "split is sample_set or place": self.split in SPLITS,
            "place_folds >= 2": self.place_folds >= 2,
            "place_block_deg > 0": self.place_block_deg > 0,
            "0 <= test_fold <= place_folds": 0 <= self.test_fold <= self.place_folds,
            "0 <= val_fold <= place_folds": 0 <= self.val_fold <= self.place_folds,
            "val_fold differs from test_fold": not self.val_fold or self.val_fold != self.test_fold,
            "keep_epoch is best or last": self.keep_epoch in ("best", "last"),
            "init_norm is keep or refit": self.init_norm in ("keep", "refit"),
            "local_norm is 0 or odd": self.local_norm == 0
            or (self.local_norm > 0 and self.local_norm % 2 == 1),
            "trainable is all, ends, decoder or head": self.trainable
            in ("all", "ends", "decoder", "head"),
            "a frozen encoder needs init": self.trainable == "all" or self.init is not None,
            "level is L1C or L2A": self.level in (None, "L1C", "L2A"),
        }
        broken = [rule for rule, ok in checks.items() if not ok]
        if broken:
            raise ValueError("training settings out of range: " + ", ".join(broken))

    @classmethod
    def smoke_config(cls, **kw: Any) -> TrainConfig:
        """Return a tiny, fast configuration: small network, few chips, few steps."""
        base = cls(
            epochs=1,
            batch_mosaics=4,
            lr=1e-2,
            model=ModelConfig(widths=(8, 8, 8, 8), version=1),
            max_chips_per_file=16,
            max_steps=5,
            smoke=True,
        )
        return replace(base, **kw)

    @property
    def input_bands(self) -> tuple[str, ...]:
        """The bands the network reads: ``bands``, or else the ``model``'s."""
        return self.model.bands if self.bands is None else tuple(self.bands)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``bands`` only where it is set)."""
        d = asdict(self)
        d["model"] = self.model.to_dict()
        if self.bands is None:
            del d["bands"]
        else:
            d["bands"] = list(self.bands)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build a recipe from (part of) :meth:`to_dict` output; absent fields keep defaults.

        Raises:
            InputError: an unknown field or a value out of range.

        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown recipe field(s): {', '.join(unknown)}")
        kw: dict[str, Any] = dict(d)
        for key in ("test_sets", "val_sets", "sources", "bands"):
            if kw.get(key) is not None:
                kw[key] = tuple(str(v) for v in kw[key])
        if "model" in kw:
            kw["model"] = ModelConfig.from_dict(kw["model"])
        try:
            return cls(**kw)
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(f"invalid recipe: {exc}") from None


def config_with(config: TrainConfig, assignments: Sequence[str]) -> TrainConfig:
    """Return ``config`` with ``FIELD=VALUE`` assignments applied (command-line recipes).

    Only the scalar fields of :class:`TrainConfig` can be set; a value is read as the type
    of the field's current value (``true``/``false`` for flags, ``none`` for optional
    numbers).

    Raises:
        InputError: an assignment is malformed, names no settable field, or has a value of
            the wrong type.

    """
    optional_ints = ("max_chips_per_file", "max_steps")
    optional_strs = ("init", "level")
    settable = {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if f.name not in ("model", "test_sets", "val_sets", "smoke", "bands", "sources")
    }
    changes: dict[str, Any] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in settable:
            raise InputError(
                f"cannot set {text!r}: expected FIELD=VALUE with FIELD one of "
                + ", ".join(sorted(settable))
            )
        current = settable[key]
        try:
            if raw.lower() == "none" and key in optional_ints + optional_strs:
                value: Any = None
            elif isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1")
            elif key in optional_strs:
                value = raw
            elif isinstance(current, int) or key in optional_ints:
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
        except ValueError:
            kind = type(current).__name__ if current is not None else "int"
            raise InputError(f"cannot set {key}: {raw!r} is not a valid {kind}") from None
        changes[key] = value
    try:
        return replace(config, **changes)
    except ValueError as exc:
        raise InputError(f"invalid recipe: {exc}") from exc


def read_recipe(source: str) -> TrainConfig:
    """Read a recipe: a JSON file of recipe fields, or the recipe a model was trained with.

    Args:
        source: a ``.json`` file holding :class:`TrainConfig` fields (those absent keep
            their defaults), or a model name or card path (its ``training.config``).

    Raises:
        InputError: the file or model is missing, or the recipe is invalid.
        DataError: the file is not readable JSON.

    """
    from asmspotter.errors import DataError

    path = Path(source)
    if path.suffix == ".json" and not path.name.endswith(".card.json"):
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"recipe file not found: {path}") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the recipe {path} ({exc})") from None
        if not isinstance(d, dict):
            raise DataError(f"{path}: a recipe is a JSON object of recipe fields")
        return TrainConfig.from_dict(d)
    from asmspotter.detect.card import load_card

    card, where = load_card(source)
    d = card.training.get("config")
    if not isinstance(d, dict):
        raise DataError(f"{where} records no recipe (training.config)")
    return TrainConfig.from_dict(d)


def initial_network(config: TrainConfig) -> MiningNet | None:
    """Return the network ``config.init`` names (on the CPU), or None without one.

    Raises:
        DataError: the model's card or weights are missing or do not agree.

    """
    if config.init is None:
        return None
    from asmspotter.detect.loader import load_detector

    return load_detector(config.init, device="cpu", fold=False).model


def band_config(
    config: TrainConfig, chips: ChipArrays, init: MiningNet | None = None
) -> ModelConfig:
    """Return the network's configuration for ``config``'s input bands.

    The ``model`` as it is when its bands are the input bands and no ``init`` network is
    given; otherwise the architecture of ``init`` (or ``model``) on ``config.bands``,
    normalised with the per-band mean and standard deviation of ``chips``' model input
    (reflectance), rounded to 4 decimals, except for the bands ``init`` reads, which keep
    its normalisation unless ``config.init_norm`` is ``refit``.

    Raises:
        InputError: the chips do not hold the input bands in order.

    """
    bands = config.input_bands
    if init is None and bands == config.model.bands:
        return config.model
    if chips.bands != bands:
        raise InputError(
            f"chips of bands {', '.join(chips.bands)} cannot train a model on {', '.join(bands)}"
        )
    top = reflectance_max(chips.images)
    if chips.images.dtype == np.uint8:
        x = chips.images.astype(np.float64) * (top / 255.0)
    else:
        x = np.clip(chips.images.astype(np.float64), 0.0, top)
    flat = x.reshape(-1, len(bands))
    mean = tuple(round(float(v), 4) for v in flat.mean(axis=0))
    std = tuple(round(max(float(v), 1e-3), 4) for v in flat.std(axis=0))
    if init is not None and config.init_norm == "keep":
        return extended_config(init.config, bands, mean, std)
    base = config.model if init is None else init.config
    return replace(base, bands=bands, mean=mean, std=std)


def model_config_for(
    config: TrainConfig, chips: ChipArrays, init: MiningNet | None = None
) -> ModelConfig:
    """Return the network's configuration for ``config``.

    Its bands and normalisation come from :func:`band_config`; ``config.local_norm``, where
    it is on, sets the network's local standardisation.

    Raises:
        InputError: the chips do not hold the input bands in order.

    """
    net = band_config(config, chips, init)
    return replace(net, local_norm=config.local_norm) if config.local_norm else net
