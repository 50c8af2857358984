"""One writer per region: a lock held while a region's outputs are written.

:func:`region_lock` takes the region's lock file (:func:`asmspotter.layout.lock_file`, in the
region's output folder) with ``flock``, so two processes never write the same region's
outputs at once: a second run waits, saying which process holds the region (or gives up
after ``timeout`` seconds, naming it). The lock is released by the kernel when its
process ends, even after kill -9, so a killed run never blocks the next one.

Whoever takes the lock first cleans up: the leftovers of killed runs below the region's
cache and output folders (:func:`asmspotter.leftovers.remove_leftovers`) are removed then.
The lock is re-entrant within a thread (the chain holds it while each stage takes it
again); other threads of the same process wait as other processes do.

Example:
    >>> from asmspotter.locking import region_lock
    >>> with region_lock("la-pampa"):  # doctest: +SKIP
    ...     ...  # write the region's outputs

"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asmspotter import layout
from asmspotter.errors import AsmSpotterWarning, OutputError, RegionBusyError

#: Environment variable: seconds to wait for a region another process is writing (default:
#: wait until it is done).
LOCK_TIMEOUT_ENV = "ASMSPOTTER_LOCK_TIMEOUT"
#: Seconds between two tries of a held lock.
POLL_S = 0.2


class RegionBusyWarning(AsmSpotterWarning):
    """Another process is writing the region; this one waits for it."""


@dataclass(frozen=True)
class LockHolder:
    """The process holding a region's lock, as it wrote itself into the lock file.

    Attributes:
        pid: its process id (0 when unknown).
        host: the machine it runs on.
        command: its command line.
        since: when it took the lock (ISO time, UTC).

    """

    pid: int = 0
    host: str = ""
    command: str = ""
    since: str = ""

    def describe(self) -> str:
        """One phrase naming the process, for messages."""
        if not self.pid:
            return "another process"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        what = f" ({self.command}" + (f", since {self.since}" if self.since else "") + ")"
        return f"process {self.pid}{where}{what if self.command else ''}"


def read_holder(path: Path) -> LockHolder:
    """Return who holds the lock file ``path`` (empty when unknown)."""
    try:
        data = json.loads(path.read_text() or "{}")
        return LockHolder(
            int(data.get("pid", 0)),
            str(data.get("host", "")),
            str(data.get("command", "")),
            str(data.get("since", "")),
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return LockHolder()


def _command_line() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name in ("cli.py", "__main__.py"):
        name = "asmspotter"
    return " ".join([name, *sys.argv[1:]])[:200]


class _RegionState:
    """A region's lock within this process: a re-entrant thread lock and the file lock."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_STATES: dict[str, _RegionState] = {}
_STATES_LOCK = threading.Lock()


def _state(path: Path) -> _RegionState:
    with _STATES_LOCK:
        return _STATES.setdefault(str(path), _RegionState())


def lock_timeout_from_env() -> float | None:
    """Return :data:`LOCK_TIMEOUT_ENV` in seconds (None: wait as long as it takes)."""
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from asmspotter.errors import InputError

        raise InputError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None


def _busy(region: str, holder: LockHolder, waited: float) -> RegionBusyError:
    return RegionBusyError(
        f"region {region!r} is being written by {holder.describe()}; gave up after "
        f"{waited:.0f} s (wait for it to finish, or set {LOCK_TIMEOUT_ENV} to wait longer)"
    )


def _take_file_lock(
    region: str, path: Path, timeout: float | None, on_wait: Callable[[LockHolder], None] | None
) -> int:
    """Open and ``flock`` the lock file; wait (polling) while another process holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(
            f"cannot create the lock file {path}: {exc.strerror or exc} (the output "
            "folder must be writable)"
        ) from None
    started = time.monotonic()
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise OutputError(f"cannot lock {path}: {exc.strerror or exc}") from None
            waited = time.monotonic() - started
            holder = read_holder(path)
            if timeout is not None and waited >= timeout:
                raise _busy(region, holder, waited)
            if not told:
                told = True
                if on_wait is not None:
                    on_wait(holder)
                else:
                    warnings.warn(
                        f"region {region!r} is being written by {holder.describe()}; "
                        "waiting for it to finish",
                        RegionBusyWarning,
                        stacklevel=4,
                    )
            time.sleep(POLL_S)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command_line(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release_file_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def clean_region(region: str) -> list[Path]:
    """Remove the leftovers of killed runs below a region's cache and output folders.

    Only temporary files and folders of processes that are no longer running are removed
    (:func:`asmspotter.leftovers.remove_leftovers`).
    """
    from asmspotter.leftovers import remove_leftovers

    removed: list[Path] = []
    for folder in layout.region_folders(region):
        removed.extend(remove_leftovers(folder, depth=2))
    return removed


@contextlib.contextmanager
def region_lock(
    region: str,
    *,
    timeout: float | None = None,
    on_wait: Callable[[LockHolder], None] | None = None,
    clean: bool = True,
) -> Iterator[None]:
    """Hold a region's lock for the block: no other process writes the region meanwhile.

    Args:
        region: the region id.
        timeout: seconds to wait when another process holds the lock (default
            :data:`LOCK_TIMEOUT_ENV`, else as long as it takes).
        on_wait: called once with the holder when the lock is busy (default: a
            :class:`RegionBusyWarning` naming it).
        clean: remove the leftovers of killed runs of the region once the lock is taken.

    Raises:
        RegionBusyError: the lock was still held after ``timeout`` seconds (names the
            process).
        OutputError: the lock file cannot be created (the output folder is not writable).

    """
    path = layout.lock_file(region)
    wait = lock_timeout_from_env() if timeout is None else timeout
    state = _state(path)
    if not state.thread_lock.acquire(timeout=-1 if wait is None else wait):
        raise _busy(
            region, LockHolder(os.getpid(), socket.gethostname(), "this process"), wait or 0
        )
    try:
        if state.depth == 0:
            state.fd = _take_file_lock(region, path, wait, on_wait)
            if clean:
                try:
                    clean_region(region)
                except BaseException:
                    _release_file_lock(state.fd)
                    state.fd = None
                    raise
        state.depth += 1
        try:
            yield
        finally:
            state.depth -= 1
            if state.depth == 0 and state.fd is not None:
                _release_file_lock(state.fd)
                state.fd = None
    finally:
        state.thread_lock.release()
