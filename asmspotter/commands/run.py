"""``asmspotter run REGION``: the whole chain for a region, stage after stage."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from asmspotter.chain import ChainReporter, Stage
from asmspotter.commands import _args
from asmspotter.layout import TEMPLATES

if TYPE_CHECKING:
    from asmspotter.composite import CompositeResult
    from asmspotter.detect.inference import DetectionResult
    from asmspotter.periods import Period

_STAGE_TITLES: dict[str, str] = {
    "fetch": "cloud-free composites",
    "detect": "mining probability, mask and polygons",
    "analyse": "areas, expansion, overlays",
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
        "--period 2021",
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
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--no-report",
        action="store_true",
        help="stop after the analysis: do not write the briefing (`asmspotter report` does it)",
    )
    _args.add_catalogue(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch, detect and analyse every requested period of the region, then brief it."""
    from asmspotter.analyse import format_summary
    from asmspotter.chain import resolve_region, run_region

    region, periods = resolve_region(args.region, args.period, args.catalogue)
    print(f"== {region.name} ({region.id}): periods {', '.join(p.id for p in periods)}")
    result = run_region(
        region,
        args.period,
        args.model,
        refresh=args.refresh,
        device=args.device,
        progress=not args.no_progress,
        reporter=_Printer(),
        arguments={k: v for k, v in vars(args).items() if k != "func"},
        online=args.online,
    )
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


class _Printer(ChainReporter):
    """Prints each stage and each period's result as the chain makes them."""

    def stage(self, stage: Stage) -> None:
        print(f"-- {stage}: {_STAGE_TITLES[stage]}")

    def composite(self, period: Period, result: CompositeResult) -> None:
        action = "reused" if result.reused else "wrote"
        print(f"   {period.id}: {action} {result.path} (clear {result.clear_fraction:.1%})")

    def detection(self, period: Period, result: DetectionResult) -> None:
        print(
            f"   {period.id}: {result.polygon_area_ha:,.1f} ha of mining in {result.n_polygons} "
            f"polygons -> {result.out_dir}"
        )
