"""CPU priority of the app's kernels: a kernel waiting for its page yields the CPU.

Voila starts kernels ahead of time (its pool) and starts one again each time a page takes
one; such a kernel imports the app and loads every region while it waits. That work must
not slow the pages being served on the same cores.

On Linux a thread's nice value alone does not achieve that: each kernel runs in a session
of its own (``jupyter_client`` starts it with ``setsid``), and with the scheduler's
autogroups (``/proc/sys/kernel/sched_autogroup_enabled``, on by default) each session is a
group that gets a fair share of the CPU against every other group, whatever the nice value
of its threads. A busy thread at nice 19 in its own session halved the speed of two busy
processes at nice 0 on the 2-core machine. What counts between sessions is the group's own
nice value, ``/proc/<pid>/autogroup``; raising it needs no privilege, and lowering it back
to 0 neither (only below 0 does).

So the server sets a new kernel's group to :data:`BACKGROUND_NICE` as it starts it
(:mod:`asmspotter.app.kernels`), the kernel's background thread also runs at that nice
within its group, and the kernel sets its group back to :data:`SERVING_NICE` when its page
arrives (:func:`serve_at_normal_priority`). Elsewhere (no autogroups, another system) these
calls do nothing. That includes a process whose session has no autogroup of its own,
such as one in the machine's first session (a child of PID 1 that never called ``setsid``):
its ``/proc/<pid>/autogroup`` reads empty.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path

#: Nice value of a kernel waiting for its page, and of the work it does ahead.
BACKGROUND_NICE = 19
#: Nice value of a kernel serving a page.
SERVING_NICE = 0
#: Tries of a group's nice value when the system asks to wait (it allows one change per
#: 0.1 s to unprivileged processes).
_TRIES = 5
#: What ``/proc/<pid>/autogroup`` holds for a process scheduled in an autogroup.
_AUTOGROUP_LINE = re.compile(r"/autogroup-\d+ nice (-?\d+)")


def set_thread_nice(thread_id: int, nice: int) -> None:
    """Set a thread's nice value (Linux only; where the system refuses, leave it)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, thread_id, nice)


def _autogroup(pid: int | None) -> Path:
    return Path("/proc") / ("self" if pid is None else str(pid)) / "autogroup"


def group_nice(pid: int | None = None) -> int | None:
    """Return the nice value of a process's autogroup (None where it is not in one).

    Args:
        pid: the process (None: this one).

    """
    try:
        text = _autogroup(pid).read_text()
    except OSError:
        return None
    match = _AUTOGROUP_LINE.match(text)
    return int(match.group(1)) if match else None


def set_group_nice(nice: int, pid: int | None = None) -> bool:
    """Set the nice value of a process's scheduling group (its session's autogroup).

    Args:
        nice: 0 to 19 (below 0 needs privileges).
        pid: the process (None: this one).

    Returns:
        True if the group now has that value; False where the process is not scheduled in
        an autogroup (the value would have no effect) or the system refused.

    """
    if group_nice(pid) is None:
        return False
    path = _autogroup(pid)
    for _ in range(_TRIES):
        try:
            path.write_text(str(nice))
        except BlockingIOError:  # EAGAIN: another group changed in the last 0.1 s
            time.sleep(0.11)
        except OSError:
            return False
        else:
            return True
    return False


def serve_at_normal_priority() -> None:
    """Give this kernel the CPU share of any process again: its page has arrived.

    Only a group at :data:`BACKGROUND_NICE` (where the app server put it) is changed.
    """
    if group_nice() == BACKGROUND_NICE:
        set_group_nice(SERVING_NICE)
