"""The composite cache keeps what it has: failed refreshes, damaged entries, the --refresh hint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asmspotter import geoio
from asmspotter.acquire import HttpSettings
from asmspotter.composite import (
    DamagedCacheWarning,
    fetch_composite,
    open_composite,
    verify_composite,
)
from asmspotter.errors import DataError, FetchError
from asmspotter.testing.stac_server import StacServer
from asmspotter.testing.synthetic import SyntheticScenes

FAST = HttpSettings(timeout=1.0, retries=1, backoff=0.01)
pytestmark = pytest.mark.usefixtures("loopback_only")
SCENE_SEED = 5


def _fetch(scenes: SyntheticScenes, server: StacServer, **kw: object):  # noqa: ANN202
    region = scenes.region(server.url)
    return fetch_composite(region, "all", http=FAST, progress=False, **kw)  # type: ignore[arg-type]


def _temporaries(folder: Path) -> list[str]:
    pattern = re.compile(r"^\..+\.(partial|publish|old|work)-")
    return sorted(p.name for p in folder.rglob("*") if pattern.match(p.name))


def _snapshot(result) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    return result.path.read_bytes(), result.provenance_path.read_bytes()


def test_a_refresh_that_fails_half_way_keeps_the_cached_composite(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    first = _fetch(scenes, server)
    before = _snapshot(first)
    assert first.provenance["checksum"] == geoio.file_digest(first.path)
    # half-way: the search is done and scenes are read, then one scene's file is truncated
    # (its nir band: a file this process has not read before, so not in GDAL's cache)
    server.truncate(scenes.scenes[2].files["nir"].name)
    with pytest.raises(DataError, match="truncated or corrupt"):
        _fetch(scenes, server, refresh=True, bands=("red", "green", "blue", "nir"))
    assert _snapshot(first) == before
    # offline: the search itself fails
    server.fail_next(100, status=503, path_prefix="/")
    with pytest.raises(FetchError, match="HTTP 503"):
        _fetch(scenes, server, refresh=True)
    assert _snapshot(first) == before
    assert _temporaries(workdirs["cache"]) == []
    again = _fetch(scenes, server)  # and it is still reused
    assert again.reused and _snapshot(again) == before


def test_a_damaged_cached_composite_is_rebuilt_not_reused(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    first = _fetch(scenes, server)
    good = _snapshot(first)
    first.path.write_bytes(good[0][: len(good[0]) // 2])  # truncated in the cache
    with pytest.raises(DataError) as err:
        verify_composite(first.files)
    assert "is damaged: it holds" in str(err.value)
    assert str(err.value).endswith(
        f"(rebuild it with `asmspotter fetch {scenes.region(server.url).id} -p all --refresh`)"
    )
    with pytest.warns(DamagedCacheWarning, match="is damaged .*; rebuilding it"):
        rebuilt = _fetch(scenes, server)
    assert not rebuilt.reused and rebuilt.path.read_bytes() == good[0]
    # the same bytes altered in place: the checksum catches it
    data = bytearray(good[0])
    data[-100] ^= 0xFF
    first.path.write_bytes(bytes(data))
    with pytest.warns(DamagedCacheWarning, match="checksum differs"):
        assert not _fetch(scenes, server).reused
    # a provenance that is not JSON: the entry is unfinished, rebuilt
    first.provenance_path.write_text("{ not json")
    assert not _fetch(scenes, server).reused


def test_entries_without_a_checksum_are_read_in_full(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    first = _fetch(scenes, server)
    prov = dict(first.provenance)
    del prov["checksum"]  # as written before checksums were recorded
    geoio.write_json(first.provenance_path, prov)
    assert _fetch(scenes, server).reused
    tif = first.path.read_bytes()
    first.path.write_bytes(tif[: len(tif) * 2 // 3])
    with pytest.warns(DamagedCacheWarning, match="cannot be read"):
        assert not _fetch(scenes, server).reused


def test_a_truncated_composite_names_the_refresh_that_rebuilds_it(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    first = _fetch(scenes, server)
    first.path.write_bytes(first.path.read_bytes()[:2000])
    with pytest.raises(
        DataError, match=r"truncated or corrupt .*asmspotter fetch synthetic -p all --refresh"
    ):
        open_composite(first.path).load()


def test_a_refresh_keeps_a_tiled_runs_tiles(
    scenes: SyntheticScenes, server: StacServer, workdirs: dict[str, Path]
) -> None:
    from asmspotter.layout import TILES_FOLDER

    first = _fetch(scenes, server)
    tile = first.files.folder / TILES_FOLDER / "g512" / "t0_0" / "composite.json"
    tile.parent.mkdir(parents=True)
    tile.write_text("{}")
    again = _fetch(scenes, server, refresh=True)
    assert not again.reused and tile.read_text() == "{}"
    assert sorted(p.name for p in again.files.folder.iterdir()) == sorted(
        [TILES_FOLDER, again.path.name, again.provenance_path.name]
    )
    assert _temporaries(workdirs["cache"]) == []
