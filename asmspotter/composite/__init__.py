"""Cloud-free per-period composites, cached as COGs with provenance.

:func:`fetch_composite` turns a region and a period into ``composite.tif`` (and
``composite.json`` beside it) at :func:`asmspotter.layout.composite_files`:

- STAC sources (:mod:`~asmspotter.composite.stac`): the scenes a search finds are masked
  (:mod:`~asmspotter.composite.masks`: SCL for L2A, s2cloudless or QA60 for L1C), scaled to
  reflectance with each scene's own scale and offset, and reduced to the per-pixel median,
  written window by window (:mod:`~asmspotter.composite.blocks`). Assets of Planetary
  Computer (or of sources with ``sign: planetary-computer``) are read through hrefs signed
  with SAS tokens; the provenance says so under ``signing`` (never the token).
- Local sources (:mod:`~asmspotter.composite.local`, the La Pampa demo): the period's GeoTIFF
  is copied to the cache keeping its grid, CRS and values exactly.

The composite COG follows the contract in CONTRIBUTING.md: one band per canonical band name
(the band description), and the ``ASMSPOTTER_RADIOMETRY`` tag (``reflectance``: float32,
no-data NaN; ``display``: uint8, no-data 0). :func:`inspect_composite` checks a file against
it and :func:`open_composite` reads one (:mod:`~asmspotter.composite.reading`). The cache
(:mod:`~asmspotter.composite.cache`) writes ``composite.json`` last, so a composite without
its JSON is incomplete and treated as absent; a second call reuses the cache unless
``refresh=True``, once the COG matches the checksum its JSON records
(:func:`verify_composite`). A rebuild is written beside the cached one and replaces it only
when complete.

Example:
    >>> from asmspotter.composite import fetch_composite, open_composite
    >>> result = fetch_composite("la-pampa", "2019")                     # doctest: +SKIP
    >>> open_composite(result.path).sel(band="red")                      # doctest: +SKIP

"""

from __future__ import annotations

from asmspotter.bands import CANONICAL_BANDS, L2A_BANDS, TRUE_COLOUR
from asmspotter.composite.cache import (
    CHUNK_SIZE,
    LOW_CLEAR_FRACTION,
    CloudyCompositeWarning,
    CompositePlan,
    CompositeResult,
    DamagedCacheWarning,
    composite_complete,
    composite_damage,
    fetch_composite,
    plan_composite,
    verify_composite,
)
from asmspotter.composite.masks import QA60_BITS, S2CLOUDLESS_BANDS, SCL_MASKED
from asmspotter.composite.reading import (
    CompositeInfo,
    inspect_composite,
    open_composite,
    refresh_hint,
)
from asmspotter.composite.stac import RESOLUTION, region_geobox

__all__ = [
    "CANONICAL_BANDS",
    "CHUNK_SIZE",
    "L2A_BANDS",
    "LOW_CLEAR_FRACTION",
    "QA60_BITS",
    "RESOLUTION",
    "S2CLOUDLESS_BANDS",
    "SCL_MASKED",
    "TRUE_COLOUR",
    "CloudyCompositeWarning",
    "CompositeInfo",
    "CompositePlan",
    "CompositeResult",
    "DamagedCacheWarning",
    "composite_complete",
    "composite_damage",
    "fetch_composite",
    "inspect_composite",
    "open_composite",
    "plan_composite",
    "refresh_hint",
    "region_geobox",
    "verify_composite",
]
