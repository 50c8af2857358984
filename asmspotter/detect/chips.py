"""Galleries of labelled Sentinel-2 chips: parsing, labels, sample sets and splits.

A gallery is an image laid out as a grid of square cells (48 px, i.e. 480 m at 10 m).
Cells that are entirely empty are skipped. The label of every chip in a gallery comes
from the file name (``*positives*`` = mining, ``*negatives*`` = not mining). Two formats:

- **PNG** (Amazon Mining Watch's true-colour chips): 8-bit RGB values are
  ``reflectance / 0.3 * 255`` (L1C value / 3000, clipped, times 255); black cells are empty;
  some ``*_rgb_preview`` galleries use 32-px cells, which are resampled to 48 px. Palette
  PNGs are read as their RGB colours; grayscale, alpha and 16-bit PNGs are refused (their
  values cannot be read as this radiometry).
- **GeoTIFF** (``.tif``/``.tiff``, any band set, e.g. the ten 10 m and 20 m bands of L2A):
  one band per canonical band name (the band description, as in composites), values as
  float surface reflectance (NaN = no-data) or uint16 reflectance x 10000 (0 = no-data),
  48-px cells; cells without any valid value are empty, no-data inside a chip becomes 0.
  The model input is the reflectance clipped to [0, :data:`MULTIBAND_REFLECTANCE_MAX`].
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asmspotter.bands import CANONICAL_BANDS, DISPLAY_REFLECTANCE_MAX, TRUE_COLOUR, band_indexes
from asmspotter.errors import DataError, InputError

#: Side of a chip in pixels (480 m at 10 m).
CHIP_SIZE = 48
#: Cell sizes a gallery may use; other sizes are resampled to :data:`CHIP_SIZE`.
CELL_SIZES = (48, 32)
#: Reflectance at which the chips of GeoTIFF galleries are clipped.
MULTIBAND_REFLECTANCE_MAX = 1.0
#: File suffixes read as galleries.
GALLERY_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")

_NEGATIVE = re.compile(r"negative|non[-_ ]?mining|not[-_ ]mining", re.IGNORECASE)
_POSITIVE = re.compile(r"positive|minespos|mineria|mining", re.IGNORECASE)
_CLEAR = re.compile(r"_clear[0-9.]+")


@dataclass(frozen=True)
class Gallery:
    """The chips of one gallery (PNG or GeoTIFF).

    Attributes:
        path: the PNG file.
        label: 1 for mining, 0 for not mining.
        sample_set: the sample-set key (file stem without the clear-sky threshold), shared
            by the ``clear0.05`` and ``clear0.75`` composites of the same points.
        chips: (n, 48, 48, bands), row-major over filled cells: uint8 in the PNG galleries'
            scaling, or float32 surface reflectance for GeoTIFF galleries (see
            :func:`reflectance_max`).
        cell_size: the cell size found in the file.
        bands: canonical names of the chips' bands, in order.

    """

    path: Path
    label: int
    sample_set: str
    chips: np.ndarray
    cell_size: int
    bands: tuple[str, ...] = TRUE_COLOUR

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name


def reflectance_max(chips: np.ndarray) -> float:
    """Return the reflectance that the top of the chips' value range stands for.

    uint8 chips (PNG galleries) reach :data:`DISPLAY_REFLECTANCE_MAX` at 255; float chips
    (GeoTIFF galleries) hold reflectance and are clipped at :data:`MULTIBAND_REFLECTANCE_MAX`.
    """
    return DISPLAY_REFLECTANCE_MAX if chips.dtype == np.uint8 else MULTIBAND_REFLECTANCE_MAX


def label_from_name(name: str) -> int:
    """Return the chip label a gallery's file name declares.

    ``non-mining`` (``nonmining``, ``not_mining``) says not mining: its ``mining`` does not
    count as the positive label.

    Args:
        name: the file name.

    Returns:
        1 (mining) or 0 (not mining).

    Raises:
        InputError: the name says neither, or both.

    """
    neg = bool(_NEGATIVE.search(name))
    pos = bool(_POSITIVE.search(_NEGATIVE.sub(" ", name)))
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
    cells = _grid_cells(img, c)
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


def _grid_cells(img: np.ndarray, c: int) -> np.ndarray:
    """Cut (rows, cols, bands) into its (ny * nx, c, c, bands) cells, row-major."""
    b = img.shape[2]
    ny, nx = img.shape[0] // c, img.shape[1] // c
    cells = img[: ny * c, : nx * c].reshape(ny, c, nx, c, b).transpose(0, 2, 1, 3, 4)
    return cells.reshape(ny * nx, c, c, b)


def _read_multiband(p: Path, label: int, max_chips: int | None) -> Gallery:
    """Read a GeoTIFF gallery (see the module docstring for its layout and values)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            # galleries are mosaics of chips from many places: no georeference is expected
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(p) as src:
                bands = tuple(d or "" for d in src.descriptions)
                data = src.read()
                nodata = src.nodata
    except RasterioError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"not a readable GeoTIFF gallery: {p} ({first})") from None
    if any(b not in CANONICAL_BANDS for b in bands) or len(set(bands)) != len(bands):
        raise DataError(
            f"{p}: band descriptions {', '.join(repr(b) for b in bands)} must name each band "
            f"once, as one of {', '.join(CANONICAL_BANDS)}"
        )
    if np.issubdtype(data.dtype, np.floating):
        refl = data.astype(np.float32)
        if nodata is not None and not np.isnan(nodata):
            refl[data == nodata] = np.nan
    elif data.dtype == np.uint16:
        refl = data.astype(np.float32) / np.float32(10000.0)
        refl[data == (0 if nodata is None else nodata)] = np.nan
    else:
        raise DataError(
            f"{p}: expected float reflectance or uint16 reflectance x 10000, got {data.dtype}"
        )
    rows, cols = refl.shape[1:]
    if rows % CHIP_SIZE or cols % CHIP_SIZE:
        raise DataError(f"GeoTIFF gallery {p} of {cols} x {rows} px is not a grid of 48-px cells")
    cells = _grid_cells(np.moveaxis(refl, 0, -1), CHIP_SIZE)
    valid = np.isfinite(cells)
    filled = (valid & (cells != 0)).reshape(len(cells), -1).any(axis=1)
    chips = np.where(valid, cells, np.float32(0.0))[filled]
    if max_chips is not None:
        chips = chips[:max_chips]
    return Gallery(
        path=p,
        label=label,
        sample_set=sample_set_of(p.name),
        chips=np.ascontiguousarray(chips, dtype=np.float32),
        cell_size=CHIP_SIZE,
        bands=bands,
    )


def write_gallery(
    path: str | Path,
    chips: np.ndarray,
    bands: Sequence[str],
    cols: int = 20,
    rows: int | None = None,
    dtype: str = "float32",
) -> Path:
    """Write reflectance chips as a GeoTIFF gallery that :func:`read_gallery` reads back.

    Args:
        path: destination ``.tif`` (written atomically; the name should carry the label).
        chips: float (n, 48, 48, bands) surface reflectance, NaN = no-data.
        bands: canonical band names, written as the band descriptions.
        cols: cells per row; chip i goes to cell i, row-major.
        rows: rows of cells (default: as few as hold the chips); cells beyond the chips
            stay empty.
        dtype: ``float32`` (reflectance, NaN = no-data) or ``uint16`` (reflectance x 10000,
            0 = no-data).

    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from asmspotter.geoio import atomic_output

    n, b = len(chips), len(bands)
    rows = -(-n // cols) if rows is None else rows
    assert rows * cols >= n and chips.shape[1:] == (CHIP_SIZE, CHIP_SIZE, b), chips.shape
    img = np.full((b, rows * CHIP_SIZE, cols * CHIP_SIZE), np.nan, np.float32)
    for k, chip in enumerate(chips):
        r, c = divmod(k, cols)
        img[:, r * CHIP_SIZE : (r + 1) * CHIP_SIZE, c * CHIP_SIZE : (c + 1) * CHIP_SIZE] = (
            np.moveaxis(chip, -1, 0)
        )
    if dtype == "uint16":
        data: np.ndarray = np.round(np.nan_to_num(img, nan=0.0) * 10000).astype(np.uint16)
        nodata: float = 0
    else:
        data, nodata = img, float("nan")
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": b,
        "dtype": data.dtype.name,
        "nodata": nodata,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    final = Path(path)
    with atomic_output(final) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a mosaic of many places
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(bands, start=1):
                dst.set_band_description(i, name)
    return final


def read_gallery(path: str | Path, max_chips: int | None = None) -> Gallery:
    """Read a gallery (PNG or GeoTIFF) into its chips and label.

    Args:
        path: the PNG or GeoTIFF.
        max_chips: keep at most this many chips (the first ones), or all.

    Raises:
        InputError: the label cannot be told from the name.
        DataError: the file is missing, unreadable, or not a grid of cells; a GeoTIFF's
            bands are not named by canonical band names or its values are of another type.

    """
    p = Path(path)
    label = label_from_name(p.name)
    if p.suffix.lower() in (".tif", ".tiff"):
        if not p.is_file():
            raise DataError(f"gallery not found: {p}")
        return _read_multiband(p, label, max_chips)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            _check_png_kind(p)
            img = np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError(f"gallery not found: {p}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"not a readable PNG gallery: {p} ({exc})") from exc
    try:
        chips, cell = split_cells(img)
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from None
    if max_chips is not None:
        chips = chips[:max_chips]
    return Gallery(
        path=p, label=label, sample_set=sample_set_of(p.name), chips=chips, cell_size=cell
    )


#: PNG colour types (IHDR) by name, for messages; 2 (RGB) and 3 (palette) are read.
_PNG_COLOUR = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale with alpha", 6: "RGBA"}


def _check_png_kind(p: Path) -> None:
    """Refuse a PNG that is not 8-bit RGB or palette (read from its IHDR header).

    Raises:
        DataError: grayscale, alpha or 16-bit; the message names the file.

    """
    with p.open("rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DataError(f"not a readable PNG gallery: {p} (no PNG header)")
    depth, colour = head[24], head[25]
    if colour == 3 or (colour == 2 and depth == 8):
        return
    kind = f"{depth}-bit {_PNG_COLOUR.get(colour, f'colour type {colour}')}"
    raise DataError(
        f"PNG gallery {p} is {kind}: expected 8-bit RGB (reflectance / 0.3 x 255); "
        "convert it to 8-bit RGB first"
    )


def list_galleries(directory: str | Path) -> list[Path]:
    """Return the galleries (PNG or GeoTIFF) of a folder, sorted by name.

    Raises:
        InputError: the folder does not exist or holds no gallery.

    """
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"not a folder of chip galleries: {d}")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in GALLERY_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"no galleries (*.png, *.tif) in {d}")
    return files


def read_galleries(directory: str | Path, max_chips: int | None = None) -> list[Gallery]:
    """Read every gallery (PNG or GeoTIFF) of a folder, sorted by name.

    Raises:
        InputError: the folder does not exist, holds no gallery, or a name carries no label.
        DataError: a gallery cannot be read.

    """
    return [read_gallery(f, max_chips) for f in list_galleries(directory)]


@dataclass(frozen=True)
class ChipArrays:
    """Chips stacked for training or evaluation.

    Attributes:
        images: (n, 48, 48, bands): uint8 (PNG galleries) or float32 reflectance (GeoTIFF).
        labels: int64 (n,) of 0/1.
        source: int64 (n,) index into ``files``.
        files: gallery file names.
        bands: canonical names of the image bands, in order.

    """

    images: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    files: tuple[str, ...]
    bands: tuple[str, ...] = TRUE_COLOUR

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

    def take(self, index: np.ndarray) -> ChipArrays:
        """Return the chips at ``index`` (indexes or a boolean mask), in that order."""
        return ChipArrays(
            np.ascontiguousarray(self.images[index]),
            self.labels[index],
            self.source[index],
            self.files,
            self.bands,
        )

    def select(self, bands: Sequence[str]) -> ChipArrays:
        """Return the chips with only ``bands``, in that order (``self`` if they match).

        Raises:
            InputError: a band is not among the chips' bands.

        """
        if tuple(bands) == self.bands:
            return self
        idx = band_indexes(self.bands, bands, "the chip set")
        images = np.ascontiguousarray(self.images[..., idx])
        return ChipArrays(images, self.labels, self.source, self.files, tuple(bands))


def _kind(g: Gallery) -> tuple[tuple[str, ...], str]:
    """Return the bands and value type of a gallery (stacked galleries must share them)."""
    return (g.bands, g.chips.dtype.str)


def check_one_kind(galleries: Sequence[Gallery]) -> None:
    """Check that galleries share their bands and value type, so they can be stacked.

    Raises:
        DataError: naming the first gallery that differs from the first one.

    """
    odd = [g for g in galleries if _kind(g) != _kind(galleries[0])]
    if odd:
        a, b = galleries[0], odd[0]
        raise DataError(
            f"galleries {a.name} ({', '.join(a.bands)}, {a.chips.dtype}) and {b.name} "
            f"({', '.join(b.bands)}, {b.chips.dtype}) hold different bands or values; a "
            "folder of galleries for training or evaluation needs one kind"
        )


def stack_galleries(galleries: Sequence[Gallery], like: ChipArrays | None = None) -> ChipArrays:
    """Stack the chips of several galleries with their labels and sources.

    Args:
        galleries: galleries of one kind (see :func:`check_one_kind`).
        like: chips whose bands and value type an empty result takes (default: uint8
            true colour, the PNG galleries').

    Raises:
        DataError: the galleries hold different bands or value types.

    """
    check_one_kind(galleries)
    imgs = [g.chips for g in galleries if len(g.chips)]
    if not imgs:
        if galleries:
            bands, dtype = galleries[0].bands, galleries[0].chips.dtype
        elif like is not None:
            bands, dtype = like.bands, like.images.dtype
        else:
            bands, dtype = TRUE_COLOUR, np.dtype(np.uint8)
        empty = np.zeros((0, CHIP_SIZE, CHIP_SIZE, len(bands)), dtype)
        return ChipArrays(empty, np.zeros(0, np.int64), np.zeros(0, np.int64), (), bands)
    bands = galleries[0].bands
    labels = np.concatenate([np.full(len(g.chips), g.label, np.int64) for g in galleries])
    source = np.concatenate([np.full(len(g.chips), i, np.int64) for i, g in enumerate(galleries)])
    files = tuple(g.name for g in galleries)
    return ChipArrays(np.concatenate(imgs), labels, source, files, bands)


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
