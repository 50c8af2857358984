"""Where a period's imagery comes from: a region's local GeoTIFF or a STAC search.

:func:`plan_source` decides, without touching the network, where a period's imagery comes
from: the region's local GeoTIFF (:class:`LocalScene`) when its source is ``local`` and the
file is present, else a STAC search (:class:`StacQuery`) of the region's outline and dates
with the scene-cloud filter (also the fallback of local sources whose files are absent).

Example:
    >>> from asmspotter.catalogue import get_region
    >>> region = get_region("brokopondo")
    >>> plan_source(region, region.period("2016")).collection          # doctest: +SKIP
    'sentinel-2-l1c'

"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmspotter import paths
from asmspotter.acquire.signing import SIGNING, resolve_signing
from asmspotter.bands import RADIOMETRIES, Radiometry
from asmspotter.catalogue import Period, Region
from asmspotter.errors import AsmSpotterWarning, DataError, InputError

if TYPE_CHECKING:
    import pystac

log = logging.getLogger(__name__)


class SourceFallbackWarning(AsmSpotterWarning):
    """A local region's scene is missing: its STAC API is searched instead (says why)."""


@dataclass(frozen=True)
class StacQuery:
    """A STAC item search for one region and period.

    Attributes:
        region: region id.
        period: period id.
        stac_url: STAC API root.
        collection: the collection searched.
        bbox: (min lon, min lat, max lon, max lat) searched.
        start: first day (ISO date), inclusive.
        end: last day (ISO date), inclusive.
        max_cloud: maximum ``eo:cloud_cover`` in percent.
        level: ``L2A`` (SCL masks) or ``L1C`` (s2cloudless or QA60 masks).
        sign: how the found items' asset hrefs are signed before reading (``none`` or
            ``planetary-computer``). Not part of :meth:`as_dict`: signing changes how
            the files are read, not their values.
        fallback_reason: why a local region searches STAC (its scene is missing), for
            messages; None for STAC regions. Not part of :meth:`as_dict`.

    """

    region: str
    period: str
    stac_url: str
    collection: str
    bbox: tuple[float, float, float, float]
    start: str
    end: str
    max_cloud: float
    level: str = "L2A"
    sign: str = "none"
    fallback_reason: str | None = None

    def __post_init__(self) -> None:
        assert self.stac_url.startswith(("http://", "https://")), self.stac_url
        assert self.start <= self.end, (self.start, self.end)
        assert 0 <= self.max_cloud <= 100, self.max_cloud
        assert self.level in ("L2A", "L1C"), self.level
        assert self.sign in SIGNING, self.sign

    @property
    def datetime(self) -> str:
        """The STAC ``datetime`` interval searched."""
        return f"{self.start}T00:00:00Z/{self.end}T23:59:59Z"

    def describe(self) -> str:
        """One line naming the region, dates, collection and API searched."""
        return (
            f"region {self.region!r} period {self.period!r} ({self.start} to {self.end}) in "
            f"collection {self.collection!r} at {self.stac_url} with cloud cover <= "
            f"{self.max_cloud:g}%"
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the query as JSON-ready provenance."""
        return {
            "stac_url": self.stac_url,
            "collection": self.collection,
            "bbox": list(self.bbox),
            "datetime": self.datetime,
            "max_cloud": self.max_cloud,
            "level": self.level,
        }


@dataclass(frozen=True)
class StacScenes:
    """The items a :class:`StacQuery` found (at least one), oldest first."""

    query: StacQuery
    items: tuple[pystac.Item, ...] = field(repr=False)

    def __post_init__(self) -> None:
        assert self.items, "a search result holds at least one item"

    @property
    def ids(self) -> list[str]:
        """The item ids."""
        return [i.id for i in self.items]


@dataclass(frozen=True)
class LocalScene:
    """A local GeoTIFF holding a period's imagery.

    Attributes:
        region: region id.
        period: period id.
        path: the file (it exists).
        bands: canonical band names of its bands, in order.
        radiometry: how its values are to be read.

    """

    region: str
    period: str
    path: Path
    bands: tuple[str, ...]
    radiometry: Radiometry

    def __post_init__(self) -> None:
        assert self.bands, "a local scene has bands"
        assert self.radiometry in RADIOMETRIES, self.radiometry

    def as_dict(self) -> dict[str, Any]:
        """Return the source as JSON-ready provenance."""
        return {
            "type": "local",
            "file": str(self.path),
            "bands": list(self.bands),
            "radiometry": self.radiometry,
        }


def stac_query(
    region: Region,
    period: Period,
    *,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
    level: str | None = None,
) -> StacQuery:
    """Build the STAC search for a region and period from its source (overridable).

    Periods before the source's ``l2a_from`` search its L1C collection unless a collection
    or a ``level`` is given; ``level`` ``L1C`` (a model that reads Level-1C reflectance)
    searches the L1C collection for every period, ``L2A`` the L2A one. ``sign`` (default:
    the source's) is resolved with :func:`resolve_signing`.

    Raises:
        InputError: the URL is not http(s), ``max_cloud`` is outside 0..100 or ``sign``
            is not a signing method.

    """
    source = region.source
    url = (stac_url or source.stac_url).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"STAC API URL must start with http:// or https://, got {url!r}")
    cloud = source.max_cloud if max_cloud is None else float(max_cloud)
    if not 0 <= cloud <= 100:
        raise InputError(f"max cloud cover must be within 0..100 percent, got {cloud:g}")
    coll = collection or source.collection_for(period, level)
    level = "L1C" if "l1c" in coll.lower() else "L2A"
    return StacQuery(
        region=region.id,
        period=period.id,
        stac_url=url,
        collection=coll,
        bbox=tuple(round(v, 7) for v in region.bbox),  # type: ignore[arg-type]
        start=period.start.isoformat(),
        end=period.end.isoformat(),
        max_cloud=cloud,
        level=level,
        sign=resolve_signing(sign or source.sign, url),
    )


def local_scene(
    region: Region, period: Period, *, online: bool = False, stac_url: str | None = None
) -> LocalScene | None:
    """Return the region's local GeoTIFF for ``period``, or None to search STAC instead.

    A STAC search stands in for a missing file only when ``online`` is True or the source's
    ``fallback`` is ``stac``; a :class:`SourceFallbackWarning` then says why.

    Raises:
        InputError: the source has no file for this period and may not search STAC.
        DataError: the file (or the whole shared data folder) is absent and the source may
            not search STAC; the message names the folder and ``ASMSPOTTER_SHARED_DATA``.

    """
    source = region.source
    if source.kind != "local":
        return None
    assert source.local_dir is not None
    name = source.local_files.get(period.id)
    path = source.local_dir / name if name is not None else None
    if path is not None and path.is_file():
        return LocalScene(region.id, period.id, path, source.bands, source.radiometry)
    missing = _missing(period, path)
    if source.fallback == "stac" or online:
        why = "asked with --online" if online else "the catalogue's fallback"
        warnings.warn(
            f"{region.id} {period.id}: {missing}; searching {stac_url or source.stac_url} "
            f"instead ({why})",
            SourceFallbackWarning,
            stacklevel=3,
        )
        return None
    error = InputError if path is None else DataError
    raise error(
        f"region {region.id!r} period {period.id!r}: {missing}; or pass --online to search "
        f"{source.stac_url} instead"
    )


def _missing(period: Period, path: Path | None) -> str:
    if path is None:
        return f"the catalogue names no local file for period {period.id!r}"
    return missing_local_reason(path)


def missing_local_reason(path: Path) -> str:
    """Say why a local scene is missing: the whole shared data folder, or the one file."""
    shared = paths.shared_data_dir()
    if not shared.is_dir():
        return (
            f"shared data not found at {shared} (set {paths.SHARED_DATA_ENV} to the shared "
            "data folder)"
        )
    return f"local scene not found: {path} (set {paths.SHARED_DATA_ENV} to the shared data folder)"


def plan_source(
    region: Region,
    period: Period,
    *,
    stac_url: str | None = None,
    collection: str | None = None,
    max_cloud: float | None = None,
    sign: str | None = None,
    level: str | None = None,
    online: bool = False,
) -> LocalScene | StacQuery:
    """Decide where a period's imagery comes from, without any network access.

    Local sources use their file when present; when it is absent they search the region's
    STAC API only if ``online`` or their catalogue entry's ``fallback: stac`` allows it
    (:func:`local_scene`). STAC sources always search it. ``stac_url``, ``collection``,
    ``max_cloud`` and ``sign`` override the catalogue; ``level`` chooses the processing
    level (:func:`stac_query`).

    Raises:
        DataError: a local source's file is missing and it may not go online.

    """
    local = local_scene(region, period, online=online, stac_url=stac_url)
    if local is not None:
        return local
    query = stac_query(
        region,
        period,
        stac_url=stac_url,
        collection=collection,
        max_cloud=max_cloud,
        sign=sign,
        level=level,
    )
    if region.source.kind == "local":
        assert region.source.local_dir is not None
        name = region.source.local_files.get(period.id)
        path = region.source.local_dir / name if name is not None else None
        query = dataclasses.replace(query, fallback_reason=_missing(period, path))
    return query
