"""`asmspotter run`'s Dask options: which cluster they ask for, and one-line errors."""

from __future__ import annotations

import socket

import pytest

from asmspotter.cli import main
from asmspotter.errors import InputError
from asmspotter.scale import SCHEDULER_ENV, ClusterSpec
from asmspotter.scale import cluster as cluster_module

pytestmark = pytest.mark.usefixtures("loopback_only")


def test_options_choose_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert ClusterSpec.from_options() is None  # no option: the single-process chain
    assert ClusterSpec.from_options(workers=3) == ClusterSpec(workers=3)
    assert ClusterSpec(workers=3).local_size() == (3, 1)
    assert ClusterSpec(threads_per_worker=2).local_size()[1] == 2
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:9")
    assert ClusterSpec.from_options() == ClusterSpec(scheduler="tcp://127.0.0.1:9")
    # asking for local workers wins over the variable
    assert ClusterSpec.from_options(workers=2) == ClusterSpec(workers=2)
    with pytest.raises(InputError, match="an existing cluster"):
        ClusterSpec("tcp://127.0.0.1:9", workers=2)
    with pytest.raises(InputError, match="at least 1"):
        ClusterSpec(workers=0)


def test_run_refuses_bad_dask_options(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert main(["run", "la-pampa", "--tile-size", "448"]) == 2
    assert "--tile-size is for tiled runs" in capsys.readouterr().err
    assert main(["run", "la-pampa", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_unreachable_scheduler_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2)
    monkeypatch.setenv(SCHEDULER_ENV, f"tcp://127.0.0.1:{port}")
    assert main(["run", "la-pampa", "--no-progress", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asmspotter: error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert len(err.strip().splitlines()) == 1
