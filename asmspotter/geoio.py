"""Safe writing of rasters, JSON and other outputs, file by file or folder by folder.

Every writer goes through :func:`atomic_output`: the file is written under a
temporary name in the destination folder and renamed into place only when it is
complete, so an error or an interrupt never leaves a half-written file behind. Sets of
files that belong together (a composite and its provenance, a detection, an analysis) are
written complete into a temporary folder beside their folder and swapped in as a unit
(:func:`publish_folder`), so readers never see files of two runs side by side.

Temporary names carry the writer's process id (``.<name>.partial-<pid>-...``,
``.<name>.publish-<pid>-...``): :func:`asmspotter.leftovers.remove_leftovers` removes those
of processes that died (kill -9, power cut) and never those of a process still writing.
Writes the file system refuses (disk full, no permission, read-only) become one-line
:class:`~asmspotter.errors.OutputError` s that name the destination.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import __version__
from asmspotter.errors import AsmSpotterError, DataError, OutputError, first_line

log = logging.getLogger(__name__)

#: Kinds of temporary names (:data:`TEMP_NAME`): files being written, folders being
#: published, a folder replaced by a publication (removed once the new one is in place),
#: work files.
TEMP_KINDS: tuple[str, ...] = ("partial", "publish", "old", "work")
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|publish|old|work)-(?P<rest>.+)$")
PID_PREFIX = re.compile(r"^(?P<pid>\d+)-")
#: Block side (px) of the COGs written (their overviews halve until one block holds them).
COG_BLOCK = 256
#: Libraries whose exceptions, raised while writing, mean that the file system refused.
_WRITER_MODULES = ("rasterio", "pyogrio", "fiona", "osgeo", "shapefile")


def temp_prefix(name: str, kind: str) -> str:
    """Return the prefix of a temporary name for ``name`` of one of :data:`TEMP_KINDS`.

    The prefix holds this process's id, so that
    :func:`~asmspotter.leftovers.remove_leftovers` can tell the
    leftovers of dead processes from the files of a live one.
    """
    assert kind in TEMP_KINDS, kind
    return f".{name}.{kind}-{os.getpid()}-"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    Args:
        path: the final destination; its parent folders are created.
        suffix: suffix of the temporary file (defaults to the final suffix, so that
            drivers that look at the extension still work).

    Yields:
        A path in the same folder as ``path`` to write to.

    Raises:
        OutputError: the file system refused the write (disk full, permission, read-only);
            the message names ``path``.

    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=temp_prefix(final.stem, "partial"),
            suffix=suffix if suffix is not None else final.suffix,
            dir=final.parent,
        )
    except OSError as exc:
        raise output_error(exc, final) from None
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers (GDAL, OGR) prefer to create the file themselves
    try:
        yield tmp
        if not tmp.exists():
            raise DataError(f"nothing was written for {final}")
        os.replace(tmp, final)
    except Exception as exc:
        _remove(tmp)
        refused = write_refusal(exc, final)
        if refused is None:
            raise
        raise refused from exc
    except BaseException:
        _remove(tmp)
        raise


def write_refusal(exc: BaseException, path: str | os.PathLike[str]) -> OutputError | None:
    """Return the :class:`OutputError` for a write the file system refused, else None.

    OS errors, and the errors of GDAL/OGR writers (rasterio, pyogrio), count as refusals;
    user-facing errors and programming errors do not.
    """
    if isinstance(exc, AsmSpotterError):
        return None
    if isinstance(exc, OSError):
        return output_error(exc, Path(path))
    module = type(exc).__module__ or ""
    if module.split(".")[0] in _WRITER_MODULES:
        return output_error(exc, Path(path))
    return None


#: What GDAL, OGR and SQLite say when a write fails for want of room, and the errno meant.
_WRITE_FAILURES: tuple[tuple[str, int], ...] = (
    ("no space left", errno.ENOSPC),
    ("disk is full", errno.ENOSPC),
    ("free disk space", errno.ENOSPC),
    ("file too large", errno.EFBIG),
    ("read-only file system", errno.EROFS),
    ("permission denied", errno.EACCES),
)


def output_error(exc: BaseException, path: Path) -> OutputError:
    """Return a one-line :class:`OutputError` naming ``path`` for a failed write.

    The reason is the OS's (``No space left on device``), also when a library words it
    its own way (SQLite's "database or disk is full"); else the library's first line.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = os.strerror(exc.errno)
    else:
        text = " ".join(str(exc).split()).lower()
        known = [code for phrase, code in _WRITE_FAILURES if phrase in text]
        reason = os.strerror(known[0]) if known else first_line(exc, 160)
    if _disk_full(path):  # whatever the library said (often an SQL statement)
        reason = os.strerror(errno.ENOSPC)
    return OutputError(f"cannot write {path}: {reason}")


def _disk_full(path: Path) -> bool:
    """Return True when the file system that would hold ``path`` has (almost) no room."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return False
    return usage.free < max(1 << 20, usage.total // 1000)


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".aux.xml")):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            p.unlink()


# --------------------------------------------------------------------------------------
# folders published as a unit
# --------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _foreign_entries(folder: Path, allowed: set[str]) -> list[str]:
    """Names in ``folder`` that are neither allowed outputs nor temporary files."""
    if not folder.is_dir():
        return []
    out = []
    for entry in folder.iterdir():
        name = entry.name
        base = name[: -len(".aux.xml")] if name.endswith(".aux.xml") else name
        if base in allowed or TEMP_NAME.match(name):
            continue
        out.append(name)
    return sorted(out)


@contextlib.contextmanager
def publish_folder(
    path: str | os.PathLike[str],
    allowed: Iterable[str] | None = None,
    keep: Iterable[str] = (),
) -> Iterator[Path]:
    """Yield an empty folder beside ``path`` that replaces ``path`` as a unit on success.

    Write every file of the set into the yielded folder (with the writers of this module);
    when the block succeeds, the folder is swapped in for ``path`` atomically (Linux
    ``renameat2``; elsewhere the old folder is moved aside first, and
    :func:`~asmspotter.leftovers.remove_leftovers` puts it back if the process dies in
    between), and the old folder is removed. On any error or interrupt the old folder
    stays as it was and the new one is removed, so readers see either the old set or the
    new set, never a mix.

    Args:
        path: the published folder (created with its parents if absent).
        allowed: the names an existing folder at ``path`` may hold (with their
            ``.aux.xml`` side-cars and temporary files); when it holds anything else it is
            not replaced. None allows anything.
        keep: names of entries of an existing folder at ``path`` that belong to other
            outputs (a tiled run's ``tiles`` folder below a period's folder): they are
            moved into the new folder just before the swap, so they stay in place.

    Raises:
        OutputError: ``path`` holds other files, or the file system refused a write
            (the message names the file as it would be published).

    """
    final = Path(path)
    kept = tuple(keep)
    if allowed is not None:
        foreign = _foreign_entries(final, {*allowed, *kept})
        if foreign:
            raise OutputError(
                f"not replacing {final}: it holds files that are not this output's "
                f"({', '.join(foreign[:5])}); move them elsewhere or choose another folder"
            )
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = _new_folder(final.parent, temp_prefix(final.name, "publish"))
    except OSError as exc:
        raise output_error(exc, final) from None
    try:
        yield staging
        _swap_in(staging, final, kept)
    except OutputError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(str(exc).replace(str(staging), str(final))) from exc.__cause__
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        refused = write_refusal(exc, final)
        if refused is None:
            raise
        raise refused from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _new_folder(parent: Path, prefix: str) -> Path:
    """Create a new folder with a unique name (permissions as the umask says, unlike mkdtemp)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def _swap_in(staging: Path, final: Path, keep: Sequence[str] = ()) -> None:
    """Put the complete ``staging`` folder in place of ``final``; remove the old one.

    The entries of ``final`` named in ``keep`` are moved into ``staging`` first (put back
    if the swap fails).
    """
    if not final.exists():
        os.rename(staging, final)
        return
    moved = [n for n in keep if (final / n).exists() and not (staging / n).exists()]
    for name in moved:
        os.rename(final / name, staging / name)
    try:
        _exchange_or_move(staging, final)
    except BaseException:
        for name in moved:
            with contextlib.suppress(OSError):
                os.rename(staging / name, final / name)
        raise


def _exchange_or_move(staging: Path, final: Path) -> None:
    """Swap ``staging`` in for the existing ``final``; remove the old folder."""
    if _exchange(staging, final):
        shutil.rmtree(staging, ignore_errors=True)  # now the old folder
        return
    aside = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name, "old"), dir=final.parent))
    os.rename(final, aside / final.name)
    os.rename(staging, final)
    shutil.rmtree(aside, ignore_errors=True)


def file_digest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return a file's size and SHA-256, as provenance records them.

    Returns:
        ``{"bytes": size, "sha256": hex digest}``.

    Raises:
        DataError: the file cannot be read.

    """
    h = hashlib.sha256()
    p = Path(path)
    try:
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        size = p.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
    return {"bytes": size, "sha256": h.hexdigest()}


def digest_differs(path: str | os.PathLike[str], recorded: Mapping[str, Any]) -> str | None:
    """Compare a file with the size and SHA-256 a record holds.

    Returns:
        None when the file matches, else what differs (for messages).

    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return "it is missing"
    if "bytes" in recorded and size != int(recorded["bytes"]):
        return f"it holds {size} bytes, its record says {recorded['bytes']}"
    if "sha256" in recorded:
        try:
            actual = file_digest(p)["sha256"]
        except DataError as exc:
            return str(exc)
        if actual != recorded["sha256"]:
            return "its checksum differs from its record"
    return None


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


def gdal_threads() -> str:
    """Return how many threads GDAL may compress with: ``GDAL_NUM_THREADS`` where set.

    A Dask worker sets it to its own thread count (:func:`asmspotter.scale.records.
    worker_task`), so workers sharing a machine do not each use every core; elsewhere GDAL
    uses all cores (``ALL_CPUS``).
    """
    from rasterio.env import get_gdal_config

    value = get_gdal_config("GDAL_NUM_THREADS")
    return str(value) if value else "ALL_CPUS"


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
    blocksize: int = COG_BLOCK,
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
    src: Any, path: str | os.PathLike[str], *, compress: str = "DEFLATE", blocksize: int = COG_BLOCK
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
                NUM_THREADS=gdal_threads(),
                **({"predictor": "YES"} if floating else {}),
            )
    finally:
        if opened is not src:
            opened.close()
    return final
