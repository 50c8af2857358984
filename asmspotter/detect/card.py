"""Model cards: what a set of weights expects, how to feed it, and how well it does.

The card is a JSON file beside the weights (``data/models/<name>.card.json``); a Markdown
rendering (``<name>.md``) is written with it for people. The card is the single source
of the bands, the input scaling per radiometry, the chip-score rule and the thresholds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter.bands import DISPLAY_REFLECTANCE_MAX, RADIOMETRIES
from asmspotter.errors import DataError, InputError
from asmspotter.layout import ModelFiles

#: How each radiometry becomes model input (also written into the card), for models
#: trained on the PNG galleries; :func:`input_scaling` gives the text of any card.
INPUT_SCALING: dict[str, str] = {
    "reflectance": (
        "float surface reflectance (about 0..1, NaN = no-data) clipped to "
        f"[0, {DISPLAY_REFLECTANCE_MAX:g}]; the model input is that reflectance"
    ),
    "display": (
        "uint8 true-colour display values (0 in all bands = no-data) times "
        f"{DISPLAY_REFLECTANCE_MAX:g}/255, i.e. read as if the stretch were the chips' "
        "value/3000 scaling; training augments stretches (gain, gamma, offset, haze, "
        "quantisation) so other visualisation stretches work too"
    ),
}


#: Processing levels a model's imagery may have (the card's ``level``): Level-1C top-of-
#: atmosphere or Level-2A surface reflectance.
LEVELS: dict[str, str] = {
    "L1C": "Level-1C top-of-atmosphere reflectance",
    "L2A": "Level-2A surface reflectance",
}


def input_scaling(
    reflectance_max: float = DISPLAY_REFLECTANCE_MAX, level: str | None = None
) -> dict[str, Any]:
    """Return the card's ``input_scaling`` section for a reflectance clip at ``reflectance_max``.

    Models trained on the PNG galleries clip at :data:`DISPLAY_REFLECTANCE_MAX` (the chips'
    value/3000 scaling); models trained on GeoTIFF galleries of reflectance clip higher, and
    their cards say so with the ``reflectance_max`` key. A model of one processing ``level``
    (:data:`LEVELS`) reads reflectance of that level.
    """
    if reflectance_max == DISPLAY_REFLECTANCE_MAX and level is None:
        return dict(INPUT_SCALING)
    what = LEVELS[level] if level is not None else "surface reflectance"
    return {
        "reflectance": (
            f"float {what} (about 0..1, NaN = no-data) clipped to "
            f"[0, {reflectance_max:g}]; the model input is that reflectance"
        ),
        "display": INPUT_SCALING["display"],
        "reflectance_max": reflectance_max,
    }


#: Test-time view sets: each view is (quarter turns counter-clockwise, left-right flip).
#: Overhead imagery has no canonical orientation, so averaging the probabilities of rotated
#: copies of the input removes the orientation noise of a single pass; ``rot4`` (the four
#: rotations) costs four forward passes, ``d4`` (rotations and their mirror images) eight.
VIEW_SETS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "rot4": ((0, False), (1, False), (2, False), (3, False)),
    "d4": tuple((k, flip) for flip in (False, True) for k in range(4)),
}


def check_views(views: str) -> str:
    """Return ``views`` if it names a view set of :data:`VIEW_SETS`.

    Raises:
        ValueError: with the known names.

    """
    if views not in VIEW_SETS:
        raise ValueError(f"unknown test-time views {views!r} (one of {', '.join(VIEW_SETS)})")
    return views


@dataclass(frozen=True)
class ModelCard:
    """The machine-readable part of a model card.

    Attributes:
        name: model name (``asm-rgb-v3``).
        weights: file name of the weights beside the card.
        sha256: checksum of the weights file.
        bands: canonical band names of the model input, in order.
        chip_topk_fraction: chip score = mean probability of this top fraction of a chip's pixels.
        chip_threshold: chip score at or above which a chip is called mining.
        pixel_threshold: probability at or above which a pixel is mapped as mining.
        min_area_ha: default minimum mapping unit of the polygons.
        tile_size: inference tile size (px).
        tile_overlap: overlap of neighbouring tiles (px), blended linearly.
        chip_padding: reflect padding (px) added around a chip before scoring it.
        tta: test-time views averaged by chip scoring and inference (a key of
            :data:`~asmspotter.detect.card.VIEW_SETS`; cards without it mean ``none``).
        reflectance_max: reflectance at which reflectance composites are clipped for the
            model (``input_scaling.reflectance_max``; cards without it mean 0.3).
        level: processing level of the imagery the model reads (a key of :data:`LEVELS`;
            None = as the true-colour AMW chips, any reflectance composite). ``fetch`` and
            ``run --model`` build composites of this level.
        training: training data, split and method.
        metrics: measured figures (chip test set, La Pampa validation, speed).
        definitions: what each metric means.
        extra: anything else in the JSON, kept as is.

    """

    name: str
    weights: str
    sha256: str
    bands: tuple[str, ...]
    chip_topk_fraction: float
    chip_threshold: float
    pixel_threshold: float
    min_area_ha: float = 0.5
    tile_size: int = 1024
    tile_overlap: int = 64
    chip_padding: int = 24
    tta: str = "none"
    reflectance_max: float = DISPLAY_REFLECTANCE_MAX
    level: str | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    definitions: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form of the card."""
        d: dict[str, Any] = {
            "name": self.name,
            "weights": self.weights,
            "sha256": self.sha256,
            "bands": list(self.bands),
            "input_scaling": input_scaling(self.reflectance_max, self.level),
            "chip_score": {
                "rule": "mean of the top fraction of the chip's pixel probabilities",
                "topk_fraction": self.chip_topk_fraction,
                "padding_px": self.chip_padding,
                "threshold": self.chip_threshold,
            },
            "pixel_threshold": self.pixel_threshold,
            "min_area_ha": self.min_area_ha,
            "inference": {
                "tile_size": self.tile_size,
                "tile_overlap": self.tile_overlap,
                "tta": self.tta,
            },
            "training": dict(self.training),
            "metrics": dict(self.metrics),
            "definitions": dict(self.definitions),
        }
        if self.level is not None:
            d["level"] = self.level
        d.update(self.extra)
        return d


_REQUIRED = ("name", "weights", "bands", "chip_score", "pixel_threshold")


def card_from_dict(d: Mapping[str, Any], source: str = "card") -> ModelCard:
    """Validate and convert a card's JSON form.

    Raises:
        DataError: a required field is absent or invalid.

    """
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise DataError(f"model card {source} lacks {', '.join(missing)}")
    try:
        cs = d["chip_score"]
        inf = d.get("inference", {})
        card = ModelCard(
            name=str(d["name"]),
            weights=str(d["weights"]),
            sha256=str(d.get("sha256", "")),
            bands=tuple(str(b) for b in d["bands"]),
            chip_topk_fraction=float(cs["topk_fraction"]),
            chip_threshold=float(cs["threshold"]),
            pixel_threshold=float(d["pixel_threshold"]),
            min_area_ha=float(d.get("min_area_ha", 0.5)),
            tile_size=int(inf.get("tile_size", 1024)),
            tile_overlap=int(inf.get("tile_overlap", 64)),
            chip_padding=int(cs.get("padding_px", 24)),
            tta=str(inf.get("tta", "none")),
            reflectance_max=float(
                d.get("input_scaling", {}).get("reflectance_max", DISPLAY_REFLECTANCE_MAX)
            ),
            level=None if d.get("level") is None else str(d["level"]),
            training=dict(d.get("training", {})),
            metrics=dict(d.get("metrics", {})),
            definitions=dict(d.get("definitions", {})),
            extra={
                k: v
                for k, v in d.items()
                if k
                not in {
                    "name",
                    "weights",
                    "sha256",
                    "bands",
                    "input_scaling",
                    "chip_score",
                    "pixel_threshold",
                    "min_area_ha",
                    "inference",
                    "level",
                    "training",
                    "metrics",
                    "definitions",
                }
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"invalid model card {source}: {exc}") from exc
    if not card.bands:
        raise DataError(f"model card {source} names no bands")
    for t in (card.chip_threshold, card.pixel_threshold, card.chip_topk_fraction):
        if not 0.0 < t <= 1.0:
            raise DataError(f"model card {source}: thresholds and fractions must be in (0, 1]")
    if card.tta not in VIEW_SETS:
        raise DataError(
            f"model card {source}: unknown inference.tta {card.tta!r} "
            f"(one of {', '.join(VIEW_SETS)})"
        )
    if card.level is not None and card.level not in LEVELS:
        raise DataError(
            f"model card {source}: unknown level {card.level!r} (one of {', '.join(LEVELS)})"
        )
    if not card.reflectance_max > 0.0:
        raise DataError(f"model card {source}: input_scaling.reflectance_max must be > 0")
    if card.tile_overlap < 0 or card.tile_size <= 2 * card.tile_overlap:
        raise DataError(f"model card {source}: tile_size must exceed twice tile_overlap")
    return card


def card_path(name_or_path: str | Path | None = None) -> Path:
    """Resolve a model name (in :func:`asmspotter.paths.models_dir`) or a card path to the card."""
    from asmspotter import paths
    from asmspotter.detect import DEFAULT_MODEL

    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        return p
    return ModelFiles(paths.models_dir(), p.name).card


def load_card(name_or_path: str | Path | None = None) -> tuple[ModelCard, Path]:
    """Load and validate a model card.

    Args:
        name_or_path: model name in ``data/models``, a card path, or None for the default.

    Returns:
        (card, path of the card).

    Raises:
        DataError: the card is missing or invalid.

    """
    from asmspotter.geoio import read_json

    p = card_path(name_or_path)
    if not p.is_file():
        raise DataError(f"model card not found: {p} (rebuild it with `asmspotter train`)")
    return card_from_dict(read_json(p), str(p)), p


def weights_path(card: ModelCard, card_file: Path) -> Path:
    """Path of the weights a card refers to (beside the card)."""
    return card_file.parent / card.weights


def sha256_of(path: str | Path) -> str:
    """Return the hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def to_model_input(
    block: np.ndarray, radiometry: str, reflectance_max: float = DISPLAY_REFLECTANCE_MAX
) -> tuple[np.ndarray, np.ndarray]:
    """Convert raster values to model input as the card says.

    Args:
        block: (bands, rows, cols) values of one window, bands in model order.
        radiometry: ``reflectance`` or ``display``.
        reflectance_max: the card's clip of reflectance (``ModelCard.reflectance_max``).

    Returns:
        (float32 model input with no-data filled by 0, boolean valid mask (rows, cols)).

    Raises:
        InputError: unknown radiometry.

    """
    if radiometry == "reflectance":
        x = block.astype(np.float32, copy=False)
        valid = np.all(np.isfinite(x), axis=0)
        # every non-finite value lies in an invalid pixel, which becomes 0 just below
        x = np.clip(np.where(valid, x, np.float32(0.0)), 0.0, reflectance_max)
    elif radiometry == "display":
        valid = np.any(block != 0, axis=0)
        x = block.astype(np.float32) * np.float32(DISPLAY_REFLECTANCE_MAX / 255.0)
    else:
        raise InputError(
            f"unknown radiometry {radiometry!r}: expected one of {', '.join(RADIOMETRIES)}"
        )
    x[:, ~valid] = 0.0
    return np.ascontiguousarray(x, dtype=np.float32), valid


def render_markdown(card: ModelCard) -> str:
    """Render a card as Markdown for people."""
    d = card.to_dict()
    lines = [f"# Model card: {card.name}", ""]
    desc = d.get("description")
    if desc:
        lines += [str(desc), ""]
    lines += [
        f"- weights: `{card.weights}` (sha256 `{card.sha256}`)",
        f"- input bands: {', '.join(card.bands)} (10 m)",
        "- output: per-pixel mining probability at 10 m",
        "",
        "## Input scaling",
        "",
    ]
    lines += [f"- `{k}`: {v}" for k, v in input_scaling(card.reflectance_max).items()]
    lines += [
        "",
        "## Chip-score rule and thresholds",
        "",
        f"- chip score: mean of the top {card.chip_topk_fraction:.0%} pixel probabilities of the "
        f"48 x 48 chip (scored with {card.chip_padding} px reflect padding)",
        f"- chip threshold: {card.chip_threshold:.3f} (score >= threshold -> mining)",
        f"- pixel threshold (mask, polygons): {card.pixel_threshold:.3f}",
        f"- default minimum mapping unit: {card.min_area_ha} ha",
        f"- inference tiles: {card.tile_size} px, overlap {card.tile_overlap} px, linear blending",
        f"- test-time views (chips and tiles): {card.tta}"
        + (
            ""
            if card.tta == "none"
            else f" (probabilities of {len(VIEW_SETS[card.tta])} "
            + ("rotated" if card.tta == "rot4" else "rotated and mirrored")
            + " passes, turned back and averaged)"
        ),
        "",
        "## Training",
        "",
    ]
    lines += _md_block(card.training)
    lines += ["", "## Metrics", ""]
    lines += _md_block(card.metrics)
    lines += ["", "## Definitions", ""]
    lines += _md_block(card.definitions)
    limits = d.get("limitations")
    if limits:
        lines += ["", "## Limitations", "", str(limits)]
    regen = d.get("regenerate")
    if regen:
        lines += ["", "## Regenerating", "", str(regen)]
    return "\n".join(lines) + "\n"


def _md_block(obj: Mapping[str, Any], indent: int = 0) -> list[str]:
    out: list[str] = []
    pad = "  " * indent
    for k, v in obj.items():
        if isinstance(v, Mapping):
            out.append(f"{pad}- {k}:")
            out += _md_block(v, indent + 1)
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], Mapping):
            out.append(f"{pad}- {k}:")
            for item in v:
                out.append(f"{pad}  - " + ", ".join(f"{a}: {_fmt(b)}" for a, b in item.items()))
        elif isinstance(v, (list, tuple)):
            out.append(f"{pad}- {k}: " + ", ".join(_fmt(x) for x in v))
        else:
            out.append(f"{pad}- {k}: {_fmt(v)}")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
