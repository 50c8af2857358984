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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from asmspotter.detect.model import MiningNet

#: ``read_rows(r0, r1)`` -> (model input (bands, r1-r0, width) float32, valid (r1-r0, width)).
RowReader = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Return the tiles along one axis of ``length`` px: (start, end) pairs, in order.

    Tiles start every ``tile - overlap`` px (the stride) and end at ``start + tile`` or at
    the raster's end, whichever comes first: a raster no longer than ``tile`` is one tile,
    and the last tile is cut at the raster's end rather than moved back over its neighbour,
    so no more pixels go through the network than the overlap needs. A tile starts only
    where the tile before it does not reach the end.
    """
    stride = tile - overlap
    spans = [(0, min(tile, length))]
    while spans[-1][1] < length:
        start = spans[-1][0] + stride
        spans.append((start, min(start + tile, length)))
    return spans


def blend_window(size: int, overlap: int) -> np.ndarray:
    """1-D blending weights: a linear ramp over ``overlap`` pixels at each end, 1 inside."""
    i = np.arange(size, dtype=np.float32) + 0.5
    if overlap <= 0:
        return np.ones(size, np.float32)
    ramp = np.minimum(i, size - i) / float(overlap)
    return np.clip(ramp, 1.0 / (2 * overlap), 1.0).astype(np.float32)


def default_batch_size(device: str, tile_size: int = 512) -> int:
    """Tiles per forward pass when none is given: 16 (CUDA) or 4 (CPU) tiles of 512² px.

    Larger tiles go fewer at a time, so that a batch holds about as many pixels.
    """
    per_batch = (16 if device.startswith("cuda") else 4) * 512 * 512
    return max(1, per_batch // (tile_size * tile_size))


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


def _probabilities(
    model: MiningNet, x: Any, device: str, views: str = "none", precision: str = "fp32"
) -> Any:
    """Probabilities (n, rows, cols) as a float32 tensor on ``device`` for a tensor batch."""
    import torch

    from asmspotter.detect.model import view_probabilities
    from asmspotter.detect.runtime import autocast

    with torch.inference_mode(), autocast(device, precision):
        return view_probabilities(model, x, views).float()


class _Blend:
    """Weighted sums of tile probabilities over one row of tiles, kept on ``device``.

    ``num`` and ``den`` cover the rows ``base .. base + th`` of the raster (``th``: the
    height of a full tile); rows above a new row of tiles are finished and leave through
    :meth:`advance`. Tiles cut at the raster's end get a window of their own size.
    """

    def __init__(self, th: int, width: int, overlaps: tuple[int, int], device: str):
        import torch

        self.th, self.overlaps, self.device = th, overlaps, device
        self.weights: dict[tuple[int, int], torch.Tensor] = {}
        with torch.inference_mode():
            self.num = torch.zeros((th, width), dtype=torch.float32, device=device)
            self.den = torch.zeros((th, width), dtype=torch.float32, device=device)
        self.valid = np.zeros((th, width), bool)
        self.base = 0

    def weight(self, rows: int, cols: int) -> torch.Tensor:
        """Return the blending window of a ``rows`` x ``cols`` tile (made once per shape)."""
        import torch

        if (rows, cols) not in self.weights:
            wy = blend_window(rows, self.overlaps[0])
            wx = blend_window(cols, self.overlaps[1])
            self.weights[rows, cols] = torch.from_numpy(np.outer(wy, wx)).to(self.device)
        return self.weights[rows, cols]

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

    def add(self, cols: list[tuple[int, int]], probs: torch.Tensor) -> None:
        """Add the probabilities of the tiles spanning ``cols`` (inference mode)."""
        for (c0, c1), p in zip(cols, probs, strict=True):
            w = self.weight(p.shape[0], c1 - c0)
            self.num[: p.shape[0], c0:c1] += p * w
            self.den[: p.shape[0], c0:c1] += w


def _batches(cols: list[tuple[int, int]], batch_size: int) -> list[list[tuple[int, int]]]:
    """Cut a row's tiles into batches of at most ``batch_size`` tiles of one width each."""
    out: list[list[tuple[int, int]]] = []
    for span in cols:
        last = out[-1] if out else None
        if last and len(last) < batch_size and last[0][1] - last[0][0] == span[1] - span[0]:
            last.append(span)
        else:
            out.append([span])
    return out


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
    precision: str = "fp32",
    on_tile: Callable[[int], None] | None = None,
) -> Iterator[Strip]:
    """Run the model over a raster in overlapping tiles and yield finished rows in order.

    The tiles are those of :func:`tile_spans` along each axis. Each row of tiles is read on
    a background thread while the previous one is on the model, moved to ``device`` once,
    cut into tiles there, and the weighted sums of the blending are kept on ``device`` too:
    only finished rows come back to the CPU.

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
        precision: ``fp32`` or ``bf16`` (autocast of the forward pass; the probabilities
            and the blending stay float32).
        on_tile: called with the number of tiles done after each batch (progress).

    Yields:
        :class:`Strip` blocks covering rows 0..height in order.

    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    rows = tile_spans(height, tile_size, overlap)
    cols = tile_spans(width, tile_size, overlap)
    overlaps = (overlap if len(rows) > 1 else 0, overlap if len(cols) > 1 else 0)
    blend = _Blend(rows[0][1], width, overlaps, device)
    batches = _batches(cols, batch_size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="asmspotter-read") as pool:
        pending = pool.submit(read_rows, *rows[0])
        for k, (r0, r1) in enumerate(rows):
            x, v = pending.result()
            if k + 1 < len(rows):
                pending = pool.submit(read_rows, *rows[k + 1])
            done = blend.advance(r0)
            if done is not None:
                yield done
            blend.valid[: r1 - r0] = v
            with torch.inference_mode():
                xs = torch.from_numpy(np.ascontiguousarray(x)).to(device, non_blocking=True)
            for cs in batches:
                with torch.inference_mode():
                    tiles = torch.stack([xs[:, :, c0:c1] for c0, c1 in cs])
                    blend.add(cs, _probabilities(model, tiles, device, views, precision))
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
    precision: str = "fp32",
) -> np.ndarray:
    """Blended tiled probabilities for an in-memory model input (bands, rows, cols).

    ``views`` are the test-time views averaged per tile and ``precision`` the forward
    pass's (see :func:`blended_strips`).

    Returns:
        float32 (rows, cols), NaN where ``valid`` is False.

    """
    h, w = x.shape[1:]
    ok = np.ones((h, w), bool) if valid is None else valid

    def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        return x[:, r0:r1], ok[r0:r1]

    out = np.empty((h, w), np.float32)
    bs = batch_size or default_batch_size(device, tile_size)
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
        precision=precision,
    ):
        out[s.row : s.row + s.prob.shape[0]] = s.prob
    return out
