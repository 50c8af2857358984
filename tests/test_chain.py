"""``asmspotter.chain.run_region``: the whole chain as one library call, on a loopback region."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from asmspotter import layout
from asmspotter.chain import ChainReporter, Stage, run_region
from asmspotter.errors import InputError

pytestmark = pytest.mark.usefixtures("loopback_only")
SCENE_SEED = 8


class _Recorder(ChainReporter):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def stage(self, stage: Stage) -> None:
        self.events.append(("stage", stage))

    def composite(self, period, result) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("composite", period.id))

    def detection(self, period, result) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("detection", period.id))


@pytest.fixture()
def catalogue(tmp_path: Path, scenes, server) -> Path:  # type: ignore[no-untyped-def]
    """A one-region catalogue ('loop', one winter period) searching the loopback STAC API."""
    region = {
        "name": "Loopback",
        "country": "Nowhere",
        "outline": {"bbox": list(scenes.inner_bbox())},
        "periods": [{"id": "winter", "start": "2021-12-01", "end": "2022-03-31"}],
        "source": {"type": "stac", "url": server.url},
    }
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump({"regions": {"loop": region}}))
    return path


def test_run_region_returns_every_stage_typed(catalogue: Path, workdirs: dict[str, Path]) -> None:
    recorder = _Recorder()
    result = run_region("loop", catalogue=catalogue, progress=False, reporter=recorder)
    assert recorder.events == [
        ("stage", "fetch"),
        ("composite", "winter"),
        ("stage", "detect"),
        ("detection", "winter"),
        ("stage", "analyse"),
    ]
    assert result.region.id == "loop"
    assert [p.id for p in result.periods] == ["winter"]
    (comp,) = result.composites
    assert comp.path == layout.composite_files("loop", "winter", base=workdirs["cache"]).tif
    assert not comp.reused and comp.path.is_file()
    (det,) = result.detections
    assert det.out_dir == layout.detection_files("loop", "winter", base=workdirs["output"]).folder
    assert result.analysis.accounting.period_ids == ["winter"]
    assert result.analysis_files == layout.analysis_files("loop", base=workdirs["output"])
    assert result.written[-1] == result.analysis_files.json
    assert all(p.is_file() for p in result.written)
    record = json.loads(result.analysis_files.json.read_text())
    assert record["provenance"]["arguments"] == {
        "region": "loop",
        "periods": ["winter"],
        "model": None,
        "refresh": False,
        "device": None,
    }
    # the figures are the detection's: the analysis reads what the detect stage wrote
    fig = result.analysis.accounting.figures[0]
    assert fig.cumulative_ha == pytest.approx(det.polygon_area_ha, rel=0.01, abs=0.05)

    again = run_region(result.region, ["winter"], progress=False)
    assert again.composites[0].reused
    assert again.detections[0].polygon_area_ha == det.polygon_area_ha


def test_run_region_refuses_unknown_regions_and_periods(catalogue: Path) -> None:
    with pytest.raises(InputError, match="unknown region 'atlantis'"):
        run_region("atlantis", catalogue=catalogue)
    with pytest.raises(InputError, match="has no period '2030'"):
        run_region("loop", ["2030"], catalogue=catalogue)
