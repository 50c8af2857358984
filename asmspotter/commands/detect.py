"""``asmspotter detect REGION``: mining probability, mask and polygons per period."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the ``detect`` sub-command."""
    p = subparsers.add_parser(
        "detect",
        help="map mining in a region's composites (probability, mask, polygons)",
        description=(
            "Run the mining model over the region's cached composite for each period "
            "(cache/<region>/<period>/composite.tif, made by `asmspotter fetch`) in overlapping, "
            "blended tiles (CUDA with autocast when available, else CPU; bounded memory), and "
            "write reports/<region>/<period>/mining_probability.tif, mining_mask.tif, "
            "mining.gpkg (region CRS), mining.geojson (EPSG:4326) and detection.json."
        ),
    )
    p.add_argument("region", metavar="REGION", help="region id (see `asmspotter regions`)")
    p.add_argument("--period", action="append", help="period id (repeatable; default: all periods)")
    p.add_argument("--threshold", type=float, help="pixel probability threshold (default: card)")
    p.add_argument(
        "--min-area-ha",
        type=float,
        help="minimum mapping unit of the polygons in ha (default: card)",
    )
    p.add_argument("--model", help="model name in data/models or a card path")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--tile-size", type=int, help="tile size in px (default: card)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Detect mining for each requested period."""
    from asmspotter.catalogue import get_region
    from asmspotter.detect.inference import (
        composite_path,
        detect_composite,
        detection_dir,
        load_detector,
    )
    from asmspotter.errors import DataError, InputError

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.min_area_ha is not None and args.min_area_ha < 0:
        raise InputError(f"--min-area-ha must be >= 0, got {args.min_area_ha}")
    region = get_region(args.region)
    periods = region.select_periods(args.period) if args.period else region.periods
    todo = [(p, composite_path(region.id, p.id)) for p in periods]
    # a composite counts only once its provenance is written beside it (fetch writes it last)
    missing = [
        str(c) for _, c in todo if not (c.is_file() and c.with_name("composite.json").is_file())
    ]
    if missing:
        raise DataError(
            f"composite not found: {missing[0]} (run `asmspotter fetch {region.id}` first)"
        )
    detector = load_detector(args.model, args.device)
    for period, comp in todo:
        result = detect_composite(
            comp,
            detection_dir(region.id, period.id),
            detector=detector,
            region=region.id,
            period=period.id,
            region_crs=region.crs,
            threshold=args.threshold,
            min_area_ha=args.min_area_ha,
            tile_size=args.tile_size,
            progress=not args.no_progress,
        )
        print(
            f"{region.id} {period.id}: {result.polygon_area_ha:.1f} ha of mining in "
            f"{result.n_polygons} polygons ({result.mining_area_ha:.1f} ha above the threshold) "
            f"-> {result.out_dir} [{detector.device}, {result.seconds:.1f} s]"
        )
    return 0
