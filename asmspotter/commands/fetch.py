"""``asmspotter fetch``: cloud-free composites of a region's periods, cached."""

from __future__ import annotations

import argparse
import os
from typing import Any

from asmspotter.commands import _args
from asmspotter.layout import TEMPLATES

_COMPOSITE = TEMPLATES.composite

DESCRIPTION = f"""\
Build the cloud-free Sentinel-2 composite of each period of a region and cache it as a
COG with provenance ({_COMPOSITE.tif} and {_COMPOSITE.provenance.name}).

STAC regions search the region's STAC API (default Earth Search v1, sentinel-2-l2a; L1C
before the region's l2a_from date) for scenes under the cloud limit, mask clouds, shadows,
cirrus, snow and no-data, apply each scene's scale and offset and take the per-pixel median.
Local regions (la-pampa) copy their GeoTIFFs; when those are absent they search the STAC
API only with --online or when the catalogue says `fallback: stac` (saying why).

Microsoft Planetary Computer (--stac-url https://planetarycomputer.microsoft.com/api/stac/v1)
keeps its assets in Azure blob storage that is read with a SAS token: with --sign auto (the
default, unless the region's source says otherwise) asset URLs are signed whenever the STAC
URL's host is planetarycomputer.microsoft.com; --sign planetary-computer signs for any URL and
--sign none never signs. Tokens come from the SAS API, one per collection, and are reused until
shortly before they expire; the composite's provenance records that assets were signed (never
the token).

A second run reuses the cache once the composite matches the checksum its JSON records (a
damaged one is rebuilt); --refresh rebuilds it. A rebuild is written beside the cached
composite and replaces it only when complete, so a failed --refresh keeps it. One process
at a time writes a region (a second one waits, naming the first).

Environment: ASMSPOTTER_CACHE (cache folder), ASMSPOTTER_SHARED_DATA (local scenes),
ASMSPOTTER_HTTP_TIMEOUT (seconds, default 30), ASMSPOTTER_HTTP_RETRIES (default 4),
ASMSPOTTER_PC_SAS_URL (SAS token API, default
https://planetarycomputer.microsoft.com/api/sas/v1), ASMSPOTTER_LOCK_TIMEOUT (seconds to
wait for a region another process is writing; default: until it is done).
"""

EXAMPLES = """\
examples:
  asmspotter fetch la-pampa
  asmspotter fetch madre-de-dios --period 2019 --period 2021
  asmspotter fetch cuyuni-mazaruni --max-cloud 60 --refresh
  asmspotter fetch brokopondo --stac-url https://planetarycomputer.microsoft.com/api/stac/v1 \\
      --collection sentinel-2-l2a --period 2019 --period 2020
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``fetch`` sub-command."""
    from asmspotter.catalogue import SIGN_METHODS

    p = subparsers.add_parser(
        "fetch",
        help="build (or reuse) cloud-free composites per period",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("region", metavar="REGION", help="region id (see `asmspotter regions`)")
    _args.add_period(p, "period id to fetch")
    p.add_argument("--refresh", action="store_true", help="rebuild cached composites")
    _args.add_online(p)
    p.add_argument(
        "--stac-url", metavar="URL", help="STAC API root to search instead of the region's"
    )
    p.add_argument(
        "--collection", metavar="C", help="STAC collection to search instead of the region's"
    )
    p.add_argument(
        "--max-cloud",
        type=float,
        metavar="N",
        help="maximum scene cloud cover in percent (default: the region's, 40)",
    )
    p.add_argument(
        "--sign",
        choices=SIGN_METHODS,
        help="sign asset URLs before reading: auto (Planetary Computer SAS tokens "
        "when the STAC URL's host is planetarycomputer.microsoft.com), "
        "planetary-computer or none (default: the region's source, auto)",
    )
    p.add_argument(
        "--model",
        help="model name in data/models or a card path: the composites hold the bands its card "
        "names (default: the shipped model's, true colour), from scenes of the processing level "
        "it names (asm-l1c6-v1: Level-1C for every period, the region's l1c_collection, Earth "
        "Search sentinel-2-l1c by default)",
    )
    _args.add_catalogue(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch the composites and say where they are."""
    from asmspotter.catalogue import load_catalogue
    from asmspotter.chain import model_bands, model_level
    from asmspotter.errors import InputError
    from asmspotter.locking import region_lock

    if args.max_cloud is not None and not 0 <= args.max_cloud <= 100:
        raise InputError(f"--max-cloud must be within 0..100 percent, got {args.max_cloud:g}")
    region = load_catalogue(args.catalogue)[args.region]
    periods = region.select_periods(args.period)
    bands, level = model_bands(args.model), model_level(args.model)
    with region_lock(region.id):
        for period in periods:
            _fetch_one(region, period, bands, level, args)
    return 0


def _fetch_one(
    region: Any, period: Any, bands: Any, level: str | None, args: argparse.Namespace
) -> None:
    """Fetch one period's composite at the model's processing level and say what was done."""
    from asmspotter.composite import fetch_composite

    # warnings (a cloudy composite, a damaged cache, a local region going online) are
    # printed as they come, on one line each (asmspotter.cli)
    result = fetch_composite(
        region,
        period,
        refresh=args.refresh,
        stac_url=args.stac_url,
        collection=args.collection,
        max_cloud=args.max_cloud,
        sign=args.sign,
        bands=bands,
        level=level,
        online=args.online,
    )
    prov = result.provenance
    what = "reused cached" if result.reused else "wrote"
    source = prov.get("source", {})
    if source.get("type") == "local":
        origin = f"local scene {os.path.basename(str(source.get('file')))}"
    else:
        origin = f"{prov.get('n_scenes')} scenes from {source.get('collection')}"
        signing = (prov.get("signing") or {}).get("method", "none")
        if signing != "none":
            origin += f", signed ({signing})"
    rows, cols = prov.get("shape", ["?", "?"])
    print(
        f"{region.id} {period.id}: {what} {result.path} "
        f"({origin}; {cols} x {rows} px, {prov.get('radiometry')}, "
        f"clear {result.clear_fraction:.1%})"
    )
