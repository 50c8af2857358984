"""Seeded multiple-instance training of the mining network from chip labels.

Method (also written into the model card, :mod:`asmspotter.detect.card_text`):

- **Data.** Gallery chips (48 x 48 px, chips' value/3000 scaling) with chip-level labels.
  Sample sets are split whole (``clear0.05`` and ``clear0.75`` together) into train,
  validation and held-out test categories. The same code trains on GeoTIFF galleries of
  any band set (e.g. the ten L2A bands, ``TrainConfig.bands``); such a model is normalised
  with its training chips' per-band mean and deviation and reads reflectance up to
  :data:`~asmspotter.detect.chips.MULTIBAND_REFLECTANCE_MAX`.
- **Mosaics and augmentation** (:mod:`asmspotter.detect.augment`). Each training sample is a
  2 x 2 mosaic of four random chips (96 x 96 px); flips and rotations per chip and a random
  display stretch per mosaic make the network robust to other renderings.
- **MIL loss** (:mod:`asmspotter.detect.loss`). Per chip, the mean of the top
  ``topk_fraction`` of its pixel logits is supervised by the chip label; every pixel of a
  non-mining chip is additionally pushed to "not mining".
- **Selection** (:mod:`asmspotter.detect.metrics`). The epoch with the best validation ROC
  AUC (one view per chip) is kept; the chip threshold is the lowest score giving the target
  specificity on validation, with the chips scored as they will be used: averaged over the
  test-time views (``tta``, the four rotations by default). The pixel threshold of the maps
  is fixed a priori (``TrainConfig.pixel_threshold``).
- **Sample-set balancing.** Within each label a chip is drawn with probability proportional
  to (chips in its sample set)^-``set_balance``, so the small hard-negative sets weigh
  more than the many random and cloud negatives.
- **Options not used by the shipped model.** ``ModelConfig(version=2)`` (deeper encoder-decoder
  with a 1/8-resolution context block) and ``ema_decay`` > 0 (validate and ship an exponential
  moving average of the weights) did not beat the defaults on validation; nor did, for the
  six-band model under cross-validation by place, ``local_norm`` (each band standardised over
  a window) or a warm start with frozen blocks (``trainable``). The figures of every recipe
  tried are in ``data/models/README.md``.

The recipe itself is :class:`~asmspotter.detect.recipe.TrainConfig`; :func:`fit` runs its
loop on chip arrays and :func:`train` runs it on a folder of galleries and writes the model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from asmspotter.bands import TRUE_COLOUR
from asmspotter.detect.augment import FIXED_STRETCHES, make_batch, stretched
from asmspotter.detect.chips import (
    ChipArrays,
    Gallery,
    check_one_kind,
    read_galleries,
    reflectance_max,
    sample_set_of,
    split_galleries,
    stack_galleries,
)
from asmspotter.detect.loss import mil_loss
from asmspotter.detect.metrics import auc, chip_metrics, count, threshold_for_specificity
from asmspotter.detect.model import (
    TRAINABLE_BLOCKS,
    MiningNet,
    build_model,
    extend_input,
    freeze_except,
    save_weights,
)
from asmspotter.detect.recipe import TrainConfig, config_with, initial_network, model_config_for
from asmspotter.detect.scoring import chip_scores
from asmspotter.errors import DataError, InputError
from asmspotter.layout import ModelFiles

if TYPE_CHECKING:
    from asmspotter.detect.card import ModelCard

# (the commands import the recipe from here)
__all__ = [
    "FitResult",
    "TrainConfig",
    "TrainResult",
    "check_device",
    "config_with",
    "fit",
    "initial_network",
    "load_split",
    "model_config_for",
    "set_sampling_weights",
    "train",
]


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


def load_split(
    chips_dir: Path, config: TrainConfig
) -> tuple[ChipArrays, ChipArrays, ChipArrays, list[Gallery]]:
    """Read galleries and split them into train / val / test chip arrays of the input bands.

    ``config.split`` says how: whole sample sets (``test_sets``, ``val_sets``) or folds of
    geographic blocks (``test_fold``, ``val_fold``; :mod:`asmspotter.detect.places`).

    Raises:
        InputError: the folder holds no gallery, the galleries lack an input band, or
            (split by place) the folder has no chip table or too few blocks.
        DataError: no training chips of both labels, or galleries of different kinds.

    """
    galleries = read_galleries(chips_dir, config.max_chips_per_file)
    check_one_kind(galleries)
    if config.split == "place":
        from asmspotter.detect.places import place_folds

        chips = stack_galleries(galleries).select(config.input_bands)
        folds = place_folds(
            chips_dir,
            galleries,
            chips,
            config.place_folds,
            config.place_block_deg,
            config.place_seed,
        ).fold
        test = chips.take(folds == config.test_fold)
        val = chips.take(folds == config.val_fold)
        train = chips.take((folds != config.test_fold) & (folds != config.val_fold))
    else:
        split = split_galleries(galleries, config.test_sets, config.val_sets)
        train = stack_galleries(split.train).select(config.input_bands)
        val, test = (
            stack_galleries(s, like=train).select(config.input_bands)
            for s in (split.val, split.test)
        )
    if len(train) == 0 or train.n_pos == 0 or train.n_neg == 0:
        raise DataError(f"no training chips of both labels in {chips_dir}")
    if len(val) == 0 or val.n_pos == 0 or val.n_neg == 0:
        val = train  # tiny fixtures: validate on the training chips
    return train, val, test, galleries


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


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move ``ema``'s weights and buffers towards ``model``'s (integer buffers are copied)."""
    for e, m in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if e.dtype.is_floating_point:
            e.mul_(decay).add_(m.detach(), alpha=1.0 - decay)
        else:
            e.copy_(m)


class _Loop:
    """One training run: the network, its optimiser and schedule, and the batch stream.

    Everything is created in a fixed order from ``config.seed`` (the seeded initialisation
    and the random streams depend on it).
    """

    def __init__(self, config: TrainConfig, train_set: ChipArrays, device: str) -> None:
        torch.manual_seed(config.seed)
        self.config, self.device, self.images = config, device, train_set.images
        self.rng = np.random.default_rng(config.seed)
        self.gen = torch.Generator().manual_seed(config.seed)
        init = initial_network(config)
        net_config = model_config_for(config, train_set, init)
        net = build_model(net_config) if init is None else extend_input(init, net_config)
        if config.trainable != "all":
            net = freeze_except(net, TRAINABLE_BLOCKS[config.trainable])
        # channels_last runs the convolutions about 1.4x faster on CPU (same arithmetic).
        self.model = net.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ema = (
            copy.deepcopy(self.model).requires_grad_(False) if config.ema_decay > 0 else self.model
        )
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.chips_per_step = 4 * config.batch_mosaics
        self.steps_per_epoch = max(1, len(train_set) // self.chips_per_step)
        self.total = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total = min(self.total, config.max_steps)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=config.lr, total_steps=max(self.total, 2), pct_start=0.15
        )
        self.pos_idx = np.flatnonzero(train_set.labels == 1)
        self.neg_idx = np.flatnonzero(train_set.labels == 0)
        self.labels = torch.from_numpy(train_set.labels).to(device)
        # (uniform draws keep the random stream of the runs made before set balancing existed)
        balance = config.set_balance
        self.p_pos = set_sampling_weights(train_set, self.pos_idx, balance) if balance else None
        self.p_neg = (
            set_sampling_weights(train_set, self.neg_idx, balance)
            if balance and config.balance_negatives
            else None
        )
        self.step = 0

    def draw(self) -> np.ndarray:
        """Draw the chip indexes of one step's mosaics, (batch_mosaics, 4)."""
        n = self.chips_per_step
        is_pos = self.rng.random(n) < self.config.pos_fraction
        return np.where(
            is_pos,
            self.rng.choice(self.pos_idx, n, p=self.p_pos),
            self.rng.choice(self.neg_idx, n, p=self.p_neg),
        ).reshape(self.config.batch_mosaics, 4)

    def train_step(self) -> float:
        """Run one optimisation step; return its loss."""
        cfg = self.config
        idx = self.draw()
        x = make_batch(self.images, idx, self.gen, True, cfg.stretch_strength, cfg.stretch_keep).to(
            self.device, memory_format=torch.channels_last
        )
        y = self.labels[torch.from_numpy(idx).to(self.device)]
        loss = mil_loss(self.model(x), y, cfg.topk_fraction, cfg.neg_pixel_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        if self.ema is not self.model:
            _ema_update(
                self.ema, self.model, min(cfg.ema_decay, (1 + self.step) / (10 + self.step))
            )
        self.step += 1
        return float(loss.detach())

    def epoch(self) -> list[float]:
        """Run one epoch (or what is left of the steps); return the mean loss per interval."""
        every = 1 if self.config.smoke else 20
        self.model.train()
        losses: list[float] = []
        running: list[float] = []
        for _ in range(self.steps_per_epoch):
            if self.step >= self.total:
                break
            running.append(self.train_step())
            if len(running) >= every:
                losses.append(float(np.mean(running)))
                running = []
        if running:
            losses.append(float(np.mean(running)))
        return losses

    def validate(self, val_set: ChipArrays) -> tuple[dict[str, Any], float]:
        """Score the validation chips (one view); return their figures and threshold."""
        scores = chip_scores(
            self.ema, val_set.images, self.config.topk_fraction, device=self.device
        )
        thr = threshold_for_specificity(scores[val_set.labels == 0], self.config.target_specificity)
        return chip_metrics(val_set.labels, scores, thr), thr

    def state(self) -> dict[str, torch.Tensor]:
        """Return a CPU copy of the weights that are validated (and kept)."""
        return {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()}


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
            shipped rule unless ``config.keep_epoch`` is ``last``; False keeps the last
            epoch, so that figures measured on ``val_set`` afterwards are not biased by the
            choice (cross-validation).

    Returns:
        The kept network (on the CPU) with the loss curve and per-epoch history.

    """
    say = log or (lambda _m: None)
    check_device(device)
    t0 = time.time() if t0 is None else t0
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    select_best = select_best and config.keep_epoch == "best"
    loop = _Loop(config, train_set, device)
    losses: list[float] = []
    history: list[dict[str, Any]] = []
    best: tuple[float, float] = (-1.0, -1.0)
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    while loop.step < loop.total:
        losses += loop.epoch()
        m, thr = loop.validate(val_set)
        epoch = len(history) + 1
        history.append(
            {"epoch": epoch, "step": loop.step, "loss": losses[-1], **m, "threshold": thr}
        )
        say(
            f"epoch {epoch} step {loop.step}/{loop.total} loss {losses[-1]:.4f} val auc "
            f"{m['auc']:.4f} sens {m['sensitivity']:.3f} spec {m['specificity']:.3f} "
            f"thr {thr:.3f} ({time.time() - t0:.0f}s)"
        )
        key = (m["auc"] or 0.0, m["sensitivity"] or 0.0)
        if key >= best or not select_best:
            best, best_epoch = key, epoch
            best_state = loop.state()
    assert best_state is not None
    model = loop.model.cpu()
    model.load_state_dict(best_state)
    model.frozen = ()  # (the trained network is whole again: frozen only while training)
    model.requires_grad_(True).eval()
    return FitResult(model, tuple(losses), tuple(history), best_epoch)


def chip_figures(
    model: MiningNet, config: TrainConfig, val_set: ChipArrays, test_set: ChipArrays
) -> tuple[float, dict[str, Any]]:
    """Choose the chip threshold on validation and measure the chips with the card's views.

    Returns:
        (the chip threshold, the card's chip metrics: ``validation_chips``, and with test
        chips ``test_chips``, ``test_chips_per_file`` and, for true-colour PNG chips,
        ``test_chips_under_other_stretches``).

    """
    views, k = config.tta, config.topk_fraction
    val_scores = chip_scores(model, val_set.images, k, views=views)
    thr = threshold_for_specificity(val_scores[val_set.labels == 0], config.target_specificity)
    metrics: dict[str, Any] = {"validation_chips": chip_metrics(val_set.labels, val_scores, thr)}
    if not len(test_set):
        return thr, metrics
    test_scores = chip_scores(model, test_set.images, k, views=views)
    metrics["test_chips"] = chip_metrics(test_set.labels, test_scores, thr)
    per_file = []
    pos = test_set.labels == 1
    for i, name in enumerate(test_set.files):
        sel = test_set.source == i
        c = count(test_set.labels[sel], test_scores[sel] >= thr)
        entry: dict[str, Any] = {"file": name, **c.to_dict()}
        if c.n_neg and not c.n_pos and pos.any():  # this file's negatives against all mining
            both = sel | pos
            entry["auc_vs_mining"] = auc(test_set.labels[both], test_scores[both])
        per_file.append(entry)
    metrics["test_chips_per_file"] = per_file
    if test_set.images.dtype == np.uint8:  # display renderings concern true-colour chips only
        robust = {}
        for label, f in FIXED_STRETCHES.items():
            s = chip_scores(model, stretched(test_set.images, f), k, views=views)
            m = chip_metrics(test_set.labels, s, thr)
            robust[label] = {key: m[key] for key in ("sensitivity", "specificity", "auc")}
        metrics["test_chips_under_other_stretches"] = robust
    return thr, metrics


def _validate_la_pampa(
    model: MiningNet, card: ModelCard, say: Callable[[str], None]
) -> dict[str, Any] | None:
    """Run the La Pampa 2019 validation of an RGB model (figure into docs); None without it."""
    from asmspotter import layout, paths
    from asmspotter.detect import validate

    if model.config.bands != TRUE_COLOUR:
        say("La Pampa 2019 validation skipped: its scene is true colour only")
        return None
    if not validate.la_pampa_available():
        return None
    fig = paths.project_root().joinpath(*layout.VALIDATION_FIGURE)
    lp = validate.validate_la_pampa(model, card, figure=fig).to_dict()
    say(f"La Pampa 2019: {lp}")
    return lp


def _notes(config: TrainConfig, chips_dir: Path, galleries: list[Gallery]) -> dict[str, Any]:
    """Return the card's record of the blocks of a split by place and of the start weights."""
    notes: dict[str, Any] = {}
    if config.split == "place":
        from asmspotter.detect.places import place_folds

        chips = stack_galleries(galleries)
        split = place_folds(
            chips_dir,
            galleries,
            chips,
            config.place_folds,
            config.place_block_deg,
            config.place_seed,
        )
        notes["place_folds"] = {
            str(f): {
                "blocks": list(split.blocks_of(f)),
                "n_pos": int(chips.labels[split.fold == f].sum()),
                "n_neg": int((chips.labels[split.fold == f] == 0).sum()),
            }
            for f in range(1, split.k + 1)
        }
    if config.init:
        from asmspotter.detect.card import load_card

        card, _ = load_card(config.init)
        notes["init"] = {"model": card.name, "sha256": card.sha256}
    return notes


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
    from asmspotter.detect.card_text import card_texts, definitions, training_section
    from asmspotter.detect.model import count_parameters
    from asmspotter.geoio import atomic_output, write_json

    say = log or (lambda _m: None)
    check_device(device)
    t0 = time.time()
    chips_dir = Path(chips_dir)
    train_set, val_set, test_set, galleries = load_split(chips_dir, config)
    say(
        f"chips: train {len(train_set)} ({train_set.n_pos} mining), val {len(val_set)} "
        f"({val_set.n_pos}), test {len(test_set)} ({test_set.n_pos})"
    )
    fitted = fit(config, train_set, val_set, device=device, log=say, t0=t0)
    model = fitted.model
    config = replace(config, model=model.config)  # the card names the network as trained
    thr, metrics = chip_figures(model, config, val_set, test_set)
    if "test_chips" in metrics:
        t = metrics["test_chips"]
        say(
            f"test: sens {t['sensitivity']:.3f} spec {t['specificity']:.3f} "
            f"auc {t['auc']:.4f} at threshold {thr:.3f}"
        )
    files = ModelFiles(Path(out_dir), config.name)
    wpath = save_weights(model, files.weights)
    sets = (train_set, val_set, test_set)
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
        level=config.level,
        training=training_section(
            config, chips_dir, sets, fitted.history, _notes(config, chips_dir, galleries)
        ),
        metrics=metrics,
        definitions=definitions(config),
    )
    if model.config.bands != TRUE_COLOUR or (validate_la_pampa and not config.smoke):
        lp = _validate_la_pampa(model, card, say)
        if lp is not None:
            metrics["la_pampa_2019"] = lp
    png = train_set.images.dtype == np.uint8
    texts = card_texts(config, chips_dir, metrics, png, count_parameters(model))
    card = replace(card, metrics=metrics, extra=texts)
    cpath = write_json(files.card, card.to_dict())
    with atomic_output(files.markdown) as tmp:
        tmp.write_text(render_markdown(card))
    return TrainResult(wpath, cpath, fitted.losses, metrics, time.time() - t0)
