"""The whole chain for a region in one call: composites, detections, analysis.

:func:`run_region` runs every stage in turn, each writing what its command would
(``asmspotter fetch``, ``detect``, ``analyse``), and returns a :class:`ChainResult` holding
every stage's typed result and where the analysis was written. The CLI's ``run``, the
briefing notebooks, the app and the batch runner all call it; a :class:`ChainReporter`
hears of each result as it comes, for callers that show progress.

Given a :class:`~asmspotter.scale.ClusterSpec`, the composites and detections are made tile
by tile on a Dask cluster (:mod:`asmspotter.scale`) and merged into the same files; the
analysis then runs as usual. Without one the chain runs in this process, stage after stage.

Example:
    >>> from asmspotter.chain import run_region  # doctest: +SKIP
    >>> result = run_region("la-pampa", progress=False)  # doctest: +SKIP
    >>> [round(d.polygon_area_ha) for d in result.detections]  # doctest: +SKIP
    [826, 510]
    >>> result.analysis_files.periods_csv  # doctest: +SKIP
    PosixPath('.../reports/la-pampa/analysis/periods.csv')

"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from asmspotter import layout

if TYPE_CHECKING:
    from asmspotter.analyse import AnalysisResult
    from asmspotter.catalogue import Region
    from asmspotter.composite import CompositeResult
    from asmspotter.detect.inference import DetectionResult
    from asmspotter.periods import Period
    from asmspotter.scale import ClusterSpec, TiledRun, TileRecord

#: The chain's stages, in order; a tiled run makes composites and detections in one stage,
#: ``tiles``, instead of ``fetch`` and ``detect``.
Stage = Literal["fetch", "detect", "analyse", "tiles"]
STAGES: tuple[Stage, ...] = ("fetch", "detect", "analyse")


@dataclass(frozen=True, eq=False)
class ChainResult:
    """Everything one run of the chain made.

    Attributes:
        region: the catalogue region.
        periods: the periods run, in the order asked for.
        composites: one composite per period (built, or reused from the cache).
        detections: one detection per period.
        analysis: the analysis of the detections (areas, expansion, overlays, reference).
        analysis_files: where the analysis was written.
        written: the analysis files written, the JSON record last.
        tiled: what the tiled run made, tile by tile (None for a single-process run).

    """

    region: Region
    periods: tuple[Period, ...]
    composites: tuple[CompositeResult, ...]
    detections: tuple[DetectionResult, ...]
    analysis: AnalysisResult
    analysis_files: layout.AnalysisFiles
    written: tuple[Path, ...]
    tiled: TiledRun | None = None


class ChainReporter:
    """Hears of the chain's results as they come; each method does nothing by default.

    Subclass it and override what you need: the CLI prints, the app updates its progress
    display, the batch runner logs.
    """

    def stage(self, stage: Stage) -> None:
        """Hear that a stage starts."""

    def composite(self, period: Period, result: CompositeResult) -> None:
        """Hear that one period's composite is ready."""

    def detection(self, period: Period, result: DetectionResult) -> None:
        """Hear that one period's detection is written."""

    def cluster(self, dashboard: str | None, workers: int) -> None:
        """Hear which Dask cluster runs a tiled run (its dashboard link and its workers)."""

    def tile(self, record: TileRecord) -> None:
        """Hear that one tile task of a tiled run finished (computed, or found made)."""


def model_bands(model: str | Path | None) -> tuple[str, ...] | None:
    """Return the bands a model's card names (None for the default model).

    Composites for that model must hold these bands.

    Raises:
        DataError: the card cannot be read.

    """
    if model is None:
        return None
    from asmspotter.detect.card import load_card

    return load_card(model)[0].bands


def model_level(model: str | Path | None) -> str | None:
    """Return the processing level a model's card names (``L1C``/``L2A``; None: any).

    Composites for that model are built from scenes of this level.

    Raises:
        DataError: the card cannot be read.

    """
    if model is None:
        return None
    from asmspotter.detect.card import load_card

    return load_card(model)[0].level


def resolve_region(
    region: Region | str,
    periods: Sequence[Period | str] | None = None,
    catalogue: str | os.PathLike[str] | None = None,
) -> tuple[Region, tuple[Period, ...]]:
    """Return the region (looked up in the catalogue when given by id) and its periods.

    Raises:
        InputError: unknown region or period.
        CatalogueError: the catalogue is invalid.

    """
    if isinstance(region, str):
        from asmspotter.catalogue import load_catalogue

        region = load_catalogue(Path(catalogue) if catalogue is not None else None)[region]
    ids = [p if isinstance(p, str) else p.id for p in periods] if periods else None
    return region, region.select_periods(ids)


def run_region(
    region: Region | str,
    periods: Sequence[Period | str] | None = None,
    model: str | Path | None = None,
    *,
    refresh: bool = False,
    device: str | None = None,
    precision: str | None = None,
    progress: bool = True,
    catalogue: str | os.PathLike[str] | None = None,
    reporter: ChainReporter | None = None,
    arguments: Mapping[str, Any] | None = None,
    online: bool = False,
    cluster: ClusterSpec | None = None,
    tile_size: int | None = None,
) -> ChainResult:
    """Run the whole chain for a region: fetch, detect, analyse.

    Each stage writes what its command would: the composites below the cache folder, the
    detections and the analysis below the output folder (:mod:`asmspotter.layout`). The
    analysis compares with the region's reference footprints where the catalogue names them.

    Args:
        region: a catalogue region, or its id in ``catalogue``.
        periods: the periods to run (objects or ids; default: all of the region's).
        model: model name in the models folder or a card path (default: the shipped one);
            the composites hold the bands its card names, from scenes of the processing
            level it names (``L1C``: Level-1C for every period).
        refresh: rebuild cached composites.
        device: torch device for detection (default: cuda when available, else cpu).
        precision: what the network computes in: ``auto`` (default), ``fp32`` or ``bf16``.
        progress: show progress bars.
        catalogue: the catalogue to look ``region`` up in (default: the shipped one).
        reporter: hears of each result as it comes.
        arguments: what to record as the run's arguments in the analysis's provenance
            (default: this call's).
        online: let a local region whose scenes are missing search its STAC API.
        cluster: run composites and detections tile by tile on this Dask cluster
            (:mod:`asmspotter.scale`); None runs them in this process.
        tile_size: side of the tiles in px for a tiled run (default: about 4096, fitted to
            the detector's tiling); it sets each worker's memory.

    The region's lock (:func:`asmspotter.locking.region_lock`) is held throughout: a second
    run of the same region waits, and the leftovers of killed runs are removed first.

    Returns:
        Every stage's result and where the analysis was written.

    Raises:
        InputError: unknown region, period or band; no scene in a period; a ``device``
            this machine lacks (said before any work).
        DataError: missing or unreadable data (the model card, a composite, footprints).
        FetchError: the STAC API or the scene files failed, or the cluster's scheduler
            cannot be reached.

    """
    from asmspotter.analyse import analyse_region, write_analysis
    from asmspotter.locking import region_lock

    region, chosen = resolve_region(region, periods, catalogue)
    if cluster is None and device:  # named before hours of fetching (workers have their own)
        from asmspotter.detect.loader import pick_device

        pick_device(device)
    tell = reporter or ChainReporter()
    if arguments is None:
        arguments = {
            "region": region.id,
            "periods": [p.id for p in chosen],
            "model": None if model is None else str(model),
            "refresh": refresh,
            "device": device,
        }

    with region_lock(region.id):
        tiled = None
        if cluster is not None:
            from asmspotter.scale import run_tiled

            tell.stage("tiles")
            tiled = run_tiled(
                region,
                chosen,
                cluster,
                model=model,
                tile_size=tile_size,
                device=device,
                precision=precision,
                refresh=refresh,
                progress=progress,
                reporter=tell,
            )
            composites, detections = list(tiled.composites), list(tiled.detections)
            for period, comp, det in zip(chosen, composites, detections, strict=True):
                tell.composite(period, comp)
                tell.detection(period, det)
        else:
            composites, detections = _single_process(
                region,
                chosen,
                model,
                refresh=refresh,
                device=device,
                precision=precision,
                progress=progress,
                online=online,
                tell=tell,
            )

        tell.stage("analyse")
        analysis = analyse_region(
            region,
            period_ids=[p.id for p in chosen] if periods else None,
            reference=region.reference is not None,
        )
        files = layout.analysis_files(region.id)
        written = write_analysis(analysis, files.folder, crs=region.crs, arguments=dict(arguments))
    return ChainResult(
        region=region,
        periods=chosen,
        composites=tuple(composites),
        detections=tuple(detections),
        analysis=analysis,
        analysis_files=files,
        written=tuple(written),
        tiled=tiled,
    )


def _single_process(
    region: Region,
    chosen: tuple[Period, ...],
    model: str | Path | None,
    *,
    refresh: bool,
    device: str | None,
    precision: str | None,
    progress: bool,
    online: bool,
    tell: ChainReporter,
) -> tuple[list[CompositeResult], list[DetectionResult]]:
    """Fetch every period's composite, then detect on each, in this process."""
    from asmspotter.composite import fetch_composite
    from asmspotter.detect.inference import detect_region

    tell.stage("fetch")
    bands, level = model_bands(model), model_level(model)
    composites = []
    for period in chosen:
        comp = fetch_composite(
            region,
            period,
            refresh=refresh,
            progress=progress,
            bands=bands,
            level=level,
            online=online,
        )
        composites.append(comp)
        tell.composite(period, comp)

    tell.stage("detect")
    detections = detect_region(
        region, chosen, model=model, device=device, precision=precision, progress=progress
    )
    for period, det in zip(chosen, detections, strict=True):
        tell.detection(period, det)
    return composites, detections
