"""``asmspotter train``: rebuild the mining model's weights and card from the shared chips."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmspotter.commands import _args
from asmspotter.detect import DEFAULT_MODEL

if TYPE_CHECKING:
    from asmspotter.detect.recipe import TrainConfig


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
            "steps of a tiny network for tests and CI. --cv K instead cross-validates the recipe "
            "over the sample sets outside the held-out categories (K folds, one network per "
            "fold, nothing written to data/models) to compare recipes; --set changes the "
            "recipe, e.g. --set set_balance=0 --set lr=0.001. --chips DIR --bands trains on "
            "other galleries, e.g. GeoTIFF galleries of the ten L2A bands. --recipe reads a "
            "recipe file (JSON of recipe fields) or the recipe of a trained model, e.g. "
            "`asmspotter train --chips DIR --recipe asm-l1c6-v1` rebuilds that model; "
            "--cv-by place deals geographic blocks (from the chips.csv beside the galleries) "
            "into the folds, and --record MODEL adds the figures to that model's card."
        ),
    )
    p.add_argument("--out", help="output folder (default: data/models, or reports/models-smoke)")
    p.add_argument(
        "--chips",
        help="folder of galleries, PNG or GeoTIFF (default: shared data amw/chips)",
    )
    p.add_argument(
        "--bands",
        help="comma-separated input bands of the network, picked from the galleries' bands "
        "(default: red,green,blue); other band sets are normalised with the training chips' "
        "mean and deviation",
    )
    p.add_argument(
        "--recipe",
        metavar="FILE|MODEL",
        help="start from a recipe: a JSON file of recipe fields, or a model name or card whose "
        "recorded recipe (training.config) is used; the other options change it",
    )
    p.add_argument(
        "--init",
        metavar="MODEL",
        help="start the network from this model's weights (name or card path): its first "
        "layer is extended to the input bands, new bands starting at zero",
    )
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
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        dest="assignments",
        help="change one recipe setting (a TrainConfig field, e.g. set_balance=0.5); repeatable",
    )
    p.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="cross-validate the recipe over K folds of sample sets instead of training the "
        "shipped model; writes crossval.json to --out (default reports/crossval)",
    )
    p.add_argument(
        "--cv-by",
        choices=("sample_set", "place"),
        default="sample_set",
        help="how --cv deals chips into folds: whole sample sets (default) or geographic "
        "blocks read from the chips.csv beside the galleries (a site's chips stay together; "
        "the recipe's held-out place fold is left out)",
    )
    p.add_argument(
        "--record",
        metavar="MODEL",
        help="with --cv: also write the figures into this model's card (metrics.crossval)",
    )
    p.add_argument(
        "--cv-specificity",
        type=float,
        default=0.97,
        metavar="S",
        help="specificity of the per-fold operating point (default 0.97, the chip target)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and report."""
    from asmspotter.detect.runtime import tune_allocator

    tune_allocator()  # before torch allocates anything

    from dataclasses import replace

    from asmspotter import layout, paths
    from asmspotter.detect.recipe import TrainConfig, config_with, read_recipe
    from asmspotter.detect.train import check_device, train
    from asmspotter.errors import InputError

    if args.recipe:
        cfg = read_recipe(args.recipe)
        if args.smoke:  # the recipe, a few steps
            cfg = replace(cfg, epochs=1, max_steps=5, smoke=True)
    else:
        cfg = TrainConfig.smoke_config() if args.smoke else TrainConfig()
    changes: dict[str, Any] = {}
    for key in ("epochs", "seed", "threads", "name", "tta", "init"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if args.bands is not None:
        changes["bands"] = tuple(b.strip() for b in args.bands.split(",") if b.strip())
        _check_bands(changes["bands"])
    try:
        cfg = replace(cfg, **changes)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    cfg = config_with(cfg, args.assignments)
    if not 0.0 < args.cv_specificity < 1.0:
        raise InputError(f"--cv-specificity must lie between 0 and 1, got {args.cv_specificity}")
    if args.cv is not None and args.cv < 2:
        raise InputError(f"--cv needs at least 2 folds, got {args.cv}")
    if args.record and args.cv is None:
        raise InputError("--record MODEL goes with --cv K (it records the cross-validation)")
    check_device(args.device)  # before any folder is created
    chips = Path(args.chips) if args.chips else paths.require_shared_data("amw", "chips")
    if args.cv is not None:
        return _cross_validate(args, cfg, chips)
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = layout.smoke_models_dir()
    else:
        out = paths.models_dir()
    paths.writable_dir(out)
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


def _check_bands(bands: tuple[str, ...]) -> None:
    """Refuse a --bands list that names no band or a band that is not a canonical name."""
    from asmspotter.bands import CANONICAL_BANDS
    from asmspotter.errors import InputError

    unknown = [b for b in bands if b not in CANONICAL_BANDS]
    if not bands or unknown:
        raise InputError(
            f"--bands: {', '.join(unknown) or 'no band'} is not a band name; use names of "
            + ", ".join(CANONICAL_BANDS)
        )


def _cross_validate(args: argparse.Namespace, cfg: TrainConfig, chips: Path) -> int:
    """Run ``train --cv K``: cross-validate the recipe and write its record."""
    from asmspotter import layout, paths
    from asmspotter.detect.crossval import cross_validate
    from asmspotter.geoio import write_json

    out = paths.writable_dir(Path(args.out) if args.out else layout.crossval_dir())
    result = cross_validate(
        cfg,
        chips,
        k=args.cv,
        specificity=args.cv_specificity,
        device=args.device,
        log=lambda line: print(line, flush=True),
        by=args.cv_by,
    )
    path = write_json(out / layout.CROSSVAL_NAME, result.to_dict())
    print(result.format_table())
    print(f"wrote {path}")
    if args.record:
        from asmspotter.detect.card_text import record_metrics

        card = record_metrics(args.record, "crossval", result.to_dict())
        print(f"recorded the cross-validation in {card}")
    return 0
