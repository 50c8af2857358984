"""Chip metrics: confusion counts, ROC AUC and specificity-driven thresholds.

The one home of every figure measured on chip scores, for training (validation and test
chips), chip evaluation and cross-validation. Definitions (also in the model card):

- a chip is called mining when its score is >= the threshold;
- sensitivity = TP / (TP + FN) over mining chips; specificity = TN / (TN + FP) over
  non-mining chips;
- ROC AUC: the probability that a mining chip scores above a non-mining one (ties count
  half), threshold-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Counts:
    """Confusion counts of chip calls.

    Attributes:
        tp: mining chips called mining.
        fn: mining chips missed.
        tn: non-mining chips called not mining.
        fp: non-mining chips called mining.

    """

    tp: int = 0
    fn: int = 0
    tn: int = 0
    fp: int = 0

    @property
    def n_pos(self) -> int:
        """Number of mining chips."""
        return self.tp + self.fn

    @property
    def n_neg(self) -> int:
        """Number of non-mining chips."""
        return self.tn + self.fp

    @property
    def sensitivity(self) -> float | None:
        """TP / (TP + FN), or None without mining chips."""
        return self.tp / self.n_pos if self.n_pos else None

    @property
    def specificity(self) -> float | None:
        """TN / (TN + FP), or None without non-mining chips."""
        return self.tn / self.n_neg if self.n_neg else None

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp, self.fn + other.fn, self.tn + other.tn, self.fp + other.fp
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form with counts, sensitivity and specificity."""
        return {
            "tp": self.tp,
            "fn": self.fn,
            "tn": self.tn,
            "fp": self.fp,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
        }


def count(labels: np.ndarray, calls: np.ndarray) -> Counts:
    """Confusion counts from 0/1 labels and boolean calls."""
    labels = np.asarray(labels).astype(bool)
    calls = np.asarray(calls).astype(bool)
    return Counts(
        tp=int(np.sum(labels & calls)),
        fn=int(np.sum(labels & ~calls)),
        tn=int(np.sum(~labels & ~calls)),
        fp=int(np.sum(~labels & calls)),
    )


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney), or None with one class only."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def chip_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Return counts, sensitivity and specificity at ``threshold``, and the ROC AUC."""
    d = count(labels, scores >= threshold).to_dict()
    d["auc"] = auc(labels, scores)
    return d


def threshold_for_specificity(neg_scores: np.ndarray, specificity: float) -> float:
    """Lowest threshold (score >= threshold -> mining) giving at least ``specificity``."""
    if len(neg_scores) == 0:
        return 0.5
    s = np.sort(neg_scores)
    n_fp_allowed = int(math.floor((1.0 - specificity) * len(s)))
    # Threshold just above the (n - n_fp_allowed)-th lowest negative score.
    ref = s[len(s) - n_fp_allowed - 1]
    return float(min(max(np.nextafter(np.float32(ref), np.float32(1.0)), 1e-4), 1.0))


def sensitivity_at_specificity(
    labels: np.ndarray, scores: np.ndarray, specificity: float
) -> tuple[float, float]:
    """Sensitivity at the lowest threshold giving ``specificity`` on these negatives.

    Returns:
        (threshold, sensitivity).

    """
    thr = threshold_for_specificity(scores[labels == 0], specificity)
    pos = scores[labels == 1]
    return thr, float(np.mean(pos >= thr)) if len(pos) else float("nan")
