"""``asmspotter train``: rebuild the mining model's weights and card from the shared chips."""

from __future__ import annotations

import argparse
from typing import Any

from asmspotter.commands import _args
from asmspotter.detect import DEFAULT_MODEL


def add_parser(subparsers: Any) -> None:
    """Register the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train",
        help="train the mining model from the shared chips (seeded, reproducible)",
        description=(
            "Train the mining segmentation model from Amazon Mining Watch's labelled chips "
            "(shared data amw/chips) by multiple-instance learning, choose its chip threshold on "
            "the validation sample sets, measure it on the held-out categories and on the real "
            "La Pampa 2019 scene, and write the weights and model card to data/models/ (or "
            "--out). Seeded: the same command rebuilds the shipped weights. --smoke runs a few "
            "steps of a tiny network for tests and CI."
        ),
    )
    p.add_argument("--out", help="output folder (default: data/models, or reports/models-smoke)")
    p.add_argument("--chips", help="folder of gallery PNGs (default: shared data amw/chips)")
    p.add_argument("--smoke", action="store_true", help="train a tiny model for a few steps")
    p.add_argument("--epochs", type=int, help="passes over the training chips")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    p.add_argument(
        "--device",
        default="cpu",
        help="where the training steps run: cpu (default, reproduces the shipped weights) or cuda",
    )
    p.add_argument("--name", help=f"model name (default {DEFAULT_MODEL})")
    _args.add_tta(
        p, "the shipped model's setting, used for its threshold and figures (default rot4)"
    )
    p.add_argument("--no-validate", action="store_true", help="skip the La Pampa 2019 validation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and report."""
    from dataclasses import replace
    from pathlib import Path

    from asmspotter import paths
    from asmspotter.detect.train import TrainConfig, train
    from asmspotter.errors import InputError

    cfg = TrainConfig.smoke_config() if args.smoke else TrainConfig()
    changes: dict[str, Any] = {}
    for key in ("epochs", "seed", "threads", "name", "tta"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if changes.get("epochs", 1) < 1:
        raise InputError("--epochs must be at least 1")
    cfg = replace(cfg, **changes)
    chips = Path(args.chips) if args.chips else paths.require_shared_data("amw", "chips")
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = paths.output_dir() / "models-smoke"
    else:
        out = paths.project_data_dir() / "models"
    result = train(
        cfg,
        chips,
        out,
        log=lambda line: print(line, flush=True),
        validate_la_pampa=not args.no_validate,
        device=args.device,
    )
    print(f"wrote {result.weights} and {result.card} in {result.seconds:.0f} s")
    test = result.metrics.get("test_chips")
    if test:
        print(
            f"held-out chips: sensitivity {test['sensitivity']:.3f}, "
            f"specificity {test['specificity']:.3f} ({test['n_pos']} mining, {test['n_neg']} not)"
        )
    return 0
