"""``asmspotter regions``: list the regions of the catalogue."""

from __future__ import annotations

import argparse
import json
from typing import Any

from asmspotter.commands import _args


def add_parser(subparsers: Any) -> None:
    """Register the ``regions`` sub-command."""
    p = subparsers.add_parser(
        "regions",
        help="list the regions of the catalogue",
        description="List the regions of the catalogue with their periods and overlay layers.",
    )
    _args.add_catalogue(p)
    p.add_argument("--json", action="store_true", help="print the regions as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List the regions."""
    from asmspotter.catalogue import load_catalogue

    catalogue = load_catalogue(args.catalogue)
    if args.json:
        out = [
            {
                "id": r.id,
                "name": r.name,
                "country": r.country,
                "crs": r.crs,
                "source": r.source.kind,
                "periods": [
                    {"id": p.id, "start": p.start.isoformat(), "end": p.end.isoformat()}
                    for p in r.periods
                ],
                "overlays": [{"id": o.id, "kind": o.kind, "label": o.label} for o in r.overlays],
            }
            for r in catalogue.values()
        ]
        print(json.dumps(out, indent=2))
        return 0
    width = max(len(r) for r in catalogue)
    print(f"{'REGION':<{width}}  {'COUNTRY':<9} {'SOURCE':<6} PERIODS / OVERLAYS")
    for r in catalogue.values():
        periods = ", ".join(p.id for p in r.periods)
        overlays = ", ".join(o.id for o in r.overlays) or "none"
        print(f"{r.id:<{width}}  {r.country:<9} {r.source.kind:<6} {periods}")
        print(f"{'':<{width}}  {r.name}; overlays: {overlays}")
    return 0
