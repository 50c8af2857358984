"""A Dask cluster of separate processes on 127.0.0.1, as one starts it by hand, for tests.

:func:`process_cluster` starts ``dask scheduler`` and ``dask worker`` processes (each in its
own process group, its output in a log file), waits until the workers have joined, and stops
them all at the end. Workers import this checkout's ``asmspotter`` (``PYTHONPATH``), as
workers of a real cluster import the installed package.

Example:
    >>> with process_cluster(tmp_path, workers=2) as cluster:       # doctest: +SKIP
    ...     run_region("la-pampa", cluster=ClusterSpec(cluster.address))

"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The checkout whose ``asmspotter`` the workers import.
ROOT = Path(__file__).resolve().parents[2]
#: Seconds to wait for the scheduler to answer and the workers to join.
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class ProcessCluster:
    """A running cluster of separate processes.

    Attributes:
        address: the scheduler's address (``tcp://127.0.0.1:PORT``).
        dashboard: the scheduler's dashboard link.
        workers: the worker processes (kill one to lose a worker).
        scheduler: the scheduler process.

    """

    address: str
    dashboard: str
    workers: tuple[subprocess.Popen[bytes], ...]
    scheduler: subprocess.Popen[bytes]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env() -> dict[str, str]:
    """Return this process's environment with this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _dask(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``dask ARGS`` in its own process group, its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "dask", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=worker_env(),
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process started here, with its process group, and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@contextlib.contextmanager
def process_cluster(logs: Path, workers: int = 2, threads: int = 1) -> Iterator[ProcessCluster]:
    """Start ``dask scheduler`` and ``workers`` ``dask worker`` processes on loopback.

    Args:
        logs: folder of the processes' logs.
        workers: worker processes.
        threads: threads of each worker.

    """
    from distributed import Client

    logs.mkdir(parents=True, exist_ok=True)
    port, dash = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _dask(
        ["scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", f"127.0.0.1:{dash}"],
        logs / "scheduler.log",
    )  # fmt: skip
    procs = [
        _dask(
            [
                "worker",
                address,
                "--nthreads",
                str(threads),
                "--name",
                f"w{i}",
                "--host",
                "127.0.0.1",
                "--dashboard-address",
                "127.0.0.1:0",
            ],
            logs / f"w{i}.log",
        )  # fmt: skip
        for i in range(workers)
    ]
    try:
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
        yield ProcessCluster(address, f"http://127.0.0.1:{dash}/status", tuple(procs), scheduler)
    finally:
        for proc in [*procs, scheduler]:
            stop(proc)
