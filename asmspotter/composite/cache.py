"""The composite cache: build a period's composite once, reuse it while its request holds.

:func:`fetch_composite` turns a region and a period into the files of
:func:`asmspotter.layout.composite_files` (``composite.tif`` and ``composite.json``) from a
local scene (:mod:`~asmspotter.composite.local`) or STAC scenes
(:mod:`~asmspotter.composite.stac`). The JSON is written last and records the request (the
source, query and bands) the composite was made for; a complete entry with the same request
is reused unless ``refresh=True``, and a composite without its JSON is incomplete and
treated as absent.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asmspotter import geoio
from asmspotter.acquire import (
    HttpSettings,
    LocalScene,
    StacQuery,
    plan_source,
    search_stac,
)
from asmspotter.bands import CANONICAL_BANDS, TRUE_COLOUR
from asmspotter.catalogue import Period, Region, get_region
from asmspotter.composite.local import build_local
from asmspotter.composite.stac import RESOLUTION, build_stac
from asmspotter.errors import DataError, InputError
from asmspotter.layout import CompositeFiles, composite_files

log = logging.getLogger(__name__)

#: Warn when fewer of the composite's pixels than this have a clear observation.
LOW_CLEAR_FRACTION = 0.05
#: Pixels per side of the chunks scenes are loaded and reduced in.
CHUNK_SIZE = 512


class CloudyCompositeWarning(UserWarning):
    """Few or none of a composite's pixels had a clear observation."""


@dataclass(frozen=True)
class CompositeResult:
    """A composite on disk.

    Attributes:
        region: region id.
        period: period id.
        path: the composite COG.
        provenance: the contents of ``composite.json``.
        reused: True when the cache was reused rather than rebuilt.

    """

    region: str
    period: str
    path: Path
    provenance: Mapping[str, Any] = field(repr=False)
    reused: bool = False

    def __post_init__(self) -> None:
        assert self.path == self.files.tif, self.path
        assert "clear_fraction" in self.provenance, "provenance lacks clear_fraction"

    @property
    def files(self) -> CompositeFiles:
        """The composite's files (the COG and its provenance)."""
        return CompositeFiles(self.path.parent)

    @property
    def provenance_path(self) -> Path:
        """The provenance JSON beside the composite."""
        return self.files.provenance

    @property
    def clear_fraction(self) -> float:
        """Fraction of the composite's pixels with at least one clear observation."""
        return float(self.provenance["clear_fraction"])

    @property
    def bands(self) -> tuple[str, ...]:
        """Canonical names of the composite's bands."""
        return tuple(self.provenance["bands"])

    @property
    def radiometry(self) -> str:
        """``reflectance`` or ``display``."""
        return str(self.provenance["radiometry"])


def fetch_composite(
    region: Region | str,
    period: Period | str,
    *,
    refresh: bool = False,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
    bands: Sequence[str] | None = None,
    http: HttpSettings | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
) -> CompositeResult:
    """Return the composite of a region and period, building and caching it if needed.

    Args:
        region: a region or its id in the catalogue.
        period: one of the region's periods or its id.
        refresh: rebuild even when a cached composite exists.
        stac_url: STAC API to search instead of the region's (for local sources: used
            when the local scene is absent).
        collection: collection to search instead of the region's.
        max_cloud: maximum scene cloud cover in percent instead of the region's.
        sign: how asset hrefs are signed instead of the region's source says: ``auto``
            (Planetary Computer SAS tokens when the STAC URL's host is
            planetarycomputer.microsoft.com), ``planetary-computer`` (the SAS API is
            ``ASMSPOTTER_PC_SAS_URL`` or Planetary Computer's) or ``none``. Signing is not
            part of the cache key: signed and unsigned reads give the same values.
        bands: canonical bands the composite must hold (default true colour); true colour
            is always added for STAC sources.
        http: timeouts and retries (default from the environment).
        chunk_size: pixels per side of the processing chunks.
        progress: show a progress bar while scenes load (on terminals).

    Returns:
        The composite's path and provenance.

    Raises:
        InputError: unknown region, period or band, or no scene in the period.
        FetchError: the STAC API or the scene files failed or timed out.
        DataError: a scene or local file is corrupt, truncated or lacks a band.

    """
    reg = region if isinstance(region, Region) else get_region(region)
    per = period if isinstance(period, Period) else reg.period(period)
    plan = plan_composite(
        reg,
        per,
        stac_url=stac_url,
        collection=collection,
        max_cloud=max_cloud,
        sign=sign,
        bands=bands,
    )
    files = composite_files(reg.id, per.id)
    cached = None if refresh else _reusable(files, plan.request)
    if cached is not None:
        return CompositeResult(reg.id, per.id, files.tif, cached, reused=True)
    # Invalidate first: from here until the JSON is written the entry counts as absent.
    files.provenance.unlink(missing_ok=True)
    prov = plan.provenance()
    if isinstance(plan.source, LocalScene):
        prov.update(build_local(plan.source, plan.wanted, files.tif))
    else:
        http = http or HttpSettings.from_env()
        scenes = search_stac(plan.source, http)
        prov.update(
            build_stac(
                reg, scenes, plan.bands, files.tif, http, chunk_size=chunk_size, progress=progress
            )
        )
    geoio.write_json(files.provenance, prov)
    if prov["clear_fraction"] < LOW_CLEAR_FRACTION:
        warnings.warn(
            f"{reg.id} {per.id}: only {prov['clear_fraction']:.1%} of the composite's pixels "
            "had a clear observation; the rest is no-data",
            CloudyCompositeWarning,
            stacklevel=2,
        )
    return CompositeResult(reg.id, per.id, files.tif, prov, reused=False)


@dataclass(frozen=True)
class CompositePlan:
    """Where a period's composite comes from, what it holds and what its cache depends on.

    Attributes:
        region: the region.
        period: the period.
        source: the local scene, or the STAC search to run.
        bands: the composite's bands (STAC composites always add true colour).
        wanted: the bands asked for.

    """

    region: Region
    period: Period
    source: LocalScene | StacQuery
    bands: tuple[str, ...]
    wanted: tuple[str, ...]

    @property
    def request(self) -> dict[str, Any]:
        """What the composite depends on (a cache entry is reused only if equal)."""
        return _request(self.source, self.bands)

    def provenance(self) -> dict[str, Any]:
        """Return the fields every ``composite.json`` of this plan starts with."""
        per = self.period
        return {
            **geoio.provenance_base(),
            "kind": "composite",
            "region": self.region.id,
            "period": {"id": per.id, "start": per.start.isoformat(), "end": per.end.isoformat()},
            "request": self.request,
        }


def plan_composite(
    region: Region,
    period: Period,
    *,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
    bands: Sequence[str] | None = None,
) -> CompositePlan:
    """Decide a period's composite without building it (arguments as :func:`fetch_composite`).

    Raises:
        InputError: unknown band.

    """
    wanted = _check_bands(bands)
    source = plan_source(
        region, period, stac_url=stac_url, collection=collection, max_cloud=max_cloud, sign=sign
    )
    out_bands = (
        tuple(b for b in CANONICAL_BANDS if b in {*wanted, *TRUE_COLOUR})
        if isinstance(source, StacQuery)
        else wanted
    )
    return CompositePlan(region, period, source, out_bands, wanted)


def composite_complete(files: CompositeFiles) -> bool:
    """Return True when a cached composite and its provenance (written last) both exist.

    A ``composite.tif`` without its ``composite.json`` is an unfinished cache entry.
    """
    return files.tif.is_file() and files.provenance.is_file()


def _check_bands(bands: Sequence[str] | None) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(bands if bands is not None else TRUE_COLOUR))
    unknown = [b for b in wanted if b not in CANONICAL_BANDS]
    if unknown or not wanted:
        raise InputError(
            f"unknown band(s) {unknown or '(none given)'}; canonical bands: "
            f"{', '.join(CANONICAL_BANDS)}"
        )
    return wanted


def _request(plan: LocalScene | StacQuery, bands: Sequence[str]) -> dict[str, Any]:
    """Return what the composite depends on (a cache entry is reused only if equal)."""
    if isinstance(plan, LocalScene):
        return {"type": "local", "file": plan.path.name, "bands": list(bands)}
    return {"type": "stac", **plan.as_dict(), "bands": list(bands), "resolution": RESOLUTION}


def _reusable(files: CompositeFiles, request: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the provenance of a complete cache entry made for ``request``, else None."""
    cached = _cached_provenance(files)
    if cached is not None and cached.get("request") == request:
        log.info("reusing cached composite %s", files.tif)
        return cached
    if cached is not None:
        log.info("cached composite %s was made with other settings; rebuilding", files.tif)
    return None


def _cached_provenance(files: CompositeFiles) -> dict[str, Any] | None:
    """Return the provenance of a complete cache entry, None when absent or incomplete."""
    if not composite_complete(files):
        return None
    try:
        prov = geoio.read_json(files.provenance)
    except DataError:
        return None
    if not isinstance(prov, dict) or "clear_fraction" not in prov:
        return None
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(files.tif) as src:
            if list(src.descriptions) != list(prov.get("bands", [])):
                return None
    except RasterioError:
        return None
    return prov
