"""``asmspotter evaluate-chips DIR``: chip sensitivity and specificity of the shipped model."""

from __future__ import annotations

import argparse
from typing import Any

from asmspotter.commands import _args


def add_parser(subparsers: Any) -> None:
    """Register the ``evaluate-chips`` sub-command."""
    p = subparsers.add_parser(
        "evaluate-chips",
        help="score a folder of labelled chip galleries with the shipped model",
        description=(
            "Score every gallery of DIR (grids of 48 x 48 px Sentinel-2 chips: PNGs in the "
            "value/3000 scaling, or GeoTIFFs of reflectance with a band name per band for "
            "models of other bands; empty cells are skipped; the label comes from the file "
            "name: *positives* or *mining* = mining; *negatives*, *non-mining*, *nonmining* "
            "or *not_mining* = not; 8-bit RGB or palette PNGs only) with the shipped (or "
            "--model) model "
            "at its card's chip threshold, and print TP, FN, TN, FP, sensitivity and "
            "specificity per file and in total."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="folder of galleries (*.png, *.tif)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _args.add_model(p, device=False)
    _args.add_precision(p)
    p.add_argument("--threshold", type=float, help="chip threshold (default: the card's)")
    p.add_argument(
        "--errors",
        metavar="OUT",
        help="also write the wrongly called chips to folder OUT for a person to look at: "
        "missed_mining.png and false_alarms.png (contact sheets, most confident errors first, "
        "captioned with position and score) and errors.csv (gallery file and chip index of "
        "each)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print."""
    from asmspotter.detect.runtime import tune_allocator

    tune_allocator()  # before torch allocates anything

    import json
    import sys

    from asmspotter.detect.chips import read_galleries
    from asmspotter.detect.evaluate import evaluate_with_model, write_errors
    from asmspotter.errors import InputError

    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        raise InputError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.errors:
        from asmspotter.paths import writable_dir

        writable_dir(args.errors, "folder for the errors")
    galleries = read_galleries(args.dir)
    result = evaluate_with_model(galleries, args.model, args.threshold, args.precision)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.format_table())
    if args.errors:
        written = write_errors(result, galleries, args.errors)
        stream = sys.stderr if args.json else sys.stdout  # keep --json output parseable
        print("wrote " + ", ".join(str(p) for p in written), file=stream)
    return 0
