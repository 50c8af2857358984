"""Benchmark: the Madre de Dios briefing from the reference footprints, kernel start included.

Runs ``asmspotter report madre-de-dios --source reference`` (about 1,000 Amazon Mining Watch
polygons a year, three overlay layers) the way the command does (papermill starts a kernel,
the notebook analyses and draws, nbconvert renders), into a temporary output folder, and
prints the wall time of each run and the size of report.html. With ``--pdf`` it also times
printing the PDF with headless Chromium. Targets: at most 30 s a briefing on the 2-core
machine, report.html under 5 MB.

Usage: .venv/bin/python benchmarks/bench_report.py [--repeat N] [--pdf] [--lang es]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from asmspotter import paths
from asmspotter.report import write_report

TARGET_S = 30.0
TARGET_MB = 5.0


def _cpu_seconds() -> float:
    """User and system time of this process and of its finished children (kernel, browser)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=2, help="briefings to render (best and worst shown)"
    )
    parser.add_argument("--pdf", action="store_true", help="also print each to PDF")
    parser.add_argument("--lang", default="en", help="briefing language")
    args = parser.parse_args()
    if not paths.shared_data_available():
        print(
            f"shared data not found at {paths.shared_data_dir()}; set {paths.SHARED_DATA_ENV}",
            file=sys.stderr,
        )
        return 2
    times, sizes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[paths.OUTPUT_ENV] = str(Path(tmp) / "reports")
        os.environ[paths.CACHE_ENV] = str(Path(tmp) / "cache")
        for i in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), _cpu_seconds()
            result = write_report(
                "madre-de-dios", source="reference", language=args.lang, pdf=args.pdf
            )
            seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
            size = result.html.stat().st_size / 1e6
            pdf = f", report.pdf {result.pdf.stat().st_size / 1e6:.2f} MB" if result.pdf else ""
            print(
                f"run {i + 1}: {seconds:.1f} s wall, {cpu:.1f} s CPU (this process, the kernel "
                f"and the browser), {result.html.name} {size:.2f} MB{pdf}"
            )
            times.append(seconds)
            sizes.append(size)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ok = min(times) <= TARGET_S and max(sizes) < TARGET_MB
    print(
        f"madre-de-dios briefing: best {min(times):.1f} s, worst {max(times):.1f} s "
        f"(target <= {TARGET_S:.0f} s), report.html {max(sizes):.2f} MB "
        f"(target < {TARGET_MB:.0f} MB); "
        f"{os.cpu_count()} CPUs, load average {load:.1f}: {'meets' if ok else 'misses'} the targets"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
