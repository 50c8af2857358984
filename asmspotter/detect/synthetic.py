"""Seeded synthetic inputs for the detector's tests and benchmark.

- :func:`make_gallery`: a gallery PNG of 48-px cells (some empty) with a known label.
- :func:`make_multiband_gallery`: a GeoTIFF gallery of the ten L2A bands (or any band set)
  whose "look-alike" chips match the mining chips in the visible bands and differ only in the
  infrared, so only a model that reads the infrared can tell them apart.
- :func:`make_multiband_scene`: forest with mining patches and look-alike patches, per band.
- :func:`make_scene`: a forest-like RGB scene in reflectance with bright "mining" patches.
- :func:`write_composite`: such a scene written as a composite COG (either radiometry),
  in a real UTM CRS, through :func:`asmspotter.geoio.write_cog`.
- :func:`write_untrained_model`: a seeded, untrained network and its card, a model that
  commands load by its card like a shipped one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.bands import DISPLAY_REFLECTANCE_MAX, L2A_BANDS, TRUE_COLOUR
from asmspotter.detect.chips import CHIP_SIZE, write_gallery
from asmspotter.layout import RADIOMETRY_TAG, ModelFiles

if TYPE_CHECKING:
    from asmspotter.detect.model import ModelConfig

#: Surface reflectance per L2A band of rainforest, of bare sediment in mining workings, and of
#: a look-alike (the sediment's visible colour, vegetation-like infrared).
SPECTRA: dict[str, tuple[float, ...]] = {
    "forest": (0.03, 0.05, 0.03, 0.08, 0.22, 0.28, 0.32, 0.33, 0.16, 0.07),
    "mining": (0.10, 0.13, 0.16, 0.19, 0.21, 0.22, 0.24, 0.25, 0.30, 0.25),
    "lookalike": (0.10, 0.13, 0.16, 0.19, 0.30, 0.38, 0.42, 0.43, 0.14, 0.06),
}
#: Grid origin of synthetic composites: La Pampa, EPSG:32719 (UTM 19S), 10 m.
DEFAULT_CRS = "EPSG:32719"
DEFAULT_ORIGIN = (399690.0, 8565910.0)


def chip(bright: bool, rng: np.random.Generator) -> np.ndarray:
    """One 48 x 48 uint8 chip: dark green forest, with a bright sandy patch if ``bright``."""
    base = np.array([38, 64, 72], np.float32)
    img = base + rng.normal(0, 3, (CHIP_SIZE, CHIP_SIZE, 3))
    if bright:
        y, x = rng.integers(8, 30, 2)
        h, w = rng.integers(10, 18, 2)
        img[y : y + h, x : x + w] = np.array([200, 170, 150]) + rng.normal(0, 5, (h, w, 3))
    return np.clip(img, 1, 255).astype(np.uint8)


def make_gallery(
    path: str | Path,
    bright: Sequence[bool],
    cols: int = 4,
    seed: int = 0,
) -> Path:
    """Write a gallery PNG whose cells are :func:`chip` s; trailing cells stay black (empty).

    Args:
        path: destination; the file name must carry the label (``..._positives_...``).
        bright: one flag per filled cell (bright patch or not).
        cols: cells per row.
        seed: random seed.

    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    n = len(bright)
    rows = max(1, -(-n // cols))
    if rows * cols == n:
        rows += 1  # keep at least one empty cell
    img = np.zeros((rows * CHIP_SIZE, cols * CHIP_SIZE, 3), np.uint8)
    for i, b in enumerate(bright):
        r, c = divmod(i, cols)
        img[r * CHIP_SIZE : (r + 1) * CHIP_SIZE, c * CHIP_SIZE : (c + 1) * CHIP_SIZE] = chip(b, rng)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(p)
    return p


def make_scene(height: int, width: int, seed: int = 0, n_patches: int = 6) -> np.ndarray:
    """Return a (3, rows, cols) float32 reflectance scene (red, green, blue) with sand patches."""
    rng = np.random.default_rng(seed)
    base = np.array([0.045, 0.075, 0.085], np.float32)[:, None, None]
    scene = base + rng.normal(0, 0.004, (3, height, width)).astype(np.float32)
    sand = np.array([0.24, 0.2, 0.18], np.float32)
    for _ in range(n_patches):
        h = int(rng.integers(8, max(9, min(60, height // 3))))
        w = int(rng.integers(8, max(9, min(60, width // 3))))
        y = int(rng.integers(0, max(1, height - h)))
        x = int(rng.integers(0, max(1, width - w)))
        scene[:, y : y + h, x : x + w] = sand[:, None, None]
    return scene


def write_composite(
    path: str | Path,
    scene: np.ndarray,
    radiometry: str = "reflectance",
    bands: Sequence[str] = TRUE_COLOUR,
    crs: str = DEFAULT_CRS,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    res: float = 10.0,
) -> Path:
    """Write a composite COG of ``scene`` following the composite contract.

    ``reflectance`` keeps float32 values (NaN no-data); ``display`` stores
    ``reflectance / 0.3 * 255`` as uint8 with 0 as no-data.
    """
    from rasterio.transform import from_origin

    from asmspotter.geoio import write_cog

    if radiometry == "display":
        scaled = np.nan_to_num(scene, nan=0.0) / DISPLAY_REFLECTANCE_MAX * 255
        data = np.clip(scaled, 0, 255).astype(np.uint8)
        nodata: float | int | None = 0
    else:
        data = scene.astype(np.float32)
        nodata = float("nan")
    return write_cog(
        path,
        data,
        crs=crs,
        transform=from_origin(origin[0], origin[1], res, res),
        nodata=nodata,
        band_names=list(bands),
        tags={RADIOMETRY_TAG: radiometry},
    )


def _spectrum(kind: str, bands: Sequence[str]) -> np.ndarray:
    """Reflectance of ``kind`` (a key of :data:`SPECTRA`) in ``bands`` (L2A band names)."""
    return np.array([SPECTRA[kind][L2A_BANDS.index(b)] for b in bands], np.float32)


def multiband_chip(
    kind: str, rng: np.random.Generator, bands: Sequence[str] = L2A_BANDS
) -> np.ndarray:
    """One (48, 48, bands) float32 reflectance chip of forest, with a patch unless ``forest``.

    Args:
        kind: ``forest``, ``mining`` (a patch of sediment) or ``lookalike`` (a patch with the
            sediment's visible reflectance and a vegetation-like infrared).
        rng: random generator.
        bands: band names (L2A bands).

    """
    img = _spectrum("forest", bands) + rng.normal(0, 0.004, (CHIP_SIZE, CHIP_SIZE, len(bands)))
    if kind != "forest":
        y, x = rng.integers(8, 30, 2)
        h, w = rng.integers(10, 18, 2)
        patch = _spectrum(kind, bands) + rng.normal(0, 0.004, (h, w, len(bands)))
        img[y : y + h, x : x + w] = patch
    return np.clip(img, 0.001, 1.0).astype(np.float32)


def make_multiband_gallery(
    path: str | Path,
    kinds: Sequence[str],
    bands: Sequence[str] = L2A_BANDS,
    cols: int = 4,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write a GeoTIFF gallery of :func:`multiband_chip` s; trailing cells stay empty.

    Args:
        path: destination ``.tif``; the file name must carry the label.
        kinds: one chip kind per filled cell (see :func:`multiband_chip`).
        bands: band names, written as the band descriptions.
        cols: cells per row.
        seed: random seed.
        dtype: ``float32`` (reflectance, NaN in empty cells) or ``uint16`` (reflectance x
            10000, 0 in empty cells).

    """
    rng = np.random.default_rng(seed)
    n = len(kinds)
    rows = max(1, -(-n // cols))
    if rows * cols == n:
        rows += 1  # keep at least one empty cell
    chips = np.zeros((0, CHIP_SIZE, CHIP_SIZE, len(bands)), np.float32)
    if kinds:
        chips = np.stack([multiband_chip(kind, rng, bands) for kind in kinds])
    return write_gallery(path, chips, bands, cols=cols, rows=rows, dtype=dtype)


def make_multiband_scene(
    height: int, width: int, bands: Sequence[str] = L2A_BANDS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return a (bands, rows, cols) reflectance scene and its true mining mask.

    Forest, with a mining patch in the upper left quarter and a look-alike patch of the
    same visible colour in the lower right quarter (both a fifth of the scene's side).
    """
    rng = np.random.default_rng(seed)
    spec = {k: _spectrum(k, bands)[:, None, None] for k in SPECTRA}
    scene = spec["forest"] + rng.normal(0, 0.004, (len(bands), height, width))
    h, w = max(8, height // 5), max(8, width // 5)
    truth = np.zeros((height, width), bool)
    truth[height // 8 : height // 8 + h, width // 8 : width // 8 + w] = True
    fake = np.zeros((height, width), bool)
    fake[
        height - height // 8 - h : height - height // 8, width - width // 8 - w : width - width // 8
    ] = True
    scene = np.where(truth, spec["mining"], np.where(fake, spec["lookalike"], scene))
    return scene.astype(np.float32), truth


def write_untrained_model(
    folder: Path, name: str, config: ModelConfig, *, seed: int | None = None, **card: Any
) -> Path:
    """Write an untrained network of ``config`` and its card as ``<folder>/<name>.*``.

    Args:
        folder: where the weights and the card go (:class:`~asmspotter.layout.ModelFiles`).
        name: the model's name.
        config: the network's configuration (bands, widths, normalisation, version).
        seed: torch's seed for the initial weights (None: torch's current state).
        **card: other :class:`~asmspotter.detect.card.ModelCard` fields
            (``reflectance_max``, ``level``, ...); the chip top-k fraction and both
            thresholds are 0.5.

    Returns:
        The card's path.

    """
    import torch

    from asmspotter.detect.card import ModelCard, sha256_of
    from asmspotter.detect.model import build_model, save_weights
    from asmspotter.geoio import write_json

    if seed is not None:
        torch.manual_seed(seed)
    files = ModelFiles(folder, name)
    weights = save_weights(build_model(config), files.weights)
    fields = ModelCard(name, weights.name, sha256_of(weights), config.bands, 0.5, 0.5, 0.5, **card)
    return write_json(files.card, fields.to_dict())
