"""Command-line options that several sub-commands share, defined once."""

from __future__ import annotations

import argparse


def add_catalogue(p: argparse.ArgumentParser) -> None:
    """Add ``--catalogue`` (the region catalogue to read)."""
    p.add_argument("--catalogue", help="catalogue YAML file (default: data/regions.yaml)")


def add_period(p: argparse.ArgumentParser, what: str = "period id") -> None:
    """Add ``--period``/``-p`` (repeatable; default: all of the region's periods)."""
    p.add_argument(
        "--period",
        "-p",
        action="append",
        metavar="P",
        help=f"{what}; repeat for several (default: all of the region's periods)",
    )


def add_model(p: argparse.ArgumentParser, device: bool = True) -> None:
    """Add ``--model`` and, unless ``device`` is False, ``--device`` (inference)."""
    p.add_argument("--model", help="model name in data/models or a card path")
    if device:
        p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def add_precision(p: argparse.ArgumentParser) -> None:
    """Add ``--precision`` (what the network computes in)."""
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="what the network computes in: bf16 is about twice as fast on CPUs with native "
        "bf16 (AVX512-BF16, AMX) and on GPUs, and much slower on other CPUs; auto (default) "
        "takes bf16 where it is native, fp32 elsewhere",
    )


def add_tta(p: argparse.ArgumentParser, default_text: str) -> None:
    """Add ``--tta`` (test-time views averaged by the model)."""
    from asmspotter.detect.card import VIEW_SETS

    p.add_argument(
        "--tta",
        choices=tuple(VIEW_SETS),
        help=(
            "test-time views averaged per tile: none (one pass), rot4 (the four 90-degree "
            f"rotations, 4 passes), d4 (rotations and mirror images, 8 passes); {default_text}"
        ),
    )


def add_online(p: argparse.ArgumentParser) -> None:
    """Add ``--online`` (a local region whose scenes are missing may search its STAC API)."""
    p.add_argument(
        "--online",
        action="store_true",
        help="let a local region whose scenes are missing search its STAC API instead "
        "(without it only regions whose catalogue entry says `fallback: stac` do, saying why)",
    )
