"""Gallery PNGs of labelled Sentinel-2 chips: parsing, labels, sample sets and splits.

A gallery is a PNG laid out as a grid of square cells (48 px, i.e. 480 m at 10 m;
some ``*_rgb_preview`` galleries use 32-px cells, which are resampled to 48 px).
Cells that are entirely black are empty. The label of every chip in a gallery comes
from the file name (``*positives*`` = mining, ``*negatives*`` = not mining).
RGB values are ``reflectance / 0.3 * 255`` (L1C value / 3000, clipped, times 255).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asmspotter.errors import DataError, InputError

#: Side of a chip in pixels (480 m at 10 m).
CHIP_SIZE = 48
#: Cell sizes a gallery may use; other sizes are resampled to :data:`CHIP_SIZE`.
CELL_SIZES = (48, 32)
#: Reflectance that maps to 255 in the chips (value / 3000 with L1C values x 10000).
CHIP_REFLECTANCE_SCALE = 0.3

_NEGATIVE = re.compile(r"negative", re.IGNORECASE)
_POSITIVE = re.compile(r"positive|minespos|mineria|mining", re.IGNORECASE)
_CLEAR = re.compile(r"_clear[0-9.]+")


@dataclass(frozen=True)
class Gallery:
    """The chips of one gallery PNG.

    Attributes:
        path: the PNG file.
        label: 1 for mining, 0 for not mining.
        sample_set: the sample-set key (file stem without the clear-sky threshold), shared
            by the ``clear0.05`` and ``clear0.75`` composites of the same points.
        chips: uint8 array (n, 48, 48, 3), row-major over filled cells.
        cell_size: the cell size found in the PNG.

    """

    path: Path
    label: int
    sample_set: str
    chips: np.ndarray
    cell_size: int

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name


def label_from_name(name: str) -> int:
    """Return the chip label a gallery's file name declares.

    Args:
        name: the file name.

    Returns:
        1 (mining) or 0 (not mining).

    Raises:
        InputError: the name says neither, or both.

    """
    neg = bool(_NEGATIVE.search(name))
    pos = bool(_POSITIVE.search(name))
    if neg == pos:
        raise InputError(
            f"cannot tell the label of {name}: expected 'positives' (mining) or "
            "'negatives' (not mining) in the file name"
        )
    return 1 if pos else 0


def sample_set_of(name: str) -> str:
    """Return the sample-set key of a gallery (its stem without ``_clearX``)."""
    stem = Path(name).stem
    return _CLEAR.sub("", stem)


def _cell_size(img: np.ndarray) -> int:
    """Find the cell size of a gallery from its shape and the cell-edge contrast."""
    h, w = img.shape[:2]
    fits = [c for c in CELL_SIZES if h % c == 0 and w % c == 0]
    if not fits:
        raise DataError(
            f"gallery of {w} x {h} px is not a grid of {' or '.join(map(str, CELL_SIZES))}-px cells"
        )
    if len(fits) == 1:
        return fits[0]
    f = img.astype(np.float32)
    dx = np.abs(np.diff(f, axis=1)).mean(axis=(0, 2))
    dy = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2))
    base = float(dx.mean() + dy.mean()) + 1e-6

    def edge(c: int) -> float:
        # Contrast at cell edges that are not also edges of the larger cell size.
        idx_x = [i - 1 for i in range(c, w, c) if i % CHIP_SIZE or c == CHIP_SIZE]
        idx_y = [i - 1 for i in range(c, h, c) if i % CHIP_SIZE or c == CHIP_SIZE]
        vals = np.concatenate([dx[idx_x], dy[idx_y]]) if idx_x or idx_y else np.zeros(1)
        return float(vals.mean()) / base

    # Prefer 48 unless the 32-px-only edges are clearly stronger than average.
    return 32 if 32 in fits and edge(32) > 2.0 else 48


def split_cells(img: np.ndarray, cell: int | None = None) -> tuple[np.ndarray, int]:
    """Cut a gallery image into its non-empty cells, resampled to 48 x 48.

    Args:
        img: uint8 (rows, cols, 3) gallery.
        cell: cell size, or None to detect it.

    Returns:
        (chips as uint8 (n, 48, 48, 3), cell size used).

    """
    if img.ndim != 3 or img.shape[2] < 3 or img.dtype != np.uint8:
        raise DataError(f"expected an 8-bit RGB gallery, got {img.dtype} array {img.shape}")
    img = img[..., :3]
    c = cell or _cell_size(img)
    ny, nx = img.shape[0] // c, img.shape[1] // c
    cells = img[: ny * c, : nx * c].reshape(ny, c, nx, c, 3).transpose(0, 2, 1, 3, 4)
    cells = cells.reshape(ny * nx, c, c, 3)
    filled = cells.reshape(len(cells), -1).max(axis=1) > 0
    cells = cells[filled]
    if c != CHIP_SIZE and len(cells):
        from PIL import Image

        cells = np.stack(
            [
                np.asarray(
                    Image.fromarray(x).resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.BILINEAR)
                )
                for x in cells
            ]
        )
    return np.ascontiguousarray(cells), c


def read_gallery(path: str | Path, max_chips: int | None = None) -> Gallery:
    """Read a gallery PNG into its chips and label.

    Args:
        path: the PNG.
        max_chips: keep at most this many chips (the first ones), or all.

    Raises:
        InputError: the label cannot be told from the name.
        DataError: the file is missing, not a PNG, or not a grid of cells.

    """
    p = Path(path)
    label = label_from_name(p.name)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            img = np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError(f"gallery not found: {p}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"not a readable PNG gallery: {p} ({exc})") from exc
    chips, cell = split_cells(img)
    if max_chips is not None:
        chips = chips[:max_chips]
    return Gallery(
        path=p, label=label, sample_set=sample_set_of(p.name), chips=chips, cell_size=cell
    )


def list_galleries(directory: str | Path) -> list[Path]:
    """Return the gallery PNGs of a folder, sorted by name.

    Raises:
        InputError: the folder does not exist or holds no PNG.

    """
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"not a folder of chip galleries: {d}")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise InputError(f"no gallery PNGs (*.png) in {d}")
    return files


def read_galleries(directory: str | Path, max_chips: int | None = None) -> list[Gallery]:
    """Read every gallery PNG of a folder, sorted by name.

    Raises:
        InputError: the folder does not exist, holds no PNG, or a name carries no label.
        DataError: a gallery cannot be read.

    """
    return [read_gallery(f, max_chips) for f in list_galleries(directory)]


@dataclass(frozen=True)
class ChipArrays:
    """Chips stacked for training or evaluation.

    Attributes:
        images: uint8 (n, 48, 48, 3).
        labels: int64 (n,) of 0/1.
        source: int64 (n,) index into ``files``.
        files: gallery file names.

    """

    images: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    files: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_pos(self) -> int:
        """Number of mining chips."""
        return int(self.labels.sum())

    @property
    def n_neg(self) -> int:
        """Number of non-mining chips."""
        return len(self) - self.n_pos


def stack_galleries(galleries: Sequence[Gallery]) -> ChipArrays:
    """Stack the chips of several galleries with their labels and sources."""
    imgs = [g.chips for g in galleries if len(g.chips)]
    if not imgs:
        empty = np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        return ChipArrays(empty, np.zeros(0, np.int64), np.zeros(0, np.int64), ())
    labels = np.concatenate([np.full(len(g.chips), g.label, np.int64) for g in galleries])
    source = np.concatenate([np.full(len(g.chips), i, np.int64) for i, g in enumerate(galleries)])
    return ChipArrays(np.concatenate(imgs), labels, source, tuple(g.name for g in galleries))


@dataclass(frozen=True)
class Split:
    """A split of galleries by sample set.

    Attributes:
        train: galleries used to fit the weights.
        val: galleries used for early stopping and the threshold.
        test: held-out categories, never seen during training.

    """

    train: tuple[Gallery, ...]
    val: tuple[Gallery, ...]
    test: tuple[Gallery, ...]


def _matches(sample_set: str, patterns: Iterable[str]) -> bool:
    return any(p.lower() in sample_set.lower() for p in patterns)


def split_galleries(
    galleries: Sequence[Gallery],
    test_sets: Sequence[str],
    val_sets: Sequence[str],
) -> Split:
    """Split galleries by sample set (both clear-sky composites stay on one side).

    Args:
        galleries: all galleries.
        test_sets: substrings naming the held-out sample sets (whole categories).
        val_sets: substrings naming the validation sample sets.

    Returns:
        The split; every gallery of a sample set lands in the same part.

    """
    train: list[Gallery] = []
    val: list[Gallery] = []
    test: list[Gallery] = []
    for g in galleries:
        if _matches(g.sample_set, test_sets):
            test.append(g)
        elif _matches(g.sample_set, val_sets):
            val.append(g)
        else:
            train.append(g)
    return Split(tuple(train), tuple(val), tuple(test))
