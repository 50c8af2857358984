"""Scheduling-group priority of the app's kernels (Linux autogroups)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asmspotter import paths
from asmspotter.app import priority
from asmspotter.app.priority import (
    BACKGROUND_NICE,
    SERVING_NICE,
    group_nice,
    set_group_nice,
)

needs_autogroups = pytest.mark.usefixtures("autogroups")

#: A process in a session of its own that, once told, goes back to normal priority.
CHILD = (
    "import sys\n"
    "from asmspotter.app.priority import group_nice, serve_at_normal_priority\n"
    "print(group_nice(), flush=True)\n"
    "sys.stdin.readline()\n"
    "serve_at_normal_priority()\n"
    "print(group_nice(), flush=True)\n"
)


def session_child() -> subprocess.Popen[str]:
    """Start :data:`CHILD` in a session of its own, as jupyter_client starts a kernel."""
    env = {**os.environ, "PYTHONPATH": str(paths.source_checkout() or "")}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


@needs_autogroups
def test_a_kernel_starts_low_and_serves_at_normal_priority() -> None:
    child = session_child()
    assert child.stdin is not None and child.stdout is not None
    mine = group_nice()
    try:
        assert int(child.stdout.readline()) == SERVING_NICE  # a new session's group
        assert set_group_nice(BACKGROUND_NICE, child.pid)  # what the app's server does
        assert group_nice(child.pid) == BACKGROUND_NICE
        assert group_nice() == mine  # this session's group is not touched
        child.stdin.write("page\n")
        child.stdin.flush()
        assert int(child.stdout.readline()) == SERVING_NICE  # its page came
    finally:
        child.kill()
        child.wait()


@needs_autogroups
def test_a_group_the_app_did_not_lower_is_left_as_it_is() -> None:
    child = session_child()
    assert child.stdin is not None and child.stdout is not None
    try:
        assert int(child.stdout.readline()) == SERVING_NICE
        assert set_group_nice(5, child.pid)  # someone else's choice
        child.stdin.write("page\n")
        child.stdin.flush()
        assert int(child.stdout.readline()) == 5
    finally:
        child.kill()
        child.wait()


def test_a_refused_group_is_reported() -> None:
    assert set_group_nice(BACKGROUND_NICE, pid=2**22 + 1) is False  # no such process
    assert group_nice(2**22 + 1) is None
    assert set_group_nice(99) is False  # out of range: the system refuses it


@pytest.mark.parametrize(
    ("text", "nice"),
    [
        ("/autogroup-1506 nice 0\n", 0),
        ("/autogroup-7 nice 19\n", 19),
        ("/autogroup-7 nice -5\n", -5),
        ("", None),  # a process in a CPU cgroup of its own (a container): no autogroup
    ],
)
def test_the_group_file_is_read_as_the_kernel_writes_it(
    text: str, nice: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "autogroup").write_text(text)
    monkeypatch.setattr(priority, "_autogroup", lambda pid: tmp_path / "autogroup")
    assert group_nice() == nice


def test_a_process_outside_autogroups_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "autogroup").write_text("")
    monkeypatch.setattr(priority, "_autogroup", lambda pid: tmp_path / "autogroup")
    assert set_group_nice(BACKGROUND_NICE) is False  # writing would change nothing
    assert (tmp_path / "autogroup").read_text() == ""
    priority.serve_at_normal_priority()  # and a kernel there serves as it is
    assert (tmp_path / "autogroup").read_text() == ""
