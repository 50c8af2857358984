"""Per-tile detection of a tiled run: the detector over a tile's window, kept on its core.

:func:`detect_tile` reads the tile's window (its core and halo, see
:mod:`asmspotter.scale.grid`) from the composites of the tiles around it, runs the detector's
blended tiling over it exactly as :func:`asmspotter.detect.inference.detect_composite` runs it
over a whole composite, and writes the probability and mask of the core as COGs with its
pixel counts. Each worker process loads the model once (:func:`worker_detector`), on its GPU
when it has one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter import geoio, layout
from asmspotter.scale.grid import RasterGrid, Tile
from asmspotter.scale.records import (
    TileRecord,
    reuse,
    start_clock,
    tile_key,
    worker_task,
    write_record,
)

if TYPE_CHECKING:
    from asmspotter.composite import CompositeInfo
    from asmspotter.detect.inference import Detector

#: GDAL block cache (MiB) of a detection task.
GDAL_CACHE_MB = 64

_DETECTORS: dict[tuple[str, str | None, str | None], Detector] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class DetectSettings:
    """How tiles are detected (None: the card's value).

    Attributes:
        card: the model card (a path every worker can read).
        device: torch device (None: each worker's GPU when it has one, else its CPU).
        threshold: pixel probability threshold.
        views: test-time views averaged per detector tile.
        batch_size: detector tiles per forward pass.
        min_area_ha: minimum mapping unit of the merged polygons.
        precision: what the network computes in (None: ``auto`` on each worker).

    """

    card: Path
    device: str | None = None
    threshold: float | None = None
    views: str | None = None
    batch_size: int | None = None
    min_area_ha: float | None = None
    precision: str | None = None


def worker_detector(card: Path, device: str | None, precision: str | None = None) -> Detector:
    """Return the detector of ``card``, loaded once per process (on ``device``).

    Loading it tunes the worker's allocator for the network
    (:func:`asmspotter.detect.runtime.tune_allocator`).
    """
    from asmspotter.detect.inference import load_detector

    with _LOCK:
        key = (str(card), device, precision)
        if key not in _DETECTORS:
            _DETECTORS[key] = load_detector(card, device, precision)
        return _DETECTORS[key]


@dataclass(frozen=True)
class DetectJob:
    """One tile's detection.

    Attributes:
        period: the period id.
        raster: the region's grid.
        tile: the tile.
        sources: the composites of the tiles whose cores the tile's window overlaps, with
            those tiles.
        settings: the detection settings.
        files: where the tile's detection goes.
        refresh: make it again even when a record says it is there.

    """

    period: str
    raster: RasterGrid
    tile: Tile
    sources: tuple[tuple[Tile, layout.CompositeFiles], ...]
    settings: DetectSettings
    files: layout.TileDetectionFiles
    refresh: bool = False


def detection_key(job: DetectJob, det: Detector, composites: tuple[TileRecord, ...]) -> str:
    """Return the hash of what a tile's detection depends on (model, settings, inputs)."""
    card, s = det.card, job.settings
    return tile_key(
        "detect",
        model=card.name,
        weights_sha256=card.sha256,
        bands=list(card.bands),
        reflectance_max=card.reflectance_max,
        threshold=card.pixel_threshold if s.threshold is None else s.threshold,
        views=card.tta if s.views is None else s.views,
        detector_tile=card.tile_size,
        detector_overlap=card.tile_overlap,
        precision=det.precision,
        raster=job.raster,
        core=job.tile.core.as_list(),
        window=job.tile.window.as_list(),
        inputs=sorted(r.key for r in composites),
    )


@worker_task
def detect_tile(job: DetectJob, *composites: TileRecord) -> TileRecord:
    """Detect mining on one tile (after the composites of its window); a Dask task.

    Raises:
        DataError: a composite is missing, corrupt or lacks the model's bands.
        InputError: a threshold out of range or unknown views.

    """
    import rasterio

    from asmspotter.composite import inspect_composite
    from asmspotter.detect.card import check_views

    det = worker_detector(job.settings.card, job.settings.device, job.settings.precision)
    files, tile = job.files, job.tile
    key = detection_key(job, det, composites)
    done = (
        None
        if job.refresh
        else reuse(
            "detect", job.period, tile.id, files.provenance, key, [files.probability, files.mask]
        )
    )
    if done is not None:
        return done
    files.provenance.unlink(missing_ok=True)
    started = start_clock()
    card, s = det.card, job.settings
    thr = card.pixel_threshold if s.threshold is None else float(s.threshold)
    views = card.tta if s.views is None else s.views
    _check(thr, views, check_views)
    info = inspect_composite(job.sources[0][1].tif, card.bands)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        raw = read_window(job.sources, tile, info)
        prob, valid = _probabilities(det, raw, info.radiometry, tile, views, s.batch_size)
    mine = valid & (np.nan_to_num(prob, nan=0.0) >= thr)
    mask = np.where(valid, mine.astype(np.uint8), np.uint8(layout.MASK_NODATA)).astype(np.uint8)
    _write_rasters(job, prob, mask, card.name, thr)
    stats = {
        "pixels": tile.core.pixels,
        "valid_pixels": int(valid.sum()),
        "mining_pixels": int(mine.sum()),
        "device": det.device,
        "precision": det.precision,
    }
    extra = {"model": card.name, "threshold": thr, "views": views}
    return write_record("detect", job.period, tile.id, files.provenance, key, stats, started, extra)


def _check(threshold: float, views: str, check_views: Any) -> None:
    from asmspotter.errors import InputError

    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    try:
        check_views(views)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def read_window(
    sources: tuple[tuple[Tile, layout.CompositeFiles], ...], tile: Tile, info: CompositeInfo
) -> np.ndarray:
    """Return the composite values of ``tile``'s window (bands in the model's order).

    The window is pieced together from the cores of the tiles around it.
    """
    import rasterio

    win = tile.window
    raw = np.zeros((len(info.band_indexes), win.height, win.width), np.dtype(info.dtype))
    for other, files in sources:
        part = other.core.intersection(win)
        if part is None:
            continue
        with rasterio.open(files.tif) as src:
            block = src.read(list(info.band_indexes), window=part.within(other.core).window())
        rows, cols = part.within(win).slices
        raw[:, rows, cols] = block
    return raw


def _probabilities(
    det: Detector, raw: np.ndarray, radiometry: str, tile: Tile, views: str, batch: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Blended probabilities and valid pixels of the tile's core, from its window's values."""
    from asmspotter.detect.card import to_model_input
    from asmspotter.detect.inference import fill_invalid
    from asmspotter.detect.tiling import blended_strips, default_batch_size

    card = det.card
    core = tile.core.within(tile.window)
    prob = np.empty((core.height, core.width), np.float32)
    valid = np.empty((core.height, core.width), bool)

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        x, v = to_model_input(raw[:, r0:r1], radiometry, card.reflectance_max)
        return fill_invalid(x, v), v

    for strip in blended_strips(
        read,
        raw.shape[1],
        raw.shape[2],
        det.model,
        tile_size=card.tile_size,
        overlap=card.tile_overlap,
        device=det.device,
        batch_size=batch or default_batch_size(det.device, card.tile_size),
        views=views,
        precision=det.precision,
    ):
        r0, r1 = max(strip.row, core.row0), min(strip.row + strip.prob.shape[0], core.row1)
        if r0 < r1:
            src = slice(r0 - strip.row, r1 - strip.row)
            prob[r0 - core.row0 : r1 - core.row0] = strip.prob[src, core.col0 : core.col1]
            valid[r0 - core.row0 : r1 - core.row0] = strip.valid[src, core.col0 : core.col1]
    return prob, valid


def _write_rasters(
    job: DetectJob, prob: np.ndarray, mask: np.ndarray, model: str, thr: float
) -> None:
    """Write the core's probability and mask COGs, tagged as a single-process run's."""
    tags = {"MODEL": model, "THRESHOLD": str(thr)}
    for path, data, nodata, name, more in (
        (job.files.probability, prob, layout.PROBABILITY_NODATA, "mining_probability", {}),
        (job.files.mask, mask, layout.MASK_NODATA, "mining_mask", {"VALUES": "1 mining, 0 not"}),
    ):
        geoio.write_cog(
            path,
            data,
            crs=job.raster.crs,
            transform=job.raster.box_transform(job.tile.core),
            nodata=nodata,
            band_names=[name],
            tags={**tags, **more},
        )
