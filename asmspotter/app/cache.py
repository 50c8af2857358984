"""The regions' analyses and map shapes, loaded once per kernel, optionally ahead of time.

A kernel that Voila starts before any page asks for it (a preheated kernel) does all its
work ahead in one background thread (:func:`warm_up`): it imports the app's modules, reads
the catalogue and loads every region while it waits for its page, so the page finds its
region ready. Voila starts such a kernel again each time a page takes one; that kernel
runs at the lowest CPU priority until its own page arrives (:mod:`asmspotter.app.priority`),
so the refill does not slow the pages being served on the same cores. A region the page
asks for before its turn is loaded at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from asmspotter.app.priority import BACKGROUND_NICE, set_thread_nice
from asmspotter.app.source import RegionAnalysis, available_sources, load_analysis
from asmspotter.app.state import Source
from asmspotter.catalogue import Catalogue, Region, load_catalogue

if TYPE_CHECKING:  # imported where used: importing this module stays light (see warm_up)
    from asmspotter.app.display import RegionDisplay

Key = tuple[str, str]


def _shapes_of(analysis: RegionAnalysis) -> RegionDisplay:
    from asmspotter.app.display import region_display

    return region_display(analysis.result, analysis.region.outline, analysis.label)


def _load(region: Region, source: Source) -> tuple[RegionAnalysis, RegionDisplay]:
    analysis = load_analysis(region, source)
    return analysis, _shapes_of(analysis)


class RegionCache:
    """Analyses and map shapes per (region, source), each computed once."""

    def __init__(self) -> None:
        self._analyses: dict[Key, RegionAnalysis] = {}
        self._shapes: dict[Key, RegionDisplay] = {}
        self._pending: dict[Key, Future[tuple[RegionAnalysis, RegionDisplay]]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: int | None = None  # the background thread's id

    def _background(self) -> ThreadPoolExecutor:
        """Return the one background thread (low priority) the work ahead runs in."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                1, thread_name_prefix="asmspotter-preload", initializer=self._lower_priority
            )
        return self._executor

    def _lower_priority(self) -> None:
        self._worker = threading.get_native_id()
        set_thread_nice(self._worker, BACKGROUND_NICE)

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        """Run the background work at the caller's priority meanwhile, where allowed.

        For a page that came before its kernel finished the work ahead and so waits for
        it. Raising a priority needs privileges (or ``RLIMIT_NICE``) on Linux; without
        them the work stays at :data:`~asmspotter.app.priority.BACKGROUND_NICE`.
        """
        worker = self._worker
        if worker is None or not sys.platform.startswith("linux"):
            yield
            return
        set_thread_nice(worker, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        try:
            yield
        finally:
            set_thread_nice(worker, BACKGROUND_NICE)

    def preload(self, wanted: Iterable[tuple[Region, Source]]) -> None:
        """Start loading these regions in a background thread, in this order, at low priority."""
        with self._lock:
            for region, source in wanted:
                key = (region.id, source)
                if key not in self._analyses and key not in self._pending:
                    self._pending[key] = self._background().submit(_load, region, source)

    def _take(self, key: Key) -> bool:
        """Collect a background load of ``key`` (waiting if it runs); False if none."""
        with self._lock:
            future = self._pending.pop(key, None)
        if future is None or future.cancel():  # not started yet: the caller loads it now
            return False
        analysis, shapes = future.result()  # raises what the load raised
        with self._lock:
            self._analyses[key], self._shapes[key] = analysis, shapes
        return True

    def analysis(self, region: Region, source: Source) -> RegionAnalysis:
        """Return a region's analysis for one source.

        Raises:
            AsmSpotterError: the source's data are missing or unreadable (a subclass).

        """
        key = (region.id, source)
        if key not in self._analyses and not self._take(key):
            loaded = load_analysis(region, source)
            with self._lock:
                self._analyses.setdefault(key, loaded)
        return self._analyses[key]

    def shapes(self, analysis: RegionAnalysis) -> RegionDisplay:
        """Return what the map of an analysis draws."""
        key = (analysis.region.id, analysis.source)
        if key not in self._shapes and not self._take(key):
            shapes = _shapes_of(analysis)
            with self._lock:
                self._shapes.setdefault(key, shapes)
        return self._shapes[key]


def preload_order(catalogue: Catalogue, first: str | None = None) -> list[tuple[Region, Source]]:
    """Return every region with data and its default source, ``first`` (a region id) first."""
    regions = sorted(catalogue.values(), key=lambda r: r.id != first)
    return [(region, sources[0]) for region in regions if (sources := available_sources(region))]


def warm_up(
    catalogue: str | None, first: str | None = None
) -> tuple[RegionCache, Future[Catalogue]]:
    """Start the work a kernel started ahead of time does before its page comes.

    In the cache's background thread, at the lowest priority within the kernel (see
    :mod:`asmspotter.app.priority`): import the app's widget modules, read the catalogue,
    then load every region (``first`` first). The caller's thread is left free (it waits
    for its page).

    Args:
        catalogue: catalogue YAML (None: ``data/regions.yaml``).
        first: region id loaded first (None: in the catalogue's order).

    Returns:
        The cache the regions load into, and the catalogue to come (its ``result()``
        raises what reading it raised).

    """
    cache = RegionCache()

    def start() -> Catalogue:
        import asmspotter.app.view  # noqa: F401 - the widgets' modules, imported here

        cat = load_catalogue(catalogue)
        cache.preload(preload_order(cat, first))  # queued behind this job, same thread
        return cat

    return cache, cache._background().submit(start)
