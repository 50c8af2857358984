"""Tiled, blended, streaming inference over composites of any size.

The raster is processed in rows of overlapping tiles (``tile_size`` with ``tile_overlap``
pixels shared by neighbours). Each tile's probabilities are weighted by a window that
ramps linearly to near zero across the overlap and the weighted sums are normalised, so
tile edges leave no seams. Each tile's probabilities are the average over the card's
test-time views (``inference.tta``: the four 90-degree rotations for the shipped model, see
:func:`asmspotter.detect.model.view_probabilities`). At most two rows of tiles (tile height
x raster width) are held in memory, the one on the model and the next one, read by a
background thread meanwhile; the blending sums stay on the model's device (the GPU when
there is one) and finished rows are written to disk window by window, so peak memory does
not grow with the raster's height and only a strip of it grows with its width.

Outputs (``reports/<region>/<period>/``): ``mining_probability.tif`` (float32 COG, NaN
no-data), ``mining_mask.tif`` (uint8 COG: 1 mining, 0 not, 255 no-data), ``mining.gpkg``
(region CRS), ``mining.geojson`` (EPSG:4326), ``detection.json`` (provenance). Everything is
written into a staging folder and moved into place only when all outputs are complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter import layout
from asmspotter.composite.reading import CompositeInfo, inspect_composite
from asmspotter.detect.card import ModelCard, check_views, to_model_input
from asmspotter.errors import DataError, InputError

if TYPE_CHECKING:
    from asmspotter.detect.model import MiningNet

PROB_NAME = "mining_probability.tif"
MASK_NAME = "mining_mask.tif"
GPKG_NAME = "mining.gpkg"
GEOJSON_NAME = "mining.geojson"
PROVENANCE_NAME = "detection.json"
MASK_NODATA = 255
#: GDAL block cache (MiB) while detecting: bounded memory for rasters of any size.
GDAL_CACHE_MB = 64


@dataclass(frozen=True)
class Detector:
    """A loaded model with its card.

    Attributes:
        model: the network (eval mode, on ``device``).
        card: its card.
        card_path: where the card was read from.
        device: ``cuda`` or ``cpu``.

    """

    model: MiningNet
    card: ModelCard
    card_path: Path
    device: str


def pick_device(device: str | None = None) -> str:
    """Return ``device`` or ``cuda`` when available, else ``cpu``."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_detector(model: str | Path | None = None, device: str | None = None) -> Detector:
    """Load the shipped (or named) model and its card.

    Raises:
        DataError: card or weights missing, corrupt, or not matching the card.

    """
    from asmspotter.detect.card import load_card, weights_path
    from asmspotter.detect.model import load_weights

    card, cpath = load_card(model)
    dev = pick_device(device)
    net = load_weights(weights_path(card, cpath), map_location=dev).to(dev)
    if tuple(net.bands) != tuple(card.bands):
        raise DataError(
            f"model weights take bands {', '.join(net.bands)} but the card {cpath} says "
            f"{', '.join(card.bands)}"
        )
    return Detector(net, card, cpath, dev)


# --------------------------------------------------------------------------- tiling


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length`` with the given overlap (all inside)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(size: int, overlap: int) -> np.ndarray:
    """1-D blending weights: a linear ramp over ``overlap`` pixels at each end, 1 inside."""
    i = np.arange(size, dtype=np.float32) + 0.5
    if overlap <= 0:
        return np.ones(size, np.float32)
    ramp = np.minimum(i, size - i) / float(overlap)
    return np.clip(ramp, 1.0 / (2 * overlap), 1.0).astype(np.float32)


@dataclass(frozen=True)
class Strip:
    """A finished block of output rows.

    Attributes:
        row: first row of the block in the raster.
        prob: float32 (rows, cols) probabilities, NaN where no-data.
        valid: bool (rows, cols) valid-data mask.

    """

    row: int
    prob: np.ndarray
    valid: np.ndarray


def _autocast(device: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _probabilities(model: MiningNet, x: Any, device: str, views: str = "none") -> Any:
    """Probabilities (n, rows, cols) as a float32 tensor on ``device`` for a tensor batch."""
    import torch

    from asmspotter.detect.model import view_probabilities

    with torch.inference_mode(), _autocast(device):
        return view_probabilities(model, x, views)


def blended_strips(
    read_rows: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    height: int,
    width: int,
    model: MiningNet,
    *,
    tile_size: int = 512,
    overlap: int = 64,
    device: str = "cpu",
    batch_size: int = 4,
    views: str = "none",
    on_tile: Callable[[int], None] | None = None,
) -> Iterator[Strip]:
    """Run the model over a raster in overlapping tiles and yield finished rows in order.

    Each row of tiles is read on a background thread while the previous one is on the
    model, moved to ``device`` once, cut into tiles there, and the weighted sums of the
    blending are kept on ``device`` too: only finished rows come back to the CPU.

    Args:
        read_rows: ``read_rows(r0, r1)`` returns (model input (bands, r1-r0, width) float32,
            valid mask (r1-r0, width)). It is called from one background thread, in order.
        height: raster rows.
        width: raster columns.
        model: the network (eval mode, on ``device``).
        tile_size: tile side in px.
        overlap: px shared by neighbouring tiles (blended).
        device: torch device.
        batch_size: tiles per forward pass.
        views: test-time views averaged per tile (a key of
            :data:`~asmspotter.detect.card.VIEW_SETS`).
        on_tile: called with the number of tiles done after each batch (progress).

    Yields:
        :class:`Strip` blocks covering rows 0..height in order.

    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    th, tw = min(tile_size, height), min(tile_size, width)
    rows = tile_starts(height, tile_size, overlap)
    cols = tile_starts(width, tile_size, overlap)
    wy = blend_window(th, overlap if height > tile_size else 0)
    wx = blend_window(tw, overlap if width > tile_size else 0)
    with torch.inference_mode():
        weight = torch.from_numpy(np.outer(wy, wx)).to(device)
        num = torch.zeros((th, width), dtype=torch.float32, device=device)
        den = torch.zeros((th, width), dtype=torch.float32, device=device)
    valid = np.zeros((th, width), bool)
    base = 0

    def flush(n: int) -> Strip:
        with torch.inference_mode():
            p = (num[:n] / den[:n]).cpu().numpy()
        v = valid[:n].copy()
        return Strip(base, np.where(v, p, np.float32(np.nan)).astype(np.float32), v)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asmspotter-read") as pool:
        pending = pool.submit(read_rows, rows[0], rows[0] + th)
        for k, r in enumerate(rows):
            x, v = pending.result()
            if k + 1 < len(rows):
                pending = pool.submit(read_rows, rows[k + 1], rows[k + 1] + th)
            if r > base:
                shift = r - base
                yield flush(shift)
                with torch.inference_mode():
                    num.copy_(torch.roll(num, -shift, 0))
                    den.copy_(torch.roll(den, -shift, 0))
                    num[th - shift :] = 0
                    den[th - shift :] = 0
                base = r
            valid[:] = v
            with torch.inference_mode():
                xs = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
            for i in range(0, len(cols), batch_size):
                cs = cols[i : i + batch_size]
                with torch.inference_mode():
                    tiles = torch.stack([xs[:, :, c : c + tw] for c in cs])
                    probs = _probabilities(model, tiles, device, views)
                    for c, p in zip(cs, probs, strict=True):
                        num[:, c : c + tw] += p * weight
                        den[:, c : c + tw] += weight
                if on_tile:
                    on_tile(len(cs))
    yield flush(height - base)


def default_batch_size(device: str) -> int:
    """Tiles per forward pass when none is given: 16 on CUDA, 4 on the CPU."""
    return 16 if device.startswith("cuda") else 4


def predict_array(
    model: MiningNet,
    x: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    tile_size: int = 512,
    overlap: int = 64,
    device: str = "cpu",
    batch_size: int | None = None,
    views: str = "none",
) -> np.ndarray:
    """Blended tiled probabilities for an in-memory model input (bands, rows, cols).

    ``views`` are the test-time views averaged per tile (see :func:`blended_strips`).

    Returns:
        float32 (rows, cols), NaN where ``valid`` is False.

    """
    h, w = x.shape[1:]
    ok = np.ones((h, w), bool) if valid is None else valid

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        return x[:, r0:r1], ok[r0:r1]

    out = np.empty((h, w), np.float32)
    bs = batch_size or default_batch_size(device)
    for s in blended_strips(
        read,
        h,
        w,
        model,
        tile_size=tile_size,
        overlap=overlap,
        device=device,
        batch_size=bs,
        views=views,
    ):
        out[s.row : s.row + s.prob.shape[0]] = s.prob
    return out


# --------------------------------------------------------------------------- composites


def _fill_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
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


def _gtiff_profile(info: CompositeInfo, dtype: str, nodata: float | int) -> dict[str, Any]:
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
        "NUM_THREADS": "ALL_CPUS",
    }


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
        out_dir: destination folder (created).
        detector: a loaded model (default: the shipped one, on CUDA when available).
        region: region id (provenance, polygon attributes).
        period: period id (provenance, polygon attributes).
        region_crs: CRS of the GeoPackage (default: the composite's).
        threshold: pixel probability threshold (default: the card's).
        min_area_ha: minimum mapping unit of the polygons (default: the card's).
        tile_size: tile side (default: the card's).
        overlap: tile overlap (default: the card's).
        batch_size: tiles per forward pass (default 4 on CPU, 16 on CUDA).
        views: test-time views averaged per tile (default: the card's ``tta``).
        progress: show a progress bar on stderr.

    Raises:
        InputError: a threshold or area out of range, or unknown views.
        DataError: the composite is missing, corrupt, holds other bands, the wrong dtype, or
            no valid pixel. No output file is left behind.

    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window
    from tqdm import tqdm

    from asmspotter.geoio import provenance_base, translate_to_cog, write_json

    t0 = time.time()
    det = detector or load_detector()
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
    bs = batch_size or default_batch_size(det.device)
    tta = card.tta if views is None else views
    try:
        check_views(tta)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    info = inspect_composite(composite, card.bands)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".detect-partial-", dir=out))
    # A small GDAL block cache keeps memory flat whatever the raster's size; GDAL decodes
    # and compresses blocks on all cores.
    env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS="ALL_CPUS")
    try:
        env.__enter__()
        n_tiles = len(tile_starts(info.height, ts, ov)) * len(tile_starts(info.width, ts, ov))
        tmp_prob = staging / "prob.tmp.tif"
        tmp_mask = staging / "mask.tmp.tif"
        n_valid = 0
        n_mining = 0
        try:
            with (
                rasterio.open(info.path) as src,
                rasterio.open(tmp_prob, "w", **_gtiff_profile(info, "float32", np.nan)) as pdst,
                rasterio.open(tmp_mask, "w", **_gtiff_profile(info, "uint8", MASK_NODATA)) as mdst,
                tqdm(
                    total=n_tiles,
                    unit="tile",
                    desc=f"detect {region or info.path.name}",
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):

                def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
                    win = Window(0, r0, info.width, r1 - r0)
                    block = src.read(list(info.band_indexes), window=win)
                    x, v = to_model_input(block, info.radiometry, card.reflectance_max)
                    return _fill_invalid(x, v), v

                for strip in blended_strips(
                    read,
                    info.height,
                    info.width,
                    det.model,
                    tile_size=ts,
                    overlap=ov,
                    device=det.device,
                    batch_size=bs,
                    views=tta,
                    on_tile=bar.update,
                ):
                    n = strip.prob.shape[0]
                    win = Window(0, strip.row, info.width, n)
                    mine = strip.valid & (np.nan_to_num(strip.prob, nan=0.0) >= thr)
                    mask = np.where(strip.valid, mine.astype(np.uint8), MASK_NODATA)
                    pdst.write(strip.prob[np.newaxis], window=win)
                    mdst.write(mask.astype(np.uint8)[np.newaxis], window=win)
                    n_valid += int(strip.valid.sum())
                    n_mining += int(mine.sum())
                pdst.set_band_description(1, "mining_probability")
                mdst.set_band_description(1, "mining_mask")
                pdst.update_tags(MODEL=card.name, THRESHOLD=str(thr))
                mdst.update_tags(MODEL=card.name, THRESHOLD=str(thr), VALUES="1 mining, 0 not")
        except RasterioError as exc:
            raise DataError(f"cannot read composite {info.path}: corrupt data ({exc})") from exc
        if n_valid == 0:
            raise DataError(
                f"composite {info.path} holds no valid pixel (all no-data): nothing to detect"
            )
        translate_to_cog(tmp_prob, staging / PROB_NAME)
        translate_to_cog(tmp_mask, staging / MASK_NAME)
        polys = polygonize_mask(tmp_mask, min_area_ha=mmu)
        gdf = _polygons_frame(polys, info.crs, region, period)
        target_crs = region_crs or info.crs
        gdf_region = (
            gdf.to_crs(target_crs) if len(gdf) else gdf.set_crs(target_crs, allow_override=True)
        )
        _write_vector(gdf_region, staging / GPKG_NAME, "GPKG", layer="mining")
        _write_vector(gdf.to_crs("EPSG:4326"), staging / GEOJSON_NAME, "GeoJSON")
        px_ha = abs(info.transform.a * info.transform.e) / 1e4
        poly_area = float(gdf["area_ha"].sum()) if len(gdf) else 0.0
        prov = provenance_base()
        prov.update(
            {
                "stage": "detect",
                "region": region,
                "period": period,
                "input": {
                    "composite": str(info.path),
                    "radiometry": info.radiometry,
                    "bands": list(card.bands),
                    "size_px": [info.width, info.height],
                    "crs": str(info.crs),
                    "bytes": info.path.stat().st_size,
                },
                "model": {
                    "name": card.name,
                    "card": str(det.card_path),
                    "weights_sha256": card.sha256,
                },
                "threshold": thr,
                "min_area_ha": mmu,
                "inference": {
                    "device": det.device,
                    "tile_size": ts,
                    "tile_overlap": ov,
                    "blending": "linear ramp over the overlap, normalised weighted mean",
                    "tiles": n_tiles,
                    "tta": tta,
                },
                "results": {
                    "valid_fraction": n_valid / float(info.width * info.height),
                    "mining_area_ha_mask": n_mining * px_ha,
                    "polygons": len(gdf),
                    "mining_area_ha_polygons": poly_area,
                },
                "outputs": {
                    "probability": PROB_NAME,
                    "mask": MASK_NAME,
                    "polygons_region_crs": GPKG_NAME,
                    "polygons_wgs84": GEOJSON_NAME,
                },
                "region_crs": str(target_crs),
                "seconds": round(time.time() - t0, 2),
            }
        )
        write_json(staging / PROVENANCE_NAME, prov)
        for tmp in (tmp_prob, tmp_mask):
            tmp.unlink()
        files = {}
        for name in (PROB_NAME, MASK_NAME, GPKG_NAME, GEOJSON_NAME, PROVENANCE_NAME):
            os.replace(staging / name, out / name)
            files[name] = out / name
    finally:
        env.__exit__(None, None, None)
        shutil.rmtree(staging, ignore_errors=True)
    return DetectionResult(
        out_dir=out,
        files=files,
        mining_area_ha=n_mining * px_ha,
        polygon_area_ha=poly_area,
        n_polygons=len(gdf),
        valid_fraction=n_valid / float(info.width * info.height),
        seconds=time.time() - t0,
        provenance=prov,
    )


def polygonize_mask(mask_path: str | Path, min_area_ha: float = 0.0, rows: int = 1024) -> list[Any]:
    """Polygons of the mining pixels (value 1) of a mask raster, read strip by strip.

    Polygons cut by strip borders are merged. Polygons smaller than ``min_area_ha`` are
    dropped (the minimum mapping unit).

    Returns:
        shapely Polygons in the raster's CRS.

    """
    import rasterio
    import shapely
    from rasterio.features import shapes
    from rasterio.windows import Window
    from shapely.geometry import shape

    inner: list[Any] = []
    edge: list[Any] = []
    with rasterio.open(mask_path) as src:
        ys = []
        for r0 in range(0, src.height, rows):
            n = min(rows, src.height - r0)
            win = Window(0, r0, src.width, n)
            m = src.read(1, window=win)
            sel = m == 1
            if not sel.any():
                continue
            tr = src.window_transform(win)
            top, bottom = tr.f, tr.f + tr.e * n
            ys.extend([top, bottom])
            for geom, _ in shapes(m, mask=sel, transform=tr, connectivity=8):
                poly = shape(geom)
                b = poly.bounds
                touches = (r0 > 0 and abs(b[3] - top) < 1e-6) or (
                    r0 + n < src.height and abs(b[1] - bottom) < 1e-6
                )
                (edge if touches else inner).append(poly)
    if edge:
        merged = shapely.union_all(edge)
        edge = list(getattr(merged, "geoms", [merged]))
    polys = inner + [p for p in edge if not p.is_empty]
    # 8-connected pixel groups that touch only at a corner give self-touching rings:
    # repair them so that every written polygon is valid.
    polys = [q for p in polys for q in _valid_parts(p)]
    min_m2 = min_area_ha * 1e4
    return [p for p in polys if p.area >= min_m2 and p.area > 0]


def _valid_parts(poly: Any) -> list[Any]:
    """Return ``poly`` made valid, as a list of polygons (unchanged when already valid)."""
    import shapely

    if poly.is_valid:
        return [poly]
    fixed = shapely.make_valid(poly)
    parts = getattr(fixed, "geoms", [fixed])
    return [g for g in parts if g.geom_type == "Polygon" and not g.is_empty]


def _polygons_frame(polys: list[Any], crs: Any, region: str, period: str) -> Any:
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(polys) + 1, dtype=np.int64),
            "region": [region] * len(polys),
            "period": [period] * len(polys),
            "area_ha": np.array([p.area / 1e4 for p in polys], dtype=np.float64),
        },
        geometry=gpd.GeoSeries(polys, crs=crs),
        crs=crs,
    )
    return gdf


def _write_vector(gdf: Any, path: Path, driver: str, layer: str | None = None) -> None:
    from asmspotter.geoio import atomic_output

    with atomic_output(path) as tmp:
        kw: dict[str, Any] = {"driver": driver, "engine": "pyogrio"}
        if layer:
            kw["layer"] = layer
        if len(gdf) == 0:
            kw["geometry_type"] = "MultiPolygon"
        gdf.to_file(tmp, **kw)


def detection_dir(region: str, period: str) -> Path:
    """Return the contract folder of a detection: ``reports/<region>/<period>/``."""
    from asmspotter import paths

    return paths.output_dir() / region / period


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
    progress: bool = True,
) -> list[DetectionResult]:
    """Detect mining on the cached composite of each period of a catalogue region.

    Every composite is checked before any work starts, so a missing one fails fast.

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
        progress: show a progress bar per period.

    Raises:
        DataError: a composite is absent or unfinished (names the ``fetch`` to run).

    """
    from asmspotter.composite import composite_complete

    todo = [(p, layout.composite_files(region.id, p.id)) for p in periods]
    missing = [str(c.tif) for _, c in todo if not composite_complete(c)]
    if missing:
        raise DataError(
            f"composite not found: {missing[0]} (run `asmspotter fetch {region.id}` first)"
        )
    det = load_detector(model, device)
    return [
        detect_composite(
            comp.tif,
            detection_dir(region.id, period.id),
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
