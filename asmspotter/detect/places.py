"""Where the chips of a gallery folder were taken, and folds of chips by geographic block.

A folder of galleries may hold a chip table (:data:`asmspotter.layout.CHIP_PLACES_NAME`,
``chips.csv``) with one row per chip: ``gallery`` (file name), ``chip`` (0-based index in
the gallery), ``sample_id`` (the site: the before and after chips of one place share it),
``category``, ``longitude`` and ``latitude``. Splitting by place instead of at random keeps
nearby chips, which look alike, out of the chips a network is trained on:

- each site goes to the cell of a ``block_deg`` degree grid that holds its (mean)
  longitude and latitude, so all chips of a site share a block;
- blocks are dealt into ``k`` folds in an order shuffled by ``seed`` and then sorted by
  size (largest first, ties in the shuffled order), each to the fold whose larger share of
  a label (mining, non-mining) stays smallest, so every fold holds about 1/k of each label
  and no block is split.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asmspotter.detect.chips import ChipArrays, Gallery, write_gallery
from asmspotter.errors import DataError, InputError
from asmspotter.layout import CHIP_PLACES_NAME

if TYPE_CHECKING:
    from asmspotter.detect.recipe import TrainConfig

#: Columns the chip table must have.
PLACE_COLUMNS: tuple[str, ...] = (
    "gallery",
    "chip",
    "sample_id",
    "category",
    "longitude",
    "latitude",
)


@dataclass(frozen=True)
class ChipPlaces:
    """Site, category and position of stacked chips (one entry per chip, in order).

    Attributes:
        site: site id of each chip (its ``sample_id``).
        category: category of each chip.
        longitude: degrees east.
        latitude: degrees north.

    """

    site: np.ndarray
    category: np.ndarray
    longitude: np.ndarray
    latitude: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.site)
        assert all(len(a) == n for a in (self.category, self.longitude, self.latitude))

    def __len__(self) -> int:
        return len(self.site)

    def take(self, index: np.ndarray) -> ChipPlaces:
        """Return the places of the chips at ``index`` (indexes or a boolean mask)."""
        return ChipPlaces(
            self.site[index], self.category[index], self.longitude[index], self.latitude[index]
        )


def _read_table(path: Path) -> dict[tuple[str, int], dict[str, str]]:
    """Read a chip table into rows keyed by (gallery, chip index)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in PLACE_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise DataError(f"{path} lacks the column(s) {', '.join(missing)}")
            rows: dict[tuple[str, int], dict[str, str]] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    key = (row["gallery"], int(row["chip"]))
                    float(row["longitude"]), float(row["latitude"])
                except (TypeError, ValueError):
                    raise DataError(
                        f"{path} line {line}: chip, longitude or latitude is not a number"
                    ) from None
                rows[key] = row
    except OSError as exc:
        raise DataError(f"cannot read the chip table {path} ({exc.strerror or exc})") from None
    return rows


def read_places(directory: str | Path, galleries: Sequence[Gallery]) -> ChipPlaces:
    """Return the places of the chips of ``galleries`` from the folder's chip table.

    The order is that of :func:`~asmspotter.detect.chips.stack_galleries` on the same
    galleries (gallery by gallery, chip by chip).

    Raises:
        InputError: the folder has no chip table.
        DataError: the table is unreadable, lacks a column or a row for one of the chips.

    """
    path = Path(directory) / CHIP_PLACES_NAME
    if not path.is_file():
        raise InputError(
            f"splitting by place needs {path}: a table of each chip's gallery, chip index, "
            f"{', '.join(PLACE_COLUMNS[2:])}"
        )
    rows = _read_table(path)
    picked = []
    for g in galleries:
        for i in range(len(g.chips)):
            row = rows.get((g.name, i))
            if row is None:
                raise DataError(f"{path} has no row for chip {i} of {g.name}")
            picked.append(row)
    return ChipPlaces(
        site=np.array([r["sample_id"] for r in picked], dtype=object),
        category=np.array([r["category"] for r in picked], dtype=object),
        longitude=np.array([float(r["longitude"]) for r in picked]),
        latitude=np.array([float(r["latitude"]) for r in picked]),
    )


def block_key(longitude: float, latitude: float, block_deg: float) -> str:
    """Name the grid cell of ``block_deg`` degrees that holds a point (its south-west corner)."""
    x = math.floor(longitude / block_deg) * block_deg
    y = math.floor(latitude / block_deg) * block_deg
    return f"{x:g}_{y:g}"


def site_blocks(places: ChipPlaces, block_deg: float) -> np.ndarray:
    """Return each chip's block: the block of its site's mean position.

    Raises:
        InputError: ``block_deg`` is not positive.

    """
    if not block_deg > 0:
        raise InputError(f"the block size must be positive, got {block_deg:g} degrees")
    sites, inverse = np.unique(places.site.astype(str), return_inverse=True)
    lon = np.bincount(inverse, places.longitude) / np.bincount(inverse)
    lat = np.bincount(inverse, places.latitude) / np.bincount(inverse)
    keys = np.array([block_key(x, y, block_deg) for x, y in zip(lon, lat, strict=True)])
    return keys[inverse]


def assign_place_folds(blocks: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Deal blocks into ``k`` folds that each hold about 1/k of every label's chips.

    Args:
        blocks: block key of each chip (:func:`site_blocks`).
        labels: 0/1 label of each chip.
        k: number of folds (at least 2).
        seed: seed of the order in which blocks of equal size are dealt.

    Returns:
        The fold of each chip, 1 to ``k``.

    Raises:
        InputError: ``k`` < 2 or fewer than ``k`` blocks.

    """
    keys = sorted(set(blocks.tolist()))
    if k < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {k}")
    if len(keys) < k:
        raise InputError(f"{k} folds need at least {k} geographic blocks; there are {len(keys)}")
    totals = np.array([max(int((labels == v).sum()), 1) for v in (1, 0)], dtype=float)
    share = {
        key: np.array([np.sum((blocks == key) & (labels == v)) for v in (1, 0)]) / totals
        for key in keys
    }
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    order.sort(key=lambda key: -float(share[key].sum()))
    load = np.zeros((k, 2))
    fold_of: dict[str, int] = {}
    for key in order:
        cost = [float((load[f] + share[key]).max()) + 1e-6 * float(load[f].sum()) for f in range(k)]
        f = int(np.argmin(cost))
        fold_of[key] = f + 1
        load[f] += share[key]
    return np.array([fold_of[b] for b in blocks.tolist()], dtype=np.int64)


@dataclass(frozen=True)
class PlaceSplit:
    """Chips dealt into folds by place.

    Attributes:
        fold: fold of each chip, 1 to ``k``.
        blocks: block key of each chip.
        places: the chips' places.
        k: number of folds.

    """

    fold: np.ndarray
    blocks: np.ndarray
    places: ChipPlaces
    k: int

    def blocks_of(self, fold: int) -> tuple[str, ...]:
        """Return the blocks of one fold, sorted."""
        return tuple(sorted(set(self.blocks[self.fold == fold].tolist())))


def place_folds(
    directory: str | Path,
    galleries: Sequence[Gallery],
    chips: ChipArrays,
    k: int,
    block_deg: float,
    seed: int = 0,
) -> PlaceSplit:
    """Read the places of stacked ``chips`` and deal them into ``k`` folds by block.

    Args:
        directory: the galleries' folder (with its chip table).
        galleries: the galleries ``chips`` were stacked from, in order.
        chips: the stacked chips.
        k: number of folds.
        block_deg: side of the grid cells, in degrees.
        seed: seed of the dealing order.

    Raises:
        InputError: no chip table, a bad block size, or fewer blocks than folds.
        DataError: the table lacks one of the chips.

    """
    places = read_places(directory, galleries)
    blocks = site_blocks(places, block_deg)
    return PlaceSplit(assign_place_folds(blocks, chips.labels, k, seed), blocks, places, k)


def write_place_galleries(
    directory: str | Path,
    out: str | Path,
    galleries: Sequence[Gallery],
    keep: np.ndarray,
    places: ChipPlaces,
) -> list[Path]:
    """Write the kept chips as galleries of the same names, with their chip table.

    Every gallery keeps its file name (so its label) and its bands; chips are written as
    uint16 reflectance x 10000, in their order. Galleries without a kept chip are left out.

    Args:
        directory: the source folder (only named in errors).
        out: destination folder (created).
        galleries: the source galleries (GeoTIFF, float reflectance).
        keep: boolean mask over the stacked chips of ``galleries``.
        places: their places (the same order).

    Returns:
        The galleries written, then the chip table.

    Raises:
        InputError: the galleries are PNG (true colour only).

    """
    from asmspotter.geoio import atomic_output

    if any(g.chips.dtype == np.uint8 for g in galleries):
        raise InputError(f"{directory}: only GeoTIFF galleries can be rewritten by place")
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[list[object]] = [list(PLACE_COLUMNS)]
    start = 0
    for g in galleries:
        n = len(g.chips)
        sel = np.flatnonzero(keep[start : start + n])
        if len(sel):
            written.append(write_gallery(dest / g.name, g.chips[sel], g.bands, dtype="uint16"))
            for j, i in enumerate(sel):
                p = start + i
                rows.append(
                    [
                        g.name,
                        j,
                        places.site[p],
                        places.category[p],
                        repr(float(places.longitude[p])),
                        repr(float(places.latitude[p])),
                    ]
                )
        start += n
    with atomic_output(dest / CHIP_PLACES_NAME) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return [*written, dest / CHIP_PLACES_NAME]


def write_held_out_galleries(
    config: TrainConfig, chips_dir: str | Path, out: str | Path
) -> list[Path]:
    """Write the chips of a recipe's held-out place fold as galleries (and chip table).

    ``asmspotter evaluate-chips OUT --model M`` then measures model ``M`` on places it never
    saw, when ``config`` is the recipe ``M`` was trained with (``read_recipe(M)``).

    Raises:
        InputError: the recipe does not split by place or holds out no fold, or the
            galleries are PNG.
        DataError: the galleries or their chip table cannot be read.

    """
    from asmspotter.detect.chips import read_galleries, stack_galleries

    if config.split != "place" or not config.test_fold:
        raise InputError(
            f"recipe {config.name} holds out no place fold (split {config.split}, "
            f"test_fold {config.test_fold})"
        )
    galleries = read_galleries(chips_dir, config.max_chips_per_file)
    chips = stack_galleries(galleries)
    split = place_folds(
        chips_dir, galleries, chips, config.place_folds, config.place_block_deg, config.place_seed
    )
    return write_place_galleries(
        chips_dir, out, galleries, split.fold == config.test_fold, split.places
    )
