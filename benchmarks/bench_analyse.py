"""Benchmark: six years of Madre de Dios reference footprints against indigenous territories.

Runs the analysis the way ``asmspotter analyse madre-de-dios --footprints
amw/footprints/mining_2018..2023 --overlays indigenous-territories`` does, once with the
area attribute (Amazon Mining Watch's method) and once with geometric areas, and prints
the wall time of each (reading, analysis, writing). Target: under 10 s on 2 cores.

Usage: .venv/bin/python benchmarks/bench_analyse.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from asmspotter import paths
from asmspotter.analyse import analyse_region, write_analysis
from asmspotter.catalogue import get_region

YEARS = range(2018, 2024)
TARGET_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (best is shown)")
    args = parser.parse_args()
    if not paths.shared_data_available():
        print(
            f"shared data not found at {paths.shared_data_dir()}; set {paths.SHARED_DATA_ENV}",
            file=sys.stderr,
        )
        return 2
    shared = paths.shared_data_dir()
    files = [shared / f"amw/footprints/mining_{y}00.geojson" for y in YEARS]
    region = get_region("madre-de-dios")
    region.outline  # noqa: B018 - load the outline outside the timing (the catalogue caches it)
    worst = 0.0
    for label, attribute in (("area attribute", "Mined area (ha)"), ("geometric", None)):
        best = float("inf")
        for _ in range(max(1, args.repeat)):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                result = analyse_region(
                    region,
                    footprints=files,
                    area_attribute=attribute,
                    overlay_ids=["indigenous-territories"],
                )
                t1 = time.perf_counter()
                write_analysis(result, Path(tmp) / "analysis", crs=region.crs)
                t2 = time.perf_counter()
            best = min(best, t2 - t0)
        layer = result.overlay("indigenous-territories")
        last = result.accounting.figures[-1]
        print(
            f"{label:>15}: {len(result.accounting.periods)} periods, "
            f"{len(result.accounting.pieces)} pieces, {layer.features_in_region} territories; "
            f"cumulative {last.period} = {last.cumulative_ha:,.0f} ha; "
            f"analysis {t1 - t0:.2f} s + writing {t2 - t1:.2f} s = wall {best:.2f} s"
        )
        worst = max(worst, best)
    print(
        f"wall time {worst:.2f} s (target < {TARGET_S:.0f} s): "
        f"{'OK' if worst < TARGET_S else 'TOO SLOW'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
