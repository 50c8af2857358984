"""Whole departments on a Dask cluster: the chain's heavy stages as tasks per tile.

A tiled run cuts a region's pixel grid into tiles (:mod:`~asmspotter.scale.grid`), and runs
per tile, as ``dask.distributed`` tasks, the composite (:mod:`~asmspotter.scale.composites`),
the detection over the tile and the halo its detector needs
(:mod:`~asmspotter.scale.detection`) and the vectorising with per-tile figures
(:mod:`~asmspotter.scale.polygons`). Per period it then writes what a single-process run
writes (:mod:`~asmspotter.scale.merge`): polygons merged across tile borders (one polygon,
counted once), probability and mask COGs from VRTs over the tiles' COGs
(:mod:`~asmspotter.scale.mosaic`), and the composite. Each tile's outputs are written
atomically with a record whose key hashes their inputs and settings
(:mod:`~asmspotter.scale.records`): a killed run, or one that lost a worker, resumes where it
stopped with the same result. Memory per task is set by the tile size, never by the region.

The cluster (:mod:`~asmspotter.scale.cluster`) is a ``LocalCluster`` sized to the machine or
an existing one (``--scheduler`` / ``ASMSPOTTER_SCHEDULER``). :func:`asmspotter.chain.run_region`
drives it when given a :class:`ClusterSpec`, and analyses the merged outputs as usual.
:mod:`~asmspotter.scale.compare` checks that two runs' outputs give the same analysis
(``python -m asmspotter.scale.compare REGION OUTPUT_A OUTPUT_B``).

Example:
    >>> from asmspotter.chain import run_region                        # doctest: +SKIP
    >>> from asmspotter.scale import ClusterSpec                       # doctest: +SKIP
    >>> run_region("la-pampa", cluster=ClusterSpec(workers=2))         # doctest: +SKIP

"""

from __future__ import annotations

from asmspotter.scale.cluster import SCHEDULER_ENV, ClusterSpec, connect
from asmspotter.scale.grid import PixelBox, RasterGrid, Tile, TileGrid, default_tile_size
from asmspotter.scale.records import TileRecord, TileStage
from asmspotter.scale.runner import TiledRun, TileReporter, run_tiled, run_tiles

__all__ = [
    "SCHEDULER_ENV",
    "ClusterSpec",
    "PixelBox",
    "RasterGrid",
    "Tile",
    "TileGrid",
    "TileRecord",
    "TileReporter",
    "TileStage",
    "TiledRun",
    "connect",
    "default_tile_size",
    "run_tiled",
    "run_tiles",
]
