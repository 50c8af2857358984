"""``asmspotter run REGION``: the whole chain for a region, stage after stage."""

from __future__ import annotations

import argparse
from typing import Any

from asmspotter.commands import _args


def add_parser(subparsers: Any) -> None:
    """Register the ``run`` sub-command."""
    p = subparsers.add_parser(
        "run",
        help="the whole chain for a region: fetch, detect, analyse",
        description=(
            "Run the whole chain for a region: build (or reuse) the cloud-free composite of "
            "each period, map mining in it with the shipped model, then compute mined areas, "
            "expansion factors and overlay statistics (and the agreement with the region's "
            "reference footprints, where the catalogue names them). Each stage writes what "
            "`asmspotter fetch`, `detect` and `analyse` would. The default region is the "
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
    _args.add_model(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _args.add_catalogue(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch, detect and analyse every requested period of the region."""
    from asmspotter.analyse import analyse_region, analysis_dir, format_summary, write_analysis
    from asmspotter.catalogue import load_catalogue
    from asmspotter.composite import fetch_composite
    from asmspotter.detect.inference import detect_region

    region = load_catalogue(args.catalogue)[args.region]
    periods = region.select_periods(args.period)
    print(f"== {region.name} ({region.id}): periods {', '.join(p.id for p in periods)}")

    print("-- fetch: cloud-free composites")
    bands = _args.model_bands(args.model)  # the bands the model's card names
    composites = []
    for period in periods:
        comp = fetch_composite(
            region, period, refresh=args.refresh, progress=not args.no_progress, bands=bands
        )
        composites.append(comp)
        action = "reused" if comp.reused else "wrote"
        print(f"   {period.id}: {action} {comp.path} (clear {comp.clear_fraction:.1%})")

    print("-- detect: mining probability, mask and polygons")
    results = detect_region(
        region,
        periods,
        model=args.model,
        device=args.device,
        progress=not args.no_progress,
    )
    for period, det in zip(periods, results, strict=True):
        print(
            f"   {period.id}: {det.polygon_area_ha:,.1f} ha of mining in {det.n_polygons} "
            f"polygons -> {det.out_dir}"
        )

    print("-- analyse: areas, expansion, overlays")
    result = analyse_region(
        region,
        period_ids=[p.id for p in periods] if args.period else None,
        reference=region.reference is not None,
    )
    for warning in result.warnings:
        print(f"asmspotter: warning: {warning}")
    arguments = {k: v for k, v in vars(args).items() if k != "func"}
    written = write_analysis(result, analysis_dir(region.id), crs=region.crs, arguments=arguments)
    print(format_summary(result))
    print(f"   written to {written[0].parent}/")
    return 0
