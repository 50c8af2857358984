"""``asmspotter report REGION | --all``: the narrative regional briefing, HTML and PDF."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from asmspotter.commands import _args

DESCRIPTION = """\
Write a region's briefing: papermill executes the briefing notebook, which analyses the
region's mining from one source, and nbconvert renders it without input cells to one
self-contained HTML file that opens offline: reports/<region>/report.html
(report.<lang>.html for other languages), with the executed notebook beside it. A failed run
leaves the previous briefing as it was. --pdf also prints it to report.pdf (A4) with
headless Chromium.

Sources of the mining: 'detector' reads what `asmspotter run` / `detect` wrote (the default
where those detections exist); 'reference' reads the catalogue's reference footprints
(Amazon Mining Watch) over the reference's own periods, and says which catalogue periods it
cannot cover. Each source's analysis files go to their own folder
(reports/<region>/analysis/ or analysis-reference/).
"""

EPILOG = """\
examples:
  asmspotter report la-pampa
  asmspotter report madre-de-dios --source reference
  asmspotter report madre-de-dios --source reference --lang es --pdf
  asmspotter report --all --source reference
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``report`` sub-command."""
    p = subparsers.add_parser(
        "report",
        help="the narrative briefing of a region: offline HTML (and PDF), English or Spanish",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("region", metavar="REGION", nargs="?", help="region id from the catalogue")
    p.add_argument(
        "--all",
        action="store_true",
        help="every region of the catalogue that the source can brief (with --source "
        "reference: those without detections of their own)",
    )
    p.add_argument(
        "--source",
        choices=("detector", "reference"),
        help="where the mining comes from (default: detector where its detections exist, "
        "else the catalogue's reference)",
    )
    p.add_argument("--lang", default="en", metavar="LANG", help="briefing language: en, es")
    p.add_argument("--pdf", action="store_true", help="also print the briefing to PDF (Chromium)")
    _args.add_period(p, "period id to brief (catalogue period, or the reference's)")
    p.add_argument("--model", help="model card to describe when the detections name none")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="generation date (default: today)")
    _args.add_catalogue(p)
    p.set_defaults(func=run)


def _regions(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """Return (region id, source) for each briefing to write."""
    from asmspotter.catalogue import load_catalogue
    from asmspotter.errors import InputError
    from asmspotter.report import detected_periods

    if args.all == bool(args.region):
        raise InputError("name one REGION or give --all")
    if not args.all:
        return [(args.region, args.source)]
    chosen: list[tuple[str, str | None]] = []
    for region in load_catalogue(args.catalogue).values():
        detected = bool(detected_periods(region))
        if args.source == "reference" and region.reference is not None and not detected:
            chosen.append((region.id, "reference"))
        elif args.source == "reference" and region.reference is not None:
            print(
                f"   {region.id}: skipped (it has detections; name it to brief it from "
                "the reference)"
            )
        elif args.source == "detector" and detected:
            chosen.append((region.id, "detector"))
        elif args.source is None and (detected or region.reference is not None):
            chosen.append((region.id, None))
    if not chosen:
        raise InputError(
            f"no region of the catalogue can be briefed from {args.source or 'any source'}"
        )
    return chosen


def run(args: argparse.Namespace) -> int:
    """Write the briefing(s) and print where they are."""
    from asmspotter.errors import AsmSpotterError
    from asmspotter.report import write_report

    failed = 0
    for region, source in _regions(args):
        try:
            result = write_report(
                region,
                source=source,
                language=args.lang,
                pdf=args.pdf,
                periods=args.period,
                model=args.model,
                catalogue=args.catalogue,
                generated=args.date,
            )
        except AsmSpotterError as exc:
            if not args.all:
                raise
            failed += 1
            print(f"asmspotter: error: {region}: {exc}", file=sys.stderr)
            continue
        pdf = f" and {result.pdf.name}" if result.pdf else ""
        print(
            f"   {result.region} ({result.source}, {result.language}): wrote {result.html}{pdf} "
            f"in {result.seconds:.1f} s; analysis in {result.analysis}/"
        )
    return 2 if failed else 0
