"""Tiled, blended, streaming inference over rasters of any size.

The raster is processed in rows of overlapping tiles (``tile_size`` with ``overlap``
pixels shared by neighbours). Each tile's probabilities are weighted by a window that
ramps linearly to near zero across the overlap and the weighted sums are normalised, so
tile edges leave no seams. Each tile's probabilities are the average over test-time views
(see :func:`asmspotter.detect.model.view_probabilities`). At most two rows of tiles (tile
height x raster width) are held in memory, the one on the model and the next one, read by a
background thread meanwhile; the blending sums stay on the model's device (the GPU when
there is one) and finished rows are handed back in order, so peak memory does not grow
with the raster's height and only a strip of it grows with its width.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from asmspotter.detect.model import MiningNet

#: ``read_rows(r0, r1)`` -> (model input (bands, r1-r0, width) float32, valid (r1-r0, width)).
RowReader = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length`` with the given overlap (all inside)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(size: int, overlap: int) -> np.ndarray:
    """1-D blending weights: a linear ramp over ``overlap`` pixels at each end, 1 inside."""
    i = np.arange(size, dtype=np.float32) + 0.5
    if overlap <= 0:
        return np.ones(size, np.float32)
    ramp = np.minimum(i, size - i) / float(overlap)
    return np.clip(ramp, 1.0 / (2 * overlap), 1.0).astype(np.float32)


def default_batch_size(device: str) -> int:
    """Tiles per forward pass when none is given: 16 on CUDA, 4 on the CPU."""
    return 16 if device.startswith("cuda") else 4


@dataclass(frozen=True)
class Strip:
    """A finished block of output rows.

    Attributes:
        row: first row of the block in the raster.
        prob: float32 (rows, cols) probabilities, NaN where no-data.
        valid: bool (rows, cols) valid-data mask.

    """

    row: int
    prob: np.ndarray
    valid: np.ndarray


def _autocast(device: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _probabilities(model: MiningNet, x: Any, device: str, views: str = "none") -> Any:
    """Probabilities (n, rows, cols) as a float32 tensor on ``device`` for a tensor batch."""
    import torch

    from asmspotter.detect.model import view_probabilities

    with torch.inference_mode(), _autocast(device):
        return view_probabilities(model, x, views)


class _Blend:
    """Weighted sums of tile probabilities over one row of tiles, kept on ``device``.

    ``num`` and ``den`` cover the rows ``base .. base + tile height`` of the raster; rows
    above a new row of tiles are finished and leave through :meth:`advance`.
    """

    def __init__(self, th: int, tw: int, width: int, overlaps: tuple[int, int], device: str):
        import torch

        self.th, self.tw = th, tw
        with torch.inference_mode():
            wy, wx = blend_window(th, overlaps[0]), blend_window(tw, overlaps[1])
            self.weight = torch.from_numpy(np.outer(wy, wx)).to(device)
            self.num = torch.zeros((th, width), dtype=torch.float32, device=device)
            self.den = torch.zeros((th, width), dtype=torch.float32, device=device)
        self.valid = np.zeros((th, width), bool)
        self.base = 0

    def flush(self, n: int) -> Strip:
        """Return the first ``n`` rows as a finished strip."""
        import torch

        with torch.inference_mode():
            p = (self.num[:n] / self.den[:n]).cpu().numpy()
        v = self.valid[:n].copy()
        return Strip(self.base, np.where(v, p, np.float32(np.nan)).astype(np.float32), v)

    def advance(self, row: int) -> Strip | None:
        """Move the window down to start at ``row``; return the rows it leaves, if any."""
        import torch

        if row <= self.base:
            return None
        shift = row - self.base
        done = self.flush(shift)
        with torch.inference_mode():
            self.num.copy_(torch.roll(self.num, -shift, 0))
            self.den.copy_(torch.roll(self.den, -shift, 0))
            self.num[self.th - shift :] = 0
            self.den[self.th - shift :] = 0
        self.base = row
        return done

    def add(self, cols: list[int], probs: torch.Tensor) -> None:
        """Add the probabilities of the tiles starting at ``cols`` (inference mode)."""
        for c, p in zip(cols, probs, strict=True):
            self.num[:, c : c + self.tw] += p * self.weight
            self.den[:, c : c + self.tw] += self.weight


def blended_strips(
    read_rows: RowReader,
    height: int,
    width: int,
    model: MiningNet,
    *,
    tile_size: int = 512,
    overlap: int = 64,
    device: str = "cpu",
    batch_size: int = 4,
    views: str = "none",
    on_tile: Callable[[int], None] | None = None,
) -> Iterator[Strip]:
    """Run the model over a raster in overlapping tiles and yield finished rows in order.

    Each row of tiles is read on a background thread while the previous one is on the
    model, moved to ``device`` once, cut into tiles there, and the weighted sums of the
    blending are kept on ``device`` too: only finished rows come back to the CPU.

    Args:
        read_rows: ``read_rows(r0, r1)`` returns (model input (bands, r1-r0, width) float32,
            valid mask (r1-r0, width)). It is called from one background thread, in order.
        height: raster rows.
        width: raster columns.
        model: the network (eval mode, on ``device``).
        tile_size: tile side in px.
        overlap: px shared by neighbouring tiles (blended).
        device: torch device.
        batch_size: tiles per forward pass.
        views: test-time views averaged per tile (a key of
            :data:`~asmspotter.detect.card.VIEW_SETS`).
        on_tile: called with the number of tiles done after each batch (progress).

    Yields:
        :class:`Strip` blocks covering rows 0..height in order.

    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    th, tw = min(tile_size, height), min(tile_size, width)
    rows = tile_starts(height, tile_size, overlap)
    cols = tile_starts(width, tile_size, overlap)
    overlaps = (overlap if height > tile_size else 0, overlap if width > tile_size else 0)
    blend = _Blend(th, tw, width, overlaps, device)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asmspotter-read") as pool:
        pending = pool.submit(read_rows, rows[0], rows[0] + th)
        for k, r in enumerate(rows):
            x, v = pending.result()
            if k + 1 < len(rows):
                pending = pool.submit(read_rows, rows[k + 1], rows[k + 1] + th)
            done = blend.advance(r)
            if done is not None:
                yield done
            blend.valid[:] = v
            with torch.inference_mode():
                xs = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
            for i in range(0, len(cols), batch_size):
                cs = cols[i : i + batch_size]
                with torch.inference_mode():
                    tiles = torch.stack([xs[:, :, c : c + tw] for c in cs])
                    blend.add(cs, _probabilities(model, tiles, device, views))
                if on_tile:
                    on_tile(len(cs))
    yield blend.flush(height - blend.base)


def predict_array(
    model: MiningNet,
    x: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    tile_size: int = 512,
    overlap: int = 64,
    device: str = "cpu",
    batch_size: int | None = None,
    views: str = "none",
) -> np.ndarray:
    """Blended tiled probabilities for an in-memory model input (bands, rows, cols).

    ``views`` are the test-time views averaged per tile (see :func:`blended_strips`).

    Returns:
        float32 (rows, cols), NaN where ``valid`` is False.

    """
    h, w = x.shape[1:]
    ok = np.ones((h, w), bool) if valid is None else valid

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        return x[:, r0:r1], ok[r0:r1]

    out = np.empty((h, w), np.float32)
    bs = batch_size or default_batch_size(device)
    for s in blended_strips(
        read,
        h,
        w,
        model,
        tile_size=tile_size,
        overlap=overlap,
        device=device,
        batch_size=bs,
        views=views,
    ):
        out[s.row : s.row + s.prob.shape[0]] = s.prob
    return out
