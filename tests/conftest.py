"""Shared fixtures.

Tests that need the shared real data take the ``shared_data`` fixture: it returns the
folder (``ASMSPOTTER_SHARED_DATA``, default ``../shared/data``) or skips the test with
the reason when it is absent. CI has the data, so there these tests run.

Tests of the app kernels' scheduling priority take ``autogroups``: it skips them where a
process in a new session (as jupyter_client starts a kernel) is not scheduled in an
autogroup. The test process itself may well not be in one (on CI it runs in the machine's
first session, whose ``/proc/self/autogroup`` reads empty) while its kernels are.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asmspotter import paths
from asmspotter.app.priority import group_nice

if TYPE_CHECKING:
    from asmspotter.testing.stac_server import StacServer
    from asmspotter.testing.synthetic import SyntheticScenes


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the shared real-data folder, or skip when it is not on this machine."""
    if not paths.shared_data_available():
        pytest.skip(
            f"shared data not found at {paths.shared_data_dir()} "
            f"(set {paths.SHARED_DATA_ENV} to run tests on real data)"
        )
    return paths.shared_data_dir()


@pytest.fixture(scope="session")
def autogroups() -> None:
    """Skip the test where a new session is not scheduled in an autogroup."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        nice = group_nice(child.pid)
    finally:
        child.kill()
        child.wait()
    if nice is None:
        pytest.skip("a new session gets no scheduler autogroup here (/proc/<pid>/autogroup)")


@pytest.fixture()
def workdirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """Point the cache and output folders at fresh temporary folders."""
    cache, output = tmp_path / "cache", tmp_path / "reports"
    monkeypatch.setenv(paths.CACHE_ENV, str(cache))
    monkeypatch.setenv(paths.OUTPUT_ENV, str(output))
    yield {"cache": cache, "output": output}


@pytest.fixture()
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse every connection that does not go to 127.0.0.1 for the test's duration."""
    from asmspotter.testing.stac_server import forbid_remote_connections

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with forbid_remote_connections():
        yield


@pytest.fixture(scope="module")
def scenes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SyntheticScenes:
    """Seeded synthetic Sentinel-2 scenes and STAC items (seed: the module's SCENE_SEED)."""
    from asmspotter.testing.synthetic import make_scenes

    seed = getattr(request.module, "SCENE_SEED", 0)
    return make_scenes(tmp_path_factory.mktemp("scenes"), seed=seed)


@pytest.fixture()
def server(scenes: SyntheticScenes) -> Iterator[StacServer]:
    """A loopback STAC API serving ``scenes`` (with fault injection)."""
    from asmspotter.testing.stac_server import StacServer

    with StacServer(scenes.items, scenes.files) as srv:
        yield srv
