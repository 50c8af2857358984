"""Check and read composite COGs: the one check of the composite contract.

:func:`inspect_composite` checks that a file is a composite as CONTRIBUTING.md describes it
(the ``ASMSPOTTER_RADIOMETRY`` tag, canonical band names as band descriptions, uint8
``display`` or float ``reflectance`` values, a CRS) and holds the bands asked for;
:func:`open_composite` reads one, after that check, into a (band, y, x) DataArray.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.bands import CANONICAL_BANDS, RADIOMETRIES, band_indexes
from asmspotter.errors import DataError, InputError, first_line
from asmspotter.layout import RADIOMETRY_TAG, CompositeFiles

if TYPE_CHECKING:
    import xarray as xr

#: Data types each radiometry's bands may have (the first in sort order is the expected).
_DTYPES = {"display": {"uint8"}, "reflectance": {"float32", "float64"}}


@dataclass(frozen=True)
class CompositeInfo:
    """What a reader needs to know about a composite.

    Attributes:
        path: the COG.
        band_indexes: 1-based indexes of the bands asked for in the file.
        radiometry: ``reflectance`` or ``display``.
        width: columns.
        height: rows.
        crs: rasterio CRS.
        transform: affine transform.
        dtype: band data type.
        descriptions: band descriptions found (canonical band names).
        bands: the bands asked for, in that order (all the file's by default).
        nodata: the no-data value (NaN for reflectance, 0 for display), None when unset.

    """

    path: Path
    band_indexes: tuple[int, ...]
    radiometry: str
    width: int
    height: int
    crs: Any
    transform: Any
    dtype: str
    descriptions: tuple[str, ...]
    bands: tuple[str, ...] = ()
    nodata: float | None = None


def inspect_composite(
    path: str | os.PathLike[str],
    bands: Sequence[str] | None = None,
    *,
    wanted_by: str = "the model",
) -> CompositeInfo:
    """Open a composite and check it follows the contract and holds ``bands``.

    Args:
        path: the ``composite.tif``.
        bands: canonical bands needed, in this order (default all the file's).
        wanted_by: who needs the bands, for the error when some are missing.

    Raises:
        DataError: missing, truncated or corrupt, no radiometry tag, band descriptions that
            are not canonical band names, lacking a band, values of the wrong type for the
            radiometry, or no CRS.

    """
    import rasterio
    from rasterio.errors import RasterioError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"composite not found: {p} (build it with `asmspotter fetch`)")
    try:
        with rasterio.open(p) as src:
            descs = tuple(d or "" for d in src.descriptions)
            radiometry = src.tags().get(RADIOMETRY_TAG)
            dtypes, nodata = src.dtypes, src.nodata
            size, crs, transform = (src.width, src.height), src.crs, src.transform
    except RasterioError as exc:
        raise _corrupt(p, exc) from None
    if radiometry not in RADIOMETRIES:
        found = f"{RADIOMETRY_TAG}={radiometry!r}" if radiometry else f"no {RADIOMETRY_TAG} tag"
        raise DataError(
            f"{p} is not an ASMSpotter composite ({found}; expected one of "
            f"{', '.join(RADIOMETRIES)})"
        )
    if any(d not in CANONICAL_BANDS for d in descs):
        raise DataError(f"{p}: band descriptions {list(descs)} are not canonical band names")
    wanted = tuple(bands) if bands is not None else descs
    try:
        idx = [i + 1 for i in band_indexes(descs, wanted, f"composite {p}", wanted_by)]
    except InputError as exc:
        raise DataError(str(exc)) from None
    kinds = {dtypes[i - 1] for i in idx}
    if not kinds <= _DTYPES[radiometry]:
        raise DataError(
            f"composite {p} is tagged {radiometry} but its bands are "
            f"{', '.join(sorted(kinds))}; expected {min(_DTYPES[radiometry])}"
        )
    if crs is None:
        raise DataError(f"composite {p} has no CRS")
    return CompositeInfo(
        path=p,
        band_indexes=tuple(idx),
        radiometry=radiometry,
        width=int(size[0]),
        height=int(size[1]),
        crs=crs,
        transform=transform,
        dtype=sorted(kinds)[0] if kinds else dtypes[0],
        descriptions=descs,
        bands=wanted,
        nodata=nodata,
    )


def open_composite(
    path: str | os.PathLike[str], *, bands: Sequence[str] | None = None
) -> xr.DataArray:
    """Read a composite COG into a (band, y, x) DataArray, after :func:`inspect_composite`.

    The band coordinate holds the canonical band names; ``attrs`` hold ``radiometry``,
    ``crs`` (WKT), ``transform`` (affine, 6 numbers), ``nodata`` and ``path``.

    Args:
        path: the ``composite.tif``.
        bands: bands to read (default all), in this order.

    Raises:
        DataError: as :func:`inspect_composite`, or the pixels cannot be read.

    """
    import rasterio
    import xarray as xr
    from rasterio.errors import RasterioError

    info = inspect_composite(path, bands, wanted_by="the request")
    try:
        with rasterio.open(info.path) as src:
            data = src.read(list(info.band_indexes))
    except RasterioError as exc:
        raise _corrupt(info.path, exc) from None
    transform = info.transform
    xs = transform.c + transform.a * (np.arange(info.width) + 0.5)
    ys = transform.f + transform.e * (np.arange(info.height) + 0.5)
    return xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": list(info.bands), "y": ys, "x": xs},
        attrs={
            "radiometry": info.radiometry,
            "crs": info.crs.to_wkt(),
            "transform": tuple(transform)[:6],
            "nodata": info.nodata,
            "path": str(info.path),
        },
        name="composite",
    )


def refresh_hint(path: Path) -> str:
    """Return how to rebuild a cached composite: the ``fetch --refresh`` command for it."""
    if path.name == CompositeFiles(path.parent).tif.name:
        region, period = path.parent.parent.name, path.parent.name
        return f"rebuild it with `asmspotter fetch {region} -p {period} --refresh`"
    return "rebuild it with `asmspotter fetch REGION --refresh`"


def _corrupt(path: Path, exc: BaseException) -> DataError:
    return DataError(
        f"cannot read composite {path}: truncated or corrupt ({first_line(exc)}); "
        f"{refresh_hint(path)}"
    )
