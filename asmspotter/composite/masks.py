"""Cloud masks of Sentinel-2 scenes: SCL (L2A), s2cloudless or QA60 (L1C).

L2A scenes are masked with their scene classification (:data:`SCL_MASKED`); L1C scenes with
s2cloudless when it is installed (``pip install 'asmspotter[l1c]'``), else with the QA60
cloud bits (:data:`QA60_BITS`). :func:`clear_mask` gives the clear pixels of a loaded stack
and :func:`mask_provenance` says how they were found.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter.bands import CANONICAL_BANDS, QA60_ASSET, SCL_ASSET

if TYPE_CHECKING:
    import xarray as xr

#: SCL classes masked: no-data, saturated, cloud shadow, cloud medium/high, cirrus, snow.
SCL_MASKED: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
#: QA60 bits masked on L1C scenes when s2cloudless is not installed: opaque cloud, cirrus.
QA60_BITS: tuple[int, ...] = (10, 11)
#: s2cloudless input bands (B01 B02 B04 B05 B08 B8A B09 B10 B11 B12: all but B03, B06 and
#: B07, in spectral order) and its 10 m settings.
S2CLOUDLESS_BANDS: tuple[str, ...] = tuple(
    b for b in CANONICAL_BANDS if b not in ("green", "rededge2", "rededge3")
)
S2CLOUDLESS_SETTINGS: Mapping[str, Any] = {
    "threshold": 0.4,
    "average_over": 22,
    "dilation_size": 11,
}


def mask_method(level: str) -> str:
    """Return how scenes of a processing level are masked: ``scl``, ``s2cloudless`` or ``qa60``."""
    if level == "L2A":
        return "scl"
    try:
        import s2cloudless  # noqa: F401
    except ImportError:
        return "qa60"
    return "s2cloudless"


def mask_inputs(method: str) -> tuple[str, ...]:
    """Return the canonical assets a mask method reads (s2cloudless: reflectance bands)."""
    return {"scl": (SCL_ASSET,), "qa60": (QA60_ASSET,), "s2cloudless": S2CLOUDLESS_BANDS}[method]


def clear_mask(
    method: str,
    ds: xr.Dataset,
    keys: Mapping[str, str],
    refl: Mapping[str, xr.DataArray],
) -> xr.DataArray:
    """Return the clear (unmasked) pixels of a loaded stack, lazily.

    Args:
        method: a :func:`mask_method`.
        ds: the loaded assets (time, y, x), keyed by asset key.
        keys: canonical band or mask name -> asset key.
        refl: reflectance per canonical band (s2cloudless reads its inputs here).

    """
    if method == "scl":
        return ~ds[keys[SCL_ASSET]].isin(list(SCL_MASKED))
    if method == "qa60":
        bits = sum(1 << b for b in QA60_BITS)
        return (ds[keys[QA60_ASSET]] & bits) == 0
    return ~s2cloudless_clouds(refl)


def mask_provenance(method: str) -> dict[str, Any]:
    """Return how clouds were masked, for provenance."""
    if method == "scl":
        return {
            "method": "scl",
            "masked_classes": list(SCL_MASKED),
            "note": "no-data, saturated, cloud shadow, cloud medium/high, cirrus, snow",
        }
    if method == "qa60":
        return {
            "method": "qa60",
            "masked_bits": list(QA60_BITS),
            "note": "opaque clouds and cirrus; s2cloudless not installed",
        }
    import s2cloudless

    return {
        "method": "s2cloudless",
        "version": getattr(s2cloudless, "__version__", None),
        **S2CLOUDLESS_SETTINGS,
    }


def s2cloudless_clouds(refl: Mapping[str, xr.DataArray]) -> xr.DataArray:
    """Cloud mask (time, y, x) from s2cloudless, computed chunk by chunk."""
    import dask.array as da
    import xarray as xr

    stack = xr.concat([refl[b].fillna(0) for b in S2CLOUDLESS_BANDS], dim="s2band")
    stack = stack.transpose("time", "y", "x", "s2band").chunk({"s2band": -1, "time": 1})

    def detect(block: np.ndarray) -> np.ndarray:
        from s2cloudless import S2PixelCloudDetector

        detector = S2PixelCloudDetector(all_bands=False, **S2CLOUDLESS_SETTINGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return detector.get_cloud_masks(block.astype(np.float32)).astype(bool)

    data = da.map_blocks(detect, stack.data, drop_axis=3, dtype=bool)
    return xr.DataArray(
        data,
        dims=("time", "y", "x"),
        coords={
            "time": stack.time,
            "y": stack.y,
            "x": stack.x,
        },
    )
