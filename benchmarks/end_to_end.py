"""End-to-end speed and memory of tiled runs on Dask (``asmspotter.scale``).

For each size, a seeded synthetic true-colour region sized as a fraction of Madre de Dios
(85,000 km²; 10 m pixels, EPSG:32719; forest with sediment patches, about 4 per km²) is
written as a local source, and one period of it runs through the tiled chain (composite,
detection with the shipped model and its card's settings, polygons, merge) on a fresh
``LocalCluster`` of 1, then 2 workers of one thread each. It prints, per run:

- wall seconds and overall km²/s;
- per stage, km² per task-second (the stage's area over the seconds its tasks computed,
  summed over tiles: one worker thread's throughput), and the merge's wall seconds;
- peak RSS of each worker process (max over workers), which must not grow with the area
  (it is set by the tile size);

then the scaling with area (seconds per km² relative to the smallest size) and with workers,
and the extrapolated time of the whole department per period on this machine.

Usage::

    .venv/bin/python benchmarks/end_to_end.py [--sizes 256 64 16] [--workers 1 2]
        [--tile-size 1792] [--tta none] [--json out.json]

``--sizes 64`` means 1/64 of Madre de Dios. Not a test: run it on a quiet machine and say
what else ran.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

#: Madre de Dios, km².
DEPARTMENT_KM2 = 85_000.0
STAGES = ("composite", "detect", "polygons")


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB); run on each worker."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm(card: str | None) -> float:
    """Load the detector on a worker (imports and weights), so that timing starts warm."""
    from asmspotter.detect.card import card_path
    from asmspotter.scale.detection import worker_detector

    t0 = time.perf_counter()
    worker_detector(card_path(card).resolve(), None)
    return time.perf_counter() - t0


def _side(fraction: int) -> int:
    """Pixels per side of a square region of 1/fraction of the department."""
    return int(round(math.sqrt(DEPARTMENT_KM2 / fraction * 1e4)))


def run_one(
    fraction: int, workers: int, tile: int, tta: str | None, base: Path, card: Path | None
) -> dict[str, Any]:
    """One size on one local cluster: wall time, per-stage throughput, peak RSS."""
    from distributed import Client, LocalCluster

    from asmspotter.scale.runner import run_tiles
    from asmspotter.scale.synthetic import make_region

    side = _side(fraction)
    work = base / f"f{fraction}-w{workers}"
    syn = make_region(work / "data", side, side, seed=fraction, region_id=f"bench{fraction}")
    os.environ["ASMSPOTTER_CACHE"] = str(work / "cache")
    os.environ["ASMSPOTTER_OUTPUT"] = str(work / "reports")
    period = syn.region.periods[0]
    km2 = side * side / 1e4
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm, None if card is None else str(card))
        t0 = time.perf_counter()
        run = run_tiles(client, syn.region, [period], model=card, tile_size=tile, views=tta,
                        progress=False)  # fmt: skip
        wall = time.perf_counter() - t0
        rss = client.run(_peak_rss_mib)
    stage_s = {s: sum(r.seconds for r in run.records if r.stage == s) for s in STAGES}
    stage_cpu = {s: sum(r.cpu_seconds for r in run.records if r.stage == s) for s in STAGES}
    det = run.detections[0]
    out = {
        "fraction": fraction,
        "km2": round(km2, 2),
        "side_px": side,
        "tiles": len(run.grids[0]),
        "workers": workers,
        "wall_s": round(wall, 1),
        "km2_per_s": round(km2 / wall, 3),
        "stage_task_s": {s: round(v, 1) for s, v in stage_s.items()},
        "stage_cpu_s": {s: round(v, 1) for s, v in stage_cpu.items()},
        "stage_km2_per_task_s": {s: round(km2 / v, 3) if v else None for s, v in stage_s.items()},
        "merge_s": round(det.seconds, 1),
        "peak_rss_mib": round(max(rss.values()), 0),
        "polygons": det.n_polygons,
        "mining_ha": round(det.polygon_area_ha, 1),
    }
    shutil.rmtree(work, ignore_errors=True)
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| size | km² | tiles | workers | wall s | km²/s | composite | detect | polygons "
        "| merge s | detect task s (CPU s) | peak RSS/worker MiB |\n|" + " --- |" * 12
    )
    lines = [head]
    for r in rows:
        k = r["stage_km2_per_task_s"]
        lines.append(
            f"| 1/{r['fraction']} | {r['km2']:,.0f} | {r['tiles']} | {r['workers']} | "
            f"{r['wall_s']:,.0f} | {r['km2_per_s']:.2f} | {k['composite']} | {k['detect']} | "
            f"{k['polygons']} | {r['merge_s']} | {r['stage_task_s']['detect']} "
            f"({r.get('stage_cpu_s', {}).get('detect', '-')}) | {r['peak_rss_mib']:,.0f} |"
        )
    return "\n".join(lines)


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    """Scaling with area and workers, and the department's extrapolated time per period."""
    out = []
    by = {(r["fraction"], r["workers"]): r for r in rows}
    for w in sorted({r["workers"] for r in rows}):
        runs = sorted((r for r in rows if r["workers"] == w), key=lambda r: r["km2"])
        tiled = [r for r in runs if r["tiles"] > 1] or runs
        if len(tiled) > 1:  # one-tile runs read no halo: compare sizes cut into tiles
            base = tiled[0]["wall_s"] / tiled[0]["km2"]
            ratios = ", ".join(
                f"1/{r['fraction']}: {r['wall_s'] / r['km2'] / base:.2f}" for r in tiled
            )
            out.append(
                f"{w} worker(s): seconds per km² relative to the smallest tiled size: {ratios}"
            )
        if len(runs) > 1:
            mem = ", ".join(f"1/{r['fraction']}: {r['peak_rss_mib']:,.0f}" for r in runs)
            out.append(f"{w} worker(s): peak RSS per worker (MiB): {mem}")
        big = runs[-1]
        hours = DEPARTMENT_KM2 / big["km2_per_s"] / 3600
        out.append(
            f"{w} worker(s): Madre de Dios per period at the 1/{big['fraction']} rate "
            f"({big['km2_per_s']:.2f} km²/s): {hours:,.1f} h"
        )
    for f in sorted({r["fraction"] for r in rows}):
        if (f, 1) in by and (f, 2) in by:
            out.append(
                f"1/{f}: 2 workers are {by[(f, 1)]['wall_s'] / by[(f, 2)]['wall_s']:.2f}x one"
            )
    return out


def main() -> None:
    """Run the sizes and worker counts asked for; print the table and the summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 64, 16],
                   help="fractions of Madre de Dios (64 = 1/64)")  # fmt: skip
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--tile-size", type=int, default=1792, help="tile core side (px)")
    p.add_argument("--tta", help="test-time views (default: the card's)")
    p.add_argument(
        "--model",
        help="model card (default: the shipped model); 'bright' for the tiny bright-sediment "
        "detector of asmspotter.scale.synthetic with the shipped model's tiling (it maps the "
        "synthetic patches, so the polygon stages see dense mining)",
    )
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="asmspotter-e2e-"))
    card = None if args.model is None else Path(args.model)
    if args.model == "bright":
        from asmspotter.scale.synthetic import bright_model_card

        card = bright_model_card(base / "model", tile_size=512, overlap=64)
    rows = []
    try:
        for fraction in sorted(args.sizes, reverse=True):
            for workers in args.workers:
                row = run_one(fraction, workers, args.tile_size, args.tta, base, card)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(_table(rows))
    print("\n".join(_summary(rows)))
    print(f"load average at the end: {os.getloadavg()}, CPUs: {os.cpu_count()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
