"""Removing what killed runs left behind: temporary names of processes no longer running.

Every writer of :mod:`asmspotter.geoio` writes under a temporary name that carries its
process id (:func:`~asmspotter.geoio.temp_prefix`). A run killed by ``kill -9`` or a power
cut leaves such names behind; :func:`remove_leftovers` removes them (or puts back a folder
a publication had moved aside) and never touches those of a process still writing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from asmspotter.geoio import PID_PREFIX, TEMP_NAME

log = logging.getLogger(__name__)

#: Staging folders of detections written by older versions (no process id in the name).
LEGACY_NAME = re.compile(r"^\.detect-partial-")
#: Temporary names without a process id (written by older versions) are removed when they
#: have not changed for this long.
LEGACY_LEFTOVER_AGE_S = 3600.0


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _abandoned(path: Path, rest: str, now: float) -> bool:
    m = PID_PREFIX.match(rest)
    if m is not None:
        return not _pid_alive(int(m.group("pid")))
    try:
        return now - path.lstat().st_mtime > LEGACY_LEFTOVER_AGE_S
    except FileNotFoundError:
        return False


def remove_leftovers(folder: str | os.PathLike[str], depth: int = 2) -> list[Path]:
    """Remove the temporary files and folders that dead processes left below ``folder``.

    A temporary name (see :func:`~asmspotter.geoio.temp_prefix`) whose process is no
    longer running is a leftover: a file half written, a folder half published. A folder
    that was moved aside by a publication that died before the new folder was in place is
    put back instead (it is the last complete version). Temporary names of live processes
    are never touched, so this is safe while another process writes.

    Args:
        folder: where to look (absent: nothing to do).
        depth: how many folder levels below ``folder`` to look into.

    Returns:
        The leftovers removed (or put back).

    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed: list[Path] = []
    now = time.time()
    level = [root]
    for _ in range(depth + 1):
        below: list[Path] = []
        for parent in level:
            try:
                entries = list(parent.iterdir())
            except OSError:
                continue
            for entry in entries:
                m = TEMP_NAME.match(entry.name)
                if m is None and LEGACY_NAME.match(entry.name):
                    if _abandoned(entry, "", now):
                        shutil.rmtree(entry, ignore_errors=True)
                        removed.append(entry)
                    continue
                if m is None:
                    if entry.is_dir() and not entry.is_symlink():
                        below.append(entry)
                    continue
                if not _abandoned(entry, m.group("rest"), now):
                    continue
                if m.group("kind") == "old" and _restore_aside(entry, parent / m.group("name")):
                    removed.append(entry)
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
                removed.append(entry)
        level = below
    if removed:
        log.info("removed %d leftover(s) of killed runs below %s", len(removed), root)
    return removed


def _restore_aside(aside: Path, final: Path) -> bool:
    """Put back a folder a dead publication moved aside, when nothing replaced it."""
    inner = aside / final.name
    if final.exists() or not inner.is_dir():
        return False
    os.rename(inner, final)
    shutil.rmtree(aside, ignore_errors=True)
    return True
