"""Read STAC items: which asset holds a band, and how its values become reflectance.

Items key their assets by Earth Search names (``red``), by Sentinel-2 band ids (``B04``, as
Planetary Computer does) or name the band in ``eo:bands``; :func:`asset_key` accepts all.
Scale and offset come from ``raster:bands``, else from the processing baseline
(:func:`band_scaling`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asmspotter.bands import S2_BAND_IDS
from asmspotter.errors import DataError

if TYPE_CHECKING:
    import pystac


def asset_key(item: pystac.Item, band: str) -> str:
    """Return the key of the asset holding canonical ``band`` in ``item``.

    Accepts Earth Search keys (``red``), band ids (``B04``, case-insensitive) and assets
    whose ``eo:bands`` common name is the band.

    Raises:
        DataError: the item has no such asset.

    """
    assets = item.assets
    if band in assets:
        return band
    lower = {k.lower(): k for k in assets}
    for candidate in (band, S2_BAND_IDS.get(band, ""), S2_BAND_IDS.get(band, "") + "_10m"):
        if candidate and candidate.lower() in lower:
            return lower[candidate.lower()]
    for key, asset in assets.items():
        for eo_band in asset.extra_fields.get("eo:bands") or []:
            if eo_band.get("common_name") == band or eo_band.get("name") == band:
                return key
    raise DataError(
        f"scene {item.id} has no {band!r} band (assets: {', '.join(sorted(assets)) or 'none'})"
    )


@dataclass(frozen=True)
class BandScaling:
    """How to turn a band's digital numbers into reflectance: ``dn * scale + offset``.

    Attributes:
        scale: multiplier.
        offset: added after scaling (-0.1 for processing baseline 04.00).
        origin: where the values came from (``raster:bands`` or ``processing baseline``).

    """

    scale: float
    offset: float
    origin: str

    def __post_init__(self) -> None:
        assert self.scale > 0, f"scale must be positive, got {self.scale}"


#: Processing baseline 04.00 (offset -1000 DN) applies to scenes from this day on.
BASELINE_04_FROM = "2022-01-25"


def band_scaling(item: pystac.Item, key: str) -> BandScaling:
    """Return the scale and offset of asset ``key`` of ``item``.

    Uses the asset's ``raster:bands`` metadata; without scale or offset there (Planetary
    Computer's items), falls back on the item's ``s2:processing_baseline`` (or, without
    one, its date) to apply the -0.1 offset of baseline 04.00 and later.
    """
    raster = item.assets[key].extra_fields.get("raster:bands") or []
    if raster and ("scale" in raster[0] or "offset" in raster[0]):
        return BandScaling(
            float(raster[0].get("scale", 1.0)),
            float(raster[0].get("offset", 0.0)),
            "raster:bands",
        )
    baseline = _baseline_number(item.properties.get("s2:processing_baseline"))
    if baseline is not None:
        new = baseline >= 4.0
    else:
        when = item.datetime
        new = when is not None and when.date().isoformat() >= BASELINE_04_FROM
    return BandScaling(1e-4, -0.1 if new else 0.0, "processing baseline")


def _baseline_number(value: Any) -> float | None:
    """``s2:processing_baseline`` as a number (``"05.09"``, ``"4.00"``, ``"N0400"``)."""
    m = re.fullmatch(r"N?(\d{1,2})\.?(\d{2})", str(value or "").strip())
    return int(m.group(1)) + int(m.group(2)) / 100 if m else None


def require_assets(items: Sequence[pystac.Item], bands: Sequence[str]) -> dict[str, str]:
    """Resolve each band's asset key, the same for every item.

    Returns:
        band -> asset key.

    Raises:
        DataError: an item lacks a band, or items key a band differently.

    """
    keys: dict[str, str] = {}
    for item in items:
        for band in bands:
            key = asset_key(item, band)
            if keys.setdefault(band, key) != key:
                raise DataError(
                    f"scenes key band {band!r} differently ({keys[band]!r} and {key!r} in "
                    f"{item.id}); search one collection at a time"
                )
    return keys
