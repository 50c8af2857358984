"""``asmspotter detect REGION``: mining probability, mask and polygons per period."""

from __future__ import annotations

import argparse
from typing import Any

from asmspotter.commands import _args
from asmspotter.layout import TEMPLATES

_COMPOSITE, _DETECTION = TEMPLATES.composite, TEMPLATES.detection


def add_parser(subparsers: Any) -> None:
    """Register the ``detect`` sub-command."""
    p = subparsers.add_parser(
        "detect",
        help="map mining in a region's composites (probability, mask, polygons)",
        description=(
            "Run the mining model over the region's cached composite for each period "
            f"({_COMPOSITE.tif}, made by `asmspotter fetch`) in overlapping, "
            "blended tiles (CUDA with autocast when available, else CPU; bounded memory), each "
            "averaged over the model card's test-time views (--tta), and "
            f"write {_DETECTION.probability}, {_DETECTION.mask.name}, "
            f"{_DETECTION.gpkg.name} (region CRS), {_DETECTION.geojson.name} (EPSG:4326) and "
            f"{_DETECTION.provenance.name}."
        ),
    )
    p.add_argument("region", metavar="REGION", help="region id (see `asmspotter regions`)")
    _args.add_period(p, "period id to map")
    p.add_argument("--threshold", type=float, help="pixel probability threshold (default: card)")
    p.add_argument(
        "--min-area-ha",
        type=float,
        help="minimum mapping unit of the polygons in ha (default: card)",
    )
    _args.add_model(p)
    p.add_argument("--tile-size", type=int, help="tile size in px (default: card)")
    _args.add_tta(p, "default: the card's (rot4 for the shipped model); none runs about 3x faster")
    _args.add_precision(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _args.add_catalogue(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Detect mining for each requested period."""
    from asmspotter.detect.runtime import tune_allocator

    tune_allocator()  # before torch allocates anything

    from asmspotter.catalogue import load_catalogue
    from asmspotter.detect.inference import detect_region
    from asmspotter.errors import InputError
    from asmspotter.locking import region_lock

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.min_area_ha is not None and args.min_area_ha < 0:
        raise InputError(f"--min-area-ha must be >= 0, got {args.min_area_ha}")
    region = load_catalogue(args.catalogue)[args.region]
    periods = region.select_periods(args.period)
    with region_lock(region.id):  # one writer per region; leftovers of killed runs go
        results = detect_region(
            region,
            periods,
            model=args.model,
            device=args.device,
            threshold=args.threshold,
            min_area_ha=args.min_area_ha,
            tile_size=args.tile_size,
            views=args.tta,
            precision=args.precision,
            progress=not args.no_progress,
        )
    for period, result in zip(periods, results, strict=True):
        print(
            f"{region.id} {period.id}: {result.polygon_area_ha:.1f} ha of mining in "
            f"{result.n_polygons} polygons ({result.mining_area_ha:.1f} ha above the threshold) "
            f"-> {result.out_dir} [{result.provenance['inference']['device']} "
            f"{result.provenance['inference']['precision']}, "
            f"{result.seconds:.1f} s]"
        )
    return 0
