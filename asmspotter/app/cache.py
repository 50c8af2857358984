"""The regions' analyses and map shapes, loaded once per kernel, optionally ahead of time.

A kernel that Voila starts before any page asks for it (a preheated kernel) loads every
region in a background thread while it waits for its page, so the page finds its region
ready; a region the page asks for before its turn is loaded at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from asmspotter.app.display import RegionDisplay, region_display
from asmspotter.app.source import RegionAnalysis, load_analysis
from asmspotter.app.state import Source
from asmspotter.catalogue import Region

Key = tuple[str, str]

#: CPU priority (nice) of the loading ahead: a kernel waiting for its page yields the CPU to
#: the pages being served (Linux; elsewhere it loads at normal priority).
BACKGROUND_NICE = 10


def _background_priority() -> None:
    """Lower the calling thread's CPU priority to :data:`BACKGROUND_NICE` (Linux only)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


def _shapes_of(analysis: RegionAnalysis) -> RegionDisplay:
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

    def preload(self, wanted: Iterable[tuple[Region, Source]]) -> None:
        """Start loading these regions in a background thread, in this order, at low priority."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                1, thread_name_prefix="asmspotter-preload", initializer=_background_priority
            )
        with self._lock:
            for region, source in wanted:
                key = (region.id, source)
                if key not in self._analyses and key not in self._pending:
                    self._pending[key] = self._executor.submit(_load, region, source)

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
