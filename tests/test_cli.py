from __future__ import annotations

import json
import subprocess
import sys

import pytest

from asmspotter.cli import COMMAND_MODULES, build_parser, main


def test_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("regions", "fetch", "detect", "analyse"):
        assert command in out


def test_every_command_module_registers_a_subcommand_with_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)  # type: ignore[attr-defined]
    assert "regions" in names
    assert len(names) == len(COMMAND_MODULES)
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        assert p.description, f"{name} has no description"


def test_regions_lists_the_four_regions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regions", "--json"]) == 0
    regions = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in regions] == [
        "madre-de-dios",
        "brokopondo",
        "cuyuni-mazaruni",
        "la-pampa",
    ]


def test_user_error_is_one_line_without_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "regions.yaml"
    bad.write_text("regions:\n  x:\n    name: X\n")
    proc = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", "regions", "--catalogue", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr
    assert "region 'x': missing field" in proc.stderr


def test_file_system_refusal_is_one_line_without_traceback(shared_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A cache or output path the system refuses is reported with the path, no traceback."""
    import os

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "ASMSPOTTER_CACHE": str(blocker / "cache")}
    env["ASMSPOTTER_SHARED_DATA"] = str(shared_data)
    proc = subprocess.run(
        [sys.executable, "-m", "asmspotter.cli", "fetch", "la-pampa", "-p", "2019"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "Not a directory" in proc.stderr and str(blocker) in proc.stderr
