"""Shared fixtures.

Tests that need the shared real data take the ``shared_data`` fixture: it returns the
folder (``ASMSPOTTER_SHARED_DATA``, default ``../shared/data``) or skips the test with
the reason when it is absent. CI has the data, so there these tests run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from asmspotter import paths


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the shared real-data folder, or skip when it is not on this machine."""
    if not paths.shared_data_available():
        pytest.skip(
            f"shared data not found at {paths.shared_data_dir()} "
            f"(set {paths.SHARED_DATA_ENV} to run tests on real data)"
        )
    return paths.shared_data_dir()


@pytest.fixture()
def workdirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """Point the cache and output folders at fresh temporary folders."""
    cache, output = tmp_path / "cache", tmp_path / "reports"
    monkeypatch.setenv(paths.CACHE_ENV, str(cache))
    monkeypatch.setenv(paths.OUTPUT_ENV, str(output))
    yield {"cache": cache, "output": output}
