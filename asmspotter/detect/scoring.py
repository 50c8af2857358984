"""The chip-score rule: one score per 48 x 48 chip from the network's pixel probabilities.

A chip's score is the mean of the top ``topk_fraction`` of its pixel probabilities
(:func:`topk_mean`), the same pooling that supervises the chip labels in training
(:func:`asmspotter.detect.loss.mil_loss`). Training, chip evaluation and cross-validation
all score chips with :func:`chip_scores`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from asmspotter.bands import DISPLAY_REFLECTANCE_MAX
from asmspotter.detect.chips import reflectance_max

if TYPE_CHECKING:
    import torch

    from asmspotter.detect.model import MiningNet


def topk_mean(prob: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the top ``fraction`` of values over the last two dims of (n, rows, cols)."""
    import torch

    flat = prob.reshape(prob.shape[0], -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return torch.topk(flat, k, dim=1).values.mean(dim=1)


def chip_scores(
    model: MiningNet,
    chips: np.ndarray,
    topk_fraction: float,
    padding: int = 24,
    batch_size: int = 256,
    device: str = "cpu",
    views: str = "none",
    clip: float | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Score chips (n, 48, 48, bands) whose bands are the model's.

    uint8 chips are read in the PNG galleries' value/3000 scaling, float chips as surface
    reflectance clipped at ``clip`` (the card's ``reflectance_max``; default
    :func:`~asmspotter.detect.chips.reflectance_max` of the chips). Each chip is
    reflect-padded by ``padding`` px, run through the model (averaged over the
    test-time ``views``, see :data:`~asmspotter.detect.card.VIEW_SETS`), and the pixel
    probabilities of the chip itself are reduced with :func:`topk_mean`. The forward pass
    runs at ``precision`` (``fp32`` or ``bf16``); the probabilities are float32.

    Returns:
        float32 (n,) chip scores in [0, 1].

    """
    import torch
    import torch.nn.functional as F

    from asmspotter.detect.model import view_probabilities
    from asmspotter.detect.runtime import autocast

    out = np.zeros(len(chips), np.float32)
    top = reflectance_max(chips) if clip is None else clip
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(chips), batch_size):
            x = torch.from_numpy(chips[i : i + batch_size]).to(device)
            if chips.dtype == np.uint8:
                x = x.permute(0, 3, 1, 2).float() * (DISPLAY_REFLECTANCE_MAX / 255.0)
            else:
                x = x.permute(0, 3, 1, 2).float().clamp(0.0, top)
            if padding:
                x = F.pad(x, (padding,) * 4, mode="reflect")
            with autocast(device, precision):
                p = view_probabilities(model, x, views).float()
            if padding:
                p = p[:, padding:-padding, padding:-padding]
            out[i : i + len(x)] = topk_mean(p, topk_fraction).cpu().numpy()
    return out
