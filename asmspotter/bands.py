"""Sentinel-2 bands and radiometry: the one home of band names and how values are read.

Every stage names bands by their canonical name (the Earth Search v1 asset keys), stores
that name as the band description of composites and chip galleries, and looks bands up
with :func:`band_indexes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from asmspotter.errors import InputError

#: Canonical band names (Earth Search v1 asset keys), in spectral order.
CANONICAL_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "red",
    "rededge1",
    "rededge2",
    "rededge3",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
)
#: The ten 10 m and 20 m bands of Sentinel-2 L2A, in spectral order (all canonical bands but
#: the 60 m ones): the default bands of multispectral chip galleries.
L2A_BANDS: tuple[str, ...] = tuple(
    b for b in CANONICAL_BANDS if b not in ("coastal", "nir09", "cirrus")
)
#: True colour, in display order; the RGB detector's bands and every composite's minimum.
TRUE_COLOUR: tuple[str, ...] = ("red", "green", "blue")
#: Sentinel-2 band ids of the canonical names (and of the mask assets), for STAC items
#: whose asset keys are band ids (``B04``) rather than Earth Search names.
S2_BAND_IDS: Mapping[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
    "qa60": "QA60",
}
#: Earth Search asset keys of the Sentinel-2 mask layers: the scene classification of L2A
#: items and the QA60 cloud bitmask of L1C items.
SCL_ASSET = "scl"
QA60_ASSET = "qa60"

#: How a composite's values are to be read (its ``ASMSPOTTER_RADIOMETRY`` tag):
#: ``reflectance`` = float surface or top-of-atmosphere reflectance (about 0..1, NaN =
#: no-data); ``display`` = uint8 true-colour display values (0 in all bands = no-data).
Radiometry = Literal["reflectance", "display"]
RADIOMETRIES: tuple[Radiometry, ...] = ("reflectance", "display")

#: Reflectance that maps to 255 in PNG chips and display composites (value / 0.3 x 255):
#: Amazon Mining Watch's chip scaling (L1C value / 3000), and the RGB models' input ceiling.
DISPLAY_REFLECTANCE_MAX = 0.3


def band_indexes(
    have: Sequence[str], want: Sequence[str], what: str, wanted_by: str = "the model"
) -> list[int]:
    """Return the 0-based positions of the ``want`` bands among ``have``.

    Names match exactly (canonical names are lower case). Add 1 for rasterio's band
    indexes.

    Args:
        have: the band names a raster or gallery holds, in its band order.
        want: the band names needed, in the order they are needed.
        what: how to name the holder in the error (e.g. a gallery's or composite's path).
        wanted_by: who needs the bands, for the error.

    Raises:
        InputError: ``what`` lacks one of the bands.

    """
    missing = [b for b in want if b not in have]
    if missing:
        raise InputError(
            f"{what} holds bands {', '.join(have)}; {wanted_by} needs {', '.join(want)} "
            f"(missing: {', '.join(missing)})"
        )
    return [list(have).index(b) for b in want]
