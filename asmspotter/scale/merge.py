"""A period's detection from its tiles: the outputs a single-process detection writes.

The period's files of :func:`asmspotter.layout.detection_files` are written by four tasks,
so that workers share them: :func:`mosaic_detection`, once for the probability and once for
the mask, translates a VRT over the tiles' COGs into the period's COG as soon as every tile
is detected; :func:`merge_tile_polygons` writes the polygons merged across tile borders
(``mining.gpkg`` in the region's CRS, ``mining.geojson`` in EPSG:4326) as soon as every tile
is vectorised; :func:`merge_detection` writes ``detection.json`` last, with the figures
summed over the tiles (cores do not overlap, so nothing is counted twice). Each skips its
work when ``detection.json`` says it was done from the same tiles and settings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from asmspotter import geoio, layout
from asmspotter.scale.composites import tiles_provenance
from asmspotter.scale.detection import DetectSettings
from asmspotter.scale.grid import TileGrid
from asmspotter.scale.mosaic import mosaic_cog, write_vrt
from asmspotter.scale.polygons import merge_polygons
from asmspotter.scale.records import TileRecord, tile_key, worker_task


@dataclass(frozen=True)
class MergeJob:
    """A period's detection from its tiles.

    Attributes:
        region: the region id.
        period: the period id.
        region_crs: the CRS of the region's polygons (``mining.gpkg``).
        grid: the tile grid.
        tile_files: each tile's detection files, in the grid's order.
        mosaic: the VRTs to write.
        files: the period's detection files.
        settings: the detection settings (for the minimum mapping unit and the record).
        refresh: write it again even when it was written from the same tiles.

    """

    region: str
    period: str
    region_crs: str
    grid: TileGrid
    tile_files: tuple[layout.TileDetectionFiles, ...]
    mosaic: layout.MosaicFiles
    files: layout.DetectionFiles
    settings: DetectSettings
    refresh: bool = False


#: The period's rasters that :func:`mosaic_detection` writes.
Raster = Literal["probability", "mask"]


def rasters_key(detections: Sequence[TileRecord]) -> str:
    """Return the key of a period's probability and mask: that of its tiles' detections."""
    return tile_key("detect", rasters=sorted(r.key for r in detections if r.stage == "detect"))


@worker_task
def mosaic_detection(job: MergeJob, raster: Raster, *detections: TileRecord) -> str:
    """Write the period's probability or mask COG from its tiles' (after them); a Dask task.

    Does nothing when ``detection.json`` says the COG was written from tiles with the same
    keys; else removes ``detection.json`` first (the period's files are being rewritten).

    Returns:
        The rasters' key (:func:`rasters_key`), for :func:`merge_detection`'s record.

    """
    key = rasters_key(detections)
    old = None if job.refresh else _tiled_record(job.files)
    if old is not None and old["tiles"].get("rasters") == key:
        return key
    job.files.provenance.unlink(missing_ok=True)
    vrt, cog = getattr(job.mosaic, raster), getattr(job.files, raster)
    pairs = [(getattr(f, raster), t.core) for t, f in _pairs(job)]
    mosaic_cog(write_vrt(vrt, job.grid.raster, pairs), cog)
    return key


@dataclass(frozen=True)
class MergedPolygons:
    """What :func:`merge_tile_polygons` wrote (or found written).

    Attributes:
        key: the key of the period's detection (its tiles' records and the merge settings).
        polygons: how many polygons.
        area_ha: their area.

    """

    key: str
    polygons: int
    area_ha: float


def _card_and_mmu(job: MergeJob) -> tuple[Any, Any, float]:
    from asmspotter.detect.card import load_card

    card, card_path = load_card(job.settings.card)
    mmu = card.min_area_ha if job.settings.min_area_ha is None else job.settings.min_area_ha
    return card, card_path, float(mmu)


@worker_task
def merge_tile_polygons(job: MergeJob, *records: TileRecord) -> MergedPolygons:
    """Write the period's polygons, merged across tile borders (after the tiles'); a Dask task.

    Does nothing when ``detection.json`` says they were merged from the same tiles with the
    same settings; else removes ``detection.json`` first.

    Args:
        job: the period's merge.
        records: the tiles' detection and polygons records.

    """
    mmu = _card_and_mmu(job)[2]
    key = tile_key("detect", tiles=sorted(r.key for r in records), mmu=mmu, crs=job.region_crs)
    old = None if job.refresh else _tiled_record(job.files)
    if old is not None and old["tiles"].get("key") == key:
        res = old["results"]
        return MergedPolygons(key, int(res["polygons"]), float(res["mining_area_ha_polygons"]))
    job.files.provenance.unlink(missing_ok=True)
    polys = merge_polygons(job.tile_files, mmu)
    return MergedPolygons(key, len(polys), _write_polygons(job, polys))


@worker_task
def merge_detection(
    job: MergeJob, merged: MergedPolygons, rasters: Sequence[str], *records: TileRecord
) -> Any:
    """Write the period's ``detection.json``, last (after its other files); a Dask task.

    Runs after :func:`merge_tile_polygons` wrote the polygons (``merged``) and
    :func:`mosaic_detection` the probability and the mask (``rasters``: their keys).

    Args:
        job: the period's merge.
        merged: the merged polygons.
        rasters: the keys the probability and the mask were written with.
        records: the tiles' detection and polygons records.

    Returns:
        The period's :class:`~asmspotter.detect.inference.DetectionResult`.

    """
    started = time.perf_counter()
    card, card_path, mmu = _card_and_mmu(job)
    key, rkey = merged.key, rasters_key(records)
    assert set(rasters) == {rkey}, "rasters written from other tiles"
    files = job.files
    old = None if job.refresh else _tiled_record(files)
    if old is not None and old["tiles"].get("key") == key and old["tiles"].get("rasters") == rkey:
        return _result(job, old, time.perf_counter() - started)
    files.provenance.unlink(missing_ok=True)
    raster = job.grid.raster
    det = [r for r in records if r.stage == "detect"]
    n_valid = sum(int(r.stats["valid_pixels"]) for r in det)
    n_mining = sum(int(r.stats["mining_pixels"]) for r in det)
    px_ha = raster.pixel_area_m2 / 1e4
    first = geoio.read_json(job.tile_files[0].provenance)
    prov = {
        **geoio.provenance_base(),
        "stage": "detect",
        "region": job.region,
        "period": job.period,
        "model": {"name": card.name, "card": str(card_path), "weights_sha256": card.sha256},
        "threshold": first["threshold"],
        "min_area_ha": mmu,
        "inference": {
            "devices": sorted({str(r.stats.get("device")) for r in det}),
            "precisions": sorted({str(r.stats.get("precision", "fp32")) for r in det}),
            "tile_size": card.tile_size,
            "tile_overlap": card.tile_overlap,
            "blending": "linear ramp over the overlap, normalised weighted mean",
            "tta": first["views"],
        },
        "results": {
            "valid_fraction": n_valid / float(raster.height * raster.width),
            "mining_area_ha_mask": n_mining * px_ha,
            "polygons": merged.polygons,
            "mining_area_ha_polygons": merged.area_ha,
        },
        "outputs": {p.name: p.name for p in files.files[:-1]},
        "region_crs": job.region_crs,
        "tiles": {
            **tiles_provenance(job.grid, job.mosaic.probability, key),
            "rasters": rkey,
        },
        "seconds": round(sum(r.seconds for r in records) + time.perf_counter() - started, 2),
    }
    geoio.write_json(files.provenance, prov)
    return _result(job, prov, time.perf_counter() - started)


def _pairs(job: MergeJob) -> list[tuple[Any, layout.TileDetectionFiles]]:
    return list(zip(job.grid, job.tile_files, strict=True))


def _write_polygons(job: MergeJob, polys: list[Any]) -> float:
    """Write the merged polygons as the single-process detection does; return their area."""
    from asmspotter.detect.polygons import polygons_frame, write_vector

    gdf = polygons_frame(polys, job.grid.raster.crs, job.region, job.period)
    region = (
        gdf.to_crs(job.region_crs) if len(gdf) else gdf.set_crs(job.region_crs, allow_override=True)
    )
    write_vector(region, job.files.gpkg, "GPKG", layer="mining")
    write_vector(gdf.to_crs("EPSG:4326"), job.files.geojson, "GeoJSON")
    return float(gdf["area_ha"].sum()) if len(gdf) else 0.0


def _tiled_record(files: layout.DetectionFiles) -> dict[str, Any] | None:
    """Return a tiled run's ``detection.json`` when it and every file are there, else None."""
    from asmspotter.errors import DataError

    if not all(p.is_file() for p in files.files):
        return None
    try:
        prov = geoio.read_json(files.provenance)
    except DataError:
        return None
    return prov if isinstance(prov, dict) and isinstance(prov.get("tiles"), dict) else None


def _result(job: MergeJob, prov: dict[str, Any], seconds: float) -> Any:
    from asmspotter.detect.inference import DetectionResult

    res = prov["results"]
    files = job.files
    return DetectionResult(
        out_dir=files.folder,
        files={p.name: p for p in files.files},
        mining_area_ha=float(res["mining_area_ha_mask"]),
        polygon_area_ha=float(res["mining_area_ha_polygons"]),
        n_polygons=int(res["polygons"]),
        valid_fraction=float(res["valid_fraction"]),
        seconds=seconds,
        provenance=prov,
    )
