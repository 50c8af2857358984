"""Timeouts and retries for every request to a STAC API, its assets and the SAS API.

Environment: ``ASMSPOTTER_HTTP_TIMEOUT`` (seconds, default 30), ``ASMSPOTTER_HTTP_RETRIES``
(default 4), ``ASMSPOTTER_HTTP_BACKOFF`` (seconds, default 0.5).

Server errors (5xx, 429) and refused or dropped connections are retried with backoff; a
request that times out is not: a server that does not answer within the timeout is
reported then, instead of after ``retries + 1`` timeouts.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

from asmspotter.errors import InputError

TIMEOUT_ENV = "ASMSPOTTER_HTTP_TIMEOUT"
RETRIES_ENV = "ASMSPOTTER_HTTP_RETRIES"
BACKOFF_ENV = "ASMSPOTTER_HTTP_BACKOFF"

#: HTTP status codes that are retried (server trouble and rate limiting).
RETRY_STATUS: tuple[int, ...] = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts and retries for every request to a STAC API or its assets.

    Attributes:
        timeout: seconds to wait for a connection or an answer.
        retries: how many times a failed request (5xx, 429, connection error, timeout)
            is retried before giving up.
        backoff: backoff factor in seconds; the n-th retry waits about
            ``backoff * 2 ** (n - 1)``.

    """

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"HTTP timeout must be positive, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"HTTP retries must be >= 0, got {self.retries}")
        if self.backoff < 0:
            raise ValueError(f"HTTP backoff must be >= 0, got {self.backoff}")

    @classmethod
    def from_env(cls) -> HttpSettings:
        """Read the settings from the environment (defaults where unset).

        Raises:
            InputError: a variable is not a valid number.

        """
        try:
            return cls(
                timeout=float(os.environ.get(TIMEOUT_ENV) or cls.timeout),
                retries=int(os.environ.get(RETRIES_ENV) or cls.retries),
                backoff=float(os.environ.get(BACKOFF_ENV) or cls.backoff),
            )
        except ValueError as exc:
            raise InputError(
                f"invalid HTTP setting in {TIMEOUT_ENV}/{RETRIES_ENV}/{BACKOFF_ENV}: {exc}"
            ) from None

    @property
    def tries(self) -> str:
        """How many tries a request gets, for messages (``"5 tries"``)."""
        return f"{self.retries + 1} tries"

    def retry(self) -> Any:
        """Return the urllib3 ``Retry`` policy for requests sessions (timeouts not retried)."""
        return _retry_class()(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff,
            status_forcelist=RETRY_STATUS,
            allowed_methods=None,  # retry POST searches too: they are idempotent
            raise_on_status=False,
        )

    def session(self) -> Any:
        """Return a ``requests.Session`` that retries with backoff (pass ``self.timeout``)."""
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(max_retries=self.retry())
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration for reading remote COGs with the same timeouts and retries."""
        seconds = str(max(1, math.ceil(self.timeout)))
        return {
            "GDAL_HTTP_TIMEOUT": seconds,
            "GDAL_HTTP_CONNECTTIMEOUT": seconds,
            "GDAL_HTTP_MAX_RETRY": str(self.retries),
            "GDAL_HTTP_RETRY_DELAY": str(max(self.backoff, 0.01)),
            "GDAL_HTTP_RETRY_CODES": ",".join(str(c) for c in RETRY_STATUS),
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MULTIRANGE": "SINGLE_GET",
            "CPL_VSIL_CURL_USE_HEAD": "NO",
            "VSI_CACHE": "TRUE",
        }

    def timeout_message(self, what: str) -> str:
        """Return the error for a server (``what``) that did not answer in time."""
        return (
            f"{what} did not answer within {self.timeout:g} s; set {TIMEOUT_ENV} for a "
            "longer timeout"
        )


#: What libraries (urllib3, curl) say when a connection cannot be made, and the reason shown.
_CONNECTION_FAILURES: tuple[tuple[str, str], ...] = (
    ("connection refused", "connection refused"),
    ("could not connect to server", "connection refused"),
    ("couldn't connect to server", "connection refused"),
    ("name or service not known", "host name not found (offline?)"),
    ("temporary failure in name resolution", "host name not found (offline?)"),
    ("nodename nor servname", "host name not found (offline?)"),
    ("could not resolve host", "host name not found (offline?)"),
    ("failed to resolve", "host name not found (offline?)"),
    ("network is unreachable", "network unreachable (offline?)"),
    ("no route to host", "no route to host (offline?)"),
    ("connection reset", "connection reset by the server"),
    ("remotedisconnected", "the server closed the connection"),
    ("connection aborted", "the server closed the connection"),
    ("failed to connect", "cannot connect"),
)


def connection_failure(text: str) -> str | None:
    """Return the reason, in plain words, of a failed connection a library describes.

    Args:
        text: the library's message (urllib3's ``Max retries exceeded ... (Caused by
            NewConnectionError(...))``, curl's ``Failed to connect to ...``).

    Returns:
        A few words (``connection refused``, ``host name not found (offline?)``), or None
        when ``text`` is not about a connection that could not be made.

    """
    low = text.lower()
    return next((reason for phrase, reason in _CONNECTION_FAILURES if phrase in low), None)


@functools.cache
def _retry_class() -> Any:
    """Return a urllib3 ``Retry`` that gives up at once when a request times out."""
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NewConnectionError,
        ReadTimeoutError,
    )
    from urllib3.util.retry import Retry

    class TimeoutFinalRetry(Retry):
        """Retries server errors and failed connections, never a request that timed out."""

        def increment(self, method: Any = None, url: Any = None, *args: Any, **kw: Any) -> Any:
            error = kw.get("error", args[1] if len(args) > 1 else None)
            timed_out = isinstance(error, ReadTimeoutError) or (
                isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError)
            )
            if timed_out:
                pool = kw.get("_pool", args[2] if len(args) > 2 else None)
                raise MaxRetryError(pool, url, error) from error  # type: ignore[arg-type]
            return super().increment(method, url, *args, **kw)

    return TimeoutFinalRetry
