"""Galleries of the places a model never saw, and its figures on them.

A model trained with a recipe that splits by place (``split`` ``place``, e.g.
``asm-l1c6-v1``) holds one fold of geographic blocks out of its training and threshold
choice. This script writes that fold's chips, read from the shared galleries and their
``chips.csv``, as galleries of the same layout (uint16 reflectance x 10000) into ``--out``,
then scores them with the model as ``asmspotter evaluate-chips OUT --model M --json`` does
and prints the figures.

Usage::

    .venv/bin/python benchmarks/held_out_places.py --model asm-l1c6-v1 --out /tmp/held-out
        [--chips DIR]   # default: the shared data's multispectral/ folder
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    from asmspotter import paths
    from asmspotter.detect.places import write_held_out_galleries
    from asmspotter.detect.recipe import read_recipe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="asm-l1c6-v1", help="model name or card path")
    ap.add_argument("--out", required=True, help="folder for the held-out galleries")
    ap.add_argument("--chips", help="galleries with their chips.csv (default: shared data)")
    args = ap.parse_args()
    chips = Path(args.chips) if args.chips else paths.require_shared_data("multispectral")
    written = write_held_out_galleries(read_recipe(args.model), chips, args.out)
    for p in written:
        print(f"wrote {p}")
    cmd = [sys.executable, "-m", "asmspotter.cli", "evaluate-chips", args.out]
    out = subprocess.run(cmd + ["--model", args.model, "--json"], check=True, capture_output=True)
    figures = json.loads(out.stdout)
    print(json.dumps({k: v for k, v in figures.items() if k != "files"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
