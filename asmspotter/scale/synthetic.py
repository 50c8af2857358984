"""Seeded synthetic regions and a tiny detector, for tiled runs' tests and benchmark.

- :func:`bright_model_card`: a tiny :class:`~asmspotter.detect.model.MiningNet` (with its card)
  whose mining probability is high where the 3 x 3 mean of the red band is bright (bare
  sediment) and low on forest: cheap, deterministic, and with a little spatial context, so
  that tile borders matter.
- :func:`write_scene`: a true-colour scene of forest with sediment patches, written strip by
  strip (any size in bounded memory) on a real UTM grid.
- :func:`make_region`: two periods of such scenes (mining spreading in between, one patch
  large enough to cross tile borders) as a local-source region, with a catalogue file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import geoio, layout
from asmspotter.detect.synthetic import DEFAULT_CRS, DEFAULT_ORIGIN

#: Reflectance (red, green, blue) of forest and of bare sediment.
FOREST = (0.045, 0.075, 0.085)
SEDIMENT = (0.24, 0.20, 0.18)
#: Display values are reflectance / this x 255 (the composite contract's stretch).
DISPLAY_SCALE = 0.3
#: Rows written at once by :func:`write_scene`.
STRIP_ROWS = 1024


@dataclass(frozen=True)
class Patch:
    """A rectangle of sediment: rows ``row0..row1``, columns ``col0..col1`` (exclusive)."""

    row0: int
    row1: int
    col0: int
    col1: int


def bright_model_card(folder: str | Path, *, tile_size: int = 32, overlap: int = 8) -> Path:
    """Write a tiny bright-sediment detector and its card into ``folder``; return the card.

    The network's stem takes the 3 x 3 mean of the normalised red band, keeps what lies
    above forest (a ReLU), and the head maps it to a logit: sediment gives about 0.99,
    forest about 0.007. Every other weight is zero.

    Args:
        folder: where ``bright.pt`` and ``bright.card.json`` go.
        tile_size: the card's inference tile size.
        overlap: the card's inference tile overlap.

    """
    import torch

    from asmspotter.detect.card import sha256_of
    from asmspotter.detect.model import ModelConfig, build_model, save_weights

    net = build_model(ModelConfig(widths=(4, 4, 4, 4), version=3))
    layers: Any = net  # its blocks, typed as plain modules
    with torch.no_grad():
        for prm in net.parameters():
            prm.zero_()
        layers.stem[0].weight[0, 0] = 1.0 / 9.0  # 3 x 3 mean of the red band
        layers.stem[1].weight[0] = 1.0
        layers.stem[1].bias[0] = -2.0  # (x - 0.06) / 0.04: sediment 4.5, forest -0.4
        layers.lat0.weight[0, 0] = 1.0
        layers.head.weight[0, 0] = 4.0
        layers.head.bias[0] = -5.0
    out = Path(folder)
    weights = save_weights(net.eval(), out / "bright.pt")
    card = {
        "name": "bright-test",
        "weights": weights.name,
        "sha256": sha256_of(weights),
        "bands": ["red", "green", "blue"],
        "chip_score": {"topk_fraction": 0.5, "threshold": 0.5},
        "pixel_threshold": 0.5,
        "min_area_ha": 0.1,
        "inference": {"tile_size": tile_size, "tile_overlap": overlap, "tta": "none"},
    }
    return geoio.write_json(out / "bright.card.json", card)


def random_patches(
    height: int, width: int, seed: int, per_km2: float = 4.0, size: tuple[int, int] = (6, 40)
) -> list[Patch]:
    """Return seeded sediment patches, ``per_km2`` on average (10 m pixels)."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(per_km2 * height * width / 1e4)
    out = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(size[0], size[1], 2))
        r, c = int(rng.integers(0, max(1, height - h))), int(rng.integers(0, max(1, width - w)))
        out.append(Patch(r, min(height, r + h), c, min(width, c + w)))
    return out


def write_scene(
    path: str | Path,
    height: int,
    width: int,
    patches: Sequence[Patch],
    *,
    seed: int = 0,
    crs: str = DEFAULT_CRS,
    origin: tuple[float, float] = DEFAULT_ORIGIN,
) -> Path:
    """Write a uint8 true-colour (display) scene of forest and sediment, strip by strip.

    Values are ``reflectance / 0.3 x 255`` with a little seeded noise; 0 (no data) never
    occurs. Memory holds one strip of :data:`STRIP_ROWS` rows.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    forest = np.array(FOREST, np.float32)[:, None, None]
    sediment = np.array(SEDIMENT, np.float32)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": from_origin(origin[0], origin[1], 10.0, 10.0),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
        "BIGTIFF": "IF_SAFER",
    }
    with geoio.atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, height, STRIP_ROWS):
            n = min(STRIP_ROWS, height - r0)
            rng = np.random.default_rng([seed, r0])
            refl = forest + rng.normal(0, 0.004, (3, n, width)).astype(np.float32)
            for p in patches:
                a, b = max(p.row0, r0), min(p.row1, r0 + n)
                if a < b:
                    refl[:, a - r0 : b - r0, p.col0 : p.col1] = sediment[:, None, None]
            data = np.clip(refl / DISPLAY_SCALE * 255, 1, 255).astype(np.uint8)
            dst.write(data, window=Window(0, r0, width, n))
        for i, band in enumerate(("red", "green", "blue"), start=1):
            dst.set_band_description(i, band)
        dst.update_tags(**{layout.RADIOMETRY_TAG: "display"})
    return Path(path)


@dataclass(frozen=True)
class SyntheticRegion:
    """A local-source region of synthetic scenes.

    Attributes:
        region: the catalogue region.
        catalogue: a catalogue file holding it (its local folder is absolute).
        scenes: period id -> scene file.
        crossing: the large patch that crosses tile borders, in pixels of the grid.

    """

    region: Any
    catalogue: Path
    scenes: dict[str, Path]
    crossing: Patch


def make_region(
    folder: str | Path,
    height: int = 384,
    width: int = 384,
    *,
    seed: int = 0,
    region_id: str = "synthetic",
    per_km2: float = 4.0,
    second_period: bool = True,
) -> SyntheticRegion:
    """Write two periods (2019, 2021) of a synthetic region and its catalogue.

    Both periods hold seeded random patches (``per_km2`` on average) and a large patch
    across the middle of the grid (it crosses the borders of any tiles smaller than the
    grid); 2021 adds more patches and widens the large one (mining spreads). Without
    ``second_period`` only 2019 is written.
    """
    import yaml

    from asmspotter.catalogue import load_catalogue

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    crossing = Patch(height // 3, height // 3 + height // 4, width // 4, width // 4 + width // 3)
    wider = Patch(crossing.row0, crossing.row1 + height // 10, crossing.col0, crossing.col1)
    first = random_patches(height, width, seed, per_km2)
    later = first + random_patches(height, width, seed + 1, per_km2 / 2)
    scenes = {
        "2019": write_scene(out / "scene_2019.tif", height, width, [*first, crossing], seed=seed)
    }
    if second_period:
        scenes["2021"] = write_scene(
            out / "scene_2021.tif", height, width, [*later, wider], seed=seed + 7
        )
    periods = {"2019": ("2019-01-01", "2019-12-31"), "2021": ("2021-01-01", "2021-12-31")}
    entry = {
        "name": f"Synthetic {region_id}",
        "country": "Nowhere",
        "outline": {"bbox": list(_lonlat_bounds(height, width))},
        "crs": DEFAULT_CRS,
        "periods": [{"id": p, "start": periods[p][0], "end": periods[p][1]} for p in scenes],
        "source": {
            "type": "local",
            "dir": str(out.resolve()),
            "files": {pid: p.name for pid, p in scenes.items()},
            "bands": ["red", "green", "blue"],
            "radiometry": "display",
        },
    }
    catalogue = out / "regions.yaml"
    catalogue.write_text(yaml.safe_dump({"regions": {region_id: entry}}))
    region = load_catalogue(catalogue)[region_id]
    return SyntheticRegion(region, catalogue, scenes, crossing)


def _lonlat_bounds(height: int, width: int) -> tuple[float, float, float, float]:
    """Lon/lat box around the synthetic grid (the region's outline covers every pixel)."""
    from rasterio.warp import transform_bounds

    x0, y1 = DEFAULT_ORIGIN
    bounds = transform_bounds(DEFAULT_CRS, "EPSG:4326", x0, y1 - 10 * height, x0 + 10 * width, y1)
    pad = 1e-4
    return (bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad)
