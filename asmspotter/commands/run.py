"""``asmspotter run REGION``: the whole chain for a region, stage after stage."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from asmspotter.chain import ChainReporter, Stage
from asmspotter.commands import _args
from asmspotter.errors import InputError
from asmspotter.layout import TEMPLATES

if TYPE_CHECKING:
    from asmspotter.composite import CompositeResult
    from asmspotter.detect.inference import DetectionResult
    from asmspotter.periods import Period
    from asmspotter.scale import TiledRun

_STAGE_TITLES: dict[str, str] = {
    "fetch": "cloud-free composites",
    "detect": "mining probability, mask and polygons",
    "analyse": "areas, expansion, overlays",
    "tiles": "composites, mining probability, masks and polygons tile by tile on Dask",
}


def add_parser(subparsers: Any) -> None:
    """Register the ``run`` sub-command."""
    p = subparsers.add_parser(
        "run",
        help="the whole chain for a region: fetch, detect, analyse, report",
        description=(
            "Run the whole chain for a region: build (or reuse) the cloud-free composite of "
            "each period, map mining in it with the shipped model, then compute mined areas, "
            "expansion factors and overlay statistics (and the agreement with the region's "
            "reference footprints, where the catalogue names them), and end with the region's "
            f"briefing ({TEMPLATES.report.html}). Each stage writes what `asmspotter "
            "fetch`, `detect`, `analyse` and `report` would. The default region is the "
            "offline demo, la-pampa."
        ),
        epilog="examples:\n  asmspotter run\n  asmspotter run madre-de-dios --period 2019 "
        "--period 2021\n  asmspotter run madre-de-dios --workers 2          (tiles on a local "
        "Dask cluster)\n  asmspotter run madre-de-dios --scheduler tcp://10.0.0.5:8786   "
        "(an existing one)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "region",
        metavar="REGION",
        nargs="?",
        default="la-pampa",
        help="region id (see `asmspotter regions`; default: la-pampa)",
    )
    _args.add_period(p)
    p.add_argument("--refresh", action="store_true", help="rebuild cached composites")
    _args.add_online(p)
    _args.add_model(p)
    _args.add_precision(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--no-report",
        action="store_true",
        help="stop after the analysis: do not write the briefing (`asmspotter report` does it)",
    )
    _args.add_catalogue(p)
    _add_dask(p)
    p.set_defaults(func=run)


def _add_dask(p: argparse.ArgumentParser) -> None:
    """Add the options of tiled runs on a Dask cluster."""
    g = p.add_argument_group(
        "Dask cluster",
        "With any of these, composites and detections are made tile by tile as Dask tasks "
        "and merged into the same outputs; a run stopped half-way resumes where it stopped.",
    )
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: the "
        "ASMSPOTTER_SCHEDULER variable)",
    )
    g.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of a local Dask cluster (default: one per core)",
    )
    g.add_argument(
        "--threads-per-worker", type=int, metavar="N", help="threads of each local worker (1)"
    )
    g.add_argument(
        "--tile-size",
        type=int,
        metavar="PX",
        help="side of the tiles in pixels, a multiple of the detector's stride (default: "
        "about 4096); it sets each worker's memory",
    )


def run(args: argparse.Namespace) -> int:
    """Fetch, detect and analyse every requested period of the region, then brief it."""
    from asmspotter.detect.runtime import tune_allocator

    tune_allocator()  # before torch allocates anything (local Dask workers inherit it)

    from asmspotter.analyse import format_summary
    from asmspotter.chain import resolve_region, run_region
    from asmspotter.scale import ClusterSpec

    cluster = ClusterSpec.from_options(args.scheduler, args.workers, args.threads_per_worker)
    if cluster is None and args.tile_size is not None:
        raise InputError("--tile-size is for tiled runs: add --workers N or --scheduler ADDRESS")
    region, periods = resolve_region(args.region, args.period, args.catalogue)
    print(f"== {region.name} ({region.id}): periods {', '.join(p.id for p in periods)}")
    result = run_region(
        region,
        args.period,
        args.model,
        refresh=args.refresh,
        device=args.device,
        precision=args.precision,
        progress=not args.no_progress,
        reporter=_Printer(),
        arguments={k: v for k, v in vars(args).items() if k != "func"},
        online=args.online,
        cluster=cluster,
        tile_size=args.tile_size,
    )
    if result.tiled is not None:
        print(f"   {_tile_counts(result.tiled)}")
    for warning in result.analysis.warnings:
        print(f"asmspotter: warning: {warning}")
    print(format_summary(result.analysis))
    print(f"   written to {result.analysis_files.folder}/")
    if not args.no_report:
        from asmspotter.locking import region_lock
        from asmspotter.report import write_report

        print("-- report: the briefing")
        with region_lock(region.id):  # the analysis it reads stays as it is meanwhile
            briefing = write_report(
                region.id,
                source="detector",
                periods=args.period,
                model=args.model,
                catalogue=args.catalogue,
            )
        print(f"   wrote {briefing.html}")
    return 0


def _tile_counts(tiled: TiledRun) -> str:
    """One line: tiles made and found already made, per tile task."""
    parts = [
        f"{stage} {tiled.count(stage)} made, {tiled.count(stage, reused=True)} reused"
        for stage in ("composite", "detect", "polygons")
    ]
    size = f"{tiled.workers} workers, {tiled.threads} threads, {tiled.seconds:.0f} s"
    return f"tiles ({size}): " + "; ".join(parts)


class _Printer(ChainReporter):
    """Prints each stage and each period's result as the chain makes them."""

    def stage(self, stage: Stage) -> None:
        print(f"-- {stage}: {_STAGE_TITLES[stage]}")

    def cluster(self, dashboard: str | None, workers: int) -> None:
        print(f"   Dask cluster of {workers} workers; dashboard: {dashboard or 'none'}")

    def composite(self, period: Period, result: CompositeResult) -> None:
        action = "reused" if result.reused else "wrote"
        print(f"   {period.id}: {action} {result.path} (clear {result.clear_fraction:.1%})")

    def detection(self, period: Period, result: DetectionResult) -> None:
        print(
            f"   {period.id}: {result.polygon_area_ha:,.1f} ha of mining in {result.n_polygons} "
            f"polygons -> {result.out_dir}"
        )
