"""Augmentation of training chips: 2 x 2 mosaics, flips and rotations, display stretches.

Each training sample is a 2 x 2 mosaic of four chips (96 x 96 px), so the network sees
context across chip borders as it will inside large rasters. Chips are flipped and rotated
one by one, and each mosaic gets a random display stretch (gain, gamma, offset,
per-channel colour jitter, haze, noise, uint8 quantisation and saturation), so that the
chips' scaling, the La Pampa visualisation stretch and Earth Search's ``visual`` asset all
look familiar. :data:`FIXED_STRETCHES` are fixed renderings the test chips are also scored
under (a robustness check in the model card).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from asmspotter.detect.chips import CHIP_SIZE, reflectance_max


def random_stretch(
    t: torch.Tensor, gen: torch.Generator, strength: float = 1.0, keep: float = 0.35
) -> torch.Tensor:
    """Apply a random display stretch to images in [0, 1] (n, bands, rows, cols), one per image.

    The stretch models other visualisations of the same reflectance: overall gain,
    gamma, per-channel gain and offset, haze, noise, saturation at 1 and uint8 steps.

    Args:
        t: images in [0, 1].
        gen: torch generator.
        strength: scale of the random gain, gamma, colour and offset changes.
        keep: probability that an image is left unchanged.

    """
    n, c = t.shape[:2]
    dev = t.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, device=dev)

    keep_on = (torch.rand(n, 1, 1, 1, generator=gen, device=dev) < keep).float()
    gain = torch.exp(u(math.log(0.7), math.log(1.7), n, 1, 1, 1) * strength)
    gamma = torch.exp(u(math.log(0.7), math.log(1.4), n, 1, 1, 1) * strength)
    chan = torch.exp(0.08 * strength * torch.randn(n, c, 1, 1, generator=gen, device=dev))
    off = u(-0.04, 0.10, n, 1, 1, 1) * strength + 0.02 * torch.randn(
        n, c, 1, 1, generator=gen, device=dev
    )
    haze_on = (torch.rand(n, 1, 1, 1, generator=gen, device=dev) < 0.3).float()
    haze = haze_on * u(0.0, 0.2, n, 1, 1, 1)
    haze_col = u(0.5, 0.9, n, c, 1, 1)
    s = torch.clamp(t, 1e-4, 1.0) ** gamma * gain * chan + off
    s = s * (1 - haze) + haze * haze_col
    s = s + 0.01 * torch.randn(s.shape, generator=gen, device=dev)
    s = torch.round(torch.clamp(s, 0.0, 1.0) * 255.0) / 255.0
    return keep_on * t + (1 - keep_on) * s


def _dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flip / 90-degree rotation per image of (n, c, s, s)."""
    k = torch.randint(0, 8, (x.shape[0],), generator=gen)
    out = x.clone()
    for v in range(8):
        sel = (k == v).nonzero().flatten()
        if len(sel):
            y = torch.rot90(x[sel], v % 4, dims=(2, 3))
            out[sel] = torch.flip(y, dims=(3,)) if v >= 4 else y
    return out


def make_batch(
    images: np.ndarray,
    idx: np.ndarray,
    gen: torch.Generator,
    augment: bool = True,
    stretch_strength: float = 1.0,
    stretch_keep: float = 0.35,
) -> torch.Tensor:
    """Build mosaics of model input from chip indexes.

    The chips are brought to [0, 1] (uint8 / 255, or reflectance / its clip), augmented
    there, and scaled back to reflectance.

    Args:
        images: (n, 48, 48, bands) chips, uint8 (PNG galleries) or float32 reflectance.
        idx: (b, 4) chip indexes, quadrants in row-major order.
        gen: torch generator.
        augment: apply flips, rotations and stretches.
        stretch_strength: see :func:`random_stretch`.
        stretch_keep: see :func:`random_stretch`.

    Returns:
        float32 (b, bands, 96, 96) model input (reflectance; chips' scaling for uint8).

    """
    b, c = idx.shape[0], images.shape[-1]
    top = reflectance_max(images)
    x = torch.from_numpy(images[idx.reshape(-1)]).permute(0, 3, 1, 2).float()
    x = x / 255.0 if images.dtype == np.uint8 else x.clamp(0.0, top) / top
    if augment:
        x = _dihedral(x, gen)
    s = CHIP_SIZE
    x = x.view(b, 2, 2, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 2 * s, 2 * s)
    if augment:
        x = random_stretch(x, gen, stretch_strength, stretch_keep)
    return x * top


#: Fixed alternative stretches the test chips are also scored under (robustness check).
FIXED_STRETCHES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "chips (value/3000)": lambda t: t,
    "visual-like (L2A TCI: 1.5x brighter)": lambda t: np.clip(t * 1.5, 0, 1),
    "la-pampa-like (gamma 0.75, +0.05 offset)": lambda t: np.clip(t**0.75 + 0.05, 0, 1),
}


def stretched(images: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Return uint8 chips re-rendered through ``f`` (a stretch of values in [0, 1])."""
    t = images.astype(np.float32) / 255.0
    return np.round(np.clip(f(t), 0, 1) * 255).astype(np.uint8)
