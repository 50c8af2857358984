"""User-facing errors.

Anything raised as an :class:`AsmSpotterError` is a problem the user can act on
(bad input, missing data, an unreachable server). The CLI prints its message on
one line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class AsmSpotterError(Exception):
    """Base class of all errors whose message is meant for the user."""


class InputError(AsmSpotterError):
    """The user asked for something that does not exist or makes no sense."""


class DataError(AsmSpotterError):
    """A file is missing, corrupt, or does not hold what was expected."""


class FetchError(AsmSpotterError):
    """A server failed, timed out, or returned something unusable."""


class OutputError(AsmSpotterError):
    """An output could not be written (disk full, no permission, read-only file system).

    The message names the path; nothing half written is left behind.
    """


class RegionBusyError(AsmSpotterError):
    """Another process is writing the same region's outputs (it holds the region's lock)."""


class CatalogueError(InputError):
    """The region catalogue is invalid; the message names the offending entry."""


class NoScenesError(InputError):
    """A STAC search found no scene for the place, dates and cloud limit asked for."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM, as schedulers and ``docker stop`` send).

    A :class:`KeyboardInterrupt`, so that everything that cleans up after Ctrl-C (temporary
    files and folders, thread pools) does so after SIGTERM too.
    """


class AsmSpotterWarning(UserWarning):
    """Base class of warnings meant for the user: the CLI prints them on one line."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """Return the first line of an exception's message (its type name when empty).

    For one-line user messages built around a library's exception, whose text may run over
    several lines.
    """
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]
