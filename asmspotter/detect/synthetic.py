"""Seeded synthetic inputs for the detector's tests and benchmark.

- :func:`make_gallery`: a gallery PNG of 48-px cells (some empty) with a known label.
- :func:`make_scene`: a forest-like RGB scene in reflectance with bright "mining" patches.
- :func:`write_composite`: such a scene written as a composite COG (either radiometry),
  in a real UTM CRS, through :func:`asmspotter.geoio.write_cog`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asmspotter.detect.chips import CHIP_SIZE

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
    bands: Sequence[str] = ("red", "green", "blue"),
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
        data = np.clip(np.nan_to_num(scene, nan=0.0) / 0.3 * 255, 0, 255).astype(np.uint8)
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
        tags={"ASMSPOTTER_RADIOMETRY": radiometry},
    )
