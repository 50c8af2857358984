"""A region's composites and detections as Dask tasks per tile, merged per period.

:func:`run_tiles` submits, for every period and every tile of the region's grid
(:class:`~asmspotter.scale.grid.TileGrid`), a composite task, a detection task (after the
composites of the tiles its window reads) and a vectorising task, then per period the tasks
assembling its outputs (:mod:`asmspotter.scale.merge`): the composite's mosaic COG, the
probability and mask COGs, the polygons merged across tile borders, and ``detection.json``
last. Dask runs them on whatever cluster the client is connected to, as soon as their
inputs are ready, the period tasks before any waiting tile task (so that a worker mosaics
while others go on with the tiles); lost workers' tasks are run again elsewhere. Tiles
already made with the same inputs and settings are found and not made again
(:mod:`asmspotter.scale.records`). :func:`run_tiled` does the same on the cluster a
:class:`~asmspotter.scale.cluster.ClusterSpec` names.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from asmspotter import layout
from asmspotter.acquire import HttpSettings, StacQuery, search_stac
from asmspotter.composite import CompositePlan, CompositeResult, plan_composite, region_geobox
from asmspotter.errors import DataError
from asmspotter.scale.cluster import ClusterSpec, connect
from asmspotter.scale.composites import (
    CompositeJob,
    CompositeMosaicJob,
    composite_tile,
    mosaic_composite,
    tile_scenes,
)
from asmspotter.scale.detection import DetectJob, DetectSettings, detect_tile
from asmspotter.scale.grid import RasterGrid, TileGrid, default_tile_size
from asmspotter.scale.merge import (
    MergeJob,
    merge_detection,
    merge_tile_polygons,
    mosaic_detection,
)
from asmspotter.scale.polygons import PolygonsJob, vectorise_tile
from asmspotter.scale.records import TileRecord, TileStage

#: Dask priority of the period tasks (mosaics, merge) over the tile tasks (0).
PERIOD_PRIORITY = 10

if TYPE_CHECKING:
    from distributed import Client, Future

    from asmspotter.catalogue import Region
    from asmspotter.detect.inference import DetectionResult
    from asmspotter.periods import Period


class TileReporter(Protocol):
    """Hears of a tiled run as it goes (a :class:`~asmspotter.chain.ChainReporter` does)."""

    def cluster(self, dashboard: str | None, workers: int) -> None:
        """Hear which cluster runs the tiles (its dashboard link and its workers)."""

    def tile(self, record: TileRecord) -> None:
        """Hear that one tile task finished (computed, or found already made)."""


@dataclass(frozen=True, eq=False)
class TiledRun:
    """What a tiled run made.

    Attributes:
        grids: each period's tile grid, in the order of the periods.
        composites: each period's composite (assembled from its tiles).
        detections: each period's detection (merged from its tiles).
        records: every tile task's record.
        dashboard: the cluster's dashboard link, if it has one.
        workers: the cluster's workers when the run started.
        threads: their threads, all together.
        seconds: wall time of the run.

    """

    grids: tuple[TileGrid, ...]
    composites: tuple[CompositeResult, ...]
    detections: tuple[DetectionResult, ...]
    records: tuple[TileRecord, ...]
    dashboard: str | None
    workers: int
    threads: int
    seconds: float

    def count(self, stage: TileStage, reused: bool = False) -> int:
        """Return how many tiles of ``stage`` were computed (or, with ``reused``, found)."""
        return sum(1 for r in self.records if r.stage == stage and r.reused == reused)


@dataclass(frozen=True)
class _Period:
    """The futures of one period's tasks.

    Its tiles', the composite's mosaic, the tasks writing the detection's files, and the one
    writing ``detection.json`` (last).
    """

    grid: TileGrid
    tiles: list[Future]
    composite: Future
    merges: list[Future]
    detection: Future


def run_tiled(
    region: Region,
    periods: Sequence[Period],
    cluster: ClusterSpec,
    **options: Any,
) -> TiledRun:
    """Run :func:`run_tiles` on the cluster ``cluster`` names (started here if local)."""
    with connect(cluster) as client:
        return run_tiles(client, region, periods, **options)


def run_tiles(
    client: Client,
    region: Region,
    periods: Sequence[Period],
    *,
    model: Any = None,
    tile_size: int | None = None,
    device: str | None = None,
    threshold: float | None = None,
    views: str | None = None,
    min_area_ha: float | None = None,
    precision: str | None = None,
    refresh: bool = False,
    progress: bool = True,
    reporter: TileReporter | None = None,
) -> TiledRun:
    """Make the composites and detections of a region's periods tile by tile on a cluster.

    Args:
        client: a Dask client.
        region: the region.
        periods: its periods to run.
        model: model name or card path (default: the shipped model).
        tile_size: core side of the tiles in px (default: about 4096, a multiple of the
            detector's stride); it sets each task's memory.
        device: torch device of the detection (default: each worker's GPU, else its CPU).
        threshold: pixel probability threshold (default: the card's).
        views: test-time views (default: the card's).
        min_area_ha: minimum mapping unit (default: the card's).
        precision: what the network computes in on each worker: ``auto`` (default),
            ``fp32`` or ``bf16``.
        refresh: make every tile again, even those already made.
        progress: show a progress bar over the tile tasks.
        reporter: hears of the cluster and of every tile as it finishes.

    Returns:
        The composites, detections and tile records.

    Raises:
        InputError: a tile size that does not fit the detector, or bad settings.
        DataError: missing or corrupt data; workers that kept dying.
        FetchError: the STAC API or the scene files failed.

    """
    from asmspotter.detect.card import load_card

    started = time.perf_counter()
    card, card_path = load_card(model)
    settings = DetectSettings(
        card_path.resolve(), device, threshold, views, None, min_area_ha, precision
    )
    size = tile_size or default_tile_size(card.tile_size, card.tile_overlap)
    running = client.scheduler_info().get("workers", {})
    workers = len(running)
    if reporter is not None:
        reporter.cluster(getattr(client, "dashboard_link", None), workers)
    token = uuid.uuid4().hex[:8]
    submitted = []
    for period in periods:
        plan = plan_composite(region, period, bands=card.bands, level=card.level)
        grid = TileGrid(_raster_grid(plan), size, card.tile_size, card.tile_overlap)
        submitted.append(_submit(client, plan, grid, settings, refresh, token))
    rest = [f for p in submitted for f in (p.composite, *p.merges, p.detection)]
    records = _gather(client, [f for p in submitted for f in p.tiles], rest, progress, reporter)
    composites = tuple(p.composite.result() for p in submitted)
    detections = tuple(p.detection.result() for p in submitted)
    return TiledRun(
        grids=tuple(p.grid for p in submitted),
        composites=composites,
        detections=detections,
        records=tuple(records),
        dashboard=getattr(client, "dashboard_link", None),
        workers=workers,
        threads=sum(int(w.get("nthreads", 0)) for w in running.values()),
        seconds=time.perf_counter() - started,
    )


def _raster_grid(plan: CompositePlan) -> RasterGrid:
    """Return the pixel grid of a period's composite (as a single-process run makes it)."""
    if isinstance(plan.source, StacQuery):
        box = region_geobox(plan.region)
        return RasterGrid.of(box.crs.to_wkt(), box.transform, box.shape.y, box.shape.x)
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(plan.source.path) as src:
            return RasterGrid.of(src.crs, src.transform, src.height, src.width)
    except RasterioError as exc:
        raise DataError(f"local scene {plan.source.path} is truncated or corrupt ({exc})") from None


def _submit(
    client: Client,
    plan: CompositePlan,
    grid: TileGrid,
    settings: DetectSettings,
    refresh: bool,
    token: str,
) -> _Period:
    """Submit one period's tasks; return their futures."""
    region, period, raster = plan.region.id, plan.period.id, grid.raster
    http = HttpSettings.from_env()
    scenes = search_stac(plan.source, http) if isinstance(plan.source, StacQuery) else None
    cfiles = {t.id: layout.composite_tile_files(region, period, grid.name, t.id) for t in grid}
    dfiles = {t.id: layout.detection_tile_files(region, period, grid.name, t.id) for t in grid}

    def key(stage: str, tile: str) -> str:
        return f"{stage}-{region}-{period}-{tile}-{token}"

    comps: dict[str, Future] = {}
    for t in grid:
        job = CompositeJob(
            plan,
            raster,
            t,
            cfiles[t.id],
            tile_scenes(scenes, raster, t) if scenes is not None else None,
            http,
            refresh,
        )
        comps[t.id] = client.submit(composite_tile, job, key=key("composite", t.id))
    dets: dict[str, Future] = {}
    polys: dict[str, Future] = {}
    for t in grid:
        near = grid.neighbours(t)
        sources = tuple((n, cfiles[n.id]) for n in near)
        job_d = DetectJob(period, raster, t, sources, settings, dfiles[t.id], refresh)
        inputs = [comps[n.id] for n in near]
        dets[t.id] = client.submit(detect_tile, job_d, *inputs, key=key("detect", t.id))
        job_p = PolygonsJob(period, raster, t, dfiles[t.id], refresh)
        polys[t.id] = client.submit(vectorise_tile, job_p, dets[t.id], key=key("polygons", t.id))
    mosaic = layout.mosaic_files(region, period, grid.name)
    cjob = CompositeMosaicJob(
        plan,
        grid,
        tuple(cfiles[t.id] for t in grid),
        mosaic.composite,
        layout.composite_files(region, period),
        refresh,
    )
    # the period tasks go first once their inputs are there: while one worker mosaics,
    # the others go on with the tiles, and no long task is left for the end
    composite = client.submit(
        mosaic_composite,
        cjob,
        *comps.values(),
        key=key("mosaic", "composite"),
        priority=PERIOD_PRIORITY,
    )
    mjob = MergeJob(
        region,
        period,
        plan.region.crs,
        grid,
        tuple(dfiles[t.id] for t in grid),
        mosaic,
        layout.detection_files(region, period),
        settings,
        refresh,
    )
    merges, detection = _submit_merge(client, mjob, list(dets.values()), list(polys.values()), key)
    tiles = [*comps.values(), *dets.values(), *polys.values()]
    return _Period(grid, tiles, composite, merges, detection)


def _submit_merge(
    client: Client,
    job: MergeJob,
    dets: list[Future],
    polys: list[Future],
    key: Callable[[str, str], str],
) -> tuple[list[Future], Future]:
    """Submit the tasks writing a period's detection; return them and the last one's future.

    The probability and mask COGs start when every tile is detected, the polygons when
    every tile is vectorised, each on whichever worker is free, and ``detection.json``
    after the three.
    """
    rasters = [
        client.submit(
            mosaic_detection, job, name, *dets, key=key("merge", name), priority=PERIOD_PRIORITY
        )
        for name in ("probability", "mask")
    ]
    records = [*dets, *polys]
    merged = client.submit(
        merge_tile_polygons, job, *records, key=key("merge", "polygons"), priority=PERIOD_PRIORITY
    )
    detection = client.submit(
        merge_detection,
        job,
        merged,
        rasters,
        *records,
        key=key("merge", "detection"),
        priority=PERIOD_PRIORITY,
    )
    return [*rasters, merged], detection


def _gather(
    client: Client,
    futures: list[Future],
    rest: list[Future],
    progress: bool,
    reporter: TileReporter | None,
) -> list[TileRecord]:
    """Wait for the tile tasks; tell the reporter of each; cancel everything at an error."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    from tqdm import tqdm

    records = []
    try:
        with tqdm(
            total=len(futures), unit="tile", desc="tiles", disable=not progress, leave=False
        ) as bar:
            for fut in as_completed(futures):
                record = fut.result()
                records.append(record)
                bar.update(1)
                if reporter is not None:
                    reporter.tile(record)
    except KilledWorker as exc:
        client.cancel([*futures, *rest])
        raise DataError(
            f"Dask workers kept dying while running {exc.args[0] if exc.args else 'a tile'}; "
            "see the workers' logs (memory? try a smaller --tile-size)"
        ) from None
    except BaseException:
        client.cancel([*futures, *rest])
        raise
    return records
