"""The multiple-instance loss that trains a pixel network from chip labels.

The network outputs a pixel logit map of a 2 x 2 mosaic of chips; for each quadrant (chip)
the mean of the top ``topk_fraction`` of its pixel logits (the chip-score rule,
:func:`asmspotter.detect.scoring.topk_mean`) is supervised by the chip label (binary
cross-entropy). Every pixel of a non-mining chip is additionally pushed to "not mining".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asmspotter.detect.chips import CHIP_SIZE
from asmspotter.detect.scoring import topk_mean


def mil_loss(
    logits: torch.Tensor, labels: torch.Tensor, topk_fraction: float, neg_pixel_weight: float
) -> torch.Tensor:
    """MIL loss of mosaic logits (b, 1, 96, 96) against quadrant labels (b, 4)."""
    b = logits.shape[0]
    s = CHIP_SIZE
    q = logits.view(b, 2, s, 2, s).permute(0, 1, 3, 2, 4).reshape(b * 4, s, s)
    y = labels.reshape(-1).float()
    pooled = topk_mean(q, topk_fraction)
    loss = F.binary_cross_entropy_with_logits(pooled, y)
    neg = y == 0
    if neg_pixel_weight > 0 and bool(neg.any()):
        qn = q[neg]
        loss = loss + neg_pixel_weight * F.binary_cross_entropy_with_logits(
            qn, torch.zeros_like(qn)
        )
    return loss
