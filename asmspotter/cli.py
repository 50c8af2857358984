"""The ``asmspotter`` command line.

Each sub-command lives in ``asmspotter/commands/<name>.py`` and defines
``add_parser(subparsers)`` and ``run(args) -> int``. Command modules keep heavy
imports (torch, geopandas, ...) inside ``run`` so that ``--help`` stays fast.
User mistakes and data problems (:class:`~asmspotter.errors.AsmSpotterError`)
are printed on one line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from asmspotter import __version__
from asmspotter.errors import AsmSpotterError

#: Sub-command modules, in the order of the data flow.
COMMAND_MODULES: tuple[str, ...] = (
    "regions",
    "fetch",
    "make_chips",
    "train",
    "evaluate_chips",
    "detect",
    "analyse",
    "run",
    "report",
    "app",
)

DESCRIPTION = """\
Find artisanal and small-scale gold mining in Sentinel-2 imagery, measure how fast it
spreads and how much of it lies in protected areas, indigenous territories and legal
mining zones.

The chain, one command per stage:
  asmspotter regions                 list the regions of the catalogue
  asmspotter fetch REGION            cloud-free Sentinel-2 composites per period (cached)
  asmspotter detect REGION           mining probability, mask and polygons per period
  asmspotter analyse REGION          areas, expansion factors and overlay statistics
  asmspotter run [REGION]            all of the above (default: the offline demo, la-pampa)
  asmspotter report REGION           the region's briefing: offline HTML (--pdf, --lang es)
  asmspotter app                     the interactive map of every region (Voila, local)

The detector's model:
  asmspotter train                   rebuild the shipped weights from the shared chips
  asmspotter evaluate-chips DIR      chip sensitivity and specificity of a model
  asmspotter make-chips POINTS       a multispectral chip gallery around sample points

Environment: ASMSPOTTER_SHARED_DATA (shared real data, default ../shared/data),
ASMSPOTTER_CACHE (composites, default ./cache), ASMSPOTTER_OUTPUT (results, default ./reports).
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="asmspotter",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"asmspotter {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details and show tracebacks"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"asmspotter.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"asmspotter.commands.{name}":
                continue  # stage not installed in this build
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except AsmSpotterError as exc:
        if args.verbose:
            raise
        print(f"asmspotter: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # the file system refused (an output path under a file, no permission, disk full):
        # the user's to fix, so one line naming the path, not a traceback
        if args.verbose:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"asmspotter: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asmspotter: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
