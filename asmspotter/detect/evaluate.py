"""Chip evaluation: score labelled chips with a model and count TP / FN / TN / FP.

Metric definitions (also in the model card):

- a chip's score is the mean of the top ``chip_topk_fraction`` of its pixel probabilities;
- a chip is called mining when its score is >= the card's chip threshold;
- sensitivity = TP / (TP + FN) over mining chips; specificity = TN / (TN + FP) over
  non-mining chips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.detect.chips import (
    CHIP_REFLECTANCE_SCALE,
    RGB_BANDS,
    Gallery,
    band_indexes,
    reflectance_max,
)

if TYPE_CHECKING:
    import torch

    from asmspotter.detect.card import ModelCard
    from asmspotter.detect.model import MiningNet


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


def topk_mean(prob: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the top ``fraction`` of values over the last two dims of (n, rows, cols)."""
    import torch

    flat = prob.reshape(prob.shape[0], -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return torch.topk(flat, k, dim=1).values.mean(dim=1)


def chip_scores(
    model: MiningNet,
    chips: np.ndarray,
    topk_fraction: float,
    padding: int = 24,
    batch_size: int = 256,
    device: str = "cpu",
    views: str = "none",
    clip: float | None = None,
) -> np.ndarray:
    """Score chips (n, 48, 48, bands) whose bands are the model's.

    uint8 chips are read in the PNG galleries' value/3000 scaling, float chips as surface
    reflectance clipped at ``clip`` (the card's ``reflectance_max``; default
    :func:`~asmspotter.detect.chips.reflectance_max` of the chips). Each chip is
    reflect-padded by ``padding`` px, run through the model (averaged over the
    test-time ``views``, see :data:`~asmspotter.detect.card.VIEW_SETS`), and the pixel
    probabilities of the chip itself are reduced with :func:`topk_mean`.

    Returns:
        float32 (n,) chip scores in [0, 1].

    """
    import torch
    import torch.nn.functional as F

    from asmspotter.detect.model import view_probabilities

    out = np.zeros(len(chips), np.float32)
    top = reflectance_max(chips) if clip is None else clip
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(chips), batch_size):
            x = torch.from_numpy(chips[i : i + batch_size]).to(device)
            if chips.dtype == np.uint8:
                x = x.permute(0, 3, 1, 2).float() * (CHIP_REFLECTANCE_SCALE / 255.0)
            else:
                x = x.permute(0, 3, 1, 2).float().clamp(0.0, top)
            if padding:
                x = F.pad(x, (padding,) * 4, mode="reflect")
            p = view_probabilities(model, x, views)
            if padding:
                p = p[:, padding:-padding, padding:-padding]
            out[i : i + len(x)] = topk_mean(p, topk_fraction).cpu().numpy()
    return out


@dataclass(frozen=True)
class FileResult:
    """Evaluation of one gallery file.

    Attributes:
        name: the gallery's file name.
        label: 1 for mining, 0 for not mining.
        counts: confusion counts at the evaluation's threshold.
        scores: chip scores, row-major over the gallery's filled cells (empty when only
            the counts are known).

    """

    name: str
    label: int
    counts: Counts
    scores: tuple[float, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ChipEvaluation:
    """Per-file and total counts at one threshold."""

    files: tuple[FileResult, ...]
    threshold: float
    model: str

    @property
    def total(self) -> Counts:
        """Counts summed over all files."""
        t = Counts()
        for f in self.files:
            t = t + f.counts
        return t

    def to_dict(self) -> dict[str, Any]:
        """JSON form: totals at the top level, then per-file counts."""
        d = {"model": self.model, "threshold": self.threshold}
        d.update(self.total.to_dict())
        d["files"] = [{"file": f.name, "label": f.label, **f.counts.to_dict()} for f in self.files]
        return d

    def format_table(self) -> str:
        """Return a plain-text table, one line per file and a total."""

        def fmt(x: float | None) -> str:
            return "  n/a" if x is None else f"{x:5.3f}"

        width = max([len(f.name) for f in self.files] + [5])
        head = f"{'file':<{width}}  label    TP    FN    TN    FP   sens   spec"
        rows = [head, "-" * len(head)]
        for f in self.files:
            c = f.counts
            lab = "mine" if f.label else "other"
            rows.append(
                f"{f.name:<{width}}  {lab:<5} {c.tp:5d} {c.fn:5d} {c.tn:5d} {c.fp:5d}  "
                f"{fmt(c.sensitivity)}  {fmt(c.specificity)}"
            )
        t = self.total
        rows.append("-" * len(head))
        rows.append(
            f"{'total':<{width}}        {t.tp:5d} {t.fn:5d} {t.tn:5d} {t.fp:5d}  "
            f"{fmt(t.sensitivity)}  {fmt(t.specificity)}"
        )
        rows.append(f"model {self.model}, chip threshold {self.threshold:.3f}")
        return "\n".join(rows)


def evaluate_galleries(
    galleries: Sequence[Gallery],
    model: MiningNet,
    card: ModelCard,
    threshold: float | None = None,
) -> ChipEvaluation:
    """Evaluate a model on galleries at the card's (or a given) chip threshold.

    Chips are scored with the card's test-time views (``card.tta``), the setting its chip
    threshold was chosen with, on the card's bands.

    Raises:
        InputError: a gallery lacks one of the card's bands.

    """
    thr = card.chip_threshold if threshold is None else threshold
    model_chips = gallery_chips(galleries, card.bands)
    results = []
    for g, chips in zip(galleries, model_chips, strict=True):
        scores = chip_scores(
            model,
            chips,
            card.chip_topk_fraction,
            card.chip_padding,
            views=card.tta,
            clip=card.reflectance_max,
        )
        calls = count(np.full(len(scores), g.label), scores >= thr)
        results.append(FileResult(g.name, g.label, calls, tuple(float(x) for x in scores)))
    return ChipEvaluation(tuple(results), thr, card.name)


def gallery_chips(galleries: Sequence[Gallery], bands: Sequence[str]) -> list[np.ndarray]:
    """Return each gallery's chips with only ``bands``, in that order.

    Raises:
        InputError: a gallery lacks one of ``bands`` (naming the gallery).

    """
    out = []
    for g in galleries:
        same = tuple(bands) == g.bands
        idx = band_indexes(g.bands, bands, f"gallery {g.name}")
        out.append(g.chips if same else g.chips[..., idx])
    return out


def display_chip(chip: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """Return a chip as uint8 true colour for people (grey from its first band without RGB).

    uint8 chips are returned as they are; reflectance is shown in the PNG galleries'
    value/3000 scaling.
    """
    if chip.dtype == np.uint8:
        return chip[..., :3]
    idx = [bands.index(b) for b in RGB_BANDS] if set(RGB_BANDS) <= set(bands) else [0, 0, 0]
    rgb = np.clip(chip[..., idx] / CHIP_REFLECTANCE_SCALE, 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def evaluate_with_model(
    galleries: Sequence[Gallery],
    model_name: str | Path | None = None,
    threshold: float | None = None,
) -> ChipEvaluation:
    """Load the shipped (or named) model and evaluate it on galleries.

    Raises:
        DataError: the model cannot be read.

    """
    from asmspotter.detect.card import load_card, weights_path
    from asmspotter.detect.model import load_weights

    card, cpath = load_card(model_name)
    model = load_weights(weights_path(card, cpath))
    return evaluate_galleries(galleries, model, card, threshold)


@dataclass(frozen=True)
class ChipError:
    """A chip the model called wrongly.

    Attributes:
        file: gallery file name.
        index: the chip's number in its gallery, row-major over filled cells from 0 (the
            row of the sample-point GeoJSON of the same stem, where one exists).
        label: 1 for mining (a miss), 0 for not mining (a false alarm).
        score: the chip's score.

    """

    file: str
    index: int
    label: int
    score: float


def chip_errors(evaluation: ChipEvaluation) -> tuple[list[ChipError], list[ChipError]]:
    """Return (missed mining chips, false alarms), each the most confident error first."""
    missed: list[ChipError] = []
    false_alarms: list[ChipError] = []
    for f in evaluation.files:
        for i, score in enumerate(f.scores):
            wrong = score < evaluation.threshold if f.label else score >= evaluation.threshold
            if wrong:
                (missed if f.label else false_alarms).append(ChipError(f.name, i, f.label, score))
    missed.sort(key=lambda e: (e.score, e.file, e.index))
    false_alarms.sort(key=lambda e: (-e.score, e.file, e.index))
    return missed, false_alarms


def contact_sheet(
    chips: Sequence[np.ndarray], captions: Sequence[str], cols: int = 10, zoom: int = 2
) -> np.ndarray:
    """Lay chips out in a grid with a caption strip under each (uint8 RGB image).

    Args:
        chips: uint8 (48, 48, 3) chips.
        captions: one short text per chip.
        cols: chips per row.
        zoom: pixel replication factor, so that a person can see the chips.

    """
    from PIL import Image, ImageDraw

    cell, strip, gap = 48 * zoom, 14, 4
    n = max(1, len(chips))
    rows = -(-n // cols)
    w = cols * (cell + gap) + gap
    h = rows * (cell + strip + gap) + gap
    sheet = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (chip, text) in enumerate(zip(chips, captions, strict=True)):
        r, c = divmod(k, cols)
        x0, y0 = gap + c * (cell + gap), gap + r * (cell + strip + gap)
        big = np.repeat(np.repeat(chip, zoom, axis=0), zoom, axis=1)
        sheet.paste(Image.fromarray(np.ascontiguousarray(big)), (x0, y0))
        draw.text((x0 + 2, y0 + cell + 1), text, fill=(0, 0, 0))
    return np.asarray(sheet)


#: File names written by :func:`write_errors`.
ERROR_FILES = ("errors.csv", "missed_mining.png", "false_alarms.png")


def write_errors(
    evaluation: ChipEvaluation,
    galleries: Sequence[Gallery],
    out_dir: str | Path,
    max_chips: int = 200,
) -> list[Path]:
    """Write the wrongly called chips for people to inspect.

    Writes two contact sheets, ``missed_mining.png`` and ``false_alarms.png``, with at most
    ``max_chips`` chips each, the most confident errors first, each captioned with its
    position on the sheet and its score; and ``errors.csv`` with every error (sheet,
    position on it or blank beyond ``max_chips``, gallery file, chip index, label, score),
    which says where each chip comes from. A sheet without errors is a blank image, so that
    no stale sheet remains. Every file is replaced atomically.

    Returns:
        The paths written.

    """
    import csv

    from PIL import Image

    from asmspotter.geoio import atomic_output

    by_name = {g.name: g for g in galleries}
    missed, false_alarms = chip_errors(evaluation)
    out = Path(out_dir)
    sheets = dict(zip(ERROR_FILES[1:], (missed, false_alarms), strict=True))
    rows = [
        [sheet, k + 1 if k < max_chips else "", e.file, e.index, e.label, f"{e.score:.4f}"]
        for sheet, errors in sheets.items()
        for k, e in enumerate(errors)
    ]
    written = []
    with atomic_output(out / ERROR_FILES[0]) as tmp:
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["sheet", "position", "file", "chip", "label", "score"])
            writer.writerows(rows)
    written.append(out / ERROR_FILES[0])
    for name, errors in sheets.items():
        shown = errors[:max_chips]
        chips = [display_chip(by_name[e.file].chips[e.index], by_name[e.file].bands) for e in shown]
        captions = [f"{k + 1}: {e.score:.2f}" for k, e in enumerate(shown)]
        with atomic_output(out / name) as tmp:
            Image.fromarray(contact_sheet(chips, captions)).save(tmp, format="PNG")
        written.append(out / name)
    return written
