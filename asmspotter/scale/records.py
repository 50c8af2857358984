"""Tile records: what each tile task made, the hash that says when it may be reused.

Every tile task (composite, detection, polygons) writes its files atomically, then a JSON
record beside them, last. The record holds a *key*: the SHA-256 of everything the output
depends on (the stage, the tile, the settings, and the keys of the records it was made
from). A task whose record exists with the same key, and whose files all exist, returns the
record without computing anything: a run killed half-way, or one that lost a worker,
resumes where it stopped and ends with the same files. A change of settings or inputs
changes the key, and the tile is made again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from asmspotter import geoio
from asmspotter.errors import DataError

P = ParamSpec("P")
R = TypeVar("R")

#: Version of what a tile's outputs hold; part of every key (bump it when that changes).
TILE_FORMAT = 1

#: The tile tasks, in the order the chain runs them.
TileStage = Literal["composite", "detect", "polygons"]


@dataclass(frozen=True)
class TileRecord:
    """What one tile task made (or found already made).

    Attributes:
        stage: the task.
        period: the period id.
        tile: the tile's id.
        key: the hash of the output's inputs and settings.
        record: the record's JSON file.
        stats: the task's figures (pixels, areas, counts; by stage).
        reused: True when the output was already there and nothing was computed.
        seconds: how long the task computed (wall time; 0 when reused).
        worker: ``host:pid`` of the process that ran the task.
        cpu_seconds: the CPU time its process spent meanwhile (all its threads).

    """

    stage: TileStage
    period: str
    tile: str
    key: str
    record: Path
    stats: Mapping[str, Any] = field(default_factory=dict)
    reused: bool = False
    seconds: float = 0.0
    worker: str = ""
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class Clock:
    """When a task began computing: wall (``perf_counter``) and process CPU time."""

    wall: float
    cpu: float


def start_clock() -> Clock:
    """Return the clock a task's record measures its time from."""
    return Clock(time.perf_counter(), time.process_time())


def tile_key(stage: TileStage, **parts: Any) -> str:
    """Return the key of a tile output: the SHA-256 of its stage, format and ``parts``.

    ``parts`` are JSON-ready values (settings, the tile's pixels, upstream keys).
    """
    blob = json.dumps(
        {"stage": stage, "format": TILE_FORMAT, **parts},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def worker_task(task: Callable[P, R]) -> Callable[P, R]:
    """Run a tile or period task with GDAL using this Dask worker's threads, not every core.

    Outside a worker (tests calling the task directly) the task runs unchanged.
    """

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        import rasterio

        threads = _worker_threads()
        if threads is None:
            return task(*args, **kwargs)
        with rasterio.Env(GDAL_NUM_THREADS=str(threads)):
            return task(*args, **kwargs)

    return run


def _worker_threads() -> int | None:
    """Return the number of threads of the Dask worker running this code (None: not one)."""
    from distributed import get_worker

    try:
        return int(get_worker().state.nthreads)
    except ValueError:
        return None


def worker_name() -> str:
    """Return ``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def reuse(
    stage: TileStage, period: str, tile: str, record: Path, key: str, files: Sequence[Path]
) -> TileRecord | None:
    """Return the record at ``record`` if it was made with ``key`` and its files exist.

    A missing, unreadable or foreign record, or a missing file, gives None (make it again).
    """
    if not record.is_file() or not all(f.is_file() for f in files):
        return None
    try:
        data = geoio.read_json(record)
    except DataError:
        return None
    if not isinstance(data, dict) or data.get("key") != key or data.get("stage") != stage:
        return None
    return TileRecord(
        stage, period, tile, key, record, data.get("stats", {}), True, 0.0, worker_name()
    )


def write_record(
    stage: TileStage,
    period: str,
    tile: str,
    record: Path,
    key: str,
    stats: Mapping[str, Any],
    started: Clock,
    extra: Mapping[str, Any] | None = None,
) -> TileRecord:
    """Write a task's record (after its files) and return it.

    Args:
        stage: the task.
        period: the period id.
        tile: the tile's id.
        record: where the JSON goes.
        key: the output's key.
        stats: the task's figures.
        started: when the task began computing (:func:`start_clock`).
        extra: more provenance (the settings, the inputs).

    """
    seconds = time.perf_counter() - started.wall
    cpu = time.process_time() - started.cpu
    worker = worker_name()
    geoio.write_json(
        record,
        {
            **geoio.provenance_base(),
            "stage": stage,
            "period": period,
            "tile": tile,
            "key": key,
            "stats": dict(stats),
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3),
            "worker": worker,
            **dict(extra or {}),
        },
    )
    return TileRecord(stage, period, tile, key, record, dict(stats), False, seconds, worker, cpu)
