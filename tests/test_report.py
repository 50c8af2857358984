"""`asmspotter report`: papermill runs the committed notebook on the offline shared data.

Executed briefings are shared between tests (module-scoped fixtures), since each run starts
a kernel. The detector-source briefing of La Pampa reads detections made here from Amazon
Mining Watch's footprints (the real detector's chain is tested in test_run_command.py) over
real composites of the shared scenes.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import rasterio
from rasterio.features import rasterize

from asmspotter import layout, paths
from asmspotter.catalogue import get_region
from asmspotter.cli import main
from asmspotter.report import find_browser
from asmspotter.testing.detections import write_detection

DATE = "2026-11-30"
LATER = "2026-12-01"
FINDING = re.compile(r'<li class="finding">(.*?)</li>', re.S)
TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Run:
    """One `asmspotter` command run in-process: exit status and output."""

    code: int
    out: str
    err: str


@contextlib.contextmanager
def folders(output: Path, cache: Path, **env: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.OUTPUT_ENV, str(output))
        mp.setenv(paths.CACHE_ENV, str(cache))
        for key, value in env.items():
            mp.setenv(key, value)
        yield


def cli(*args: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Run(code, out.getvalue(), err.getvalue())


def findings(page: Path) -> list[str]:
    return [html.unescape(TAG.sub("", f)) for f in FINDING.findall(page.read_text())]


def text_of(page: Path) -> str:
    return " ".join(html.unescape(TAG.sub(" ", page.read_text())).split())


def write_detections(output: Path) -> None:
    """La Pampa 'detections' per period from Amazon Mining Watch's footprints (active masks)."""
    shared = paths.shared_data_dir() / "amw" / "footprints"
    region = get_region("la-pampa")
    up_to_2019 = pd.concat([gpd.read_file(shared / f"mining_{y}00.geojson") for y in (2018, 2019)])
    new_2021 = pd.concat([gpd.read_file(shared / f"mining_{y}00.geojson") for y in (2020, 2021)])
    box = gpd.GeoSeries([region.outline], crs="EPSG:4326")
    active = {
        "2019": up_to_2019,
        "2021": pd.concat([up_to_2019.iloc[::2], new_2021]),  # half of the old pits stay active
    }
    for period, frame in active.items():
        clipped = gpd.clip(gpd.GeoDataFrame(frame, crs="EPSG:4326"), box).to_crs(region.crs)
        polygons = list(clipped.geometry)
        with rasterio.open(layout.composite_files(region.id, period).tif) as comp:
            grid, shape, crs = comp.transform, comp.shape, comp.crs.to_string()
        mask = rasterize(polygons, out_shape=shape, transform=grid, dtype="uint8")
        write_detection(
            region.id, period, mask, crs=crs, transform=grid, polygons=polygons, base=output
        )


@pytest.fixture(scope="module")
def base(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Detections and composites of La Pampa, then every reference briefing and La Pampa's."""
    root = tmp_path_factory.mktemp("report")
    output, cache = root / "reports", root / "cache"
    with folders(output, cache):
        assert cli("fetch", "la-pampa").code == 0  # real composites of the shared scenes
        write_detections(output)
        run = cli("report", "--all", "--source", "reference", "--date", DATE)
        assert run.code == 0, run.err
        assert "la-pampa: skipped (it has detections" in run.out
        run = cli("report", "la-pampa", "--date", DATE)
        assert run.code == 0, run.err
    return output


@pytest.fixture(scope="module")
def again(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Madre de Dios from the reference again, on another day, with a PDF, and in Spanish."""
    root = tmp_path_factory.mktemp("again")
    with folders(root / "reports", root / "cache"):
        run = cli("report", "madre-de-dios", "--source", "reference", "--pdf", "--date", LATER)
        assert run.code == 0, run.err
        run = cli(
            "report", "madre-de-dios", "--source", "reference", "--lang", "es", "--date", DATE
        )
        assert run.code == 0, run.err
    return root / "reports"


def test_all_reference_briefings_are_written(base: Path) -> None:
    for region in ("madre-de-dios", "brokopondo", "cuyuni-mazaruni"):
        files = layout.report_files(region, base=base)
        assert files.html.is_file() and files.notebook.is_file(), region
        assert layout.reference_analysis_files(region, base).json.is_file()
        assert "reference footprints" in text_of(files.html)
    # la-pampa has detections: its briefing is the detector's, its analysis in analysis/
    assert "ASMSpotter detector, model asm-rgb-v4" in text_of(
        layout.report_files("la-pampa", base=base).html
    )
    assert not layout.reference_analysis_files("la-pampa", base).folder.exists()
    assert not list(base.rglob(".report-*")) and not list(base.rglob("*.partial-*"))


def test_madre_de_dios_states_the_reference_figures(base: Path) -> None:
    first = findings(layout.report_files("madre-de-dios", base=base).html)[0]
    assert first == (
        "According to Amazon Mining Watch's reference footprints, the mined area (cumulative) "
        "grew by a factor 1.11, from 45,001 ha in 2019 to 49,935 ha in 2021."
    )


def _file_values(folder: Path) -> list[float]:
    values = []
    for name in ("periods.csv", "expansion.csv", "overlay_layers.csv", "overlay_features.csv"):
        with (folder / name).open() as fh:
            for row in csv.DictReader(fh):
                for key, value in row.items():
                    if key.endswith(("_ha", "_factor", "_per_year")) and value:
                        values.append(float(value))
    return values


def _shares(folder: Path) -> list[float]:
    """Shares a sentence may quote: inside, outside and new outside over their totals."""
    periods = pd.read_csv(folder / "periods.csv")
    last = periods.iloc[-1]
    layers = pd.read_csv(folder / "overlay_layers.csv")
    layers = layers[layers["period"].astype(str) == str(last["period"])]
    shares = list(layers["inside_ha"] / last["cumulative_ha"])
    shares += list(layers["outside_ha"] / last["cumulative_ha"])
    shares += list(layers["new_outside_ha"] / (layers["new_inside_ha"] + layers["new_outside_ha"]))
    return [s * 100 for s in shares]


def _numbers_match_files(sentences: list[str], folder: Path, group: str, decimal: str) -> int:
    values, shares = _file_values(folder), _shares(folder)
    token = re.compile(
        rf"(\d[\d{re.escape(group)}]*(?:{re.escape(decimal)}\d+)?) (ha|%)"
        rf"|factor (?:de )?(\d+{re.escape(decimal)}\d+)"
    )
    checked = 0
    for sentence in sentences:
        for number, unit, factor in token.findall(sentence):
            text = factor or number
            digits = len(text.split(decimal)[1]) if decimal in text else 0
            value = float(text.replace(group, "").replace(decimal, "."))
            pool = shares if unit == "%" else values
            assert any(round(v, digits) == value for v in pool), (text, sentence)
            checked += 1
    return checked


@pytest.mark.parametrize("region", ["madre-de-dios", "brokopondo", "cuyuni-mazaruni"])
def test_every_number_in_the_key_findings_is_in_the_analysis_files(base: Path, region: str) -> None:
    sentences = findings(layout.report_files(region, base=base).html)
    folder = layout.reference_analysis_files(region, base).folder
    assert _numbers_match_files(sentences, folder, ",", ".") >= 8


def test_la_pampa_detector_briefing_numbers_equal_its_analysis(base: Path) -> None:
    page = layout.report_files("la-pampa", base=base).html
    sentences = findings(page)
    folder = layout.analysis_files("la-pampa", base).folder
    assert _numbers_match_files(sentences, folder, ",", ".") >= 8
    periods = pd.read_csv(folder / "periods.csv")
    factor = pd.read_csv(folder / "expansion.csv")["cumulative_factor"].iloc[-1]
    c19, c21 = periods["cumulative_ha"]
    assert sentences[0] == (
        "According to the ASMSpotter detector (asm-rgb-v4), the mined area (cumulative) grew by "
        f"a factor {factor:.2f}, from {c19:,.0f} ha in 2019 to {c21:,.0f} ha in 2021."
    )
    assert any("mining active in 2021" in s for s in sentences)
    text = text_of(page)
    assert "Background: Sentinel-2 composite of 2021" in text
    assert "Share of the detector confirmed" in text  # agreement with the reference
    assert "R1_original_2021-07-23.tif" in text  # imagery provenance


def test_gaps_of_the_reference_are_said_plainly(base: Path) -> None:
    broko = layout.report_files("brokopondo", base=base).html
    assert any(
        "cannot cover 2016 and 2017: their first period, 2018, holds everything mapped up to "
        "31 December 2018" in s
        for s in findings(broko)
    )
    periods = pd.read_csv(layout.reference_analysis_files("brokopondo", base).periods_csv)
    assert list(periods["period"].astype(str)) == [str(y) for y in range(2018, 2024)]
    assert 'id="table-gaps"' in broko.read_text()
    cuyuni = findings(layout.report_files("cuyuni-mazaruni", base=base).html)
    assert any("cannot cover 2020-Q3 (1 July 2020 to 30 September 2020)" in s for s in cuyuni)


def test_spanish_briefing_writes_numbers_the_spanish_way(again: Path) -> None:
    page = layout.report_files("madre-de-dios", "es", base=again).html
    assert page.name == "report.es.html"
    sentences = findings(page)
    assert sentences[0] == (
        "Según las huellas de referencia de Amazon Mining Watch, el área minada (acumulada) "
        "creció en un factor de 1,11, de 45.001 ha en 2019 a 49.935 ha en 2021."
    )
    folder = layout.reference_analysis_files("madre-de-dios", again).folder
    assert _numbers_match_files(sentences, folder, ".", ",") >= 8
    assert '<html lang="es">' in page.read_text()
    assert "Hallazgos principales" in text_of(page)


def test_two_runs_differ_only_in_the_generation_date(base: Path, again: Path) -> None:
    one = layout.report_files("madre-de-dios", base=base).html.read_text()
    two = layout.report_files("madre-de-dios", base=again).html.read_text()
    assert "30 November 2026" in one and "1 December 2026" in two
    assert one.replace("30 November 2026", "1 December 2026") == two
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', two)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    for name in ("periods.csv", "expansion.csv", "overlay_layers.csv", "overlay_features.csv"):
        a = layout.reference_analysis_files("madre-de-dios", base).folder / name
        b = layout.reference_analysis_files("madre-de-dios", again).folder / name
        assert a.read_bytes() == b.read_bytes(), name


def test_html_is_self_contained_and_small(base: Path) -> None:
    page = layout.report_files("madre-de-dios", base=base).html
    text = page.read_text()
    assert page.stat().st_size < 5_000_000
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r'(?:src|href)="(?!data:)', text)
    assert "In&nbsp;[" not in text and "report.prepare_briefing" not in text  # no input cells
    executed = json.loads(layout.report_files("madre-de-dios", base=base).notebook.read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


@pytest.mark.browser
def test_browser_shows_map_chart_and_tables_offline(base: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    browser_path = find_browser()
    if browser_path is None:
        pytest.skip("no Chromium on this machine (.ci/run installs it)")
    page_file = layout.report_files("madre-de-dios", base=base).html
    blocked: list[str] = []

    def route(r):  # type: ignore[no-untyped-def]
        if r.request.url.startswith(("file:", "data:")):
            return r.continue_()
        blocked.append(r.request.url)
        return r.abort()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 1400})
        page.route("**/*", route)
        page.goto(page_file.as_uri())
        for figure in ("#map img", "#chart img"):
            assert page.locator(figure).is_visible()
            width = page.eval_on_selector(figure, "img => img.complete ? img.naturalWidth : 0")
            assert width > 500, figure
        for table in ("#table-periods", "#table-overlays", "#table-features", "#table-sources"):
            assert page.locator(table).is_visible(), table
        assert page.locator("li.finding").count() >= 5
        shot = tmp_path / "madre-de-dios.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert blocked == []
    assert shot.stat().st_size > 100_000


def test_pdf_holds_the_expansion_sentence(again: Path) -> None:
    files = layout.report_files("madre-de-dios", base=again)
    assert files.pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed (.ci/run installs it)")
    info = subprocess.run(["pdfinfo", str(files.pdf)], capture_output=True, text=True, check=True)
    assert "(A4)" in info.stdout
    text = subprocess.run(
        ["pdftotext", str(files.pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "grew by a factor 1.11, from 45,001 ha in 2019 to 49,935 ha in 2021" in " ".join(
        text.split()
    )


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


def test_unknown_region_lists_the_regions() -> None:
    run = cli("report", "atlantis")
    assert run.code == 2
    assert run.err.strip() == (
        "asmspotter: error: unknown region 'atlantis'; known regions: brokopondo, "
        "cuyuni-mazaruni, la-pampa, madre-de-dios"
    )


def test_detector_without_detections_names_the_command(shared_data: Path, tmp_path: Path) -> None:
    with folders(tmp_path / "reports", tmp_path / "cache"):
        run = cli("report", "madre-de-dios", "--source", "detector")
    assert run.code == 2 and run.err.count("\n") == 1
    assert "no detections for region 'madre-de-dios'" in run.err
    assert "`asmspotter run madre-de-dios`" in run.err
    assert not (tmp_path / "reports").exists()


def test_other_mistakes_are_one_line(shared_data: Path, tmp_path: Path) -> None:
    with folders(tmp_path / "reports", tmp_path / "cache"):
        for args, message in (
            (("madre-de-dios", "--lang", "fr"), "unknown language 'fr'"),
            (("madre-de-dios", "--source", "reference", "-p", "2016"), "has no period 2016"),
            (("--all", "madre-de-dios"), "name one REGION or give --all"),
        ):
            run = cli("report", *args)
            assert run.code == 2 and message in run.err and run.err.count("\n") == 1, run.err


QUIET = """
regions:
  quiet-forest:
    name: Quiet forest
    country: Peru
    outline: {{bbox: [-71.5, -11.5, -71.4, -11.4]}}
    crs: EPSG:32719
    periods: [2019, 2021]
    overlays:
      - id: protected-areas
        kind: protected_area
        label: Natural protected areas (SERNANP)
        file: boundaries/protected_areas_madre_de_dios.geojson
        id_field: name
        name_field: name
{reference}
"""
REFERENCE = """    reference:
      label: Amazon Mining Watch
      area_attribute: Mined area (ha)
      files:
        "2019": [{first}, amw/footprints/mining_201900.geojson]
        "2021": [amw/footprints/mining_202000.geojson, amw/footprints/mining_202100.geojson]
"""


def test_no_reference_in_the_catalogue(shared_data: Path, tmp_path: Path) -> None:
    catalogue = tmp_path / "regions.yaml"
    catalogue.write_text(QUIET.format(reference=""))
    with folders(tmp_path / "reports", tmp_path / "cache"):
        run = cli("report", "quiet-forest", "--source", "reference", "--catalogue", str(catalogue))
    assert run.code == 2
    assert "region 'quiet-forest' has no reference footprints in the catalogue" in run.err


def test_no_mining_renders_and_a_failing_cell_keeps_the_previous_report(
    shared_data: Path, tmp_path: Path
) -> None:
    catalogue = tmp_path / "regions.yaml"
    good = REFERENCE.format(first="amw/footprints/mining_201800.geojson")
    catalogue.write_text(QUIET.format(reference=good))
    output = tmp_path / "reports"
    args = ("report", "quiet-forest", "--catalogue", str(catalogue), "--date", DATE)
    with folders(output, tmp_path / "cache", ASMSPOTTER_BROWSER=str(tmp_path / "no-chromium")):
        run = cli(*args, "--pdf")
    page = layout.report_files("quiet-forest", base=output).html
    # --pdf without a browser: exit 2 with how to install Chromium, and the HTML is written
    assert run.code == 2 and "apt-get install chromium" in run.err and str(page) in run.err
    assert not page.with_suffix(".pdf").exists()
    assert findings(page) == [
        "According to Amazon Mining Watch's reference footprints, no mining was found in Quiet "
        "forest in any period from 2019 to 2021."
    ]
    assert 'id="map"' in page.read_text() and 'id="chart"' in page.read_text()
    before = page.read_bytes()

    broken = tmp_path / "broken.geojson"
    broken.write_text("{ this is not GeoJSON")
    catalogue.write_text(QUIET.format(reference=REFERENCE.format(first=broken)))
    with folders(output, tmp_path / "cache"):
        run = cli(*args)
    assert run.code == 2 and run.err.count("\n") == 1
    assert "the briefing notebook failed in cell" in run.err
    assert "report.prepare_briefing(" in run.err and "DataError" in run.err
    assert page.read_bytes() == before
    assert not list(output.rglob(".report-*")) and not list(output.rglob("*.partial-*"))
