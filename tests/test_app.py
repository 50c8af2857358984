"""The app without a browser: selection state, validation, display data, map, panel, server.

A generated region (squares of exactly known area in UTM 19S, two overlay zones, detector
outputs for 2019 and 2021 and a composite for 2021) is opened in the real widgets; clicks
are sent to the layers as the browser sends them. The browser tests are in
``test_app_browser.py``.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import geopandas as gpd
import nbformat
import numpy as np
import pytest
import shapely
from PIL import Image
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import Affine

from asmspotter import layout, paths
from asmspotter.analyse import analyse_region
from asmspotter.app import display, panel
from asmspotter.app.cache import preload_order, warm_up
from asmspotter.app.priority import BACKGROUND_NICE
from asmspotter.app.raster import composite_image
from asmspotter.app.source import detector_model
from asmspotter.app.state import (
    DEFAULT_LAYERS,
    AppState,
    LayerRef,
    Request,
    Selection,
    parse_query,
    visible_layers,
)
from asmspotter.app.view import App
from asmspotter.catalogue import load_catalogue
from asmspotter.cli import main
from asmspotter.detect.synthetic import make_scene, write_composite
from asmspotter.errors import InputError
from asmspotter.palette import period_colours
from asmspotter.report import key_findings
from asmspotter.testing.detections import write_detection

UTM = "EPSG:32719"
X0, Y0 = 400_000.0, 8_600_000.0  # about -69.92, -12.67


def sq(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A rectangle in metres relative to (X0, Y0)."""
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


A = sq(0, 0, 1000, 1000)  # 100 ha, mined by 2019
C = sq(2000, 0, 3000, 500)  # 50 ha, new in 2021
PROTECTED = sq(0, 0, 1200, 2000)  # holds A
CORRIDOR = sq(1400, -1000, 2500, 1000)  # holds half of C


def write_region(base: Path) -> Path:
    """Write a catalogue of one generated region, its detections and a 2021 composite."""
    to_wgs84 = Transformer.from_crs(UTM, 4326, always_xy=True)
    (lon0, lat0), (lon1, lat1) = (
        to_wgs84.transform(X0 - 500, Y0 - 1500),
        to_wgs84.transform(X0 + 3500, Y0 + 2500),
    )
    for name, geom, zone in (
        ("zones", PROTECTED, "Reserva <b>Uno</b>"),
        ("corridor", CORRIDOR, ""),
    ):
        gpd.GeoDataFrame({"zid": ["z1"], "label": [zone]}, geometry=[geom], crs=UTM).to_file(
            base / f"{name}.gpkg"
        )
    catalogue = base / "regions.yaml"
    catalogue.write_text(
        f"""regions:
  test-region:
    name: Test region
    country: Testland
    outline: {{bbox: [{lon0}, {lat0}, {lon1}, {lat1}]}}
    crs: {UTM}
    periods: [2019, 2021]
    overlays:
      - {{id: reserves, kind: protected_area, label: Reserves, file: {base}/zones.gpkg,
          id_field: zid, name_field: label}}
      - {{id: corridor, kind: mining_zone, label: Corridor, file: {base}/corridor.gpkg,
          id_field: zid, name_field: label}}
"""
    )
    grid = Affine(10.0, 0.0, X0 - 500, 0.0, -10.0, Y0 + 2500)  # the composite's grid
    for period, geoms in (("2019", [A]), ("2021", [A, C])):
        mask = rasterize(geoms, out_shape=(400, 400), transform=grid, dtype="uint8")
        write_detection("test-region", period, mask, crs=UTM, transform=grid, polygons=geoms)
    scene = make_scene(400, 400, seed=3)
    scene[:, :, :40] = np.nan  # a strip without data: transparent on the map
    write_composite(
        layout.composite_files("test-region", "2021").tif,
        scene,
        origin=(X0 - 500, Y0 + 2500),
    )
    return catalogue


@pytest.fixture()
def region_app(workdirs: dict[str, Path], tmp_path: Path) -> App:
    cat = load_catalogue(write_region(tmp_path))
    app = App(cat)
    app.start(Request("test-region"))
    assert app.panel is not None, app.message.value
    return app


# --- selection state ---------------------------------------------------------------------


def test_query_is_parsed_and_checked() -> None:
    req = parse_query("region=madre-de-dios&period=2021&layers=mining,reference")
    assert req == Request("madre-de-dios", None, "2021", frozenset({"mining", "reference"}))
    assert parse_query("") == Request()
    for bad, why in (
        ("template=reveal", "unknown parameter 'template'"),
        ("region=a&region=b", "given twice"),
        ("region=../../etc/passwd", "must be an id"),
        ("region=%2Fetc", "must be an id"),
        ("period=2021;import+os", "must be an id"),
        ("layers=mining,tiles", "unknown layer"),
    ):
        with pytest.raises(InputError, match=why):
            parse_query(bad)


def test_state_transitions_are_validated() -> None:
    state = AppState(("madre-de-dios", "la-pampa"))
    with pytest.raises(InputError, match="unknown region 'atlantis'; known regions: madre"):
        state.open("atlantis", "reference", ("2019",))
    sel = state.open("madre-de-dios", "reference", ("2019", "2020", "2021"))
    assert (sel.period, sel.layers) == ("2021", DEFAULT_LAYERS)
    assert state.choose_period("2019").periods_shown == ("2019",)
    with pytest.raises(InputError, match="no analysed period '1999'; periods: 2019, 2020"):
        state.choose_period("1999")
    assert state.selection.period == "2019"  # a refused choice changes nothing
    state.toggle_layer("reference", True)
    with pytest.raises(InputError, match="unknown layer"):
        state.toggle_layer("tiles", True)
    again = parse_query(state.selection.query())
    assert (again.region, again.period, again.layers) == (
        "madre-de-dios",
        "2019",
        sel.layers | {"reference"},
    )
    assert state.close().region is None


def test_visible_layers_show_every_period_up_to_the_chosen_one() -> None:
    sel = Selection("r", "reference", "2020", ("2019", "2020", "2021"))
    refs = visible_layers(sel, overlay_kinds=("protected_area", "mining_zone"))
    assert refs == (
        LayerRef("satellite", "2020"),
        LayerRef("protected_area"),
        LayerRef("mining_zone"),
        LayerRef("mining", "2019"),
        LayerRef("mining", "2020"),
    )
    off = Selection("r", "reference", "2021", sel.periods, frozenset({"reference", "mining"}))
    assert [r.key for r in visible_layers(off, ("protected_area",))] == ["reference"] * 3 + [
        "mining"
    ] * 3
    assert visible_layers(Selection()) == ()


# --- display data and panel --------------------------------------------------------------


def test_display_keeps_the_analysis_numbers(region_app: App) -> None:
    result = region_app.panel.analysis.result  # type: ignore[union-attr]
    collections = display.mining_collections(result, "test")
    assert list(collections) == ["2019", "2021"]
    areas = {
        p: sorted(f["properties"]["area_ha"] for f in c["features"]) for p, c in collections.items()
    }
    assert areas["2019"] == pytest.approx([100.0], rel=2e-3)
    assert areas["2021"] == pytest.approx([50.0], rel=2e-3)
    assert sum(map(sum, areas.values())) == pytest.approx(
        result.accounting.piece_ha().sum(), abs=0.01
    )
    lon, lat = collections["2021"]["features"][0]["geometry"]["coordinates"][0][0]
    assert -70.0 < lon < -69.8 and -12.8 < lat < -12.6  # EPSG:4326
    colours = period_colours(2)
    assert [
        c["features"][0]["properties"]["style"]["fillColor"] for c in collections.values()
    ] == colours
    # coarse simplification changes the drawing, never the numbers
    props = [{"area_ha": 1.0}] * 2
    coarse = display.display_collection([A, C], UTM, props, {}, tolerance_m=400)
    assert [f["properties"]["area_ha"] for f in coarse["features"]] == [1.0, 1.0]

    numbers = display.period_numbers(result, "2021")
    assert (numbers.cumulative_ha, numbers.new_ha) == pytest.approx((150, 50), rel=2e-3)
    zones = {z.kind: z for z in numbers.zones}
    assert zones["protected_area"].inside_ha == pytest.approx(100, rel=2e-3)
    assert zones["mining_zone"].inside_ha == pytest.approx(25, rel=2e-3)
    assert zones["mining_zone"].outside_ha == pytest.approx(125, rel=2e-3)
    assert zones["mining_zone"].legal and not zones["protected_area"].legal


def test_panel_html_is_escaped_and_labelled() -> None:
    assert panel.format_ha(49_935.2) == "49,935 ha" and panel.format_ha(19.44) == "19.4 ha"
    popup = panel.popup_html(
        {"layer": "overlay", "overlay": "Reserves", "name": "<script>x</script>", "area_ha": 3}
    )
    assert "<script>" not in popup and "&lt;script&gt;" in popup
    mining = panel.popup_html(
        {
            "layer": "mining",
            "period": "2020",
            "first": False,
            "area_ha": 12.5,
            "polygon_ha": 30.0,
            "source": "AMW",
        }
    )
    assert "new in 2020" in mining and "12.5 ha" in mining and "30.0 ha" in mining
    sel = Selection("r", "reference", "2020", ("2019", "2020", "2021"))
    legend = panel.legend_html(sel, "Amazon Mining Watch reference footprints", ())
    assert "up to 2019" in legend and "new in 2020" in legend and "2021" not in legend
    assert "asmspotter fetch r --period 2021" in panel.satellite_note("r", "2021", False)


def test_region_map_switches_periods_layers_and_popups(region_app: App) -> None:
    rmap = region_app.panel.map  # type: ignore[union-attr]
    layers = rmap.map.layers
    assert rmap.mining["2019"] in layers and rmap.mining["2021"] in layers
    assert not any(getattr(la, "url", "").startswith("http") for la in layers)  # offline
    image = rmap.image("2021")
    assert image is not None and image in layers and image.url.startswith("data:image/png")
    assert rmap.image("2019") is None
    numbers = region_app.panel.numbers.value  # type: ignore[union-attr]
    assert "data-figure='cumulative'>150 ha" in numbers and "data-figure='new'>50.0 ha" in numbers

    region_app.choose_period("2019")
    link = region_app.panel.link.value  # type: ignore[union-attr]
    assert "href='?region=test-region&amp;source=detector&amp;period=2019'" in link
    layers = rmap.map.layers
    assert rmap.mining["2019"] in layers and rmap.mining["2021"] not in layers
    assert "asmspotter fetch test-region --period 2019" in region_app.panel.satellite_note.value  # type: ignore[union-attr]
    region_app.toggle_layer("mining", False)
    assert not set(rmap.mining.values()) & set(rmap.map.layers)
    region_app.toggle_layer("protected_area", False)
    assert not set(rmap.overlay_layers["protected_area"]) & set(rmap.map.layers)
    region_app.toggle_layer("mining", True)

    # a click as the browser reports it opens the server's own copy of the feature's data
    rmap.mining["2019"]._click_callbacks(event="click", id=0, coordinates=[-12.66, -69.9])
    assert rmap.info.layout.display is None
    assert "up to 2019" in rmap.info.value and "100 ha" in rmap.info.value
    rmap.overlay_layers["mining_zone"][0]._click_callbacks(
        event="click", id=0, coordinates=[-12.66, -69.9]
    )
    assert "Corridor" in rmap.info.value
    before = rmap.info.value
    rmap.mining["2019"]._click_callbacks(
        event="click", id=7, coordinates=[-12.66, -69.9], properties={"area_ha": 1e9}
    )
    assert rmap.info.value == before  # a feature the server did not send is ignored

    region_app.choose_period("2021")
    assert rmap.info.layout.display == "none"  # a switch clears the clicked feature
    region_app.choose_period("1999")
    assert "no analysed period '1999'" in (region_app.state.message or "")
    assert region_app.state.selection.period == "2021"


def test_downloads_hold_the_numbers_shown(region_app: App) -> None:
    region_app.prepare_downloads()
    links = region_app.panel.downloads.value  # type: ignore[union-attr]
    assert "data-file='analysis.gpkg'" in links
    start = links.index("data:text/csv;base64,", links.index("test-region-detector-periods.csv"))
    encoded = links[start + len("data:text/csv;base64,") : links.index("'", start)]
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(encoded).decode())))
    assert [r["period"] for r in rows] == ["2019", "2021"]
    assert panel.format_ha(float(rows[1]["cumulative_ha"])) == "150 ha"


def test_composite_image_is_web_mercator_with_transparent_gaps(
    workdirs: dict[str, Path], tmp_path: Path
) -> None:
    write_region(tmp_path)
    tif = layout.composite_files("test-region", "2021").tif
    img = composite_image(tif, max_side=200)
    assert img.size[0] <= 220 and img.size[1] <= 220
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(img.url.split(",", 1)[1]))))
    assert rgba.shape[:2] == (img.size[1], img.size[0])
    # the strip without data (the first tenth of the columns) is transparent, the rest opaque
    assert (rgba[10:-10, 2:15, 3] == 0).all() and (rgba[10:-10, 30:-10, 3] == 255).all()
    (south, west), (north, east) = img.bounds
    to_wgs84 = Transformer.from_crs(UTM, 4326, always_xy=True)
    lon0, lat1 = to_wgs84.transform(X0 - 500, Y0 + 2500)
    assert west == pytest.approx(lon0, abs=2e-4) and north == pytest.approx(lat1, abs=2e-4)


def test_preload_readies_every_region_with_data(workdirs: dict[str, Path], tmp_path: Path) -> None:
    app = App(load_catalogue(write_region(tmp_path)))
    app.cache.preload(preload_order(app.catalogue))  # what warm_up queues before a page asks
    pending = list(app.cache._pending.values())
    assert len(pending) == 1
    loaded, shapes = pending[0].result(timeout=120)  # loaded in the background thread
    region = app.catalogue["test-region"]
    assert app.analysis(region, "detector") is loaded  # taken from the background, not redone
    assert app.shapes(loaded) is shapes and not app.cache._pending
    assert loaded.periods == ("2019", "2021")
    app.start(Request("test-region"))
    assert app.panel is not None and app.panel.analysis is loaded
    if sys.platform.startswith("linux") and os.getpriority(os.PRIO_PROCESS, 0) <= 10:
        # the loading ahead runs at low priority: it yields the CPU to the pages served
        executor = app.cache._executor
        assert executor is not None
        tid = executor.submit(threading.get_native_id).result()
        assert tid != threading.get_native_id()
        assert os.getpriority(os.PRIO_PROCESS, tid) == BACKGROUND_NICE


def test_warm_up_does_a_kernels_work_ahead_at_the_lowest_priority(
    workdirs: dict[str, Path], tmp_path: Path
) -> None:
    cache, loading = warm_up(str(write_region(tmp_path)), "test-region")
    cat = loading.result(timeout=120)  # the catalogue, read in the background thread
    assert list(cat) == ["test-region"]
    pending = list(cache._pending.values())
    assert len(pending) == 1  # every region with data, queued behind the catalogue
    loaded, _ = pending[0].result(timeout=120)
    app = App(cat, cache)
    app.start(Request("test-region"))
    assert app.panel is not None and app.panel.analysis is loaded  # not loaded again
    if sys.platform.startswith("linux") and os.getpriority(os.PRIO_PROCESS, 0) <= 10:
        executor = cache._executor
        assert executor is not None
        tid = executor.submit(threading.get_native_id).result()
        assert tid != threading.get_native_id()
        assert os.getpriority(os.PRIO_PROCESS, tid) == BACKGROUND_NICE == 19
        with cache.urgent():  # a page waits for it: at the page's priority where allowed
            if os.geteuid() == 0:
                assert os.getpriority(os.PRIO_PROCESS, tid) == os.getpriority(
                    os.PRIO_PROCESS, threading.get_native_id()
                )
        assert os.getpriority(os.PRIO_PROCESS, tid) == BACKGROUND_NICE


def test_a_kernel_waiting_for_its_page_has_imported_nothing_heavy() -> None:
    # what a preheated kernel runs at normal priority before its page comes: the notebook's
    # import and the cache module; Voila's server packages, the widgets and the analysis
    # stack are imported in the low-priority thread (or after the page came)
    code = (
        "import sys; import asmspotter.app, asmspotter.app.cache; "
        "print(sorted(m for m in ('voila', 'jupyter_server', 'ipyleaflet', 'ipywidgets', "
        "'shapely', 'matplotlib', 'geopandas', 'asmspotter.report') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(paths.source_checkout() or "")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_missing_outputs_are_a_message_naming_the_command(
    workdirs: dict[str, Path], tmp_path: Path
) -> None:
    cat = load_catalogue(write_region(tmp_path))
    for period in ("2019", "2021"):
        for f in layout.detection_files("test-region", period).files:
            f.unlink(missing_ok=True)
    app = App(cat)
    app.start(Request("test-region"))
    assert app.panel is None
    assert "run `asmspotter run test-region`" in (app.state.message or "")
    app.start(Request("atlantis"))
    assert "unknown region 'atlantis'; known regions: test-region" in (app.state.message or "")
    assert "Traceback" not in (app.state.message or "")


# --- notebook, command and server --------------------------------------------------------


def test_app_notebook_is_clean_and_holds_no_logic() -> None:
    from asmspotter.app.server import app_notebook

    linked = paths.PROJECT_ROOT / "notebooks" / "app.ipynb"  # the checkout's link to it
    assert linked.resolve() == app_notebook().resolve()
    nb = nbformat.read(app_notebook(), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0]
    params = ast.parse(tagged[0].source).body
    assert params and all(isinstance(s, ast.AnnAssign) for s in params)
    assert all(
        f"{s.target.id}:" in tagged[0].source and "#" in line
        for s, line in zip(params, tagged[0].source.splitlines()[1:], strict=True)
    )  # type: ignore[attr-defined]
    for cell in code[1:]:
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.ImportFrom):
                assert node.module and node.module.startswith("asmspotter")
            else:
                assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
        assert not any(
            isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))
            for n in ast.walk(ast.parse(cell.source))
        )


def test_app_command_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--ip", "localhost:80"]) == 2
    assert capsys.readouterr().err.startswith("asmspotter: error: --ip 'localhost:80' is not an IP")
    assert main(["app", "--region", "atlantis", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["app", "--region", "atlantis", "--port", "0"]) == 2
    assert "--port 0 must be within 1..65535" in capsys.readouterr().err


def test_same_numbers_as_the_analysis_command(region_app: App, workdirs: dict[str, Path]) -> None:
    cat_path = region_app.catalogue.path
    assert main(["analyse", "test-region", "--catalogue", str(cat_path)]) == 0
    rows = list(csv.DictReader(layout.analysis_files("test-region").periods_csv.open()))
    shown = region_app.panel.numbers.value  # type: ignore[union-attr]
    assert f"data-figure='cumulative'>{panel.format_ha(float(rows[1]['cumulative_ha']))}" in shown
    result = analyse_region(region_app.catalogue["test-region"])
    assert json.dumps(display.period_numbers(result, "2021").cumulative_ha) == json.dumps(
        display.period_numbers(region_app.panel.analysis.result, "2021").cumulative_ha  # type: ignore[union-attr]
    )
    # the briefing's key findings, from the same library function
    model = detector_model(region_app.catalogue["test-region"])  # the detections' model
    assert model == "asm-rgb-v4"
    sentences = key_findings(result, "en", source="detector", source_label=model)
    assert sentences and region_app.panel.analysis.findings == tuple(sentences)  # type: ignore[union-attr]
    assert "grew by a factor 1.50, from 100 ha in 2019 to 150 ha in 2021" in sentences[0]
    assert panel.esc(sentences[0]) in region_app.panel.findings.value  # type: ignore[union-attr]


def test_server_reads_only_its_own_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asmspotter.app.server import CONFIG_DIR, AppServer

    # a voila.json where the command runs (or in the user's Jupyter folders) is not read
    (tmp_path / "voila.json").write_text('{"VoilaConfiguration": {"show_tracebacks": true}}')
    monkeypatch.chdir(tmp_path)
    server = AppServer()
    assert server.config_file_paths == [str(CONFIG_DIR)]
    settings = json.loads((CONFIG_DIR / "voila.json").read_text())
    assert settings["Voila"]["ip"] == "127.0.0.1"
    assert settings["VoilaConfiguration"]["show_tracebacks"] is False
    assert settings["VoilaConfiguration"]["file_allowlist"] == []
