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
the single-pass speed. ``--precision`` is passed to the detector (default ``auto``: bf16
where the CPU or GPU computes it natively).

A fixed reference workload runs in the same invocation, right after the size it matches
(``--reference-size``, default 4096; ``--reference-size 0`` skips it): the detection as it
was before the work of issue 19 (fp32, glibc's default allocator, the network as trained:
batch normalisations not folded, no fused convolutions; 512 px tiles with 64 px overlap, 4
tiles per pass) on the same composite, in a fresh process without the allocator settings.
The speed-up over it is printed, so that the noise of a shared machine cancels.

``--compare-networks N`` instead times the three forms of the network on the CPU in one
process, alternated for ``--rounds`` rounds on a seeded N² px raster (the card's tiles and
views): unfolded (as before issue 19), folded (batch norms in the convolutions) and fused
(:class:`asmspotter.detect.fused.FusedMiningNet`, the default for fp32 on the CPU). It
prints the CPU and wall seconds of each and the largest probability difference, so that
a loaded machine still gives a fair comparison (CPU time).

Usage::

    .venv/bin/python benchmarks/bench_detect.py [--sizes 2048 4096 8192] [--device cuda]
        [--inference] [--tta none|rot4|d4] [--model asm-l1c6-v1]
        [--precision auto|fp32|bf16] [--reference-size 4096] [--record]
    .venv/bin/python benchmarks/bench_detect.py --compare-networks 1536 [--rounds 3]
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
        "precision": det.precision,
    }
    predict_array(det.model, x[:, :1024], valid[:1024], **kw)  # warm-up (kernels, allocator)
    if det.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    predict_array(det.model, x, valid, **kw)
    return time.perf_counter() - t0


#: The reference workload's settings: the detection before the work of issue 19 (its tiles
#: were end-aligned, which at 4096² px is the same plan; its network was not folded).
REFERENCE = {"precision": "fp32", "fold": False, "tile_size": 512, "overlap": 64, "batch_size": 4}


def _run(
    path: Path,
    device: str | None,
    threads: int,
    inference: bool = False,
    tta: str | None = None,
    model: str | None = None,
    precision: str | None = None,
    reference: bool = False,
) -> None:
    """Detect on ``path`` and print one JSON line of figures."""
    import resource

    if reference:  # glibc's default allocator, as before
        import asmspotter.detect.runtime as runtime

        runtime.tune_allocator = lambda: False
    import torch

    from asmspotter.detect.inference import detect_composite
    from asmspotter.detect.loader import load_detector

    if threads:
        torch.set_num_threads(threads)
    prec = str(REFERENCE["precision"]) if reference else precision
    det = load_detector(model, device=device, precision=prec, fold=not reference)
    views = tta or det.card.tta
    tiling: dict[str, Any] = {}
    if reference:
        tiling = {k: REFERENCE[k] for k in ("tile_size", "overlap", "batch_size")}
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with rasterio_size(path) as size:
        t0 = time.perf_counter()
        res = detect_composite(
            path, path.parent / "out", detector=det, views=views, progress=False, **tiling
        )
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
        "precision": det.precision,
        "threads": torch.get_num_threads(),
        "tta": views,
        "tile": [res.provenance["inference"]["tile_size"], res.provenance["inference"]["tiles"]],
        "page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
        "polygons": res.n_polygons,
        "model": det.card.name,
        "network": type(det.model).__name__,  # FusedMiningNet: fused fp32 CPU inference
    }
    if inference:
        # after the full run, so that its peak RSS is not raised by the in-memory raster
        dt_inf = _inference_seconds(path, det, views)
        row["inference_seconds"] = round(dt_inf, 3)
        row["inference_km2_per_s"] = round(mpx * 100 / dt_inf, 1)
    print(json.dumps(row))


def _compare_networks(size: int, rounds: int, threads: int, model: str | None) -> None:
    """Time the unfolded, folded and fused networks alternated in this process; print them."""
    import numpy as np
    import torch

    from asmspotter.detect.loader import load_detector
    from asmspotter.detect.tiling import predict_array

    if threads:
        torch.set_num_threads(threads)
    det = load_detector(model, device="cpu", precision="fp32")
    nets = {
        "unfolded": load_detector(model, device="cpu", precision="fp32", fold=False).model,
        "folded": getattr(det.model, "plain", det.model),
        "fused": det.model,
    }
    bands = len(det.card.bands)
    x = (np.random.default_rng(0).random((bands, size, size)) * 0.2).astype(np.float32)
    kw = {"tile_size": det.card.tile_size, "overlap": det.card.tile_overlap}
    kw["views"] = det.card.tta
    want = predict_array(nets["unfolded"], x, **kw)
    for name, net in nets.items():
        diff = float(np.abs(predict_array(net, x, **kw) - want).max())
        print(f"{name:>9} ({type(net).__name__}): largest difference from unfolded {diff:.1e}")
    spent = {name: [0.0, 0.0] for name in nets}
    for _ in range(rounds):
        for name, net in nets.items():
            w0, c0 = time.perf_counter(), time.process_time()
            predict_array(net, x, **kw)
            spent[name][0] += time.perf_counter() - w0
            spent[name][1] += time.process_time() - c0
    base = spent["folded"]
    for name, (wall, cpu) in spent.items():
        print(
            f"{name:>9}: CPU {cpu:7.2f} s  wall {wall:7.2f} s  ({rounds} rounds of {size}² px, "
            f"tta {kw['views']})  vs folded: CPU {base[1] / cpu:.3f}x  wall {base[0] / wall:.3f}x"
        )


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


def _line(row: dict[str, Any], label: str) -> str:
    """The figures of one run, on one line."""
    return (
        f"{label:>8}: {row['seconds']:8.2f} s  {row['mpx_per_s']:7.3f} Mpx/s  "
        f"{row['km2_per_s']:8.2f} km²/s  peak RSS {row['peak_rss_mib']:7.1f} MiB  "
        f"[{row['device']}, {row['precision']}, {row['threads']} threads, tta {row['tta']}, "
        f"{row['tile'][1]} tiles of {row['tile'][0]} px, {row['page_faults']} page faults]"
    )


def _measure(comp: Path, args: argparse.Namespace, reference: bool = False) -> dict[str, Any]:
    """Run one detection in a fresh process (the reference without the allocator settings)."""
    import os

    from asmspotter.detect.runtime import MALLOC_ENV

    cmd = [sys.executable, __file__, "--run", str(comp), "--threads", str(args.threads)]
    cmd += ["--model", args.model] if args.model else []
    if args.device:
        cmd += ["--device", args.device]
    if args.inference and not reference:
        cmd.append("--inference")
    if args.tta:
        cmd += ["--tta", args.tta]
    cmd += ["--reference"] if reference else ["--precision", args.precision]
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    from asmspotter.detect.card import VIEW_SETS
    from asmspotter.detect.runtime import PRECISIONS

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
    ap.add_argument("--precision", choices=PRECISIONS, default="auto", help="(default auto)")
    ap.add_argument(
        "--reference-size",
        type=int,
        default=4096,
        help="size at which the reference workload runs too (default 4096; 0: none)",
    )
    ap.add_argument(
        "--compare-networks",
        type=int,
        metavar="N",
        help="time the unfolded, folded and fused networks alternated on an N² px raster",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --compare-networks")
    ap.add_argument("--make", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        _make(args.make, Path(args.run), args.model)
        return 0
    if args.compare_networks:
        _compare_networks(args.compare_networks, args.rounds, args.threads, args.model)
        return 0
    if args.run:
        _run(
            Path(args.run),
            args.device,
            args.threads,
            args.inference,
            args.tta,
            args.model,
            args.precision,
            args.reference,
        )
        return 0
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            comp = Path(tmp) / "composite.tif"
            chosen = ["--model", args.model] if args.model else []
            make = [sys.executable, __file__, "--make", str(size), "--run", str(comp), *chosen]
            subprocess.run(make, check=True)
            row = _measure(comp, args)
            rows.append(row)
            print(_line(row, f"{size}² px"), flush=True)
            if "inference_km2_per_s" in row:
                print(
                    f"{'':>8}  inference alone: {row['inference_seconds']:8.2f} s  "
                    f"{row['inference_km2_per_s']:8.1f} km²/s",
                    flush=True,
                )
            if size == args.reference_size:
                ref = _measure(comp, args, reference=True)
                print(_line(ref, "ref"), flush=True)  # the reference workload
                print(
                    f"speed-up at {size}² px over the reference (fp32, glibc defaults, 512 px "
                    f"tiles, 64 px overlap): {row['km2_per_s'] / ref['km2_per_s']:.2f}x",
                    flush=True,
                )
    if args.record:
        _record(rows, args.model)
    if len(rows) > 1:
        ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
        print(
            f"peak RSS ratio {rows[-1]['size']}²/{rows[0]['size']}² (largest/smallest): {ratio:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
