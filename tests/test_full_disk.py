"""A full disk during fetch or analyse: one line naming the file, exit 2, the old outputs kept.

Two ways to fill the disk under a CLI subprocess:

- ``tmpfs``: a real 8 MiB tmpfs mounted over the output (or cache) folder in a private
  mount namespace (``unshare -rm``; skipped where the machine does not allow it), filled up
  but for a few kilobytes: writes fail with ENOSPC in Python, GDAL and OGR alike;
- ``fsize``: a file-size limit (``RLIMIT_FSIZE``) on the subprocess: every write past it
  fails (EFBIG) through the same code paths, on any Linux machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from pyproj import Transformer

from asmspotter import layout
from asmspotter.testing.detections import write_detection
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import make_scenes

ROOT = str(Path(__file__).resolve().parents[1])
UTM = "EPSG:32719"
GRID = Affine(10, 0, 400_000, 0, -10, 8_601_000)
TEMPORARY = re.compile(r"^\..+\.(partial|publish|old|work)-")

#: Run in a private mount namespace: mount a tmpfs over argv[1], copy argv[2] into it, leave
#: argv[3] KiB free, run the command after "--", and print the outcome and the files left.
DRIVER = textwrap.dedent(
    """
    import hashlib, json, os, shutil, subprocess, sys
    target, prepared, free_kib = sys.argv[1], sys.argv[2], int(sys.argv[3])
    command = sys.argv[sys.argv.index("--") + 1:]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", target], check=True)
    shutil.copytree(prepared, target, dirs_exist_ok=True)
    st = os.statvfs(target)
    spare = st.f_bavail * st.f_frsize - free_kib * 1024
    with open(os.path.join(target, "filler"), "wb") as fh:
        fh.write(b"\\0" * max(0, spare))
    done = subprocess.run(command, capture_output=True, text=True)
    files = {}
    for folder, _, names in os.walk(target):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                files[os.path.relpath(path, target)] = hashlib.sha256(fh.read()).hexdigest()
    print(json.dumps({"rc": done.returncode, "stderr": done.stderr, "files": files}))
    """
)


def _tmpfs_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && echo ok"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() == "ok"


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _limit_file_size(kib: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails instead


def _run_full(
    how: str, root: Path, argv: list[str], env: dict[str, str], free_kib: int
) -> tuple[int, str, dict[str, str]]:
    """Run the CLI with ``root`` (a cache or output folder) full; return status, stderr, files."""
    cli = [sys.executable, "-m", "asmspotter.cli", *argv]
    if how == "fsize":
        done = subprocess.run(
            cli,
            capture_output=True,
            text=True,
            env=env,
            check=False,
            preexec_fn=lambda: _limit_file_size(free_kib),
        )
        return done.returncode, done.stderr, _digests(root)
    prepared = root.parent / f"{root.name}-prepared"
    shutil.move(root, prepared)
    root.mkdir()
    driver = [sys.executable, "-c", DRIVER, str(root), str(prepared), str(free_kib), "--", *cli]
    done = subprocess.run(
        ["unshare", "-rm", *driver], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    files = {k: v for k, v in outcome["files"].items() if k != "filler"}
    shutil.rmtree(root)
    shutil.move(prepared, root)  # as it was before the full run
    return outcome["rc"], outcome["stderr"], files


HOW = [
    pytest.param(
        "tmpfs",
        marks=pytest.mark.skipif(not _tmpfs_available(), reason="cannot mount a tmpfs here"),
    ),
    "fsize",
]


def _env(workdirs: dict[str, Path]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": ROOT,
        "ASMSPOTTER_CACHE": str(workdirs["cache"]),
        "ASMSPOTTER_OUTPUT": str(workdirs["output"]),
        "NO_PROXY": "127.0.0.1",
    }


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("asmspotter: error: cannot write ") and "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("how", HOW)
def test_a_full_disk_during_analyse_keeps_the_previous_analysis(
    how: str, workdirs: dict[str, Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    for period in ("2019", "2021"):
        mask = np.zeros((200, 200), dtype="uint8")
        for r, c in rng.integers(0, 180, size=(8, 2)):  # eight seeded mining patches
            mask[r : r + 15, c : c + 20] = 1
        write_detection("r", period, mask, crs=UTM, transform=GRID)
    bbox = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform_bounds(
        399_000, 8_598_000, 403_000, 8_602_000
    )
    region = {
        "name": "R",
        "country": "Peru",
        "outline": {"bbox": [round(v, 6) for v in bbox]},
        "crs": UTM,
        "periods": [2019, 2021],
    }
    catalogue = tmp_path / "regions.yaml"
    catalogue.write_text(yaml.safe_dump({"regions": {"r": region}}))
    env = _env(workdirs)
    argv = ["analyse", "r", "--catalogue", str(catalogue), "--no-overlays"]
    first = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    before = _digests(workdirs["output"])
    rc, stderr, after = _run_full(how, workdirs["output"], [*argv, "--periods", "2021"], env, 48)
    assert rc == 2
    line = _error_line(stderr)
    analysis = layout.analysis_files("r", base=workdirs["output"]).folder
    assert f"cannot write {analysis}/" in line
    if how == "tmpfs":  # past a file-size limit SQLite (GeoPackage) gives no reason of use
        assert re.search(r"/analysis/[a-z_.]+: No space left on device$", line), line
    # the previous analysis as it was, nothing half written beside it
    lock = str(layout.lock_file("r").relative_to(workdirs["output"]))
    assert {k: v for k, v in after.items() if k != lock} == {
        k: v for k, v in before.items() if k != lock
    }
    assert not [name for name in after if TEMPORARY.match(Path(name).name)]


@pytest.mark.parametrize("how", HOW)
def test_a_full_disk_during_a_refresh_keeps_the_cached_composite(
    how: str, workdirs: dict[str, Path], tmp_path: Path
) -> None:
    scenes = make_scenes(tmp_path / "scenes", seed=12)
    with StacServer(scenes.items, scenes.files) as server:
        catalogue = scenes.write_catalogue(tmp_path / "regions.yaml", server.url)
        env = _env(workdirs)
        argv = ["fetch", "loop", "--catalogue", str(catalogue)]
        first = subprocess.run(
            [sys.executable, "-m", "asmspotter.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert first.returncode == 0, first.stderr
        before = _digests(workdirs["cache"])
        rc, stderr, after = _run_full(how, workdirs["cache"], [*argv, "--refresh"], env, 16)
    assert rc == 2
    line = _error_line(stderr)
    files = layout.composite_files("loop", "winter", base=workdirs["cache"])
    assert f"cannot write {files.tif}" in line
    assert after == before  # the cached composite and its record, as they were
