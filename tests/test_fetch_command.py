"""``asmspotter fetch`` (asmspotter/commands/fetch.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from asmspotter import layout
from asmspotter.acquire import PC_SAS_URL_ENV, clear_token_cache
from asmspotter.cli import main
from asmspotter.testing.stac_server import StacServer, forbid_remote_connections
from asmspotter.testing.synthetic import make_scenes, planetary_computer_item


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("ASMSPOTTER_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("ASMSPOTTER_HTTP_RETRIES", "1")
    monkeypatch.setenv("ASMSPOTTER_HTTP_BACKOFF", "0.01")
    with forbid_remote_connections():
        yield


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("asmspotter: error: ") and "Traceback" not in err
    return lines[0]


def test_fetch_la_pampa_writes_both_composites(
    shared_data: Path, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "la-pampa"]) == 0
    out = capsys.readouterr().out
    for period in ("2019", "2021"):
        files = layout.composite_files("la-pampa", period, base=workdirs["cache"])
        assert files.tif.is_file() and files.provenance.is_file()
        assert f"la-pampa {period}: wrote {files.tif}" in out
    assert "clear 100.0%" in out
    assert main(["fetch", "la-pampa", "--period", "2021"]) == 0
    out = capsys.readouterr().out
    assert "la-pampa 2021: reused cached" in out and "2019" not in out
    assert main(["fetch", "la-pampa", "-p", "2021", "--refresh"]) == 0
    assert "la-pampa 2021: wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fetch", "atlantis"], "unknown region 'atlantis'"),
        (["fetch", "la-pampa", "--period", "2030"], "has no period '2030'"),
        (["fetch", "la-pampa", "--max-cloud", "120"], "--max-cloud must be within 0..100"),
        (["fetch", "madre-de-dios", "--stac-url", "ftp://x"], "must start with http"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    argv: list[str], message: str, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in _one_line_error(capsys.readouterr().err)


WINTER = {"id": "winter", "start": "2021-12-01", "end": "2022-03-31"}


def _loopback_catalogue(
    tmp_path: Path, bbox: tuple[float, ...], url: str, periods: list[object]
) -> Path:
    """Write a one-region catalogue ('loop') whose STAC source is the loopback server."""
    region = {
        "name": "Loopback",
        "country": "Nowhere",
        "outline": {"bbox": list(bbox)},
        "periods": periods,
        "source": {"type": "stac", "url": url},
    }
    catalogue = tmp_path / "regions.yaml"
    catalogue.write_text(yaml.safe_dump({"regions": {"loop": region}}))
    return catalogue


def _red_nir_model(folder: Path) -> Path:
    """Write the weights and card of an untrained network on red and nir; return the card."""
    from asmspotter.detect.model import ModelConfig
    from asmspotter.detect.synthetic import write_untrained_model

    config = ModelConfig(
        bands=("red", "nir"), widths=(4, 4, 4, 4), mean=(0.05, 0.3), std=(0.03, 0.1)
    )
    return write_untrained_model(folder, "red-nir", config)


def test_fetch_and_run_get_the_bands_of_the_model(
    tmp_path: Path, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import rasterio

    card = _red_nir_model(tmp_path)
    scenes = make_scenes(tmp_path / "scenes", seed=8)
    composite = layout.composite_files("loop", "winter", base=workdirs["cache"]).tif
    with StacServer(scenes.items, scenes.files) as server:
        catalogue = _loopback_catalogue(tmp_path, scenes.inner_bbox(), server.url, [WINTER])
        fetch = ["fetch", "loop", "--catalogue", str(catalogue), "-p", "winter"]
        assert main(fetch) == 0
        with rasterio.open(composite) as src:
            assert src.descriptions == ("blue", "green", "red")
        detect = ["detect", "loop", "--catalogue", str(catalogue), "--no-progress"]
        assert main([*detect, "--model", str(card)]) == 2
        assert "the model needs red, nir (missing: nir)" in _one_line_error(capsys.readouterr().err)
        assert main([*fetch, "--model", str(card)]) == 0
        assert "loop winter: wrote" in capsys.readouterr().out  # other bands: not the cache
        with rasterio.open(composite) as src:
            assert src.descriptions == ("blue", "green", "red", "nir")
        assert main([*detect, "--model", str(card)]) == 0
        run = ["run", "loop", "--catalogue", str(catalogue), "--no-progress", "--no-report"]
        assert main([*run, "--model", str(card)]) == 0
        assert "winter: reused" in capsys.readouterr().out
        assert main([*fetch, "--model", str(tmp_path / "nothing.card.json")]) == 2
        assert "nothing.card.json" in _one_line_error(capsys.readouterr().err)


def test_fetch_from_a_stac_api(
    tmp_path: Path, workdirs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    scenes = make_scenes(tmp_path / "scenes", seed=8)
    with StacServer(scenes.items, scenes.files) as server:
        catalogue = _loopback_catalogue(tmp_path, scenes.inner_bbox(), server.url, [2019, WINTER])
        assert main(["fetch", "loop", "--catalogue", str(catalogue), "-p", "winter"]) == 0
        out = capsys.readouterr().out
        assert "loop winter: wrote" in out and "3 scenes from sentinel-2-l2a" in out
        assert layout.composite_files("loop", "winter", base=workdirs["cache"]).provenance.is_file()
        # the same custom catalogue takes the fetched composite on to detection
        argv = ["detect", "loop", "--catalogue", str(catalogue), "-p", "winter", "--no-progress"]
        assert main(argv) == 0
        assert "loop winter:" in capsys.readouterr().out
        assert layout.detection_files("loop", "winter", base=workdirs["output"]).geojson.is_file()
        assert main(["detect", "loop", "-p", "winter", "--no-progress"]) == 2
        assert "unknown region 'loop'" in _one_line_error(capsys.readouterr().err)
        assert main(["fetch", "loop", "--catalogue", str(catalogue), "-p", "2019"]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert "no Sentinel-2 scenes found for region 'loop' period '2019'" in line
        server.fail_next(100, status=500)
        assert main(["fetch", "loop", "--catalogue", str(catalogue), "--refresh"]) == 2
        assert "HTTP 500" in _one_line_error(capsys.readouterr().err)


def test_fetch_from_a_planetary_computer_like_api(
    tmp_path: Path,
    workdirs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenes = make_scenes(tmp_path / "scenes", seed=10)
    items = [planetary_computer_item(i) for i in scenes.items]
    clear_token_cache()
    with StacServer(items, scenes.files, sas=True) as server:
        monkeypatch.setenv(PC_SAS_URL_ENV, server.sas_url)
        catalogue = _loopback_catalogue(tmp_path, scenes.inner_bbox(), server.url, [WINTER])
        argv = ["fetch", "loop", "--catalogue", str(catalogue)]
        assert main(argv) == 2  # the loopback URL is not Planetary Computer's: no signing
        line = _one_line_error(capsys.readouterr().err)
        assert "access denied (HTTP 403)" in line and "--sign planetary-computer" in line
        assert main([*argv, "--sign", "planetary-computer"]) == 0
        out = capsys.readouterr().out
        assert "3 scenes from sentinel-2-l2a, signed (planetary-computer)" in out
        assert len(server.issued_tokens()) == 1
        files = layout.composite_files("loop", "winter", base=workdirs["cache"])
        prov = files.provenance.read_text()
        assert server.issued_tokens()[0] not in prov
    clear_token_cache()


def test_help_lists_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fetch", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--period",
        "--refresh",
        "--stac-url",
        "--collection",
        "--max-cloud",
        "--sign",
        "planetary-computer",
        "ASMSPOTTER_PC_SAS_URL",
    ):
        assert option in out


SIX = ("blue", "green", "red", "nir", "swir16", "swir22")


def _l1c_six_band_model(folder: Path) -> Path:
    """Write an untrained six-band network whose card says it reads Level-1C; return the card."""
    from asmspotter.detect.model import ModelConfig
    from asmspotter.detect.synthetic import write_untrained_model

    config = ModelConfig(bands=SIX, widths=(4, 4, 4, 4), mean=(0.1,) * 6, std=(0.1,) * 6)
    return write_untrained_model(folder, "six-l1c", config, reflectance_max=1.0, level="L1C")


def _nir_error(composite: Path, truth: np.ndarray, scenes: object) -> float:
    """Mean absolute difference of the composite's nir from a truth grid of ``scenes``."""
    import rasterio

    with rasterio.open(composite) as src:
        nir = src.read(list(src.descriptions).index("nir") + 1)
        x, y = scenes.pixel_xy(0, 0)  # type: ignore[attr-defined]
        c, r = (~src.transform) @ (x, y)
    r0, c0 = int(np.floor(r)), int(np.floor(c))
    want = truth[-r0 : -r0 + nir.shape[0], -c0 : -c0 + nir.shape[1]]
    return float(np.nanmean(np.abs(nir - want)))


def test_fetch_and_run_with_a_level_1c_model_build_level_1c_composites(
    tmp_path: Path,
    workdirs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    monkeypatch.setitem(sys.modules, "s2cloudless", None)  # QA60 masks: fast
    card = _l1c_six_band_model(tmp_path)
    from dataclasses import replace

    from asmspotter.testing.synthetic import SCL_SATURATED, default_specs

    # the same dates and clouds (L1C has no saturation flag)
    specs = [
        replace(s, boxes=tuple(b for b in s.boxes if b[0] != SCL_SATURATED))
        for s in default_specs()
    ]
    l2a = make_scenes(tmp_path / "l2a", seed=8, bands=SIX, specs=specs)
    l1c = make_scenes(tmp_path / "l1c", seed=9, bands=SIX, level="L1C", specs=specs)
    files = layout.composite_files("loop", "winter", base=workdirs["cache"])
    with StacServer(l2a.items + l1c.items, {**l2a.files, **l1c.files}) as server:
        catalogue = _loopback_catalogue(tmp_path, l2a.inner_bbox(), server.url, [WINTER])
        fetch = ["fetch", "loop", "--catalogue", str(catalogue), "-p", "winter"]
        detect = ["detect", "loop", "--catalogue", str(catalogue), "--no-progress"]
        # the region's default (L2A) with the model's bands: detect refuses it
        assert main([*fetch, "--model", str(card), "--collection", "sentinel-2-l2a"]) == 0
        assert "scenes from sentinel-2-l2a" in capsys.readouterr().out
        assert main([*detect, "--model", str(card)]) == 2
        err = _one_line_error(capsys.readouterr().err)
        assert "made from L2A scenes; model six-l1c reads L1C" in err
        assert "asmspotter fetch loop --model six-l1c" in err
        # --model alone: Level-1C scenes, with the model's six bands
        assert main([*fetch, "--model", str(card)]) == 0
        out = capsys.readouterr().out
        assert "loop winter: wrote" in out and "scenes from sentinel-2-l1c" in out
        request = json.loads(files.provenance.read_text())["request"]
        assert (request["collection"], request["level"]) == ("sentinel-2-l1c", "L1C")
        # the values are the L1C scenes' clear median, not the L2A scenes'
        from_l1c = _nir_error(files.tif, l1c.expected_median("nir"), l1c)
        from_l2a = _nir_error(files.tif, l2a.expected_median("nir"), l2a)
        assert from_l1c < 1e-6 < from_l2a
        assert main([*detect, "--model", str(card)]) == 0
        run = ["run", "loop", "--catalogue", str(catalogue), "--no-progress", "--no-report"]
        assert main([*run, "--model", str(card)]) == 0
        assert "winter: reused" in capsys.readouterr().out
