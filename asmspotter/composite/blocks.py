"""Write a lazily computed composite block by block, and explain failed scene reads.

:func:`write_blocks` computes the (dask) median window by window into a tiled GeoTIFF with
bounded memory and a progress bar, then makes it a COG. Scene reads that fail on the way
become one-line errors (:func:`read_error`) that name the file but never a SAS token.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from asmspotter import geoio
from asmspotter.acquire import TIMEOUT_ENV, HttpSettings, StacQuery
from asmspotter.acquire.http import connection_failure
from asmspotter.errors import AsmSpotterError, AsmSpotterWarning, DataError, FetchError


class _WriteFailed(Exception):
    """Writing the composite failed (disk full, ...): not a scene that could not be read."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _WindowWriter:
    """A ``da.store`` target writing (band, y, x) blocks into an open rasterio dataset."""

    def __init__(self, dst: Any) -> None:
        self.dst = dst

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        bands, ys, xs = key
        window = Window.from_slices(ys, xs)
        indexes = list(range(bands.start + 1, bands.stop + 1))
        try:
            self.dst.write(value, indexes=indexes, window=window)
        except (RasterioError, OSError) as exc:
            raise _WriteFailed(exc) from None


class _Counter:
    """A ``da.store`` target summing boolean blocks."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        with self._lock:
            self.total += int(np.count_nonzero(value))


@contextlib.contextmanager
def _progress(desc: str, enabled: bool) -> Iterator[None]:
    """Show a tqdm bar over dask tasks while the scenes load."""
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    class _Bar(Callback):
        def _start_state(self, dsk: Any, state: Any) -> None:
            self.bar = tqdm(
                total=len(dsk),
                desc=desc,
                unit="task",
                disable=None if enabled else True,
                leave=False,
            )

        def _posttask(self, *args: Any) -> None:
            self.bar.update(1)

        def _finish(self, *args: Any) -> None:
            self.bar.close()

    with _Bar():
        yield


class _OdcReadErrors(logging.Filter):
    """Keep odc's "Failed to load" log lines for the error message instead of printing them.

    Installed once on odc's reader logger: the same failure is raised as one clear
    :class:`DataError` or :class:`FetchError`, and reads still in flight on other threads
    when it is raised would otherwise print their own lines after it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Failed to load"):
            return True
        with self._lock:
            self.messages = [*self.messages[-20:], message]
        return False

    def take(self) -> list[str]:
        with self._lock:
            taken, self.messages = self.messages, []
        return taken


_ODC_READ_ERRORS = _OdcReadErrors()


@contextlib.contextmanager
def _quiet_odc() -> Iterator[list[str]]:
    """Collect odc's read-error log lines; yields the list filled when a read fails."""
    logger = logging.getLogger("odc.loader._rio")
    if _ODC_READ_ERRORS not in logger.filters:
        logger.addFilter(_ODC_READ_ERRORS)
    _ODC_READ_ERRORS.take()
    collected: list[str] = []
    try:
        yield collected
    except BaseException:
        collected.extend(_ODC_READ_ERRORS.take())
        raise


class ReadRetryWarning(AsmSpotterWarning):
    """A server did not answer a scene read in time (or refused it); the read is retried."""


class _RetryReporter(logging.Filter):
    """Say once per server, in plain words, that GDAL retries its reads; hide GDAL's lines.

    GDAL retries a read that timed out, could not connect or got a 5xx answer, logging
    ``HTTP error code: 0 - <url>. Retrying again in ...`` each time (raw lines that the CLI
    hides). A server that never answers would then be reported only after every try timed
    out; this says so after the first one.
    """

    _LINE = re.compile(r"HTTP error code: (\d+) - (\S+?)\.? Retrying again")

    def __init__(self, http: HttpSettings | None) -> None:
        super().__init__()
        self.http = http or HttpSettings.from_env()
        self.seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        m = self._LINE.search(record.getMessage())
        if m is None:  # other GDAL lines: shown as the "rasterio" logger's level says
            return logging.getLogger("rasterio").isEnabledFor(record.levelno)
        code, host = m.group(1), urlsplit(m.group(2)).netloc
        with self._lock:
            new = (host, code) not in self.seen
            self.seen.add((host, code))
        if new:
            what = (
                f"{host} did not answer a scene read within {self.http.timeout:g} s, or "
                "refused the connection"
                if code == "0"
                else f"{host} answered HTTP {code} to a scene read"
            )
            warnings.warn(
                f"{what}; retrying ({self.http.tries} in all)", ReadRetryWarning, stacklevel=2
            )
        return False


@contextlib.contextmanager
def _report_retries(http: HttpSettings | None) -> Iterator[None]:
    """Report GDAL's read retries through a :class:`_RetryReporter` for the block."""
    logger = logging.getLogger("rasterio._env")
    level = logger.level
    reporter = _RetryReporter(http)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.WARNING))
    logger.addFilter(reporter)
    try:
        yield
    finally:
        logger.removeFilter(reporter)
        logger.setLevel(level)


def write_blocks(
    tif: Path,
    median: Any,
    clear: Any,
    bands: list[str],
    geobox: Any,
    tags: Mapping[str, str],
    desc: str,
    progress: bool,
    query: StacQuery,
    http: HttpSettings | None = None,
) -> int:
    """Compute the composite block by block into a tiled GeoTIFF, then make it a COG.

    ``http`` (default: from the environment) words the warning said when a server does not
    answer a read and it is retried (:class:`ReadRetryWarning`).

    Raises:
        FetchError: a scene read failed or timed out.
        DataError: a scene file is missing, truncated or corrupt.
        OutputError: writing the composite failed (disk full, ...); names the file.

    """
    import rasterio
    from rasterio.errors import RasterioError

    try:
        tif.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=geoio.temp_prefix(tif.stem, "work"), suffix=tif.suffix, dir=tif.parent
        )
    except OSError as exc:
        raise geoio.output_error(exc, tif) from None
    os.close(fd)
    work = Path(name)
    counter = _Counter()
    try:
        try:
            with rasterio.open(
                work,
                "w",
                driver="GTiff",
                width=geobox.shape.x,
                height=geobox.shape.y,
                count=len(bands),
                dtype="float32",
                crs=geobox.crs.to_wkt(),
                transform=geobox.transform,
                nodata=float("nan"),
                tiled=True,
                blockxsize=256,
                blockysize=256,
                compress="DEFLATE",
                BIGTIFF="IF_SAFER",
            ) as dst:
                for i, b in enumerate(bands, start=1):
                    dst.set_band_description(i, b)
                dst.update_tags(**tags)
                with _report_retries(http):
                    _store(dst, median, clear, counter, desc, progress, query, tif)
        except (RasterioError, OSError) as exc:  # creating, tagging or closing the work file
            raise geoio.output_error(exc, tif) from None
        geoio.translate_to_cog(work, tif)
    finally:
        for p in (work, work.with_name(work.name + ".aux.xml")):
            p.unlink(missing_ok=True)
    return counter.total


def _store(
    dst: Any,
    median: Any,
    clear: Any,
    counter: _Counter,
    desc: str,
    progress: bool,
    query: StacQuery,
    tif: Path,
) -> None:
    """Compute the median into ``dst`` and count the clear pixels; explain failed reads."""
    import dask
    import dask.array as da
    from rasterio.errors import RasterioError

    with _quiet_odc() as odc_log:
        try:
            with (
                _progress(desc, progress),
                dask.config.set(scheduler="threads"),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN medians
                targets: list[Any] = [_WindowWriter(dst), counter]
                da.store([median, clear], targets, lock=threading.Lock())
        except _WriteFailed as exc:
            raise geoio.output_error(exc.cause, tif) from None
        except (RasterioError, OSError) as exc:
            odc_log.extend(_ODC_READ_ERRORS.take())
            raise read_error(exc, query, odc_log) from None


def _access_hint(query: StacQuery) -> str:
    if query.sign == "none":
        return (
            "its assets need signed URLs: for Planetary Computer pass --sign "
            "planetary-computer (or set 'sign: planetary-computer' in the region's source)"
        )
    return (
        "the Planetary Computer SAS token was refused (expired, or not for this "
        "collection); run again for a fresh token"
    )


def read_error(exc: BaseException, query: StacQuery, logged: Sequence[str] = ()) -> AsmSpotterError:
    """Turn a failed scene read into a one-line FetchError or DataError."""

    def redact(text: str) -> str:  # drop URL queries: they may hold a SAS token
        return re.sub(r"(https?://[^\s'\"?]+)\?[^\s'\"]*", r"\1", text)

    chain: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 5:
        chain.append(redact(str(seen)))
        seen = seen.__cause__ or seen.__context__
    text = " | ".join([*chain, *(redact(line) for line in logged)])
    m = re.search(r"(https?://[^\s'\"]+)", text)
    where = (
        re.sub(r":\d+$", "", m.group(1).rstrip(":.,")) if m else (f"a scene of {query.describe()}")
    )
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        return FetchError(f"reading {where} timed out; set {TIMEOUT_ENV} to wait longer")
    reason = connection_failure(text)
    if reason is not None:
        return FetchError(f"cannot reach the server of {where}: {reason}")
    code = re.search(r"http (?:response )?(?:code|status)\D{0,3}(\d{3})", low)
    if code and code.group(1).startswith("5"):
        return FetchError(f"server error HTTP {code.group(1)} reading {where} (after retries)")
    azure = (urlsplit(where).hostname or "").endswith(".blob.core.windows.net")
    if code and (
        code.group(1) in ("401", "403")
        or (azure and query.sign == "none" and code.group(1) in ("404", "409"))
    ):
        return FetchError(
            f"access denied (HTTP {code.group(1)}) reading {where}; {_access_hint(query)}"
        )
    if (code and code.group(1) == "404") or "does not exist" in low or "no such file" in low:
        return DataError(f"scene file missing (HTTP 404): {where}")
    detail = next((c for c in reversed(chain) if c.strip()), "")
    detail = detail.strip().splitlines()[0][:160] if detail.strip() else type(exc).__name__
    return DataError(f"scene file truncated or corrupt: {where} ({detail})")
