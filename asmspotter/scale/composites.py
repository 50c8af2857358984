"""Per-tile composites of a tiled run, and the period's composite assembled from them.

:func:`composite_tile` builds the composite of one tile's core exactly as the single-process
composite would hold those pixels: a window of the local scene, or the per-pixel median of
the STAC scenes that touch the tile on the tile's part of the region's grid.
:func:`mosaic_composite` writes the VRT over the tile composites and translates it into the
period's ``composite.tif`` with a ``composite.json`` that records the same request as a
single-process composite (so either path reuses the other's cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import geoio, layout
from asmspotter.acquire import HttpSettings, LocalScene, StacScenes
from asmspotter.composite import CHUNK_SIZE, CompositePlan, CompositeResult
from asmspotter.scale.grid import RasterGrid, Tile, TileGrid
from asmspotter.scale.mosaic import mosaic_cog, write_vrt
from asmspotter.scale.records import (
    TileRecord,
    reuse,
    start_clock,
    tile_key,
    worker_task,
    write_record,
)


@dataclass(frozen=True)
class CompositeJob:
    """One tile's composite.

    Attributes:
        plan: the period's composite plan (source, bands, request).
        raster: the region's grid.
        tile: the tile.
        files: where the tile's composite goes.
        scenes: the STAC scenes touching the tile (None for local sources, or when none does).
        http: timeouts and retries of STAC reads.
        refresh: make it again even when a record says it is there.

    """

    plan: CompositePlan
    raster: RasterGrid
    tile: Tile
    files: layout.CompositeFiles
    scenes: StacScenes | None = None
    http: HttpSettings | None = None
    refresh: bool = False

    @property
    def key(self) -> str:
        """The hash of what the tile's composite depends on."""
        source: Any
        if isinstance(self.plan.source, LocalScene):
            stat = self.plan.source.path.stat()
            source = {"bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}
        else:
            source = sorted(self.scenes.ids) if self.scenes is not None else []
        return tile_key(
            "composite",
            request=self.plan.request,
            raster=self.raster,
            core=self.tile.core.as_list(),
            source=source,
        )


@worker_task
def composite_tile(job: CompositeJob) -> TileRecord:
    """Build (or find) one tile's composite; a Dask task.

    Raises:
        DataError: the local scene or a STAC scene is missing, truncated or corrupt.
        FetchError: reading a STAC scene failed.

    """
    from asmspotter.composite.local import build_local
    from asmspotter.composite.stac import build_stac

    period, tid, files = job.plan.period.id, job.tile.id, job.files
    key = job.key
    done = (
        None if job.refresh else reuse("composite", period, tid, files.provenance, key, [files.tif])
    )
    if done is not None:
        return done
    files.provenance.unlink(missing_ok=True)
    started = start_clock()
    source, core = job.plan.source, job.tile.core
    if isinstance(source, LocalScene):
        prov = build_local(source, job.plan.wanted, files.tif, window=core.window())
    elif job.scenes is None:
        prov = _empty_tile(job)
    else:
        from odc.geo.geobox import GeoBox

        geobox = GeoBox((core.height, core.width), job.raster.box_transform(core), job.raster.crs)
        prov = build_stac(
            job.plan.region,
            job.scenes,
            job.plan.bands,
            files.tif,
            job.http or HttpSettings.from_env(),
            chunk_size=CHUNK_SIZE,
            progress=False,
            geobox=geobox,
        )
    stats = {
        "pixels": core.pixels,
        "clear_pixels": int(round(float(prov["clear_fraction"]) * core.pixels)),
        "bands": list(prov["bands"]),
        "radiometry": prov["radiometry"],
        "items": list(prov.get("items", [])),
    }
    return write_record(
        "composite", period, tid, files.provenance, key, stats, started, {"provenance": prov}
    )


def _empty_tile(job: CompositeJob) -> dict[str, Any]:
    """Write an all no-data reflectance composite for a tile that no scene touches."""
    core, bands = job.tile.core, job.plan.bands
    data = np.full((len(bands), core.height, core.width), np.nan, np.float32)
    geoio.write_cog(
        job.files.tif,
        data,
        crs=job.raster.crs,
        transform=job.raster.box_transform(core),
        nodata=float("nan"),
        band_names=bands,
        tags={
            layout.RADIOMETRY_TAG: "reflectance",
            layout.REGION_TAG: job.plan.region.id,
            layout.PERIOD_TAG: job.plan.period.id,
        },
    )
    return {"bands": list(bands), "radiometry": "reflectance", "clear_fraction": 0.0, "items": []}


def tile_scenes(scenes: StacScenes, raster: RasterGrid, tile: Tile) -> StacScenes | None:
    """Return the scenes whose footprint touches the tile's core (None when none does)."""
    import shapely
    from rasterio.warp import transform_bounds
    from shapely.geometry import shape

    box = shapely.box(*transform_bounds(raster.crs, "EPSG:4326", *raster.box_bounds(tile.core)))
    items = tuple(i for i in scenes.items if i.geometry and shape(i.geometry).intersects(box))
    return StacScenes(scenes.query, items) if items else None


@dataclass(frozen=True)
class CompositeMosaicJob:
    """The period's composite from its tiles.

    Attributes:
        plan: the period's composite plan.
        grid: the tile grid.
        tile_files: each tile's composite, in the grid's order.
        vrt: the VRT to write over them.
        files: the period's composite (``composite.tif`` and ``composite.json``).
        refresh: assemble it again even when it was assembled from the same tiles.

    """

    plan: CompositePlan
    grid: TileGrid
    tile_files: tuple[layout.CompositeFiles, ...]
    vrt: Path
    files: layout.CompositeFiles
    refresh: bool = False


@worker_task
def mosaic_composite(job: CompositeMosaicJob, *records: TileRecord) -> CompositeResult:
    """Assemble the period's composite from its tiles' (after them); a Dask task.

    Reuses the period's composite when its ``composite.json`` was written from tiles with
    the same keys.
    """
    key = tile_key("composite", tiles=[r.key for r in records])
    files, raster = job.files, job.grid.raster
    region, period = job.plan.region.id, job.plan.period.id
    old = None if job.refresh else _tiled_provenance(files)
    if old is not None and old["tiles"].get("key") == key:
        return CompositeResult(region, period, files.tif, old, reused=True)
    files.provenance.unlink(missing_ok=True)
    write_vrt(
        job.vrt, raster, [(f.tif, t.core) for t, f in zip(job.grid, job.tile_files, strict=True)]
    )
    mosaic_cog(job.vrt, files.tif)
    clear = sum(int(r.stats["clear_pixels"]) for r in records)
    first = records[0].stats
    prov = {
        **job.plan.provenance(),
        "source": _source_provenance(job.plan),
        "items": sorted({i for r in records for i in r.stats.get("items", [])}),
        "bands": list(first["bands"]),
        "radiometry": first["radiometry"],
        "crs": raster.crs,
        "transform": list(raster.transform),
        "shape": [raster.height, raster.width],
        "clear_fraction": round(clear / float(raster.height * raster.width), 6),
        "file": files.tif.name,
        "tiles": tiles_provenance(job.grid, job.vrt, key),
    }
    geoio.write_json(files.provenance, prov)
    return CompositeResult(region, period, files.tif, prov, reused=False)


def _tiled_provenance(files: layout.CompositeFiles) -> dict[str, Any] | None:
    """Return a tiled run's ``composite.json`` when it and its COG are there, else None."""
    from asmspotter.errors import DataError

    if not (files.tif.is_file() and files.provenance.is_file()):
        return None
    try:
        prov = geoio.read_json(files.provenance)
    except DataError:
        return None
    ok = isinstance(prov, dict) and isinstance(prov.get("tiles"), dict) and "clear_fraction" in prov
    return prov if ok else None


def _source_provenance(plan: CompositePlan) -> dict[str, Any]:
    if isinstance(plan.source, LocalScene):
        return plan.source.as_dict()
    q = plan.source
    return {"type": "stac", "stac_url": q.stac_url, "collection": q.collection}


def tiles_provenance(grid: TileGrid, vrt: Path, key: str) -> dict[str, Any]:
    """How a period's output was assembled from tiles (the ``tiles`` of its provenance)."""
    return {
        "key": key,
        "grid": grid.name,
        "tile_size": grid.tile_size,
        "tiles": len(grid),
        "shape": list(grid.shape),
        "vrt": str(vrt),
    }
