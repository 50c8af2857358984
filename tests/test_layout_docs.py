"""CONTRIBUTING.md's table of locations says what asmspotter/layout.py says."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from asmspotter import layout, paths

CONTRIBUTING = Path(__file__).resolve().parent.parent / "CONTRIBUTING.md"


def _table() -> dict[str, list[str]]:
    """Return the backticked items of each row of the **Locations** table, by row name."""
    text = CONTRIBUTING.read_text(encoding="utf-8")
    section = text[text.index("**Locations**") :]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break  # the end of the table
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("what", "---"):
            rows[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return rows


def _files(obj: object) -> list[Path]:
    """Return every file a layout object names (its Path-valued properties)."""
    values = [getattr(obj, name) for name, v in vars(type(obj)).items() if isinstance(v, property)]
    return [v for v in values if isinstance(v, Path)]


def _expected(obj: Any, *more: Any) -> tuple[str, set[str]]:
    """Return the folder (as the table writes it) and the file names of layout objects."""
    folder = obj.folder
    names = {p.name for o in (obj, *more) for p in _files(o)}
    return PurePosixPath(folder).as_posix(), names


def _seen(items: list[str]) -> tuple[set[str], set[str]]:
    """Return the folders and the file names a table row lists."""
    folders = {i.rstrip("/") if i.endswith("/") else str(PurePosixPath(i).parent) for i in items}
    folders = {f for f in folders if f != "."}
    names = {PurePosixPath(i).name for i in items if not i.endswith("/")}
    return folders, names


def test_locations_table_matches_layout() -> None:
    rows = _table()
    t = layout.TEMPLATES
    assert set(rows) == {
        "composite",
        "detection",
        "analysis",
        "reference analysis",
        "report",
        "training",
        "tiles",
    }
    other_language = layout.ReportFiles(t.report.folder, "<lang>")
    for what, (folder, names) in {
        "composite": _expected(t.composite),
        "detection": _expected(t.detection),
        "analysis": _expected(t.analysis),
        "reference analysis": _expected(t.reference_analysis),
        "report": _expected(t.report, other_language),
    }.items():
        assert _seen(rows[what]) == ({folder}, names), what
    # the composite's two files are the same folder's, as are the detection's
    assert rows["composite"][0] == str(t.composite.tif)
    assert rows["detection"][0] == str(t.detection.probability)
    assert rows["analysis"][0] == f"{t.analysis.folder}/"
    assert rows["reference analysis"][0] == f"{t.reference_analysis.folder}/"
    assert rows["report"][0] == str(t.report.html)
    base = paths.OUTPUT_FOLDER
    assert [i for i in rows["training"] if "/" in i] == [  # the other items are commands
        f"{layout.smoke_models_dir(base)}/",
        str(layout.crossval_dir(base) / layout.CROSSVAL_NAME),
    ]


def test_tiles_row_matches_layout() -> None:
    t = layout.TEMPLATES
    tiles = _table()["tiles"]
    expected = [
        str(t.composite_tile.tif),
        t.composite_tile.provenance.name,
        str(t.detection_tile.probability),
        *(p.name for p in _files(t.detection_tile) if p != t.detection_tile.probability),
        str(t.mosaic.composite),
        str(t.mosaic.probability),
        t.mosaic.mask.name,
    ]
    assert sorted(tiles) == sorted(expected)
    # the mask VRT lies beside the probability VRT
    assert t.mosaic.mask.parent == t.mosaic.probability.parent


def test_table_parser_sees_every_row() -> None:
    # the check above would pass vacuously on an empty table
    rows = _table()
    assert all(rows[k] for k in rows)
    assert "analysis.json" in {PurePosixPath(i).name for i in rows["analysis"]}
