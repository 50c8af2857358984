"""``asmspotter make-chips POINTS``: a multispectral chip gallery around sample points."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Cut a labelled GeoTIFF chip gallery of any Sentinel-2 bands around sample points, for
`asmspotter train --chips DIR --bands ...`. For each point of POINTS (a GeoJSON of points,
such as the sample points that come with Amazon Mining Watch's galleries), the cloud-masked
median composite of the period over the 480 m square centred on it is built from a STAC API
(cached per point, so an interrupted run resumes) and cut to a 48 x 48 px chip at 10 m.

Writes to --out: NAME.tif (the gallery: one band per band name, float reflectance), NAME.geojson
(the points that gave chips, in gallery order: chip i = feature i) and NAME.json (provenance,
and the points left out for want of a scene or a clear observation). NAME must say the label:
*positives* (mining) or *negatives* (not mining). Needs a reachable STAC API.
"""

EXAMPLES = """\
examples:
  asmspotter make-chips MinesPos2018-2020Sentinel_points.geojson --period 2019 --out chips-l2a
  asmspotter make-chips riverbank_negatives.geojson --period 2024-02-01/2024-05-01 \\
      --out chips-l2a --bands red,nir,swir16,swir22
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``make-chips`` sub-command."""
    p = subparsers.add_parser(
        "make-chips",
        help="cut a multispectral chip gallery around sample points (for training)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("points", metavar="POINTS", help="GeoJSON of sample points (EPSG:4326)")
    p.add_argument(
        "--period",
        "-p",
        required=True,
        metavar="P",
        help="a year (2019), quarter (2020-Q3), month (2020-07) or range (2020-07-01/2020-09-30)",
    )
    p.add_argument("--out", required=True, help="folder of the gallery")
    p.add_argument(
        "--name",
        help="file stem of the gallery, with the label (default: POINTS' stem + _S2L2A_<period>)",
    )
    p.add_argument(
        "--bands",
        help="comma-separated band names (default: the ten L2A bands of 10 and 20 m)",
    )
    p.add_argument("--stac-url", metavar="URL", help="STAC API root (default: Earth Search)")
    p.add_argument("--collection", metavar="C", help="STAC collection (default sentinel-2-l2a)")
    p.add_argument(
        "--max-cloud", type=float, metavar="N", help="maximum scene cloud cover in percent (40)"
    )
    p.add_argument("--cols", type=int, default=20, help="cells per gallery row (default 20)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Cut the gallery and say what was written."""
    import sys

    from asmspotter.detect.gallery import make_gallery_from_points

    bands = tuple(b.strip() for b in (args.bands or "").split(",") if b.strip())
    result = make_gallery_from_points(
        args.points,
        args.period,
        args.out,
        name=args.name,
        bands=bands,
        stac_url=args.stac_url,
        collection=args.collection,
        max_cloud=args.max_cloud,
        cols=args.cols,
        progress=not args.no_progress,
        log=lambda line: print(f"asmspotter: note: {line}", file=sys.stderr),
    )
    left = len(result.chips) - result.n_chips
    print(
        f"wrote {result.gallery} ({result.n_chips} chips of {len(result.chips)} points"
        + (f"; {left} left out, see {result.provenance.name}" if left else "")
        + f") and {result.points.name}"
    )
    return 0
