"""``asmspotter app``: the interactive map, served by Voila on this machine."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from asmspotter.commands import _args

DESCRIPTION = """\
Serve the interactive map for partners: the catalogue's regions, and for each a map of
where mining spread period by period (each period's expansion in its own colour), with
detected sites, the satellite image, protected areas, mining areas, indigenous areas and
the reference footprints as layers, and the chosen period's figures beside it.

Only the app is served (no files, no other notebooks, no Jupyter pages), on 127.0.0.1
unless --ip says otherwise. Everything it shows is read from this machine: regions with
detections show them (`asmspotter run REGION`), the others show the catalogue's
reference footprints. No map tiles are needed; an online basemap is an option in the app.
"""

EPILOG = """\
examples:
  asmspotter app                          then open http://127.0.0.1:8866/
  asmspotter app --region madre-de-dios   open at a region's map
  asmspotter app --port 9000 --ip 0.0.0.0 expose it to the network, on purpose

links open a region's map directly: http://127.0.0.1:8866/?region=madre-de-dios&period=2021
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``app`` sub-command."""
    from asmspotter.app import DEFAULT_PORT

    p = subparsers.add_parser(
        "app",
        help="serve the interactive map (Voila) on this machine",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    p.add_argument("--region", metavar="R", help="region the app opens at (default: the list)")
    p.add_argument(
        "--ip",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default 127.0.0.1: this machine only; another address "
        "lets anyone who can reach it open the app)",
    )
    _args.add_catalogue(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the app until interrupted."""
    from asmspotter.app.server import serve

    def announce(url: str, ip: str) -> None:
        if not ipaddress.ip_address(ip).is_loopback:
            print(
                f"asmspotter: warning: serving on {ip}: anyone who can reach this address "
                "can open the app",
                file=sys.stderr,
            )
        print(f"asmspotter app: {url} (Ctrl-C stops it)", flush=True)

    serve(
        port=args.port,
        ip=args.ip,
        region=args.region,
        catalogue=args.catalogue,
        announce=announce,
    )
    return 0
