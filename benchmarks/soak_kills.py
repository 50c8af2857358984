"""Soak test: kill `asmspotter run la-pampa` at random points, re-run, compare with a clean run.

1. A clean run in a fresh cache and output folder gives the reference outputs.
2. Each of ``--kills`` rounds starts `run la-pampa` in the soak folders (with an empty cache
   every other round, so that kills land in fetch too), kills it at a random moment of a
   clean run's duration (kill -9, or SIGTERM every ``--term-every``-th round), then runs it
   again to the end and compares every output with the reference: the composites and the
   detection rasters byte for byte, the polygons (count and area recorded in
   detection.json, which the analysis checks against the files), and the analysis tables
   byte for byte. It also looks for files of unfinished runs left behind after the re-run.

Prints the number of runs, kills, mismatches and leftovers; exits 1 on any mismatch.

    .venv/bin/python benchmarks/soak_kills.py --kills 20 --seed 16 [--no-report]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asmspotter import layout

REGION = "la-pampa"
PERIODS = ("2019", "2021")
#: Names of files and folders of unfinished runs (publish folders, partial files, work
#: files, the detector's staging folders).
LEFTOVER = re.compile(r"^\..+\.(partial|publish|old|work)-|^\.detect-partial-")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def outputs(cache: Path, output: Path) -> dict[str, object]:
    """What a run of la-pampa left that must not depend on interruptions."""
    found: dict[str, object] = {}
    for period in PERIODS:
        comp = layout.composite_files(REGION, period, base=cache)
        det = layout.detection_files(REGION, period, base=output)
        found[f"{period}/composite.tif"] = _sha(comp.tif)
        found[f"{period}/mining_mask.tif"] = _sha(det.mask)
        found[f"{period}/mining_probability.tif"] = _sha(det.probability)
        if det.provenance.is_file():
            results = json.loads(det.provenance.read_text()).get("results", {})
            found[f"{period}/polygons"] = (
                results.get("polygons"),
                round(float(results.get("mining_area_ha_polygons", -1)), 4),
            )
    analysis = layout.analysis_files(REGION, base=output)
    for path in sorted(analysis.folder.glob("*.csv")) if analysis.folder.is_dir() else []:
        found[f"analysis/{path.name}"] = _sha(path)
    return found


def leftovers(*folders: Path) -> list[str]:
    return sorted(
        str(p) for f in folders if f.exists() for p in f.rglob("*") if LEFTOVER.match(p.name)
    )


#: Extra arguments of every run (``--no-report`` from the command line).
EXTRA: list[str] = []


def run(cache: Path, output: Path, kill_after: float | None = None, sig: int = 9) -> float:
    """Run the chain; kill it after ``kill_after`` seconds if given. Returns the seconds."""
    env = {**os.environ, "ASMSPOTTER_CACHE": str(cache), "ASMSPOTTER_OUTPUT": str(output)}
    argv = [sys.executable, "-m", "asmspotter.cli", "run", REGION, "--no-progress", *EXTRA]
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
        proc.wait()
    seconds = time.monotonic() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    if kill_after is None and proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {err}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--term-every", type=int, default=4, help="SIGTERM every n-th kill")
    parser.add_argument("--workdir", type=Path, help="folder for the runs (default: temporary)")
    parser.add_argument("--no-report", action="store_true", help="runs stop after the analysis")
    args = parser.parse_args()
    if args.no_report:
        EXTRA.append("--no-report")
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="asmspotter-soak-"))
    clean_cache, clean_out = work / "clean" / "cache", work / "clean" / "reports"
    duration = run(clean_cache, clean_out)
    reference = outputs(clean_cache, clean_out)
    print(f"clean run: {duration:.1f} s, {len(reference)} outputs compared")
    cache, out = work / "soak" / "cache", work / "soak" / "reports"
    runs, kills, mismatches, left = 1, 0, 0, 0
    for k in range(1, args.kills + 1):
        if k % 2:
            shutil.rmtree(cache, ignore_errors=True)  # kills in fetch too
        at = rng.uniform(0.05, 1.0) * duration
        sig = signal.SIGTERM if k % args.term_every == 0 else signal.SIGKILL
        run(cache, out, kill_after=at, sig=sig)
        runs, kills = runs + 1, kills + 1
        after_kill = leftovers(cache, out)
        run(cache, out)
        runs += 1
        got = outputs(cache, out)
        differ = sorted(key for key in reference if got.get(key) != reference[key])
        still = leftovers(cache, out)
        mismatches += bool(differ)
        left += bool(still)
        print(
            f"kill {k:2d}: {sig.name} at {at:5.1f} s; left by the kill: {len(after_kill)}; "
            f"after the re-run: {len(still)} leftovers, "
            + (f"MISMATCH {differ}" if differ else "outputs equal the clean run's")
        )
    print(f"runs {runs}, kills {kills}, mismatches {mismatches}, re-runs with leftovers {left}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
