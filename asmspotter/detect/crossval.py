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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.detect.chips import Gallery, read_galleries, stack_galleries
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


@dataclass(frozen=True)
class FoldResult:
    """Figures of one fold.

    Attributes:
        index: fold number (1-based).
        sets: sample-set keys of the fold.
        n_pos: mining chips in the fold.
        n_neg: non-mining chips in the fold.
        auc: ROC AUC of the fold's chips.
        threshold: score giving the target specificity on the fold's non-mining chips.
        sensitivity: share of the fold's mining chips at or above ``threshold``.
        called: per sample set, the share of its chips called mining at ``threshold``.
        set_labels: per sample set, its label (1 mining, 0 not).
        epochs: epochs trained (the last one is kept).
        seconds: wall time of the fold.

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
            "called_mining": self.called,
            "set_labels": self.set_labels,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 1),
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

    """

    config: dict[str, Any]
    specificity: float
    folds: tuple[FoldResult, ...]
    pooled_auc: float | None
    pooled_sensitivity: float

    def summary(self) -> dict[str, float | None]:
        """Mean and standard deviation of the fold AUCs and sensitivities."""
        aucs = [f.auc for f in self.folds if f.auc is not None]
        sens = [f.sensitivity for f in self.folds]
        return {
            "auc_mean": float(np.mean(aucs)) if aucs else None,
            "auc_sd": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else None,
            "sensitivity_mean": float(np.mean(sens)),
            "sensitivity_sd": float(np.std(sens, ddof=1)) if len(sens) > 1 else None,
            "pooled_auc": self.pooled_auc,
            "pooled_sensitivity": self.pooled_sensitivity,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON form: summary, definitions, folds and the recipe."""
        return {
            "specificity": self.specificity,
            **self.summary(),
            "definitions": {
                "fold": "sample sets outside the held-out categories, dealt into folds by "
                "label and size; the fold's network is trained on the other folds and keeps "
                "its last epoch",
                "auc": "ROC AUC of the fold's chips, scored with the recipe's test-time views",
                "sensitivity": "share of the fold's mining chips called mining at the "
                "threshold that gives `specificity` on the fold's own non-mining chips",
                "pooled": "the same over all folds' out-of-fold scores together",
            },
            "folds": [f.to_dict() for f in self.folds],
            "config": self.config,
        }

    def format_table(self) -> str:
        """Plain-text table: one line per fold, then the summary."""
        s = self.summary()
        head = f"fold  sets  mining  other    AUC  sens@spec{self.specificity:g}"
        rows = [head, "-" * len(head)]
        for f in self.folds:
            auc = "  n/a" if f.auc is None else f"{f.auc:.3f}"
            rows.append(
                f"{f.index:4d}  {len(f.sets):4d}  {f.n_pos:6d}  {f.n_neg:5d}  {auc}  "
                f"{f.sensitivity:9.3f}"
            )
        rows.append("-" * len(head))
        if s["auc_mean"] is not None:
            sd = f" +- {s['auc_sd']:.3f}" if s["auc_sd"] is not None else ""
            rows.append(f"fold mean AUC {s['auc_mean']:.3f}{sd}")
        sd = f" +- {s['sensitivity_sd']:.3f}" if s["sensitivity_sd"] is not None else ""
        rows.append(f"fold mean sensitivity {s['sensitivity_mean']:.3f}{sd}")
        if self.pooled_auc is not None:
            rows.append(
                f"pooled out-of-fold: AUC {self.pooled_auc:.3f}, "
                f"sensitivity {self.pooled_sensitivity:.3f}"
            )
        rows.append("hardest sample sets (mining: share found; other: share called mining):")
        called = [(name, frac, f) for f in self.folds for name, frac in f.called.items()]
        pos = sorted((c for c in called if c[2].set_labels[c[0]] == 1), key=lambda c: c[1])[:3]
        neg = sorted((c for c in called if c[2].set_labels[c[0]] == 0), key=lambda c: -c[1])[:3]
        for name, frac, f in pos + neg:
            rows.append(f"  {frac:5.2f}  {name} (fold {f.index})")
        return "\n".join(rows)


def _run_fold(
    config: TrainConfig,
    pool: Sequence[Gallery],
    keys: tuple[str, ...],
    fold: tuple[int, int],
    specificity: float,
    device: str,
    say: Callable[[str], None],
) -> tuple[FoldResult, np.ndarray, np.ndarray]:
    """Train on the pool without the fold's sample sets ``keys`` and score the fold.

    ``fold`` is (fold number from 1, number of folds).

    Returns:
        (the fold's figures, its chip labels, its chip scores).

    """
    from asmspotter.detect.scoring import chip_scores
    from asmspotter.detect.train import fit

    t0 = time.time()
    index, k = fold
    held = [g for g in pool if g.sample_set in keys]
    rest = [g for g in pool if g.sample_set not in keys]
    bands = config.input_bands
    tr, va = stack_galleries(rest).select(bands), stack_galleries(held).select(bands)
    say(
        f"fold {index}/{k}: train {len(tr)} chips ({tr.n_pos} mining), "
        f"fold {len(va)} chips ({va.n_pos} mining) in {len(keys)} sample sets"
    )

    def fold_log(line: str) -> None:
        say(f"  fold {index}: {line}")

    fitted = fit(config, tr, va, device=device, log=fold_log, select_best=False)
    scores = chip_scores(
        fitted.model, va.images, config.topk_fraction, device="cpu", views=config.tta
    )
    thr, sens = sensitivity_at_specificity(va.labels, scores, specificity)
    called: dict[str, float] = {}
    names = np.array([held[j].sample_set for j in va.source]) if len(va) else np.array([])
    for key in keys:
        sel = names == key
        if sel.any():
            called[key] = float(np.mean(scores[sel] >= thr))
    label_of = {g.sample_set: g.label for g in held}
    result = FoldResult(
        index=index,
        sets=keys,
        n_pos=va.n_pos,
        n_neg=va.n_neg,
        auc=auc(va.labels, scores),
        threshold=thr,
        sensitivity=sens,
        called=called,
        set_labels={key: label_of[key] for key in keys},
        epochs=fitted.epoch,
        seconds=time.time() - t0,
    )
    say(
        f"fold {index}/{k}: AUC {result.auc if result.auc is None else round(result.auc, 4)}, "
        f"sensitivity {sens:.3f} at specificity {specificity:g} ({result.seconds:.0f} s)"
    )
    return result, va.labels, scores


def cross_validate(
    config: TrainConfig,
    chips_dir: str | Path,
    k: int = 5,
    specificity: float = 0.97,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> CrossValidation:
    """Cross-validate a training recipe over sample sets outside the held-out categories.

    Args:
        config: the recipe (:class:`~asmspotter.detect.recipe.TrainConfig`); its
            ``test_sets`` are left out entirely and its ``val_sets`` join the pool.
        chips_dir: folder of galleries (PNG or GeoTIFF).
        k: number of folds.
        specificity: the specificity the per-fold operating point is chosen for.
        device: torch device of the training steps.
        log: callable receiving progress lines (None = silent).

    Returns:
        Per-fold and pooled figures.

    Raises:
        InputError: too few sample sets for ``k`` folds, or an invalid specificity.
        DataError: the galleries cannot be read.

    """
    from asmspotter.detect.chips import check_one_kind, split_galleries
    from asmspotter.detect.train import check_device

    check_device(device)
    if not 0.0 < specificity < 1.0:
        raise InputError(f"specificity must lie between 0 and 1, got {specificity}")
    say = log or (lambda _m: None)
    galleries = read_galleries(chips_dir, config.max_chips_per_file)
    check_one_kind(galleries)
    pool = list(split_galleries(galleries, config.test_sets, ()).train)
    folds = assign_folds(sample_sets(pool), k)
    runs = [
        _run_fold(config, pool, keys, (i + 1, k), specificity, device, say)
        for i, keys in enumerate(folds)
    ]
    labels = np.concatenate([labels for _, labels, _ in runs])
    scores = np.concatenate([scores for _, _, scores in runs])
    _, pooled_sens = sensitivity_at_specificity(labels, scores, specificity)
    return CrossValidation(
        config=config.to_dict(),
        specificity=specificity,
        folds=tuple(result for result, _, _ in runs),
        pooled_auc=auc(labels, scores),
        pooled_sensitivity=pooled_sens,
    )
