"""The training recipe: every setting that determines a training run.

:class:`TrainConfig` holds the recipe (seed, schedule, sampling, loss weights,
augmentation strengths, threshold rule, network and split) and :func:`config_with` sets
its fields from ``FIELD=VALUE`` text (``asmspotter train --set``). The loop that follows a
recipe is :func:`asmspotter.detect.train.fit`; what the recipe does is described in
:mod:`asmspotter.detect.train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from asmspotter.detect import DEFAULT_MODEL
from asmspotter.detect.card import check_views
from asmspotter.detect.model import ModelConfig
from asmspotter.errors import InputError

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
        test_sets: held-out sample sets.
        val_sets: validation sample sets.
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
    settable = {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if f.name not in ("model", "test_sets", "val_sets", "smoke", "bands")
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
            if raw.lower() == "none" and key in optional_ints:
                value: Any = None
            elif isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1")
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
