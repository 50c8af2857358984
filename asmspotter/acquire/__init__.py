"""Find the scenes for a region and period: a STAC API search or local GeoTIFFs.

- :mod:`~asmspotter.acquire.sources`: :func:`plan_source` decides, without touching the
  network, where a period's imagery comes from: the region's local GeoTIFF
  (:class:`LocalScene`) or a STAC search (:class:`StacQuery`).
- :mod:`~asmspotter.acquire.search`: :func:`search_stac` runs a query with pystac-client, with
  timeouts and retries, and turns every failure into a one-line
  :class:`~asmspotter.errors.FetchError`.
- :mod:`~asmspotter.acquire.items`: which asset of an item holds a band (:func:`asset_key`)
  and how its values become reflectance (:func:`band_scaling`).
- :mod:`~asmspotter.acquire.signing`: Planetary Computer SAS signing with the
  ``planetary-computer`` package, automatic when the STAC URL's host is
  planetarycomputer.microsoft.com (:func:`resolve_signing`).
- :mod:`~asmspotter.acquire.http`: :class:`HttpSettings` (``ASMSPOTTER_HTTP_TIMEOUT``,
  ``ASMSPOTTER_HTTP_RETRIES``, ``ASMSPOTTER_HTTP_BACKOFF``), also for GDAL's reads of the
  scenes' COGs (:meth:`HttpSettings.gdal_options`).

Example:
    >>> from asmspotter.catalogue import get_region
    >>> region = get_region("brokopondo")
    >>> plan_source(region, region.period("2016")).collection          # doctest: +SKIP
    'sentinel-2-l1c'

"""

from __future__ import annotations

from asmspotter.acquire.http import (
    BACKOFF_ENV,
    RETRIES_ENV,
    RETRY_STATUS,
    TIMEOUT_ENV,
    HttpSettings,
)
from asmspotter.acquire.items import (
    BASELINE_04_FROM,
    BandScaling,
    asset_key,
    band_scaling,
    require_assets,
)
from asmspotter.acquire.search import search_stac
from asmspotter.acquire.signing import (
    PC_HOST,
    PC_SAS_URL,
    PC_SAS_URL_ENV,
    SIGNING,
    TOKEN_MARGIN_S,
    clear_token_cache,
    resolve_signing,
    sas_url,
    sign,
    signing_modifier,
    signing_provenance,
)
from asmspotter.acquire.sources import (
    LocalScene,
    SourceFallbackWarning,
    StacQuery,
    StacScenes,
    local_scene,
    missing_local_reason,
    plan_source,
    stac_query,
)

__all__ = [
    "BACKOFF_ENV",
    "BASELINE_04_FROM",
    "PC_HOST",
    "PC_SAS_URL",
    "PC_SAS_URL_ENV",
    "RETRIES_ENV",
    "RETRY_STATUS",
    "SIGNING",
    "TIMEOUT_ENV",
    "TOKEN_MARGIN_S",
    "BandScaling",
    "HttpSettings",
    "LocalScene",
    "SourceFallbackWarning",
    "StacQuery",
    "StacScenes",
    "asset_key",
    "band_scaling",
    "clear_token_cache",
    "local_scene",
    "missing_local_reason",
    "plan_source",
    "require_assets",
    "resolve_signing",
    "sas_url",
    "search_stac",
    "sign",
    "signing_modifier",
    "signing_provenance",
    "stac_query",
]
