"""A local region stays offline unless asked; servers that never answer are reported in time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asmspotter.acquire import (
    HttpSettings,
    SourceFallbackWarning,
    StacQuery,
    plan_source,
    search_stac,
    stac_query,
)
from asmspotter.catalogue import load_catalogue
from asmspotter.composite import fetch_composite
from asmspotter.errors import DataError, FetchError
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import SyntheticScenes

#: The source checkout, for subprocesses to import this asmspotter.
ROOT = str(Path(__file__).resolve().parents[1])

pytestmark = pytest.mark.usefixtures("loopback_only")
SCENE_SEED = 4

LOCAL = """
regions:
  here:
    name: Here
    country: Peru
    outline: {bbox: [-70.0, -13.1, -69.9, -13.0]}
    periods: [2019]
    source:
      type: local
      dir: scenes/nowhere
      files: {"2019": scene.tif}
      bands: [red, green, blue]
      radiometry: display
      url: URL
"""


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture()
def no_shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "no-shared-data"
    monkeypatch.setenv("ASMSPOTTER_SHARED_DATA", str(folder))
    return folder


def test_a_local_region_never_goes_online_unless_asked(
    tmp_path: Path, no_shared_data: Path, workdirs: dict[str, Path]
) -> None:
    catalogue = tmp_path / "regions.yaml"
    catalogue.write_text(LOCAL.replace("URL", _dead_url()))
    region = load_catalogue(catalogue)["here"]
    period = region.periods[0]
    with pytest.raises(DataError) as err:
        plan_source(region, period)
    message = str(err.value)
    assert f"shared data not found at {no_shared_data}" in message
    assert "set ASMSPOTTER_SHARED_DATA" in message and "pass --online" in message
    with pytest.warns(
        SourceFallbackWarning, match="searching http://127.0.0.1.*asked with --online"
    ):
        plan = plan_source(region, period, online=True)
    assert isinstance(plan, StacQuery) and "shared data not found" in str(plan.fallback_reason)
    # when the search it was asked for fails, the error says why it searched
    with pytest.warns(SourceFallbackWarning), pytest.raises(FetchError) as failed:
        fetch_composite(region, period, online=True, progress=False, http=HttpSettings(1, 0, 0.01))
    assert "cannot reach STAC API" in str(failed.value)
    assert f"(searched because shared data not found at {no_shared_data}" in str(failed.value)


def test_the_demo_says_why_it_goes_online(no_shared_data: Path, workdirs: dict[str, Path]) -> None:
    """la-pampa's catalogue entry allows the fallback; the CLI says so, on one line each."""
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "ASMSPOTTER_HTTP_RETRIES": "2",
        "ASMSPOTTER_HTTP_BACKOFF": "0.01",
    }
    argv = ["fetch", "la-pampa", "-p", "2019", "--stac-url", _dead_url()]
    proc = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr  # no urllib3 "Retrying ..." lines, no traceback
    assert lines[0].startswith("asmspotter: warning: la-pampa 2019: shared data not found at")
    assert "the catalogue's fallback" in lines[0]
    assert lines[1].startswith("asmspotter: error: cannot reach STAC API")
    assert "ASMSPOTTER_SHARED_DATA" in lines[1]


def test_a_server_that_never_answers_is_reported_after_one_timeout(
    scenes: SyntheticScenes, server: StacServer
) -> None:
    server.hang_next(50, seconds=5)
    region = scenes.region(server.url)
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"did not answer within 0.5 s; set ASMSPOTTER_HTTP"):
        search_stac(stac_query(region, region.periods[0]), HttpSettings(0.5, 4, 0.01))
    assert time.monotonic() - started < 2.0  # not 5 x 0.5 s: a timeout is not retried
    assert len(server.requests) == 1


def test_server_errors_are_still_retried(scenes: SyntheticScenes, server: StacServer) -> None:
    server.fail_next(3, status=503)
    region = scenes.region(server.url)
    found = search_stac(stac_query(region, region.periods[0]), HttpSettings(2, 4, 0.01))
    assert len(found.items) >= 1
    assert len(server.requests) >= 4  # three refusals, then the answers
