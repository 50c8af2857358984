"""``asmspotter analyse``: areas, expansion and overlay statistics for a region."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from asmspotter.commands import _args
from asmspotter.layout import TEMPLATES

_DETECTION, _ANALYSIS = TEMPLATES.detection, TEMPLATES.analysis

DESCRIPTION = f"""\
Turn per-period mining footprints into the figures a briefing quotes: cumulative and new
mined area per period (hectares, equal-area projection), expansion factors and yearly
growth, and mined area inside and outside each overlay layer of the region (protected
areas, indigenous territories, legal mining zones), per feature.

Without --footprints it reads the detector's outputs for every period of the region
({_DETECTION.gpkg} and {_DETECTION.mask.name}, checked against {_DETECTION.provenance.name}:
an incomplete set, files of two runs, or periods detected with different settings are
refused, naming the `asmspotter detect` that redoes them). With --footprints it reads
the given files (polygons; refused when none overlaps the region, unless --allow-empty);
each file's period is taken from --periods, else from a 'year' column
(a file may hold several years; years outside the catalogue are analysed as calendar
years), else from the catalogue's periods in order (one file per period).

Results go to {_ANALYSIS.folder}/ (CSV tables, {_ANALYSIS.gpkg.name} with one layer per
period plus the overlays, {_ANALYSIS.json.name} with provenance, including each period's
model and threshold), written as a set: the folder is replaced only when complete.
"""

EPILOG = """\
examples:
  asmspotter analyse madre-de-dios
  asmspotter analyse madre-de-dios --reference
  asmspotter analyse madre-de-dios --area-attribute "Mined area (ha)" \\
      --footprints ../shared/data/amw/footprints/mining_20{18,19,20,21}00.geojson
  asmspotter analyse la-pampa --footprints a.gpkg b.gpkg --periods 2019 2021 --kind active
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``analyse`` sub-command."""
    p = subparsers.add_parser(
        "analyse",
        help="areas, expansion factors and overlay statistics per period",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("region", metavar="REGION", help="region id from the catalogue")
    p.add_argument(
        "--footprints",
        nargs="+",
        metavar="FILE",
        help="footprint files (GeoJSON, GeoPackage, ...) instead of the detector's outputs; "
        "one per period or with a 'year' column",
    )
    p.add_argument(
        "--periods",
        nargs="+",
        metavar="PERIOD",
        help="the period of each --footprints file (catalogue id, or a year such as 2018); "
        "without --footprints: analyse only these periods of the detector's outputs",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="analyse --footprints none of which overlaps the region (as 0 ha) instead of "
        "refusing them",
    )
    p.add_argument(
        "--area-attribute",
        metavar="NAME",
        help="column with each polygon's mined area in hectares (e.g. 'Mined area (ha)'); "
        "apportioned to zones by area share instead of measuring polygon areas",
    )
    p.add_argument(
        "--kind",
        choices=("new", "active"),
        help="what each period's layer holds: 'active' = all mining visible in that period "
        "(gives active and stopped areas; default for detector outputs), 'new' = only new "
        "detections, the first period holding everything up to it (default for --footprints)",
    )
    overlay_group = p.add_mutually_exclusive_group()
    overlay_group.add_argument(
        "--overlays",
        nargs="+",
        metavar="ID",
        help="analyse only these overlay layers of the region (see `asmspotter regions`)",
    )
    overlay_group.add_argument(
        "--no-overlays", action="store_true", help="skip the overlay statistics"
    )
    p.add_argument(
        "--reference",
        nargs="*",
        metavar="FILE",
        help="compare with reference footprints: the catalogue's reference (no FILE) or "
        "these files (new detections per period, periods chosen as for --footprints)",
    )
    p.add_argument(
        "--reference-periods",
        nargs="+",
        metavar="PERIOD",
        help="the period of each --reference file",
    )
    _args.add_catalogue(p)
    p.add_argument(
        "--json", action="store_true", help="print the whole result as JSON on standard output"
    )
    p.add_argument(
        "--no-write", action="store_true", help="do not write the CSV / GeoPackage / JSON files"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the analysis and write or print its results (holding the region's lock)."""
    from asmspotter.catalogue import load_catalogue
    from asmspotter.locking import region_lock

    region = load_catalogue(args.catalogue)[args.region]
    reference: bool | list[str] = False
    if args.reference is not None:
        reference = list(args.reference) if args.reference else True
    with contextlib.nullcontext() if args.no_write else region_lock(region.id):
        return _analyse(region, reference, args)


def _analyse(region: Any, reference: bool | list[str], args: argparse.Namespace) -> int:
    """Run the analysis of a region and write or print its results."""
    from asmspotter import layout
    from asmspotter.analyse import analyse_region, format_summary, write_analysis

    result = analyse_region(
        region,
        footprints=args.footprints,
        period_ids=args.periods,
        area_attribute=args.area_attribute,
        kind=args.kind,
        overlay_ids=args.overlays,
        use_overlays=not args.no_overlays,
        reference=reference,
        reference_period_ids=args.reference_periods,
        allow_empty=args.allow_empty,
    )
    for warning in result.warnings:
        print(f"asmspotter: warning: {warning}", file=sys.stderr)
    written = []
    if not args.no_write:
        arguments = {k: v for k, v in vars(args).items() if k != "func"}
        folder = layout.analysis_files(region.id).folder
        written = write_analysis(result, folder, crs=region.crs, arguments=arguments)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(format_summary(result))
        if written:
            print(f"  written to {written[0].parent}/ ({', '.join(p.name for p in written)})")
    return 0
