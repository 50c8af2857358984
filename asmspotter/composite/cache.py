"""The composite cache: build a period's composite once, reuse it while its request holds.

:func:`fetch_composite` turns a region and a period into the files of
:func:`asmspotter.layout.composite_files` (``composite.tif`` and ``composite.json``) from a
local scene (:mod:`~asmspotter.composite.local`) or STAC scenes
(:mod:`~asmspotter.composite.stac`). The JSON is written last and records the request (the
source, query and bands) the composite was made for and the COG's size and SHA-256; a
complete entry with the same request is reused unless ``refresh=True``, after its checksum
is verified (a damaged entry is rebuilt, with a :class:`DamagedCacheWarning`). A composite
without its JSON is incomplete and treated as absent.

A period's folder is published as a unit (:func:`asmspotter.geoio.publish_folder`): the new
composite and its JSON are written complete beside the old ones and swapped in together, so
a failed or interrupted rebuild (``--refresh`` offline, a kill) keeps the cached composite.
The region's lock (:func:`asmspotter.locking.region_lock`) is held meanwhile.
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
from asmspotter.errors import AsmSpotterWarning, DataError, FetchError, InputError, first_line
from asmspotter.layout import TILES_FOLDER, CompositeFiles, composite_files
from asmspotter.locking import region_lock

log = logging.getLogger(__name__)

#: Warn when fewer of the composite's pixels than this have a clear observation.
LOW_CLEAR_FRACTION = 0.05
#: Pixels per side of the chunks scenes are loaded and reduced in.
CHUNK_SIZE = 512


class CloudyCompositeWarning(AsmSpotterWarning):
    """Few or none of a composite's pixels had a clear observation."""


class DamagedCacheWarning(AsmSpotterWarning):
    """A cached composite failed its check (truncated, altered) and is rebuilt."""


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
    level: str | None = None,
    http: HttpSettings | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
    online: bool = False,
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
        level: processing level of the scenes, ``L1C`` or ``L2A`` (default: the region's
            rule, L1C before its ``l2a_from`` date); a model's card names the level it
            reads (``ModelCard.level``). A given ``collection`` takes precedence.
        http: timeouts and retries (default from the environment).
        chunk_size: pixels per side of the processing chunks.
        progress: show a progress bar while scenes load (on terminals).
        online: let a local source whose scene is missing search its STAC API (without
            it, only sources whose catalogue entry says ``fallback: stac`` do).

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
        online=online,
        bands=bands,
        level=level,
    )
    files = composite_files(reg.id, per.id)
    with region_lock(reg.id):
        cached = None if refresh else _reusable(files, plan.request)
        if cached is not None:
            return CompositeResult(reg.id, per.id, files.tif, cached, reused=True)
        prov = plan.provenance()
        build = _Build(reg, plan.source, plan.wanted, plan.bands, http, chunk_size, progress)
        names = (files.tif.name, files.provenance.name)
        with geoio.publish_folder(files.folder, names, keep=(TILES_FOLDER,)) as new:
            staged = CompositeFiles(new)
            prov.update(build.run(staged.tif))
            prov["checksum"] = geoio.file_digest(staged.tif)
            geoio.write_json(staged.provenance, prov)
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
    online: bool = False,
    bands: Sequence[str] | None = None,
    level: str | None = None,
) -> CompositePlan:
    """Decide a period's composite without building it (arguments as :func:`fetch_composite`).

    Raises:
        InputError: unknown band or processing level.

    """
    wanted = _check_bands(bands)
    if level not in (None, "L1C", "L2A"):
        raise InputError(f"unknown processing level {level!r} (L1C or L2A)")
    source = plan_source(
        region,
        period,
        stac_url=stac_url,
        collection=collection,
        max_cloud=max_cloud,
        sign=sign,
        online=online,
        level=level,
    )
    out_bands = (
        tuple(b for b in CANONICAL_BANDS if b in {*wanted, *TRUE_COLOUR})
        if isinstance(source, StacQuery)
        else wanted
    )
    return CompositePlan(region, period, source, out_bands, wanted)


@dataclass(frozen=True)
class _Build:
    """How a period's composite is built: from its local scene or from STAC scenes."""

    region: Region
    plan: LocalScene | StacQuery
    wanted: tuple[str, ...]
    out_bands: tuple[str, ...]
    http: HttpSettings | None
    chunk_size: int
    progress: bool

    def run(self, tif: Path) -> dict[str, Any]:
        """Write the composite COG at ``tif``; return its provenance (source, scenes, ...)."""
        plan = self.plan
        if isinstance(plan, LocalScene):
            return build_local(plan, self.wanted, tif)
        http = self.http or HttpSettings.from_env()
        try:
            scenes = search_stac(plan, http)
            return build_stac(
                self.region,
                scenes,
                self.out_bands,
                tif,
                http,
                chunk_size=self.chunk_size,
                progress=self.progress,
            )
        except FetchError as exc:
            if plan.fallback_reason:  # say why a local region went online
                raise FetchError(f"{exc} (searched because {plan.fallback_reason})") from None
            raise


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
    """Return the provenance of a sound cache entry made for ``request``, else None."""
    cached = _cached_provenance(files)
    if cached is None:
        return None
    if cached.get("request") != request:
        log.info("cached composite %s was made with other settings; rebuilding", files.tif)
        return None
    problem = composite_damage(files, cached)
    if problem is not None:
        warnings.warn(
            f"cached composite {files.tif} is damaged ({problem}); rebuilding it",
            DamagedCacheWarning,
            stacklevel=3,
        )
        return None
    log.info("reusing cached composite %s", files.tif)
    return cached


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
    return dict(prov)


def composite_damage(files: CompositeFiles, prov: Mapping[str, Any]) -> str | None:
    """Check a cached composite against its provenance; return what is wrong, else None.

    With the checksum that ``composite.json`` records, the COG's size and SHA-256 are
    compared; entries written before checksums were recorded are read in full instead.
    """
    checksum = prov.get("checksum")
    if isinstance(checksum, Mapping):
        return geoio.digest_differs(files.tif, checksum)
    return _unreadable(files.tif, prov.get("bands", []))


def _unreadable(tif: Path, bands: Sequence[str]) -> str | None:
    """Read a COG in full; return why it cannot be read (or holds other bands), else None."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(tif) as src:
            if list(src.descriptions) != list(bands):
                return f"it holds bands {list(src.descriptions)}, its record says {list(bands)}"
            for _, window in src.block_windows(1):
                src.read(window=window)
    except RasterioError as exc:
        return f"it cannot be read: {first_line(exc, 120)}"
    return None


def verify_composite(files: CompositeFiles) -> dict[str, Any]:
    """Return a cached composite's provenance after checking the composite against it.

    Raises:
        DataError: the composite is absent, unfinished or damaged; the message says how to
            rebuild it (``asmspotter fetch REGION -p PERIOD --refresh``).

    """
    from asmspotter.composite.reading import refresh_hint

    prov = _cached_provenance(files)
    if prov is None:
        raise DataError(
            f"composite not found or unfinished: {files.tif} ({refresh_hint(files.tif)})"
        )
    problem = composite_damage(files, prov)
    if problem is not None:
        raise DataError(
            f"cached composite {files.tif} is damaged: {problem} ({refresh_hint(files.tif)})"
        )
    return prov
