"""Mining detection on composites: one region's periods, each mapped and written atomically.

The model runs over each composite in overlapping, blended tiles
(:mod:`asmspotter.detect.tiling`); the probabilities and the mask are written window by
window, the mask is vectorised (:mod:`asmspotter.detect.polygons`), and the outputs of
:class:`asmspotter.layout.DetectionFiles` are written (``mining_probability.tif``: float32
COG, NaN no-data; ``mining_mask.tif``: uint8 COG, 1 mining, 0 not,
:data:`~asmspotter.layout.MASK_NODATA` no-data; ``mining.gpkg`` in the region's CRS;
``mining.geojson`` in EPSG:4326; ``detection.json``, the provenance). Everything is written
into a folder beside the period's and swapped in as a unit
(:func:`asmspotter.geoio.publish_folder`) only when all outputs are complete.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import layout
from asmspotter.composite.reading import CompositeInfo, inspect_composite
from asmspotter.detect.card import check_views, to_model_input
from asmspotter.detect.loader import Detector, load_detector
from asmspotter.detect.tiling import blended_strips, default_batch_size, tile_spans
from asmspotter.errors import DataError, InputError
from asmspotter.layout import MASK_NODATA

#: GDAL block cache (MiB) while detecting: bounded memory for rasters of any size.
GDAL_CACHE_MB = 64
#: Temporary rasters in the staging folder (tiled, fast to write; the outputs are COGs).
_TMP_PROB = "prob.tmp.tif"
_TMP_MASK = "mask.tmp.tif"


def fill_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill no-data pixels with the per-band mean of the valid ones (softer tile context)."""
    if valid.all() or not valid.any():
        return x
    means = x[:, valid].mean(axis=1)
    x[:, ~valid] = means[:, None]
    return x


@dataclass(frozen=True)
class DetectionResult:
    """Outputs and figures of one detection run.

    Attributes:
        out_dir: folder of the outputs.
        files: output name -> path.
        mining_area_ha: area of the mask (pixels >= threshold).
        polygon_area_ha: area of the polygons (after the minimum mapping unit).
        n_polygons: number of polygons.
        valid_fraction: share of pixels with data.
        seconds: wall time.
        provenance: the detection.json content.

    """

    out_dir: Path
    files: dict[str, Path]
    mining_area_ha: float
    polygon_area_ha: float
    n_polygons: int
    valid_fraction: float
    seconds: float
    provenance: dict[str, Any]


@dataclass(frozen=True)
class _Settings:
    """The settings of one detection run, the card's unless given."""

    threshold: float
    min_area_ha: float
    tile_size: int
    overlap: int
    batch_size: int
    views: str


def _settings(
    det: Detector,
    threshold: float | None,
    min_area_ha: float | None,
    tile_size: int | None,
    overlap: int | None,
    batch_size: int | None,
    views: str | None,
) -> _Settings:
    """Return the run's settings, checked.

    Raises:
        InputError: a threshold or area out of range, a tile size too small for its
            overlap, or unknown views.

    """
    card = det.card
    thr = card.pixel_threshold if threshold is None else float(threshold)
    mmu = card.min_area_ha if min_area_ha is None else float(min_area_ha)
    if not 0.0 < thr < 1.0:
        raise InputError(f"threshold must be between 0 and 1, got {thr}")
    if mmu < 0:
        raise InputError(f"minimum mapping unit must be >= 0 ha, got {mmu}")
    ts = tile_size or card.tile_size
    ov = card.tile_overlap if overlap is None else overlap
    if ts <= 2 * ov or ts < 16:
        raise InputError(f"tile size {ts} must exceed twice the overlap {ov} and be >= 16")
    bs = batch_size or default_batch_size(det.device, ts)
    tta = card.tta if views is None else views
    try:
        check_views(tta)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return _Settings(thr, mmu, ts, ov, bs, tta)


def _gtiff_profile(info: CompositeInfo, dtype: str, nodata: float | int) -> dict[str, Any]:
    from asmspotter.geoio import gdal_threads

    return {
        "driver": "GTiff",
        "width": info.width,
        "height": info.height,
        "count": 1,
        "dtype": dtype,
        "crs": info.crs,
        "transform": info.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        # temporaries only (the COGs are DEFLATE): fast to write and to read back
        "compress": "ZSTD",
        "zstd_level": 1,
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": gdal_threads(),
    }


def _n_tiles(info: CompositeInfo, run: _Settings) -> int:
    rows = tile_spans(info.height, run.tile_size, run.overlap)
    return len(rows) * len(tile_spans(info.width, run.tile_size, run.overlap))


def _map_rasters(
    det: Detector, info: CompositeInfo, run: _Settings, staging: Path, label: str, progress: bool
) -> tuple[int, int]:
    """Write the probability and mask rasters (temporaries in ``staging``) window by window.

    Returns:
        (valid pixels, mining pixels).

    Raises:
        DataError: the composite's pixels cannot be read.

    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window
    from tqdm import tqdm

    card = det.card
    n_valid = n_mining = 0
    try:
        with (
            rasterio.open(info.path) as src,
            rasterio.open(
                staging / _TMP_PROB, "w", **_gtiff_profile(info, "float32", np.nan)
            ) as pdst,
            rasterio.open(
                staging / _TMP_MASK, "w", **_gtiff_profile(info, "uint8", MASK_NODATA)
            ) as mdst,
            tqdm(
                total=_n_tiles(info, run),
                unit="tile",
                desc=label,
                disable=not progress,
                leave=False,
            ) as bar,
        ):

            def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
                block = src.read(list(info.band_indexes), window=Window(0, r0, info.width, r1 - r0))
                x, v = to_model_input(block, info.radiometry, card.reflectance_max)
                return fill_invalid(x, v), v

            for strip in blended_strips(
                read,
                info.height,
                info.width,
                det.model,
                tile_size=run.tile_size,
                overlap=run.overlap,
                device=det.device,
                batch_size=run.batch_size,
                views=run.views,
                precision=det.precision,
                on_tile=bar.update,
            ):
                win = Window(0, strip.row, info.width, strip.prob.shape[0])
                mine = strip.valid & (np.nan_to_num(strip.prob, nan=0.0) >= run.threshold)
                mask = np.where(strip.valid, mine.astype(np.uint8), MASK_NODATA)
                pdst.write(strip.prob[np.newaxis], window=win)
                mdst.write(mask.astype(np.uint8)[np.newaxis], window=win)
                n_valid += int(strip.valid.sum())
                n_mining += int(mine.sum())
            pdst.set_band_description(1, "mining_probability")
            mdst.set_band_description(1, "mining_mask")
            thr = str(run.threshold)
            pdst.update_tags(MODEL=card.name, THRESHOLD=thr)
            mdst.update_tags(MODEL=card.name, THRESHOLD=thr, VALUES="1 mining, 0 not")
    except RasterioError as exc:
        raise DataError(f"cannot read composite {info.path}: corrupt data ({exc})") from exc
    return n_valid, n_mining


def _write_polygons(
    staging: Path, info: CompositeInfo, run: _Settings, region: str, period: str, crs: Any
) -> Any:
    """Vectorise the staged mask and write the polygons (``crs`` and EPSG:4326); return them."""
    from asmspotter.detect.polygons import mask_polygons, polygons_frame, write_vector

    staged = layout.DetectionFiles(staging)
    found = mask_polygons(staging / _TMP_MASK, min_area_ha=run.min_area_ha)
    gdf = polygons_frame(list(found.geometry), info.crs, region, period)
    gdf_region = gdf.to_crs(crs) if len(gdf) else gdf.set_crs(crs, allow_override=True)
    write_vector(gdf_region, staged.gpkg, "GPKG", layer="mining")
    write_vector(gdf.to_crs("EPSG:4326"), staged.geojson, "GeoJSON")
    return gdf


def _provenance(
    det: Detector,
    info: CompositeInfo,
    run: _Settings,
    figures: dict[str, Any],
    names: layout.DetectionFiles,
    **where: Any,
) -> dict[str, Any]:
    """Return the content of ``detection.json``.

    Args:
        det: the model.
        info: the composite.
        run: the settings.
        figures: the ``results`` section.
        names: the output files (their names are recorded).
        **where: ``region``, ``period``, ``region_crs`` and ``seconds``.

    """
    from asmspotter.geoio import provenance_base

    prov = provenance_base()
    prov.update(
        {
            "stage": "detect",
            "region": where["region"],
            "period": where["period"],
            "input": {
                "composite": str(info.path),
                "radiometry": info.radiometry,
                "bands": list(det.card.bands),
                "size_px": [info.width, info.height],
                "crs": str(info.crs),
                "bytes": info.path.stat().st_size,
            },
            "model": {
                "name": det.card.name,
                "card": str(det.card_path),
                "weights_sha256": det.card.sha256,
            },
            "threshold": run.threshold,
            "min_area_ha": run.min_area_ha,
            "inference": {
                "device": det.device,
                "precision": det.precision,
                "tile_size": run.tile_size,
                "tile_overlap": run.overlap,
                "blending": "linear ramp over the overlap, normalised weighted mean",
                "tiles": _n_tiles(info, run),
                "tta": run.views,
            },
            "results": figures,
            "outputs": {
                "probability": names.probability.name,
                "mask": names.mask.name,
                "polygons_region_crs": names.gpkg.name,
                "polygons_wgs84": names.geojson.name,
            },
            "region_crs": str(where["region_crs"]),
            "seconds": where["seconds"],
        }
    )
    return prov


def detect_composite(
    composite: str | Path,
    out_dir: str | Path,
    *,
    detector: Detector | None = None,
    region: str = "",
    period: str = "",
    region_crs: Any = None,
    threshold: float | None = None,
    min_area_ha: float | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    views: str | None = None,
    progress: bool = True,
) -> DetectionResult:
    """Detect mining on a composite COG and write all outputs atomically.

    Args:
        composite: the composite COG (canonical band names, radiometry tag).
        out_dir: destination folder (created, or replaced as a unit with its ``tiles``
            folder kept); the outputs take the names of
            :class:`asmspotter.layout.DetectionFiles`. A folder holding other files is
            not replaced.
        detector: a loaded model (default: the shipped one, on CUDA when available).
        region: region id (provenance, polygon attributes).
        period: period id (provenance, polygon attributes).
        region_crs: CRS of the GeoPackage (default: the composite's).
        threshold: pixel probability threshold (default: the card's).
        min_area_ha: minimum mapping unit of the polygons (default: the card's).
        tile_size: tile side (default: the card's).
        overlap: tile overlap (default: the card's).
        batch_size: tiles per forward pass (default: as many pixels as 4 tiles of 512² px
            on the CPU, 16 on CUDA).
        views: test-time views averaged per tile (default: the card's ``tta``).
        progress: show a progress bar on stderr.

    Raises:
        InputError: a threshold or area out of range, or unknown views.
        DataError: the composite is missing, corrupt, holds other bands, the wrong dtype, or
            no valid pixel. No output file is left behind.
        OutputError: ``out_dir`` holds other files, or the file system refused a write
            (disk full); the previous outputs stay whole.

    """
    import rasterio

    from asmspotter.geoio import gdal_threads, publish_folder

    t0 = time.time()
    det = detector or load_detector()
    run = _settings(det, threshold, min_area_ha, tile_size, overlap, batch_size, views)
    info = inspect_composite(composite, det.card.bands)
    out = layout.DetectionFiles(Path(out_dir))
    where = {"region": region, "period": period, "region_crs": region_crs or info.crs}
    # The set is written complete into a folder beside the period's and swapped in as a
    # unit: a kill leaves the previous set whole, and its folder is a leftover that the
    # next run of the region removes (under the region's lock). A small GDAL block cache
    # keeps memory flat whatever the raster's size; GDAL decodes and compresses blocks on
    # all cores.
    names = [f.name for f in out.files]
    with (
        publish_folder(out.folder, names, keep=(layout.TILES_FOLDER,)) as staging,
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS=gdal_threads()),
    ):
        prov = _detect_into(layout.DetectionFiles(staging), det, info, run, where, progress, t0)
    figures = prov["results"]
    return DetectionResult(
        out_dir=out.folder,
        files={f.name: f for f in out.files},
        mining_area_ha=figures["mining_area_ha_mask"],
        polygon_area_ha=figures["mining_area_ha_polygons"],
        n_polygons=figures["polygons"],
        valid_fraction=figures["valid_fraction"],
        seconds=time.time() - t0,
        provenance=prov,
    )


def _detect_into(
    staged: layout.DetectionFiles,
    det: Detector,
    info: CompositeInfo,
    run: _Settings,
    where: dict[str, Any],
    progress: bool,
    t0: float,
) -> dict[str, Any]:
    """Write every output of a detection into the staging folder; return the provenance.

    ``where`` holds the ``region`` and ``period`` ids and the ``region_crs``.

    Raises:
        DataError: the composite is corrupt or holds no valid pixel.

    """
    from asmspotter.geoio import translate_to_cog, write_json

    staging = staged.folder
    label = f"detect {where['region'] or info.path.name}"
    n_valid, n_mining = _map_rasters(det, info, run, staging, label, progress)
    if n_valid == 0:
        raise DataError(
            f"composite {info.path} holds no valid pixel (all no-data): nothing to detect"
        )
    translate_to_cog(staging / _TMP_PROB, staged.probability)
    translate_to_cog(staging / _TMP_MASK, staged.mask)
    gdf = _write_polygons(staging, info, run, where["region"], where["period"], where["region_crs"])
    px_ha = abs(info.transform.a * info.transform.e) / 1e4
    figures = {
        "valid_fraction": n_valid / float(info.width * info.height),
        "mining_area_ha_mask": n_mining * px_ha,
        "polygons": len(gdf),
        "mining_area_ha_polygons": float(gdf["area_ha"].sum()) if len(gdf) else 0.0,
    }
    prov = _provenance(det, info, run, figures, staged, **where, seconds=round(time.time() - t0, 2))
    write_json(staged.provenance, prov)
    for tmp in (_TMP_PROB, _TMP_MASK):
        (staging / tmp).unlink()
    return prov


def _check_level(det: Detector, files: layout.CompositeFiles, region_id: str) -> None:
    """Refuse a cached STAC composite of another processing level than the card names.

    Raises:
        DataError: naming the ``fetch`` that builds a composite of the right level.

    """
    from asmspotter.geoio import read_json

    level = det.card.level
    if level is None:
        return
    request = read_json(files.provenance).get("request", {})
    made = request.get("level") if request.get("type") == "stac" else None
    if made is not None and made != level:
        raise DataError(
            f"composite {files.tif} was made from {made} scenes; model {det.card.name} reads "
            f"{level} reflectance (run `asmspotter fetch {region_id} --model "
            f"{det.card.name}` first)"
        )


def detect_region(
    region: Any,
    periods: Sequence[Any],
    *,
    model: str | Path | None = None,
    device: str | None = None,
    threshold: float | None = None,
    min_area_ha: float | None = None,
    tile_size: int | None = None,
    views: str | None = None,
    precision: str | None = None,
    progress: bool = True,
) -> list[DetectionResult]:
    """Detect mining on the cached composite of each period of a catalogue region.

    Every composite is checked before any work starts, so a missing one fails fast. The
    outputs go to :func:`asmspotter.layout.detection_files` of each period.

    Args:
        region: a catalogue ``Region``.
        periods: its periods to process.
        model: model name in data/models or a card path (default: the shipped one),
            loaded once the composites are known to exist.
        device: torch device (default: cuda when available, else cpu).
        threshold: pixel probability threshold (default: the card's).
        min_area_ha: minimum mapping unit (default: the card's).
        tile_size: tile size in px (default: the card's).
        views: test-time views averaged per tile (default: the card's ``tta``).
        precision: ``auto`` (default), ``fp32`` or ``bf16`` (see
            :mod:`asmspotter.detect.runtime`).
        progress: show a progress bar per period.

    Raises:
        InputError: ``device`` is not a device of this machine, or an unknown precision.
        DataError: a composite is absent or unfinished (names the ``fetch`` to run).

    """
    from asmspotter.composite import composite_complete
    from asmspotter.detect.loader import pick_device

    device = pick_device(device)  # a device this machine lacks is named before any work
    todo = [(p, layout.composite_files(region.id, p.id)) for p in periods]
    missing = [str(c.tif) for _, c in todo if not composite_complete(c)]
    if missing:
        raise DataError(
            f"composite not found: {missing[0]} (run `asmspotter fetch {region.id}` first)"
        )
    det = load_detector(model, device, precision)
    for _, comp in todo:
        _check_level(det, comp, region.id)
    return [
        detect_composite(
            comp.tif,
            layout.detection_files(region.id, period.id).folder,
            detector=det,
            region=region.id,
            period=period.id,
            region_crs=region.crs,
            threshold=threshold,
            min_area_ha=min_area_ha,
            tile_size=tile_size,
            views=views,
            progress=progress,
        )
        for period, comp in todo
    ]
