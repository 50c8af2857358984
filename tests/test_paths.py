from __future__ import annotations

from pathlib import Path

import pytest

from asmspotter import paths
from asmspotter.errors import DataError


def test_locations_follow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(paths.SHARED_DATA_ENV, str(tmp_path / "shared"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setenv(paths.OUTPUT_ENV, str(tmp_path / "o"))
    assert paths.shared_data_dir() == tmp_path / "shared"
    assert paths.cache_dir() == tmp_path / "c"
    assert paths.output_dir() == tmp_path / "o"
    assert not paths.shared_data_available()
    with pytest.raises(DataError, match="ASMSPOTTER_SHARED_DATA"):
        paths.require_shared_data("scenes")


def test_defaults_sit_beside_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in (paths.SHARED_DATA_ENV, paths.CACHE_ENV, paths.OUTPUT_ENV):
        monkeypatch.delenv(env, raising=False)
    assert paths.shared_data_dir() == (paths.PROJECT_ROOT.parent / "shared" / "data").resolve()
    assert paths.cache_dir() == paths.PROJECT_ROOT / "cache"
    assert paths.output_dir() == paths.PROJECT_ROOT / "reports"
    assert (paths.project_data_dir() / "regions.yaml").is_file()


def test_project_data_is_package_data() -> None:
    import importlib.resources

    data = paths.project_data_dir()
    assert data == Path(str(importlib.resources.files("asmspotter") / paths.RESOURCES))
    assert (data / "regions.yaml").is_file()
    assert paths.models_dir() == data / paths.MODELS
    assert sorted(paths.models_dir().glob("*.card.json"))  # the shipped model's card
    checkout = paths.source_checkout()
    if checkout is not None:  # in a source checkout the resources are its data/ folder
        assert data.resolve() == (checkout / "data").resolve()


def test_installed_package_defaults_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an installed package sits in site-packages: no pyproject.toml beside it
    site = tmp_path / "site-packages"
    site.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(paths, "PROJECT_ROOT", site)
    monkeypatch.chdir(work)
    for env in (paths.SHARED_DATA_ENV, paths.CACHE_ENV, paths.OUTPUT_ENV):
        monkeypatch.delenv(env, raising=False)
    assert paths.source_checkout() is None
    assert paths.cache_dir() == work / "cache"
    assert paths.output_dir() == work / "reports"
    assert paths.shared_data_dir() == (tmp_path / "shared" / "data").resolve()


def test_missing_shared_data_is_named_with_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asmspotter.analyse import read_vector

    monkeypatch.setenv(paths.SHARED_DATA_ENV, str(tmp_path / "absent"))
    wanted = tmp_path / "absent" / "amw" / "footprints.geojson"
    with pytest.raises(DataError) as err:
        read_vector(wanted, "reference")
    assert str(err.value) == (
        f"reference: file not found: {wanted} (shared data not found at {tmp_path / 'absent'}; "
        "set ASMSPOTTER_SHARED_DATA to the shared data folder)"
    )
    (tmp_path / "absent").mkdir()  # the folder is there, the file is not: no hint
    assert paths.shared_data_hint(wanted) == ""
    assert paths.shared_data_hint(tmp_path / "elsewhere.geojson") == ""
