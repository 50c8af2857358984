"""Servers that refuse or never answer: one plain line each, said within the timeout.

Loopback servers only: a port nobody listens on (refused connections) and the test STAC
server told to hang or stopped between the search and the scene reads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asmspotter.acquire import HttpSettings, search_stac, stac_query
from asmspotter.composite import fetch_composite
from asmspotter.composite.blocks import ReadRetryWarning
from asmspotter.errors import FetchError
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import SyntheticScenes

#: The source checkout, for subprocesses to import this asmspotter.
ROOT = str(Path(__file__).resolve().parents[1])
SCENE_SEED = 6

pytestmark = pytest.mark.usefixtures("loopback_only")


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_refused_search_says_connection_refused_in_plain_words(
    scenes: SyntheticScenes,
) -> None:
    url = _dead_url()
    region = scenes.region(url)
    with pytest.raises(FetchError) as err:
        search_stac(stac_query(region, region.periods[0]), HttpSettings(1, 2, 0.01))
    assert str(err.value) == f"cannot reach STAC API {url} (3 tries): connection refused"


def test_refused_scene_reads_are_a_fetch_error_not_a_corrupt_file(
    scenes: SyntheticScenes,
    server: StacServer,
    workdirs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asmspotter.composite.cache as cache

    def search_then_go_offline(*args: object, **kw: object) -> object:
        found = search_stac(*args, **kw)  # type: ignore[arg-type]
        server.stop()
        return found

    monkeypatch.setattr(cache, "search_stac", search_then_go_offline)
    region = scenes.region(server.url)
    with pytest.warns(ReadRetryWarning, match="refused the connection; retrying"):
        with pytest.raises(
            FetchError, match=r"^cannot reach the server of http://127.0.0.1:\d+/data/"
        ):
            fetch_composite(region, "all", http=HttpSettings(1, 1, 0.01), progress=False)
    assert list(workdirs["cache"].rglob("*.tif")) == []


def test_scene_reads_that_never_answer_are_said_after_one_timeout(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path], tmp_path: Path
) -> None:
    catalogue = scenes.write_catalogue(tmp_path / "regions.yaml", server.url)
    server.hang_next(1000, seconds=30, path_prefix="/data/")
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "ASMSPOTTER_CACHE": str(workdirs["cache"]),
        "ASMSPOTTER_OUTPUT": str(workdirs["output"]),
        "ASMSPOTTER_HTTP_TIMEOUT": "2",
        "ASMSPOTTER_HTTP_RETRIES": "2",
        "ASMSPOTTER_HTTP_BACKOFF": "0.01",
        "NO_PROXY": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "asmspotter.cli", "fetch", "loop", "--catalogue", str(catalogue)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = [(time.monotonic(), line.rstrip("\n")) for line in proc.stderr]
    assert proc.wait(timeout=120) == 2
    said = [text for _, text in lines if text.strip()]
    assert len(said) == 2, said  # no GDAL "Retrying again" lines, no traceback
    host = server.url.split("//")[1]
    assert said[0] == (
        f"asmspotter: warning: {host} did not answer a scene read within 2 s, or refused the "
        "connection; retrying (3 tries in all)"
    )
    assert said[1].startswith(f"asmspotter: error: reading {server.url}/data/")
    assert said[1].endswith("timed out; set ASMSPOTTER_HTTP_TIMEOUT to wait longer")
    warned, failed = (t for t, text in lines if text.strip())
    assert failed - warned > 3.0  # said after the first 2-s timeout, not after all three
