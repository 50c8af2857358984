"""Speed and memory of ``detect`` on seeded synthetic composites.

Runs the full detection (tiled blended inference, probability and mask COGs, polygons,
provenance) with the shipped model (or ``--model``'s, e.g. the six-band ``asm-l1c6-v1``)
over seeded 2048², 4096² and 8192² px reflectance composites of the model's bands, each in
a fresh process so that peak RSS is measured per size, and prints Mpx/s, km²/s (10 m
pixels: 1 km² = 10,000 px) and peak RSS. ``--record`` writes them into the model's card.

With ``--inference`` it also times the network stage alone, after the full run in the same
process: the composite is read into memory first and only the tiled, blended inference
(tiles to the device, forward passes, blending) is timed. This is the figure that shows
what the accelerator does; the full run adds reading, COG writing and polygons.

The model runs with its card's test-time views (``inference.tta``; ``rot4`` for the shipped
model: four forward passes per tile) unless ``--tta`` names others; ``--tta none`` measures
the single-pass speed.

Usage::

    .venv/bin/python benchmarks/bench_detect.py [--sizes 2048 4096 8192] [--device cuda]
        [--inference] [--tta none|rot4|d4] [--model asm-l1c6-v1] [--record]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _make(size: int, path: Path, model: str | None = None) -> None:
    """Write a seeded size x size reflectance composite, 256 rows at a time.

    The composite holds true colour (sand patches in forest), or the bands of ``model``'s
    card when they are others (mining and look-alike patches in forest).
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from asmspotter.bands import TRUE_COLOUR
    from asmspotter.detect.card import load_card
    from asmspotter.detect.synthetic import (
        DEFAULT_CRS,
        DEFAULT_ORIGIN,
        make_multiband_scene,
        make_scene,
    )
    from asmspotter.layout import RADIOMETRY_TAG

    bands = load_card(model)[0].bands if model else TRUE_COLOUR

    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": len(bands),
        "dtype": "float32",
        "crs": DEFAULT_CRS,
        "transform": from_origin(*DEFAULT_ORIGIN, 10.0, 10.0),
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 256):
            n = min(256, size - r)
            if bands == TRUE_COLOUR:
                block = make_scene(n, size, seed=r, n_patches=max(1, size // 128))
            else:
                block = make_multiband_scene(n, size, bands, seed=r)[0]
            dst.write(block, window=Window(0, r, size, n))
        dst.update_tags(**{RADIOMETRY_TAG: "reflectance"})
        for i, b in enumerate(bands, start=1):
            dst.set_band_description(i, b)


def _inference_seconds(path: Path, det: Any, views: str) -> float:
    """Seconds of the tiled, blended inference alone over ``path`` read into memory."""
    import rasterio
    import torch

    from asmspotter.detect.card import to_model_input
    from asmspotter.detect.tiling import predict_array

    with rasterio.open(path) as src:
        x, valid = to_model_input(src.read(), "reflectance")
    kw = {
        "tile_size": det.card.tile_size,
        "overlap": det.card.tile_overlap,
        "device": det.device,
        "views": views,
    }
    predict_array(det.model, x[:, :1024], valid[:1024], **kw)  # warm-up (kernels, allocator)
    if det.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    predict_array(det.model, x, valid, **kw)
    return time.perf_counter() - t0


def _run(
    path: Path,
    device: str | None,
    threads: int,
    inference: bool = False,
    tta: str | None = None,
    model: str | None = None,
) -> None:
    """Detect on ``path`` and print one JSON line of figures."""
    import resource

    import torch

    from asmspotter.detect.inference import detect_composite
    from asmspotter.detect.loader import load_detector

    if threads:
        torch.set_num_threads(threads)
    det = load_detector(model, device=device)
    views = tta or det.card.tta
    with rasterio_size(path) as size:
        t0 = time.perf_counter()
        res = detect_composite(path, path.parent / "out", detector=det, views=views, progress=False)
        dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mpx = size * size / 1e6
    row = {
        "size": size,
        "seconds": round(dt, 2),
        "mpx_per_s": round(mpx / dt, 3),
        "km2_per_s": round(mpx * 100 / dt, 2),
        "peak_rss_mib": round(rss, 1),
        "device": det.device,
        "threads": torch.get_num_threads(),
        "tta": views,
        "polygons": res.n_polygons,
        "model": det.card.name,
    }
    if inference:
        # after the full run, so that its peak RSS is not raised by the in-memory raster
        dt_inf = _inference_seconds(path, det, views)
        row["inference_seconds"] = round(dt_inf, 3)
        row["inference_km2_per_s"] = round(mpx * 100 / dt_inf, 1)
    print(json.dumps(row))


@contextlib.contextmanager
def rasterio_size(path: Path) -> Iterator[int]:
    """Yield the width of a raster."""
    import rasterio

    with rasterio.open(path) as src:
        width = src.width
    yield width


def _record(rows: list[dict[str, object]], model: str | None = None) -> None:
    """Store the figures in the model's card (default: the shipped one) and its Markdown.

    CPU runs go under ``metrics.speed``, CUDA runs under ``metrics.speed_cuda``, so that a
    GPU measurement does not replace the CPU one; runs with other test-time views than the
    card's get a suffix (``metrics.speed_none``, ``metrics.speed_cuda_none``).
    """
    import os
    import platform

    import torch

    from asmspotter.detect.card import load_card
    from asmspotter.detect.card_text import record_metrics

    card, _ = load_card(model)
    cuda = str(rows[0]["device"]).startswith("cuda")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs visible"
    if cuda:
        machine += f", {torch.cuda.get_device_name(0)}"
    key = "speed_cuda" if cuda else "speed"
    if rows[0]["tta"] != card.tta:
        key += f"_{rows[0]['tta']}"
    entry = {"script": "benchmarks/bench_detect.py", "machine": machine, "runs": rows}
    record_metrics(model or card.name, key, entry)


def main() -> int:
    from asmspotter.detect.card import VIEW_SETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument(
        "--inference",
        action="store_true",
        help="also time the tiled, blended inference alone (input held in memory)",
    )
    ap.add_argument("--record", action="store_true", help="write the figures into the model's card")
    ap.add_argument(
        "--tta",
        choices=tuple(VIEW_SETS),
        help="test-time views (default: the card's; none = one pass per tile)",
    )
    ap.add_argument("--model", help="model name or card path (default: the shipped model)")
    ap.add_argument("--make", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        _make(args.make, Path(args.run), args.model)
        return 0
    if args.run:
        _run(Path(args.run), args.device, args.threads, args.inference, args.tta, args.model)
        return 0
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            comp = Path(tmp) / "composite.tif"
            base = [sys.executable, __file__]
            chosen = ["--model", args.model] if args.model else []
            subprocess.run(base + ["--make", str(size), "--run", str(comp), *chosen], check=True)
            cmd = base + ["--run", str(comp), "--threads", str(args.threads), *chosen]
            if args.device:
                cmd += ["--device", args.device]
            if args.inference:
                cmd.append("--inference")
            if args.tta:
                cmd += ["--tta", args.tta]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{size:>5}² px: {row['seconds']:8.2f} s  {row['mpx_per_s']:7.3f} Mpx/s  "
            f"{row['km2_per_s']:8.2f} km²/s  peak RSS {row['peak_rss_mib']:7.1f} MiB  "
            f"[{row['device']}, {row['threads']} threads, tta {row['tta']}]",
            flush=True,
        )
        if "inference_km2_per_s" in row:
            print(
                f"{'':>8}  inference alone: {row['inference_seconds']:8.2f} s  "
                f"{row['inference_km2_per_s']:8.1f} km²/s",
                flush=True,
            )
    if args.record:
        _record(rows, args.model)
    if len(rows) > 1:
        ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
        print(f"peak RSS ratio largest/smallest: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
