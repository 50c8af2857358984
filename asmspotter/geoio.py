"""Safe writing of rasters, JSON and other outputs.

Every writer goes through :func:`atomic_output`: the file is written under a
temporary name in the destination folder and renamed into place only when it is
complete, so an error or an interrupt never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import __version__
from asmspotter.errors import DataError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    Args:
        path: the final destination; its parent folders are created.
        suffix: suffix of the temporary file (defaults to the final suffix, so that
            drivers that look at the extension still work).

    Yields:
        A path in the same folder as ``path`` to write to.

    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.stem}.partial-",
        suffix=suffix if suffix is not None else final.suffix,
        dir=final.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers (GDAL, OGR) prefer to create the file themselves
    try:
        yield tmp
        if not tmp.exists():
            raise DataError(f"nothing was written for {final}")
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".aux.xml")):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            p.unlink()


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically. Returns the final path."""
    final = Path(path)
    with atomic_output(final) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return final


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising :class:`DataError` with the path on failure."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {path} ({exc})") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def provenance_base() -> dict[str, Any]:
    """Return the provenance fields every output carries (software, version, time)."""
    return {
        "software": "asmspotter",
        "version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write_cog(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    crs: Any,
    transform: Any,
    nodata: float | int | None = None,
    band_names: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    compress: str = "DEFLATE",
    blocksize: int = 256,
) -> Path:
    """Write a (bands, rows, cols) or (rows, cols) array as a Cloud Optimized GeoTIFF.

    The file is written atomically with GDAL's COG driver (tiled, with overviews).

    Args:
        path: destination ``.tif``.
        data: the array; its dtype is kept.
        crs: anything rasterio accepts as a CRS.
        transform: the affine transform of the grid.
        nodata: the no-data value, if any.
        band_names: one description per band (canonical band names).
        tags: dataset-level metadata tags.
        compress: GDAL compression.
        blocksize: internal tile size in pixels.

    Returns:
        The final path.

    """
    arr = data[np.newaxis] if data.ndim == 2 else data
    if arr.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D array, got shape {data.shape}")
    if band_names is not None and len(band_names) != arr.shape[0]:
        raise ValueError(f"{len(band_names)} band names for {arr.shape[0]} bands")
    final = Path(path)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": arr.shape[1],
        "width": arr.shape[2],
        "count": arr.shape[0],
        "dtype": arr.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    from rasterio.io import MemoryFile

    # The COG driver only copies: write an in-memory GTiff first, then translate.
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(arr)
            if band_names is not None:
                for i, name in enumerate(band_names, start=1):
                    dst.set_band_description(i, name)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
        with mem.open() as src:
            return translate_to_cog(src, final, compress=compress, blocksize=blocksize)


def translate_to_cog(
    src: Any, path: str | os.PathLike[str], *, compress: str = "DEFLATE", blocksize: int = 256
) -> Path:
    """Copy an open rasterio dataset (or a GeoTIFF path) to a COG, atomically.

    Use this to finish rasters that were written window by window into a
    temporary tiled GeoTIFF (bounded memory), keeping descriptions and tags.
    """
    import rasterio
    import rasterio.shutil

    final = Path(path)
    opened = src if hasattr(src, "profile") else rasterio.open(src)
    try:
        floating = np.issubdtype(np.dtype(opened.dtypes[0]), np.floating)
        with atomic_output(final) as tmp:
            rasterio.shutil.copy(
                opened,
                tmp,
                driver="COG",
                compress=compress,
                blocksize=blocksize,
                BIGTIFF="IF_SAFER",
                NUM_THREADS="ALL_CPUS",
                **({"predictor": "YES"} if floating else {}),
            )
    finally:
        if opened is not src:
            opened.close()
    return final
