"""Loading a model: its card, its weights, and the check that they agree.

The one loader of the package: inference (:mod:`asmspotter.detect.inference`) and chip
evaluation (:mod:`asmspotter.detect.evaluate`) both get their network here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asmspotter.errors import DataError, InputError

if TYPE_CHECKING:
    from torch import nn

    from asmspotter.detect.card import ModelCard
    from asmspotter.detect.model import MiningNet


@dataclass(frozen=True)
class Detector:
    """A loaded model with its card.

    Attributes:
        model: the network (eval mode, on ``device``).
        card: its card.
        card_path: where the card was read from.
        device: ``cuda`` or ``cpu``.
        precision: what the forward pass runs at, ``fp32`` or ``bf16`` (see
            :mod:`asmspotter.detect.runtime`).

    """

    model: MiningNet
    card: ModelCard
    card_path: Path
    device: str
    precision: str = "fp32"


def pick_device(device: str | None = None) -> str:
    """Return ``device``, checked, or ``cuda`` when available, else ``cpu``.

    Raises:
        InputError: ``device`` is not a torch device, or names one this machine lacks (CUDA
            without a CUDA device, a CUDA index past the last device, MPS off macOS).

    """
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(
            f"--device {device}: not a torch device (use cpu, cuda or cuda:N)"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(
                f"--device {device}: torch sees no CUDA device on this machine "
                "(use --device cpu, or leave --device out to use CUDA only when present)"
            )
        if dev.index is not None and dev.index >= count:
            raise InputError(
                f"--device {device}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available on this machine")
    return device


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every batch normalisation into the convolution before it, in place.

    In eval mode a batch normalisation is a per-channel scale and shift, which the
    convolution's weights and bias can carry: the network computes the same function (to
    float32 rounding) with one pass over each activation less, about 15 % less CPU time.
    Only for inference: the folded network no longer trains as the original does.

    Returns:
        ``model``.

    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return model


def load_detector(
    model: str | Path | None = None,
    device: str | None = None,
    precision: str | None = None,
    fold: bool = True,
) -> Detector:
    """Load the shipped (or named) model and its card, and check that they agree.

    The process's allocator is tuned for the network first
    (:func:`asmspotter.detect.runtime.tune_allocator`), and the network's batch
    normalisations are folded into its convolutions (:func:`fold_batch_norm`) unless
    ``fold`` is False (a network to train further keeps them). A folded network that runs
    fp32 on the CPU is then run with fused oneDNN convolutions
    (:class:`asmspotter.detect.fused.FusedMiningNet`: the same probabilities to about 1e-7,
    about 1.3x faster) where :func:`asmspotter.detect.fused.can_fuse` allows.

    Args:
        model: model name in ``data/models`` or a card path (default: the shipped one).
        device: torch device (default: cuda when available, else cpu).
        precision: ``auto`` (default: bf16 where the device computes it natively, else
            fp32), ``fp32`` or ``bf16``.
        fold: fold the batch normalisations into the convolutions and fuse them
            (inference only).

    Raises:
        InputError: ``device`` is not a device of this machine (before the weights are read),
            or an unknown precision.
        DataError: card or weights missing, corrupt, or not matching the card.

    """
    from asmspotter.detect.card import load_card, weights_path
    from asmspotter.detect.model import load_weights
    from asmspotter.detect.runtime import resolve_precision, tune_allocator

    tune_allocator()
    card, cpath = load_card(model)
    dev = pick_device(device)
    try:
        prec = resolve_precision(precision, dev)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    net = load_weights(weights_path(card, cpath), map_location=dev).to(dev)
    if tuple(net.bands) != tuple(card.bands):
        raise DataError(
            f"model weights take bands {', '.join(net.bands)} but the card {cpath} says "
            f"{', '.join(card.bands)}"
        )
    import torch

    if fold:
        net = fold_batch_norm(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        from asmspotter.detect.fused import FusedMiningNet, can_fuse

        if prec == "fp32" and can_fuse(net, dev):
            net = FusedMiningNet(net)
    return Detector(net, card, cpath, dev, prec)
