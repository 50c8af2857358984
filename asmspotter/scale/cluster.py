"""Where a tiled run's tasks run: a local Dask cluster, or an existing one.

:class:`ClusterSpec` says which: the address of a running scheduler (``--scheduler``, or the
``ASMSPOTTER_SCHEDULER`` variable: one started with ``dask scheduler`` and ``dask worker`` on
other machines, on Kubernetes or Coiled), else a ``LocalCluster`` of worker processes sized
to this machine (``--workers``, ``--threads-per-worker``). :func:`connect` opens a
``distributed.Client`` to it and closes what it started.

Workers of an existing cluster must import this package and read the cache and output
folders (a shared file system) and the model card at the paths the client gives.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asmspotter.errors import FetchError, InputError

if TYPE_CHECKING:
    from distributed import Client

#: Environment variable naming the scheduler of an existing cluster.
SCHEDULER_ENV = "ASMSPOTTER_SCHEDULER"
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT_S = 30


@dataclass(frozen=True)
class ClusterSpec:
    """Which Dask cluster runs the tiles.

    Attributes:
        scheduler: address of an existing scheduler (``tcp://host:8786``); None for a local
            cluster.
        workers: worker processes of the local cluster (default: one per core).
        threads_per_worker: threads of each local worker (default 1).
        memory_limit: memory limit of each local worker (Dask's ``memory_limit``).

    """

    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str = "auto"

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise InputError(
                f"--threads-per-worker must be at least 1, got {self.threads_per_worker}"
            )
        if self.scheduler is not None and (self.workers or self.threads_per_worker):
            raise InputError(
                "--workers and --threads-per-worker size a local cluster; an existing cluster "
                "(--scheduler or ASMSPOTTER_SCHEDULER) has its own workers"
            )

    @classmethod
    def from_options(
        cls,
        scheduler: str | None = None,
        workers: int | None = None,
        threads_per_worker: int | None = None,
    ) -> ClusterSpec | None:
        """Return the cluster the options ask for, or None for a single-process run.

        ``scheduler`` defaults to ``ASMSPOTTER_SCHEDULER`` unless local workers are asked
        for.
        """
        if scheduler is None and workers is None and threads_per_worker is None:
            scheduler = os.environ.get(SCHEDULER_ENV) or None
            if scheduler is None:
                return None
        return cls(scheduler, workers, threads_per_worker)

    def local_size(self) -> tuple[int, int]:
        """(workers, threads per worker) of the local cluster this spec asks for."""
        threads = self.threads_per_worker or 1
        cores = os.cpu_count() or 1
        return self.workers or max(1, cores // threads), threads


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator[Client]:
    """Open a client to the cluster ``spec`` names (starting a local one if asked).

    Raises:
        FetchError: the scheduler cannot be reached.

    """
    from distributed import Client, LocalCluster

    if spec.scheduler is not None:
        try:
            client = Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise FetchError(
                f"cannot reach the Dask scheduler at {spec.scheduler} ({exc}); start one with "
                "`dask scheduler` or unset ASMSPOTTER_SCHEDULER"
            ) from None
        with client:
            yield client
        return
    workers, threads = spec.local_size()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            memory_limit=spec.memory_limit,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
