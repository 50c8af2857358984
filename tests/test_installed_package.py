"""A non-editable install in a fresh virtual environment runs outside the source checkout.

The project is built into a wheel (as ``pip install .`` does) and installed, without its
dependencies, into a new virtual environment made for this test; the dependencies come from
the running environment through a ``.pth`` file, because installing them again would only
repeat what ``make`` did (several minutes). Every command runs from an empty folder with no
``PYTHONPATH``, so the catalogue and the models must come from the installed package data.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from asmspotter import layout, paths

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _environ(**extra: str) -> dict[str, str]:
    """Return the environment without the variables that point at the checkout's state."""
    drop = {"PYTHONPATH", paths.SHARED_DATA_ENV, paths.CACHE_ENV, paths.OUTPUT_ENV}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def _run(cmd: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env if env is not None else _environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a fresh virtual environment holding a non-editable install of the project."""
    tmp = tmp_path_factory.mktemp("installed")
    # build from a copy, so that the checkout gets no build/ folder
    src = tmp / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,  # asmspotter/resources is a link to data/
        ignore=shutil.ignore_patterns(
            ".*", "build", "cache", "reports", "*.egg-info", "__pycache__"
        ),
    )
    offline = (
        ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", *offline, "-w", tmp / "wheels", src], cwd=tmp)
    (wheel,) = (tmp / "wheels").glob("asmspotter-*.whl")
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", env], cwd=tmp)
    python = env / "bin" / "python"
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], cwd=tmp)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp)
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib.strip()) / "asmspotter_test_deps.pth").write_text("\n".join(deps) + "\n")
    return env


def test_the_installed_package_is_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    out = _run(
        [
            venv / "bin" / "python",
            "-c",
            "import asmspotter.paths as p; "
            "print(p.__file__); print(p.source_checkout()); print(p.project_data_dir())",
        ],
        cwd=tmp_path,
        env=_environ(),
    )
    module, checkout, data = out.splitlines()
    assert Path(module).is_relative_to(venv)
    assert checkout == "None"
    assert Path(data).is_relative_to(venv)
    assert (Path(data) / "regions.yaml").is_file()
    assert list((Path(data) / paths.MODELS).glob("*.pt"))


def test_installed_regions_lists_the_catalogue(
    venv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asmspotter.cli import main

    out = _run([venv / "bin" / "asmspotter", "regions"], cwd=tmp_path, env=_environ())
    assert main(["regions"]) == 0
    assert out == capsys.readouterr().out  # the same catalogue as the checkout's
    assert "la-pampa" in out


def test_installed_run_la_pampa_writes_below_the_working_folder(
    venv: Path, tmp_path: Path, shared_data: Path
) -> None:
    env = _environ(**{paths.SHARED_DATA_ENV: str(shared_data)})
    out = _run([venv / "bin" / "asmspotter", "run", "la-pampa", "--no-progress"], tmp_path, env)
    analysis = layout.analysis_files("la-pampa", base=tmp_path / paths.OUTPUT_FOLDER)
    assert f"written to {analysis.folder}/" in out
    for period in ("2019", "2021"):
        cache = tmp_path / paths.CACHE_FOLDER
        assert layout.composite_files("la-pampa", period, base=cache).tif.is_file()
    with analysis.periods_csv.open() as fh:
        assert [row["period"] for row in csv.DictReader(fh)] == ["2019", "2021"]
    assert analysis.json.is_file()
