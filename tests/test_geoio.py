from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from asmspotter.errors import DataError
from asmspotter.geoio import atomic_output, provenance_base, read_json, write_cog, write_json


def test_write_cog_round_trips_values_names_and_tags(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((3, 300, 257), dtype=np.float32)
    data[:, :5, :5] = np.nan
    transform = from_origin(399690.0, 8565910.0, 10.0, 10.0)
    path = write_cog(
        tmp_path / "c.tif",
        data,
        crs="EPSG:32719",
        transform=transform,
        nodata=float("nan"),
        band_names=["red", "green", "blue"],
        tags={"ASMSPOTTER_RADIOMETRY": "reflectance"},
    )
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32719
        assert src.transform == transform
        assert src.descriptions == ("red", "green", "blue")
        assert src.tags()["ASMSPOTTER_RADIOMETRY"] == "reflectance"
        assert src.block_shapes[0] == (256, 256)  # cloud-optimised: tiled ...
        assert src.overviews(1)  # ... with overviews
        np.testing.assert_array_equal(src.read(), data)
    assert [p.name for p in tmp_path.iterdir()] == ["c.tif"]


def test_atomic_output_leaves_nothing_on_error(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_output(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_output_keeps_old_file_until_success(tmp_path: Path) -> None:
    final = write_json(tmp_path / "p.json", {"a": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(final) as tmp:
            tmp.write_text("{")
            raise KeyboardInterrupt
    assert read_json(final) == {"a": 1}


def test_write_cog_rejects_bad_shapes_without_output(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 band names for 3 bands"):
        write_cog(
            tmp_path / "x.tif",
            np.zeros((3, 4, 4), np.uint8),
            crs="EPSG:32719",
            transform=from_origin(0, 0, 10, 10),
            band_names=["a", "b"],
        )
    assert list(tmp_path.iterdir()) == []


def test_read_json_errors_are_user_facing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_provenance_names_software_and_version() -> None:
    prov = provenance_base()
    assert prov["software"] == "asmspotter" and prov["version"]


# --------------------------------------------------------------------------------------
# folders published as a unit, leftovers of dead processes, refused writes
# --------------------------------------------------------------------------------------


def _dead_pid() -> int:
    """The id of a process that has ended."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def _temporaries(folder: Path) -> list[str]:
    import re

    pattern = re.compile(r"^\..+\.(partial|publish|old|work)-")
    return sorted(p.name for p in folder.rglob("*") if pattern.match(p.name))


def test_publish_folder_swaps_the_whole_set(tmp_path: Path) -> None:
    import os

    from asmspotter.geoio import publish_folder

    final = tmp_path / "region" / "analysis"
    with publish_folder(final, ["a.csv", "b.csv", "c.json"]) as new:
        (new / "a.csv").write_text("old a")
        (new / "b.csv").write_text("old b")
    assert sorted(p.name for p in final.iterdir()) == ["a.csv", "b.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask  # as any folder, not mkdtemp's 0700
    with publish_folder(final, ["a.csv", "b.csv", "c.json"]) as new:
        (new / "a.csv").write_text("new a")
        write_json(new / "c.json", {"run": 2})
        # until the block ends, readers see the old set only
        assert (final / "a.csv").read_text() == "old a" and not (final / "c.json").exists()
    assert sorted(p.name for p in final.iterdir()) == ["a.csv", "c.json"]  # b.csv went too
    assert (final / "a.csv").read_text() == "new a"
    assert _temporaries(tmp_path) == []


def test_publish_folder_keeps_the_old_set_on_error_or_interrupt(tmp_path: Path) -> None:
    from asmspotter.geoio import publish_folder

    final = tmp_path / "out"
    with publish_folder(final) as new:
        (new / "x.csv").write_text("complete")
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with publish_folder(final) as new:
                (new / "x.csv").write_text("half")
                raise exc
        assert (final / "x.csv").read_text() == "complete"
        assert _temporaries(tmp_path) == []


def test_publish_folder_never_replaces_a_folder_of_other_files(tmp_path: Path) -> None:
    from asmspotter.errors import OutputError
    from asmspotter.geoio import publish_folder

    final = tmp_path / "notes"
    final.mkdir()
    (final / "my-notes.txt").write_text("precious")
    with pytest.raises(OutputError, match=r"not replacing .*notes: it holds files .*my-notes.txt"):
        with publish_folder(final, ["a.csv"]) as new:
            (new / "a.csv").write_text("x")
    assert (final / "my-notes.txt").read_text() == "precious"


def test_remove_leftovers_of_dead_processes_only(tmp_path: Path) -> None:
    import os

    from asmspotter.geoio import temp_prefix
    from asmspotter.leftovers import remove_leftovers

    dead = _dead_pid()
    period = tmp_path / "region" / "2019"
    period.mkdir(parents=True)
    (period / "composite.tif").write_text("kept")
    dead_file = period / f".composite.partial-{dead}-abc.tif"
    dead_file.write_text("half")
    dead_folder = tmp_path / "region" / f".analysis.publish-{dead}-abcd"
    dead_folder.mkdir()
    (dead_folder / "periods.csv").write_text("half")
    live_file = period / f"{temp_prefix('mining', 'partial')}xyz.gpkg"  # this process's
    live_file.write_text("being written")
    legacy = period / ".composite.partial-q1w2e3.tif"  # no pid (older versions)
    legacy.write_text("half")
    os.utime(legacy, (1, 1))  # untouched for ages
    removed = remove_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == sorted(
        [dead_file.name, dead_folder.name, legacy.name]
    )
    assert live_file.exists() and (period / "composite.tif").read_text() == "kept"


def test_a_folder_moved_aside_by_a_killed_publication_is_put_back(tmp_path: Path) -> None:
    from asmspotter.leftovers import remove_leftovers

    dead = _dead_pid()
    aside = tmp_path / f".analysis.old-{dead}-1234"
    (aside / "analysis").mkdir(parents=True)
    (aside / "analysis" / "analysis.json").write_text("{}")
    remove_leftovers(tmp_path)
    assert (tmp_path / "analysis" / "analysis.json").read_text() == "{}"
    assert not aside.exists()


def test_refused_writes_name_the_file(tmp_path: Path) -> None:
    import errno

    from asmspotter.errors import OutputError

    final = tmp_path / "x.json"
    with pytest.raises(OutputError, match=rf"cannot write {final}: No space left on device"):
        with atomic_output(final) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OutputError, match=rf"cannot write {final}: .*Write error"):
        with atomic_output(final) as tmp:
            from rasterio.errors import RasterioIOError

            raise RasterioIOError("TIFFAppendToStrip:Write error at scanline 0")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=rf"cannot write {blocker}/sub/y.json: Not a directory"):
        write_json(blocker / "sub" / "y.json", {})


def test_file_digest_and_digest_differs(tmp_path: Path) -> None:
    import hashlib

    from asmspotter.geoio import digest_differs, file_digest

    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    record = file_digest(path)
    assert record == {"bytes": 1000, "sha256": hashlib.sha256(b"x" * 1000).hexdigest()}
    assert digest_differs(path, record) is None
    path.write_bytes(b"y" * 1000)
    assert digest_differs(path, record) == "its checksum differs from its record"
    path.write_bytes(b"x" * 10)
    assert "holds 10 bytes" in str(digest_differs(path, record))
    path.unlink()
    assert digest_differs(path, record) == "it is missing"
