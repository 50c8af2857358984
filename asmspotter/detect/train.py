"""Seeded multiple-instance training of the mining network from chip labels.

Method (also written into the model card):

- **Data.** Gallery chips (48 x 48 px, chips' value/3000 scaling) with chip-level labels.
  Sample sets are split whole (``clear0.05`` and ``clear0.75`` together) into train,
  validation and held-out test categories. The same code trains on GeoTIFF galleries of
  any band set (e.g. the ten L2A bands, ``TrainConfig.bands``); such a model is normalised
  with its training chips' per-band mean and deviation and reads reflectance up to
  :data:`~asmspotter.detect.chips.MULTIBAND_REFLECTANCE_MAX`.
- **Mosaics.** Each training sample is a 2 x 2 mosaic of four random chips (96 x 96 px), so the
  network sees context across chip borders as it will inside large rasters.
- **MIL loss.** The network outputs a pixel logit map; for each quadrant (chip) the mean of the
  top ``topk_fraction`` of its pixel logits is supervised by the chip label (binary
  cross-entropy). Every pixel of a non-mining chip is additionally pushed to "not mining".
- **Stretch-robust augmentation.** Flips and rotations per chip; per mosaic a random display
  stretch (gain, gamma, offset, per-channel colour jitter, haze, noise, uint8 quantisation and
  saturation) so that the chips' scaling, the La Pampa visualisation stretch and Earth Search's
  ``visual`` asset all look familiar.
- **Selection.** The epoch with the best validation ROC AUC (one view per chip) is kept; the
  chip threshold is the lowest score giving the target specificity on validation, with the
  chips scored as they will be used: averaged over the test-time views (``tta``, the four
  rotations by default). The pixel threshold of the maps is fixed at 0.5 a priori.
- **Sample-set balancing.** Within each label a chip is drawn with probability proportional
  to (chips in its sample set)^-``set_balance`` (0.5), so the small hard-negative sets weigh
  more than the many random and cloud negatives.
- **Options not used by the shipped model.** ``ModelConfig(version=2)`` (deeper encoder-decoder
  with a 1/8-resolution context block) and ``ema_decay`` > 0 (validate and ship an exponential
  moving average of the weights) did not beat the defaults on validation. The figures of every
  recipe tried are in ``data/models/README.md``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from asmspotter.detect import DEFAULT_MODEL
from asmspotter.detect.card import VIEW_SETS, check_views
from asmspotter.detect.chips import (
    CHIP_SIZE,
    RGB_BANDS,
    ChipArrays,
    Gallery,
    check_one_kind,
    read_galleries,
    reflectance_max,
    sample_set_of,
    split_galleries,
    stack_galleries,
)
from asmspotter.detect.evaluate import chip_scores, count, topk_mean
from asmspotter.detect.model import MiningNet, ModelConfig, build_model, save_weights
from asmspotter.errors import DataError, InputError

#: Held-out categories (whole sample sets): two positive sets and hard/ordinary negatives.
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
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(widths=(16, 32, 64, 128), version=3)
    )
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


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        weights: path of the saved weights.
        card: path of the saved card.
        losses: mean loss per logged interval.
        metrics: validation and test figures.
        seconds: wall time.

    """

    weights: Path
    card: Path
    losses: tuple[float, ...]
    metrics: dict[str, Any]
    seconds: float


# --------------------------------------------------------------------------- augmentation


def random_stretch(
    t: torch.Tensor, gen: torch.Generator, strength: float = 1.0, keep: float = 0.35
) -> torch.Tensor:
    """Apply a random display stretch to images in [0, 1] (n, bands, rows, cols), one per image.

    The stretch models other visualisations of the same reflectance: overall gain,
    gamma, per-channel gain and offset, haze, noise, saturation at 1 and uint8 steps.

    Args:
        t: images in [0, 1].
        gen: torch generator.
        strength: scale of the random gain, gamma, colour and offset changes.
        keep: probability that an image is left unchanged.

    """
    n, c = t.shape[:2]
    dev = t.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, device=dev)

    keep_on = (torch.rand(n, 1, 1, 1, generator=gen, device=dev) < keep).float()
    gain = torch.exp(u(math.log(0.7), math.log(1.7), n, 1, 1, 1) * strength)
    gamma = torch.exp(u(math.log(0.7), math.log(1.4), n, 1, 1, 1) * strength)
    chan = torch.exp(0.08 * strength * torch.randn(n, c, 1, 1, generator=gen, device=dev))
    off = u(-0.04, 0.10, n, 1, 1, 1) * strength + 0.02 * torch.randn(
        n, c, 1, 1, generator=gen, device=dev
    )
    haze_on = (torch.rand(n, 1, 1, 1, generator=gen, device=dev) < 0.3).float()
    haze = haze_on * u(0.0, 0.2, n, 1, 1, 1)
    haze_col = u(0.5, 0.9, n, c, 1, 1)
    s = torch.clamp(t, 1e-4, 1.0) ** gamma * gain * chan + off
    s = s * (1 - haze) + haze * haze_col
    s = s + 0.01 * torch.randn(s.shape, generator=gen, device=dev)
    s = torch.round(torch.clamp(s, 0.0, 1.0) * 255.0) / 255.0
    return keep_on * t + (1 - keep_on) * s


def _dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flip / 90-degree rotation per image of (n, c, s, s)."""
    k = torch.randint(0, 8, (x.shape[0],), generator=gen)
    out = x.clone()
    for v in range(8):
        sel = (k == v).nonzero().flatten()
        if len(sel):
            y = torch.rot90(x[sel], v % 4, dims=(2, 3))
            out[sel] = torch.flip(y, dims=(3,)) if v >= 4 else y
    return out


def make_batch(
    images: np.ndarray,
    idx: np.ndarray,
    gen: torch.Generator,
    augment: bool = True,
    stretch_strength: float = 1.0,
    stretch_keep: float = 0.35,
) -> torch.Tensor:
    """Build mosaics of model input from chip indexes.

    The chips are brought to [0, 1] (uint8 / 255, or reflectance / its clip), augmented
    there, and scaled back to reflectance.

    Args:
        images: (n, 48, 48, bands) chips, uint8 (PNG galleries) or float32 reflectance.
        idx: (b, 4) chip indexes, quadrants in row-major order.
        gen: torch generator.
        augment: apply flips, rotations and stretches.
        stretch_strength: see :func:`random_stretch`.
        stretch_keep: see :func:`random_stretch`.

    Returns:
        float32 (b, bands, 96, 96) model input (reflectance; chips' scaling for uint8).

    """
    b, c = idx.shape[0], images.shape[-1]
    top = reflectance_max(images)
    x = torch.from_numpy(images[idx.reshape(-1)]).permute(0, 3, 1, 2).float()
    x = x / 255.0 if images.dtype == np.uint8 else x.clamp(0.0, top) / top
    if augment:
        x = _dihedral(x, gen)
    s = CHIP_SIZE
    x = x.view(b, 2, 2, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 2 * s, 2 * s)
    if augment:
        x = random_stretch(x, gen, stretch_strength, stretch_keep)
    return x * top


def mil_loss(
    logits: torch.Tensor, labels: torch.Tensor, topk_fraction: float, neg_pixel_weight: float
) -> torch.Tensor:
    """MIL loss of mosaic logits (b, 1, 96, 96) against quadrant labels (b, 4)."""
    b = logits.shape[0]
    s = CHIP_SIZE
    q = logits.view(b, 2, s, 2, s).permute(0, 1, 3, 2, 4).reshape(b * 4, s, s)
    y = labels.reshape(-1).float()
    pooled = topk_mean(q, topk_fraction)
    loss = F.binary_cross_entropy_with_logits(pooled, y)
    neg = y == 0
    if neg_pixel_weight > 0 and bool(neg.any()):
        qn = q[neg]
        loss = loss + neg_pixel_weight * F.binary_cross_entropy_with_logits(
            qn, torch.zeros_like(qn)
        )
    return loss


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move ``ema``'s weights and buffers towards ``model``'s (integer buffers are copied)."""
    for e, m in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(m.detach(), alpha=1.0 - decay)
        else:
            e.copy_(m)


def set_sampling_weights(chips: ChipArrays, indexes: np.ndarray, balance: float) -> np.ndarray:
    """Return drawing probabilities of ``indexes`` that balance sample sets.

    Args:
        chips: the training chips (``source`` names each chip's gallery).
        indexes: the chip indexes to draw from (one label).
        balance: exponent a; a chip's weight is (chips of its sample set among
            ``indexes``)^-a, so 0 is uniform and 1 gives each sample set an equal share.

    Returns:
        Probabilities summing to 1, one per index.

    """
    sets = np.array([sample_set_of(chips.files[i]) for i in chips.source[indexes]])
    _, inverse, counts = np.unique(sets, return_inverse=True, return_counts=True)
    w = counts[inverse].astype(np.float64) ** -balance
    return w / w.sum()


# --------------------------------------------------------------------------- thresholds


def threshold_for_specificity(neg_scores: np.ndarray, specificity: float) -> float:
    """Lowest threshold (score >= threshold -> mining) giving at least ``specificity``."""
    if len(neg_scores) == 0:
        return 0.5
    s = np.sort(neg_scores)
    n_fp_allowed = int(math.floor((1.0 - specificity) * len(s)))
    # Threshold just above the (n - n_fp_allowed)-th lowest negative score.
    ref = s[len(s) - n_fp_allowed - 1]
    return float(min(max(np.nextafter(np.float32(ref), np.float32(1.0)), 1e-4), 1.0))


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney), or None with one class only."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _metrics(labels: np.ndarray, scores: np.ndarray, thr: float) -> dict[str, Any]:
    c = count(labels, scores >= thr)
    d = c.to_dict()
    d["auc"] = auc(labels, scores)
    return d


#: Fixed alternative stretches the test chips are also scored under (robustness check).
FIXED_STRETCHES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "chips (value/3000)": lambda t: t,
    "visual-like (L2A TCI: 1.5x brighter)": lambda t: np.clip(t * 1.5, 0, 1),
    "la-pampa-like (gamma 0.75, +0.05 offset)": lambda t: np.clip(t**0.75 + 0.05, 0, 1),
}


def _stretched(images: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    t = images.astype(np.float32) / 255.0
    return np.round(np.clip(f(t), 0, 1) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- training


def load_split(
    chips_dir: Path, config: TrainConfig
) -> tuple[ChipArrays, ChipArrays, ChipArrays, list[Gallery]]:
    """Read galleries and split them into train / val / test chip arrays of the input bands.

    Raises:
        InputError: the folder holds no gallery, or the galleries lack an input band.
        DataError: no training chips of both labels, or galleries of different kinds.

    """
    galleries = read_galleries(chips_dir, config.max_chips_per_file)
    check_one_kind(galleries)
    split = split_galleries(galleries, config.test_sets, config.val_sets)
    train = stack_galleries(split.train).select(config.input_bands)
    val, test = (
        stack_galleries(s, like=train).select(config.input_bands) for s in (split.val, split.test)
    )
    if len(train) == 0 or train.n_pos == 0 or train.n_neg == 0:
        raise DataError(f"no training chips of both labels in {chips_dir}")
    if len(val) == 0 or val.n_pos == 0 or val.n_neg == 0:
        val = train  # tiny fixtures: validate on the training chips
    return train, val, test, galleries


def model_config_for(config: TrainConfig, chips: ChipArrays) -> ModelConfig:
    """Return the network's configuration for ``config``'s input bands.

    The ``model`` as it is when its bands are the input bands; otherwise the same
    architecture on ``config.bands``, normalised with the per-band mean and standard
    deviation of ``chips``' model input (reflectance), rounded to 4 decimals.

    Raises:
        InputError: the chips do not hold the input bands in order.

    """
    bands = config.input_bands
    if bands == config.model.bands:
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
    return replace(config.model, bands=bands, mean=mean, std=std)


def check_device(device: str) -> None:
    """Raise InputError when ``device`` names CUDA and torch sees none."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"training on {device} was asked for, but torch sees no CUDA device")


@dataclass(frozen=True)
class FitResult:
    """The network a training loop produced.

    Attributes:
        model: the kept weights, on the CPU, in eval mode.
        losses: mean loss per logged interval.
        history: per-epoch validation figures (one view per chip).
        epoch: the epoch whose weights were kept.

    """

    model: MiningNet
    losses: tuple[float, ...]
    history: tuple[dict[str, Any], ...]
    epoch: int


def fit(
    config: TrainConfig,
    train_set: ChipArrays,
    val_set: ChipArrays,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    t0: float | None = None,
    select_best: bool = True,
) -> FitResult:
    """Run the seeded training loop of ``config`` on chip arrays.

    Every random choice (initial weights, batches, augmentation) is drawn from
    ``config.seed``, so the same inputs give the same weights.

    Args:
        config: the recipe.
        train_set: chips the weights are fitted to.
        val_set: chips scored after every epoch (one view per chip).
        device: torch device of the steps and per-epoch scoring.
        log: callable receiving one line per epoch (None = silent).
        t0: start time for the elapsed seconds in the log (None = now).
        select_best: keep the epoch with the best validation (AUC, sensitivity), the
            shipped rule; False keeps the last epoch, so that figures measured on
            ``val_set`` afterwards are not biased by the choice (cross-validation).

    Returns:
        The kept network (on the CPU) with the loss curve and per-epoch history.

    """
    say = log or (lambda _m: None)
    check_device(device)
    t0 = time.time() if t0 is None else t0
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    # channels_last runs the convolutions about 1.4x faster on CPU (same arithmetic).
    net_config = model_config_for(config, train_set)
    model = build_model(net_config).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = copy.deepcopy(model).requires_grad_(False) if config.ema_decay > 0 else model
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    chips_per_step = 4 * config.batch_mosaics
    steps_per_epoch = max(1, len(train_set) // chips_per_step)
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=max(total, 2), pct_start=0.15
    )
    pos_idx = np.flatnonzero(train_set.labels == 1)
    neg_idx = np.flatnonzero(train_set.labels == 0)
    labels_t = torch.from_numpy(train_set.labels).to(device)
    # (uniform draws keep the random stream of the runs made before set balancing existed)
    p_pos = (
        set_sampling_weights(train_set, pos_idx, config.set_balance) if config.set_balance else None
    )
    p_neg = (
        set_sampling_weights(train_set, neg_idx, config.set_balance)
        if config.set_balance and config.balance_negatives
        else None
    )

    losses: list[float] = []
    best: tuple[float, float] = (-1.0, -1.0)
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    history: list[dict[str, Any]] = []
    step = 0
    running: list[float] = []
    epoch = 0
    while step < total:
        model.train()
        for _ in range(steps_per_epoch):
            if step >= total:
                break
            is_pos = rng.random(chips_per_step) < config.pos_fraction
            idx = np.where(
                is_pos,
                rng.choice(pos_idx, chips_per_step, p=p_pos),
                rng.choice(neg_idx, chips_per_step, p=p_neg),
            ).reshape(config.batch_mosaics, 4)
            x = make_batch(
                train_set.images, idx, gen, True, config.stretch_strength, config.stretch_keep
            ).to(device, memory_format=torch.channels_last)
            y = labels_t[torch.from_numpy(idx).to(device)]
            loss = mil_loss(model(x), y, config.topk_fraction, config.neg_pixel_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not model:
                _ema_update(ema, model, min(config.ema_decay, (1 + step) / (10 + step)))
            running.append(float(loss.detach()))
            step += 1
            if len(running) >= (1 if config.smoke else 20):
                losses.append(float(np.mean(running)))
                running = []
        if running:
            losses.append(float(np.mean(running)))
            running = []
        epoch += 1
        scores = chip_scores(ema, val_set.images, config.topk_fraction, device=device)
        thr = threshold_for_specificity(scores[val_set.labels == 0], config.target_specificity)
        m = _metrics(val_set.labels, scores, thr)
        key = (m["auc"] or 0.0, m["sensitivity"] or 0.0)
        history.append({"epoch": epoch, "step": step, "loss": losses[-1], **m, "threshold": thr})
        say(
            f"epoch {epoch} step {step}/{total} loss {losses[-1]:.4f} val auc {m['auc']:.4f} "
            f"sens {m['sensitivity']:.3f} spec {m['specificity']:.3f} thr {thr:.3f} "
            f"({time.time() - t0:.0f}s)"
        )
        if key >= best or not select_best:
            best, best_epoch = key, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in ema.state_dict().items()}
    assert best_state is not None
    model = model.cpu()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, tuple(losses), tuple(history), best_epoch)


def train(
    config: TrainConfig,
    chips_dir: str | Path,
    out_dir: str | Path,
    log: Callable[[str], None] | None = None,
    validate_la_pampa: bool = True,
    device: str = "cpu",
) -> TrainResult:
    """Train, select the threshold, evaluate, and write weights, card and Markdown card.

    Args:
        config: the run's configuration.
        chips_dir: folder of galleries (PNG or GeoTIFF).
        out_dir: folder to write ``<name>.pt``, ``<name>.card.json`` and ``<name>.md`` to.
        log: callable receiving progress lines (None = silent).
        validate_la_pampa: also run the La Pampa 2019 validation when the shared scene exists.
        device: torch device of the training steps and per-epoch validation (``cpu`` or
            ``cuda``). Batches are drawn and augmented on the CPU with the same random stream
            either way; the chosen weights are evaluated and saved on the CPU.

    Returns:
        The paths written and the figures measured.

    Raises:
        InputError: ``device`` names CUDA and no CUDA device is available.

    """
    from asmspotter.detect.card import ModelCard, render_markdown, sha256_of
    from asmspotter.geoio import atomic_output, write_json

    say = log or (lambda _m: None)
    check_device(device)
    t0 = time.time()
    chips_dir = Path(chips_dir)
    train_set, val_set, test_set, _ = load_split(chips_dir, config)
    say(
        f"chips: train {len(train_set)} ({train_set.n_pos} mining), val {len(val_set)} "
        f"({val_set.n_pos}), test {len(test_set)} ({test_set.n_pos})"
    )
    fitted = fit(config, train_set, val_set, device=device, log=say, t0=t0)
    model, losses, history = fitted.model, list(fitted.losses), list(fitted.history)
    config = replace(config, model=model.config)  # the card names the network as trained
    png_chips = train_set.images.dtype == np.uint8

    views = config.tta
    val_scores = chip_scores(model, val_set.images, config.topk_fraction, views=views)
    thr = threshold_for_specificity(val_scores[val_set.labels == 0], config.target_specificity)
    metrics: dict[str, Any] = {"validation_chips": _metrics(val_set.labels, val_scores, thr)}
    if len(test_set):
        test_scores = chip_scores(model, test_set.images, config.topk_fraction, views=views)
        metrics["test_chips"] = _metrics(test_set.labels, test_scores, thr)
        per_file = []
        for i, name in enumerate(test_set.files):
            sel = test_set.source == i
            c = count(test_set.labels[sel], test_scores[sel] >= thr)
            per_file.append({"file": name, **c.to_dict()})
        metrics["test_chips_per_file"] = per_file
        if png_chips:  # display renderings concern true-colour chips only
            robust = {}
            for label, f in FIXED_STRETCHES.items():
                s = chip_scores(
                    model, _stretched(test_set.images, f), config.topk_fraction, views=views
                )
                m = _metrics(test_set.labels, s, thr)
                robust[label] = {k: m[k] for k in ("sensitivity", "specificity", "auc")}
            metrics["test_chips_under_other_stretches"] = robust
        say(
            f"test: sens {metrics['test_chips']['sensitivity']:.3f} "
            f"spec {metrics['test_chips']['specificity']:.3f} "
            f"auc {metrics['test_chips']['auc']:.4f} at threshold {thr:.3f}"
        )

    out = Path(out_dir)
    wpath = save_weights(model, out / f"{config.name}.pt")
    card = ModelCard(
        name=config.name,
        weights=wpath.name,
        sha256=sha256_of(wpath),
        bands=model.config.bands,
        chip_topk_fraction=config.topk_fraction,
        chip_threshold=thr,
        pixel_threshold=config.pixel_threshold,
        tta=config.tta,
        reflectance_max=reflectance_max(train_set.images),
        training=_training_section(config, chips_dir, train_set, val_set, test_set, history),
        metrics=metrics,
        definitions=DEFINITIONS,
        extra=(
            {"description": DESCRIPTION, "limitations": LIMITATIONS, "regenerate": REGENERATE}
            if png_chips
            else _multiband_texts(config, chips_dir)
        ),
    )
    if model.config.bands != RGB_BANDS:
        say("La Pampa 2019 validation skipped: its scene is true colour only")
    elif validate_la_pampa and not config.smoke:
        from asmspotter import paths
        from asmspotter.detect import validate

        if validate.la_pampa_available():
            fig = paths.PROJECT_ROOT / "docs" / "figures" / "la_pampa_2019_validation.png"
            lp = validate.validate_la_pampa(model, card, figure=fig)
            metrics["la_pampa_2019"] = lp.to_dict()
            say(f"La Pampa 2019: {lp.to_dict()}")
            card = replace(card, metrics=metrics)
    cpath = write_json(out / f"{config.name}.card.json", card.to_dict())
    with atomic_output(out / f"{config.name}.md") as tmp:
        tmp.write_text(render_markdown(card))
    return TrainResult(wpath, cpath, tuple(losses), metrics, time.time() - t0)


def _training_section(
    config: TrainConfig,
    chips_dir: Path,
    train_set: ChipArrays,
    val_set: ChipArrays,
    test_set: ChipArrays,
    history: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    if train_set.images.dtype == np.uint8:
        data = (
            "Amazon Mining Watch gallery chips (real Sentinel-2 L1C true colour, B4/B3/B2, "
            "value/3000 x 255, 48 x 48 px at 10 m), shared data amw/chips "
            "(Earth Genome, CC BY 4.0)"
        )
    else:
        data = (
            f"GeoTIFF gallery chips of bands {', '.join(train_set.bands)} (surface "
            f"reflectance clipped to [0, {reflectance_max(train_set.images):g}], 48 x 48 px "
            "at 10 m)"
        )
    return {
        "data": data,
        "chips_dir": str(chips_dir.name),
        "train": {
            "files": list(train_set.files),
            "n_pos": train_set.n_pos,
            "n_neg": train_set.n_neg,
        },
        "validation": {
            "files": list(val_set.files),
            "n_pos": val_set.n_pos,
            "n_neg": val_set.n_neg,
        },
        "test_held_out_categories": {
            "files": list(test_set.files),
            "n_pos": test_set.n_pos,
            "n_neg": test_set.n_neg,
        },
        "split_rule": (
            "whole sample sets (clear0.05 and clear0.75 composites of the same points together); "
            "held-out categories are never seen in training or threshold selection"
        ),
        "architecture": _architecture_text(config.model),
        "method": _method_text(config),
        "config": config.to_dict(),
        "history": list(history),
        "torch": torch.__version__,
    }


def _multiband_texts(config: TrainConfig, chips_dir: Path) -> dict[str, str]:
    """Return the description, limitations and regeneration of a GeoTIFF-gallery model."""
    bands = config.model.bands
    return {
        "description": (
            f"artisanal gold-mining segmentation model for Sentinel-2 at 10 m on {len(bands)} "
            f"bands ({', '.join(bands)}): a fully convolutional encoder-decoder (plain torch) "
            "trained from chip-level labels by multiple-instance learning, giving a per-pixel "
            "mining probability. It reads reflectance composites holding these bands."
        ),
        "limitations": (
            f"trained on the galleries of {chips_dir.name}; see metrics for its measured "
            "figures. It needs reflectance composites with its bands (display-stretched true "
            "colour cannot feed it) and was not checked on the La Pampa scene, which is true "
            "colour only."
        ),
        "regenerate": (
            f"`asmspotter train --chips {chips_dir.name} --bands {','.join(bands)} "
            f"--name {config.name}` with the settings in training.config (seeded)."
        ),
    }


def _method_text(config: TrainConfig) -> str:
    """Describe the training recipe of ``config`` in one paragraph (model card)."""
    k = config.stretch_strength
    if config.stretch_keep >= 1.0:
        stretch = "no display stretches (chips' own scaling only)"
    else:
        stretch = (
            f"random display stretches on {1 - config.stretch_keep:.0%} of mosaics (strength "
            f"{k:g}: gain {0.7**k:.2f}-{1.7**k:.2f}, gamma {0.7**k:.2f}-{1.4**k:.2f}, offset, "
            "per-channel jitter, haze, noise, uint8 quantisation)"
        )
    if not config.set_balance:
        sampling = "chips drawn uniformly within each label"
    else:
        which = "each label" if config.balance_negatives else "the mining label"
        sampling = (
            f"chips drawn within {which} with probability proportional to (chips in their "
            f"sample set)^-{config.set_balance:g}"
            + ("" if config.balance_negatives else ", non-mining chips uniformly")
        )
    text = (
        "multiple-instance learning on 2 x 2 mosaics of chips: per chip, the mean of the top "
        f"{config.topk_fraction:.0%} pixel logits is supervised by the chip label (BCE), plus "
        f"{config.neg_pixel_weight} x per-pixel BCE to 0 on non-mining chips; "
        f"{config.pos_fraction:.0%} mining chips per batch, {sampling}; augmentation: "
        f"flips/rotations and {stretch}; AdamW + one-cycle LR; "
    )
    if config.ema_decay > 0:
        text += (
            f"exponential moving average of the weights (decay {config.ema_decay}) is "
            "validated and shipped; "
        )
    text += "best epoch by validation ROC AUC (one view per chip)"
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


def _architecture_text(m: ModelConfig) -> str:
    from asmspotter.detect.model import count_parameters

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


DESCRIPTION = (
    "RGB artisanal gold-mining segmentation model for Sentinel-2 at 10 m: a small fully "
    "convolutional encoder-decoder (plain torch) trained from chip-level labels by multiple-"
    "instance learning, giving a per-pixel mining probability."
)

REGENERATE = (
    "`asmspotter train` (seeded; reads the shared data's amw/chips via ASMSPOTTER_SHARED_DATA, "
    f"writes data/models/{TrainConfig.name}.pt, .card.json, .md and docs/figures/"
    "la_pampa_2019_validation.png), then `python benchmarks/bench_detect.py --record` to add "
    "the speed figures. `asmspotter train --smoke --out DIR` runs a few steps."
)

LIMITATIONS = (
    "RGB only, 48-px chip labels, about 0.5 M parameters, about 35 minutes of CPU training; "
    "four test-time views per chip and tile (inference.tta rot4), so inference costs four "
    "passes. On the held-out categories the chip sensitivity at the validation-chosen "
    "threshold is well below the 0.90 target (see metrics.test_chips; about 0.59 at "
    "specificity 0.99, ROC AUC about 0.94). Other renderings shift the operating point: a "
    "1.5x brighter one like Earth "
    "Search's visual asset lowers the specificity, a La Pampa-like one the sensitivity (see "
    "metrics.test_chips_under_other_stretches). On La Pampa 2019 the maps cover about 40 % of "
    "AMW's footprint with few detections outside it; they mark bare sediment and ponds of "
    "active mining and miss older, revegetating pits, so areas are underestimates."
)

DEFINITIONS = {
    "chip score": (
        "mean of the top topk_fraction of the chip's pixel probabilities (averaged over the "
        "card's test-time views, inference.tta)"
    ),
    "tta": (
        "test-time views: the model runs on rotated (and for d4 mirrored) copies of each tile "
        "or chip and the probabilities, turned back, are averaged"
    ),
    "TP / FN": "mining chips with score >= chip threshold / below it",
    "TN / FP": "non-mining chips with score below the chip threshold / at or above it",
    "sensitivity": "TP / (TP + FN)",
    "specificity": "TN / (TN + FP)",
    "auc": "area under the ROC curve of chip scores (threshold-free)",
    "chip threshold": ("lowest score giving the target specificity on the validation sample sets"),
    "pixel threshold": "probability >= threshold -> mining pixel (mask, polygons); fixed at 0.5",
    "la_pampa precision": (
        "share of the detected mining area (mask, pixel threshold, after the minimum mapping "
        "unit) lying within Amazon Mining Watch's footprint up to 2019 (mining_201800 + "
        "mining_201900) buffered by 100 m"
    ),
    "la_pampa polygon recall": (
        "share of that footprint's polygons (single parts, clipped to the tile, at least "
        "1 ha inside it) that contain detected mining"
    ),
    "speed": "benchmarks/bench_detect.py: full detect pipeline on seeded rasters (CPU)",
    "speed_cuda": "the same on a GPU (machine named in the entry)",
    "speed_none / speed_cuda_none": (
        "the same with one pass per tile (bench_detect --tta none, detect --tta none) where the "
        "card's test-time views are more"
    ),
    "inference_km2_per_s": (
        "tiled, blended inference alone, composite held in memory (bench_detect --inference)"
    ),
}
