"""Cross-validation of a training recipe over whole sample sets.

One small validation split and a best epoch chosen on it did not predict the held-out
categories (``data/models/README.md``, "Recipes tried"). This module gives recipes a
steadier yardstick that never touches the held-out categories:

- the sample sets outside ``config.test_sets`` (training and validation sets together) are
  dealt into ``k`` folds, mining and non-mining sets separately, largest first, each to the
  fold with the fewest chips of its label so far (deterministic; both clear-sky composites
  of a sample set stay in one fold);
- for each fold a network is trained with :func:`~asmspotter.detect.train.fit` on the other
  folds and keeps its **last** epoch, so the fold's figures are not biased by an epoch
  choice made on them;
- each fold's chips are scored with the recipe's test-time views and reported as ROC AUC and
  as the sensitivity at the threshold that gives ``specificity`` on that fold's own
  non-mining chips (an operating-point figure, not a deployable threshold), with the share
  of every sample set called mining at that threshold;
- the out-of-fold scores of all folds are also pooled into one AUC and one sensitivity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.detect.chips import ChipArrays, Gallery, read_galleries, stack_galleries
from asmspotter.detect.metrics import auc, sensitivity_at_specificity
from asmspotter.errors import DataError, InputError

if TYPE_CHECKING:
    from asmspotter.detect.train import TrainConfig


@dataclass(frozen=True)
class SampleSet:
    """A sample set of the cross-validation pool.

    Attributes:
        key: the sample-set key (gallery stem without the clear-sky threshold).
        label: 1 for mining, 0 for not mining.
        n_chips: chips over all its galleries.

    """

    key: str
    label: int
    n_chips: int

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {self.label}")
        if self.n_chips < 0:
            raise ValueError(f"n_chips must be >= 0, got {self.n_chips}")


def sample_sets(galleries: Sequence[Gallery]) -> tuple[SampleSet, ...]:
    """Group galleries into sample sets, sorted by key.

    Raises:
        DataError: one sample set holds galleries of both labels.

    """
    labels: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for g in galleries:
        if labels.setdefault(g.sample_set, g.label) != g.label:
            raise DataError(f"sample set {g.sample_set} has galleries of both labels")
        sizes[g.sample_set] = sizes.get(g.sample_set, 0) + len(g.chips)
    return tuple(SampleSet(k, labels[k], sizes[k]) for k in sorted(labels))


def assign_folds(sets: Sequence[SampleSet], k: int) -> tuple[tuple[str, ...], ...]:
    """Deal sample sets into ``k`` folds, each with mining and non-mining sets.

    Within each label, sets go largest first to the fold holding the fewest chips of that
    label so far (ties: the lower fold index), which keeps the folds' sizes close.

    Args:
        sets: the sample sets of the pool.
        k: number of folds (at least 2).

    Returns:
        ``k`` tuples of sample-set keys; every set is in exactly one.

    Raises:
        InputError: ``k`` < 2, or fewer than ``k`` sample sets of a label.

    """
    if k < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {k}")
    folds: list[list[str]] = [[] for _ in range(k)]
    for label in (1, 0):
        these = sorted((s for s in sets if s.label == label), key=lambda s: (-s.n_chips, s.key))
        if len(these) < k:
            kind = "mining" if label else "non-mining"
            raise InputError(
                f"{k} folds need at least {k} {kind} sample sets outside the held-out "
                f"categories; there are {len(these)}"
            )
        load = [0] * k
        for s in these:
            i = min(range(k), key=lambda j: (load[j], j))
            folds[i].append(s.key)
            load[i] += s.n_chips
    return tuple(tuple(sorted(f)) for f in folds)


#: Specificities at which every fold and the pooled scores also report their sensitivity.
REPORTED_SPECIFICITIES: tuple[float, ...] = (0.95, 0.97)
#: Ways of dealing the cross-validation pool into folds.
FOLD_RULES: tuple[str, ...] = ("sample_set", "place")


@dataclass(frozen=True)
class FoldResult:
    """Figures of one fold.

    Attributes:
        index: fold number (1-based).
        sets: the fold's groups: sample-set keys, or geographic blocks (folds by place).
        n_pos: mining chips in the fold.
        n_neg: non-mining chips in the fold.
        auc: ROC AUC of the fold's chips.
        threshold: score giving the target specificity on the fold's non-mining chips.
        sensitivity: share of the fold's mining chips at or above ``threshold``.
        called: per sample set in the fold, the share of its chips called mining at
            ``threshold``.
        set_labels: per sample set in ``called``, its label (1 mining, 0 not).
        epochs: epochs trained (the last one is kept).
        seconds: wall time of the fold.
        sensitivity_at: sensitivity at each of :data:`REPORTED_SPECIFICITIES` (keys
            formatted with ``:g``), each threshold chosen on the fold's own non-mining chips.
        auc_by_set: per non-mining sample set in the fold, the ROC AUC of its chips against
            the fold's mining chips (None without mining chips).

    """

    index: int
    sets: tuple[str, ...]
    n_pos: int
    n_neg: int
    auc: float | None
    threshold: float
    sensitivity: float
    called: dict[str, float]
    set_labels: dict[str, int]
    epochs: int
    seconds: float
    sensitivity_at: dict[str, float] = field(default_factory=dict)
    auc_by_set: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "fold": self.index,
            "sets": list(self.sets),
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "auc": self.auc,
            "threshold": self.threshold,
            "sensitivity": self.sensitivity,
            "sensitivity_at": self.sensitivity_at,
            "auc_by_set": self.auc_by_set,
            "called_mining": self.called,
            "set_labels": self.set_labels,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 1),
        }


def figures_by_set(
    labels: np.ndarray, scores: np.ndarray, names: np.ndarray
) -> dict[str, float | None]:
    """ROC AUC of each non-mining sample set's chips against all mining chips given.

    Args:
        labels: 0/1 label of each chip.
        scores: chip scores.
        names: sample set of each chip.

    """
    pos = labels == 1
    out: dict[str, float | None] = {}
    for name in sorted(set(names[labels == 0].tolist())):
        sel = pos | (names == name)
        out[name] = auc(labels[sel], scores[sel])
    return out


def sensitivities(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Sensitivity at each of :data:`REPORTED_SPECIFICITIES` (keys formatted with ``:g``)."""
    return {
        f"{s:g}": sensitivity_at_specificity(labels, scores, s)[1] for s in REPORTED_SPECIFICITIES
    }


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95 % intervals of the pooled figures, resampling whole groups (blocks or sets).

    Chips of one place (or sample set) are alike, so the groups, not the chips, are drawn
    with replacement ``n`` times; each draw gives a ROC AUC and the sensitivity at every
    :data:`REPORTED_SPECIFICITIES`, and the 2.5th and 97.5th percentiles are returned.

    Returns:
        ``{"auc": [lo, hi], "sensitivity_at_0.95": [lo, hi], ...}``.

    """
    uniq, inverse = np.unique(groups.astype(str), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"auc": []}
    for _ in range(n):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        y, sc = labels[idx], scores[idx]
        a = auc(y, sc)
        if a is None:
            continue
        draws["auc"].append(a)
        for key, value in sensitivities(y, sc).items():
            draws.setdefault(f"sensitivity_at_{key}", []).append(value)
    return {
        key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
        for key, v in draws.items()
        if v
    }


@dataclass(frozen=True)
class CrossValidation:
    """Result of :func:`cross_validate`.

    Attributes:
        config: the recipe (``TrainConfig.to_dict()``).
        specificity: the specificity the fold thresholds are chosen for.
        folds: per-fold figures.
        pooled_auc: ROC AUC of all out-of-fold scores together.
        pooled_sensitivity: sensitivity of the pooled scores at ``specificity``.
        by: how the folds were dealt (a key of :data:`FOLD_RULES`).
        pooled_sensitivity_at: the pooled sensitivity at each of
            :data:`REPORTED_SPECIFICITIES`.
        pooled_auc_by_set: per non-mining sample set, the pooled ROC AUC of its chips
            against all mining chips.
        intervals: 95 % bootstrap intervals of the pooled figures
            (:func:`bootstrap_intervals`).

    """

    config: dict[str, Any]
    specificity: float
    folds: tuple[FoldResult, ...]
    pooled_auc: float | None
    pooled_sensitivity: float
    by: str = "sample_set"
    pooled_sensitivity_at: dict[str, float] = field(default_factory=dict)
    pooled_auc_by_set: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Mean and standard deviation of the fold figures, and the pooled ones."""

        def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
            mean = float(np.mean(values)) if values else None
            return mean, float(np.std(values, ddof=1)) if len(values) > 1 else None

        auc_mean, auc_sd = mean_sd([f.auc for f in self.folds if f.auc is not None])
        sens_mean, sens_sd = mean_sd([f.sensitivity for f in self.folds])
        out: dict[str, Any] = {
            "auc_mean": auc_mean,
            "auc_sd": auc_sd,
            "sensitivity_mean": sens_mean,
            "sensitivity_sd": sens_sd,
        }
        for key in self.pooled_sensitivity_at:
            m, sd = mean_sd([f.sensitivity_at[key] for f in self.folds if key in f.sensitivity_at])
            out[f"sensitivity_at_{key}_mean"], out[f"sensitivity_at_{key}_sd"] = m, sd
        out.update(
            {
                "pooled_auc": self.pooled_auc,
                "pooled_sensitivity": self.pooled_sensitivity,
                **{f"pooled_sensitivity_at_{k}": v for k, v in self.pooled_sensitivity_at.items()},
            }
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form: summary, definitions, folds and the recipe."""
        fold = (
            "geographic blocks (config.place_block_deg degrees; a site's chips share one) "
            "outside the recipe's held-out fold, dealt into folds balanced by label"
            if self.by == "place"
            else "sample sets outside the held-out categories, dealt into folds by label and size"
        )
        return {
            "by": self.by,
            "specificity": self.specificity,
            **self.summary(),
            "pooled_auc_by_set": self.pooled_auc_by_set,
            "intervals_95": self.intervals,
            "definitions": {
                "fold": fold + "; the fold's network is trained on the other folds and keeps "
                "its last epoch",
                "auc": "ROC AUC of the fold's chips, scored with the recipe's test-time views",
                "sensitivity": "share of the fold's mining chips called mining at the "
                "threshold that gives `specificity` on the fold's own non-mining chips",
                "sensitivity_at": "the same at other specificities",
                "auc_by_set": "ROC AUC of one non-mining sample set's chips against the "
                "mining chips",
                "pooled": "the same over all folds' out-of-fold scores together",
                "intervals_95": "2.5th and 97.5th percentiles of the pooled figures over "
                "1000 bootstrap draws of whole blocks (or sample sets) with replacement",
            },
            "folds": [f.to_dict() for f in self.folds],
            "config": self.config,
        }

    def format_table(self) -> str:
        """Plain-text table: one line per fold, then the summary."""
        s = self.summary()
        keys = list(self.pooled_sensitivity_at)
        head = f"fold  sets  mining  other    AUC  sens@spec{self.specificity:g}" + "".join(
            f"  sens@{k}" for k in keys
        )
        rows = [head, "-" * len(head)]
        for f in self.folds:
            auc_text = "  n/a" if f.auc is None else f"{f.auc:.3f}"
            rows.append(
                f"{f.index:4d}  {len(f.sets):4d}  {f.n_pos:6d}  {f.n_neg:5d}  {auc_text}  "
                f"{f.sensitivity:9.3f}"
                + "".join(
                    f"  {f.sensitivity_at.get(k, float('nan')):{len(k) + 6}.3f}" for k in keys
                )
            )
        rows.append("-" * len(head))

        def pm(mean: float | None, sd: float | None) -> str:
            return "n/a" if mean is None else f"{mean:.3f}" + (f" +- {sd:.3f}" if sd else "")

        if s["auc_mean"] is not None:
            rows.append(f"fold mean AUC {pm(s['auc_mean'], s['auc_sd'])}")
        rows.append(f"fold mean sensitivity {pm(s['sensitivity_mean'], s['sensitivity_sd'])}")
        for k in keys:
            m, sd = s[f"sensitivity_at_{k}_mean"], s[f"sensitivity_at_{k}_sd"]
            rows.append(f"fold mean sensitivity at specificity {k}: {pm(m, sd)}")
        if self.pooled_auc is not None:
            rows.append(
                f"pooled out-of-fold: AUC {self.pooled_auc:.3f}, "
                f"sensitivity {self.pooled_sensitivity:.3f}"
            )
        for key, (lo, hi) in self.intervals.items():
            rows.append(f"  95 % interval of pooled {key}: {lo:.3f} to {hi:.3f}")
        rows.append("hardest sample sets (mining: share found; other: share called mining):")
        called = [(name, frac, f) for f in self.folds for name, frac in f.called.items()]
        pos = sorted((c for c in called if c[2].set_labels[c[0]] == 1), key=lambda c: c[1])[:3]
        neg = sorted((c for c in called if c[2].set_labels[c[0]] == 0), key=lambda c: -c[1])[:3]
        for name, frac, f in pos + neg:
            rows.append(f"  {frac:5.2f}  {name} (fold {f.index})")
        return "\n".join(rows)


@dataclass(frozen=True)
class _Fold:
    """The chips of one fold and of the rest of the pool."""

    index: int
    k: int
    groups: tuple[str, ...]
    train: ChipArrays
    held: ChipArrays
    names: np.ndarray  # sample set of each held-out chip
    places: np.ndarray  # group of each held-out chip: its block (by place) or sample set


def _run_fold(
    config: TrainConfig, fold: _Fold, specificity: float, device: str, say: Callable[[str], None]
) -> tuple[FoldResult, np.ndarray]:
    """Train on the rest of the pool and score the fold.

    Returns:
        (the fold's figures, its chip scores).

    """
    from asmspotter.detect.scoring import chip_scores
    from asmspotter.detect.train import fit

    t0 = time.time()
    index, k, tr, va = fold.index, fold.k, fold.train, fold.held
    say(
        f"fold {index}/{k}: train {len(tr)} chips ({tr.n_pos} mining), "
        f"fold {len(va)} chips ({va.n_pos} mining) in {len(fold.groups)} groups"
    )

    def fold_log(line: str) -> None:
        say(f"  fold {index}: {line}")

    fitted = fit(config, tr, va, device=device, log=fold_log, select_best=False)
    scores = chip_scores(
        fitted.model, va.images, config.topk_fraction, device="cpu", views=config.tta
    )
    thr, sens = sensitivity_at_specificity(va.labels, scores, specificity)
    called: dict[str, float] = {}
    set_labels: dict[str, int] = {}
    for key in sorted(set(fold.names.tolist())):
        sel = fold.names == key
        called[key] = float(np.mean(scores[sel] >= thr))
        set_labels[key] = int(va.labels[sel][0])
    result = FoldResult(
        index=index,
        sets=fold.groups,
        n_pos=va.n_pos,
        n_neg=va.n_neg,
        auc=auc(va.labels, scores),
        threshold=thr,
        sensitivity=sens,
        called=called,
        set_labels=set_labels,
        epochs=fitted.epoch,
        seconds=time.time() - t0,
        sensitivity_at=sensitivities(va.labels, scores),
        auc_by_set=figures_by_set(va.labels, scores, fold.names),
    )
    say(
        f"fold {index}/{k}: AUC {result.auc if result.auc is None else round(result.auc, 4)}, "
        f"sensitivity {sens:.3f} at specificity {specificity:g} ({result.seconds:.0f} s)"
    )
    return result, scores


def _set_folds(config: TrainConfig, galleries: Sequence[Gallery], k: int) -> list[_Fold]:
    """Folds of whole sample sets outside the held-out categories."""
    from asmspotter.detect.chips import split_galleries

    pool = list(split_galleries(galleries, config.test_sets, ()).train)
    bands = config.input_bands
    out = []
    for i, keys in enumerate(assign_folds(sample_sets(pool), k)):
        held = [g for g in pool if g.sample_set in keys]
        rest = [g for g in pool if g.sample_set not in keys]
        va = stack_galleries(held).select(bands)
        names = np.array([held[j].sample_set for j in va.source], dtype=object)
        out.append(_Fold(i + 1, k, keys, stack_galleries(rest).select(bands), va, names, names))
    return out


def _place_folds(
    config: TrainConfig, chips_dir: Path, galleries: Sequence[Gallery], k: int
) -> list[_Fold]:
    """Folds of geographic blocks outside the recipe's held-out place fold."""
    from asmspotter.detect.chips import sample_set_of
    from asmspotter.detect.places import assign_place_folds, place_folds

    chips = stack_galleries(galleries).select(config.input_bands)
    split = place_folds(
        chips_dir, galleries, chips, config.place_folds, config.place_block_deg, config.place_seed
    )
    held_out = config.test_fold if config.split == "place" else 0
    pool = np.flatnonzero(split.fold != held_out)
    chips, blocks = chips.take(pool), split.blocks[pool]
    names = np.array([sample_set_of(chips.files[s]) for s in chips.source], dtype=object)
    fold = assign_place_folds(blocks, chips.labels, k, config.place_seed)
    return [
        _Fold(
            f,
            k,
            tuple(sorted(set(blocks[fold == f].tolist()))),
            chips.take(fold != f),
            chips.take(fold == f),
            names[fold == f],
            blocks[fold == f],
        )
        for f in range(1, k + 1)
    ]


def cross_validate(
    config: TrainConfig,
    chips_dir: str | Path,
    k: int = 5,
    specificity: float = 0.97,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    by: str = "sample_set",
) -> CrossValidation:
    """Cross-validate a training recipe over folds of sample sets or of places.

    Args:
        config: the recipe (:class:`~asmspotter.detect.recipe.TrainConfig`). Folds of sample
            sets leave its ``test_sets`` out and pool its ``val_sets``; folds by place leave
            out its held-out place fold (``test_fold``, when it splits by place) and pool the
            rest, validation fold included.
        chips_dir: folder of galleries (PNG or GeoTIFF; by place with its chip table).
        k: number of folds.
        specificity: the specificity the per-fold operating point is chosen for.
        device: torch device of the training steps.
        log: callable receiving progress lines (None = silent).
        by: ``sample_set`` or ``place`` (:data:`FOLD_RULES`).

    Returns:
        Per-fold and pooled figures.

    Raises:
        InputError: too few sample sets or blocks for ``k`` folds, an invalid specificity
            or fold rule, or (by place) no chip table.
        DataError: the galleries or the chip table cannot be read.

    """
    from asmspotter.detect.chips import check_one_kind
    from asmspotter.detect.train import check_device

    check_device(device)
    if not 0.0 < specificity < 1.0:
        raise InputError(f"specificity must lie between 0 and 1, got {specificity}")
    if by not in FOLD_RULES:
        raise InputError(f"folds are dealt by {' or '.join(FOLD_RULES)}, not {by!r}")
    say = log or (lambda _m: None)
    galleries = read_galleries(chips_dir, config.max_chips_per_file)
    check_one_kind(galleries)
    folds = (
        _place_folds(config, Path(chips_dir), galleries, k)
        if by == "place"
        else _set_folds(config, galleries, k)
    )
    runs = [_run_fold(config, fold, specificity, device, say) for fold in folds]
    labels = np.concatenate([fold.held.labels for fold in folds])
    scores = np.concatenate([s for _, s in runs])
    names = np.concatenate([fold.names for fold in folds])
    groups = np.concatenate([fold.places for fold in folds])
    _, pooled_sens = sensitivity_at_specificity(labels, scores, specificity)
    return CrossValidation(
        config=config.to_dict(),
        specificity=specificity,
        folds=tuple(result for result, _ in runs),
        pooled_auc=auc(labels, scores),
        pooled_sensitivity=pooled_sens,
        by=by,
        pooled_sensitivity_at=sensitivities(labels, scores),
        pooled_auc_by_set=figures_by_set(labels, scores, names),
        intervals=bootstrap_intervals(labels, scores, groups),
    )
