"""Chip evaluation: score labelled galleries with a model and count TP / FN / TN / FP.

Chips are scored with the card's rule (:mod:`asmspotter.detect.scoring`) and counted at
its chip threshold (:mod:`asmspotter.detect.metrics` defines the figures); the chips a
model gets wrong can be written out as contact sheets for people to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter import layout
from asmspotter.bands import DISPLAY_REFLECTANCE_MAX, TRUE_COLOUR, band_indexes
from asmspotter.detect.chips import Gallery
from asmspotter.detect.metrics import Counts, auc, count
from asmspotter.detect.scoring import chip_scores

if TYPE_CHECKING:
    from asmspotter.detect.card import ModelCard
    from asmspotter.detect.model import MiningNet


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
    """Per-file and total counts at one threshold (``precision``: the forward pass's)."""

    files: tuple[FileResult, ...]
    threshold: float
    model: str
    precision: str = "fp32"

    @property
    def total(self) -> Counts:
        """Counts summed over all files."""
        t = Counts()
        for f in self.files:
            t = t + f.counts
        return t

    @property
    def auc(self) -> float | None:
        """ROC AUC of the chip scores over all files (None without both labels or scores)."""
        labels = [f.label for f in self.files for _ in f.scores]
        scores = [s for f in self.files for s in f.scores]
        return auc(np.array(labels), np.array(scores, np.float64)) if scores else None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: totals at the top level, then per-file counts."""
        d: dict[str, Any] = {
            "model": self.model,
            "threshold": self.threshold,
            "precision": self.precision,
        }
        d.update(self.total.to_dict())
        d["auc"] = self.auc
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
        rows.append(
            f"model {self.model}, chip threshold {self.threshold:.3f}, ROC AUC "
            f"{fmt(self.auc)}, {self.precision}"
        )
        return "\n".join(rows)


def evaluate_galleries(
    galleries: Sequence[Gallery],
    model: MiningNet,
    card: ModelCard,
    threshold: float | None = None,
    precision: str = "fp32",
) -> ChipEvaluation:
    """Evaluate a model on galleries at the card's (or a given) chip threshold.

    Chips are scored with the card's test-time views (``card.tta``), the setting its chip
    threshold was chosen with, on the card's bands, with the forward pass at ``precision``
    (``fp32`` or ``bf16``).

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
            precision=precision,
        )
        calls = count(np.full(len(scores), g.label), scores >= thr)
        results.append(FileResult(g.name, g.label, calls, tuple(float(x) for x in scores)))
    return ChipEvaluation(tuple(results), thr, card.name, precision)


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
    idx = [bands.index(b) for b in TRUE_COLOUR] if set(TRUE_COLOUR) <= set(bands) else [0, 0, 0]
    rgb = np.clip(chip[..., idx] / DISPLAY_REFLECTANCE_MAX, 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8)


def evaluate_with_model(
    galleries: Sequence[Gallery],
    model_name: str | Path | None = None,
    threshold: float | None = None,
    precision: str | None = None,
) -> ChipEvaluation:
    """Load the shipped (or named) model on the CPU and evaluate it on galleries.

    ``precision`` is ``auto`` (default: bf16 where the CPU computes it natively, else fp32),
    ``fp32`` or ``bf16``.

    Raises:
        InputError: an unknown precision.
        DataError: the model cannot be read, or its weights and card name other bands.

    """
    from asmspotter.detect.loader import load_detector

    det = load_detector(model_name, device="cpu", precision=precision)
    return evaluate_galleries(galleries, det.model, det.card, threshold, det.precision)


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
    sheets = dict(zip(layout.CHIP_ERROR_FILES[1:], (missed, false_alarms), strict=True))
    rows = [
        [sheet, k + 1 if k < max_chips else "", e.file, e.index, e.label, f"{e.score:.4f}"]
        for sheet, errors in sheets.items()
        for k, e in enumerate(errors)
    ]
    written = []
    with atomic_output(out / layout.CHIP_ERROR_FILES[0]) as tmp:
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["sheet", "position", "file", "chip", "label", "score"])
            writer.writerows(rows)
    written.append(out / layout.CHIP_ERROR_FILES[0])
    for name, errors in sheets.items():
        shown = errors[:max_chips]
        chips = [display_chip(by_name[e.file].chips[e.index], by_name[e.file].bands) for e in shown]
        captions = [f"{k + 1}: {e.score:.2f}" for k, e in enumerate(shown)]
        with atomic_output(out / name) as tmp:
            Image.fromarray(contact_sheet(chips, captions)).save(tmp, format="PNG")
        written.append(out / name)
    return written
