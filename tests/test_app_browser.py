"""The app in a real browser: ``asmspotter app`` on a loopback port, driven by Chromium.

One server for the module (started as the command line starts it), one browser; every
request that does not go to 127.0.0.1 is blocked and recorded, so the app must work
offline. Madre de Dios is shown from the catalogue's reference footprints (shared data);
La Pampa from detector outputs generated here (squares of known area) with a composite.
The side panel's numbers are compared with the files `asmspotter analyse` writes.
Time to interactive and switch times are printed; their targets are checked by
``benchmarks/bench_app.py``, not here.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import requests
import shapely
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import Affine

from asmspotter import layout, paths
from asmspotter.app.launch import (
    OFFLINE_CHROMIUM_ARGS,
    AppProcess,
    choose_period,
    count_paths,
    figure,
    kernels,
    open_offline,
    page_kernel,
    toggle_layer,
)
from asmspotter.app.panel import format_ha
from asmspotter.app.priority import BACKGROUND_NICE, SERVING_NICE, group_nice
from asmspotter.catalogue import load_catalogue
from asmspotter.cli import main
from asmspotter.detect.synthetic import make_scene, write_composite
from asmspotter.palette import overlay_colour, period_colours
from asmspotter.testing.detections import write_detection

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
UTM = "EPSG:32719"
AMW_YEARS = (2018, 2019, 2020, 2021)


def write_la_pampa(output_env: dict[str, str]) -> None:
    """Detector outputs for La Pampa (2019: 100 ha; 2021: 50 ha more) and a 2021 composite."""
    x0, y0 = Transformer.from_crs(4326, UTM, always_xy=True).transform(-69.915, -13.02)
    square = shapely.box(x0, y0, x0 + 1000, y0 + 1000)
    strip = shapely.box(x0 + 2000, y0, x0 + 3000, y0 + 500)
    grid = Affine(10.0, 0.0, x0 - 1000, 0.0, -10.0, y0 + 5000)  # the composite's grid
    for period, geoms in (("2019", [square]), ("2021", [square, strip])):
        mask = rasterize(geoms, out_shape=(600, 600), transform=grid, dtype="uint8")
        write_detection(
            "la-pampa", period, mask, crs=UTM, transform=grid, polygons=geoms,
            base=output_env["output"],
        )  # fmt: skip
    write_composite(
        layout.composite_files("la-pampa", "2021", base=output_env["cache"]).tif,
        make_scene(600, 600, seed=5),
        origin=(x0 - 1000, y0 + 5000),
    )


@dataclass
class Server:
    """The app server of this module and where its outputs live."""

    url: str
    output: Path
    screenshots: Path
    app: AppProcess


@pytest.fixture(scope="module")
def server(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("app")
    env = {"output": str(base / "reports"), "cache": str(base / "cache")}
    write_la_pampa(env)
    report = layout.report_files("madre-de-dios", base=env["output"]).html
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("<html><body><h1>Briefing</h1><script>alert(1)</script></body></html>")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.OUTPUT_ENV, env["output"])
        footprints = [str(shared_data / f"amw/footprints/mining_{y}00.geojson") for y in AMW_YEARS]
        args = ["analyse", "madre-de-dios", "--area-attribute", "Mined area (ha)", "--footprints"]
        assert main([*args, *footprints]) == 0
        assert main(["analyse", "la-pampa"]) == 0
    shots = base / "screenshots"
    shots.mkdir()
    server_env = {paths.OUTPUT_ENV: env["output"], paths.CACHE_ENV: env["cache"]}
    with AppProcess(base / "server.log", server_env) as app:
        yield Server(app.url, base, shots, app)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


# --- serving -----------------------------------------------------------------------------


def test_only_the_app_is_served(server: Server) -> None:
    def get(path: str, **kw: Any) -> requests.Response:
        return requests.get(server.url.rstrip("/") + path, timeout=60, allow_redirects=False, **kw)

    for path in (
        "/app.ipynb",
        "/notebooks/app.ipynb",
        "/voila/files/app.ipynb",
        "/voila/render/app.ipynb",
        "/voila/tree",
        "/tree",
        "/lab",
        "/api/contents",
        "/api/kernels",
        "/api/kernelspecs",
        "/login",
        "/voila/files/../../pyproject.toml",
        "/briefing/atlantis",
        "/briefing/..%2F..%2Fpyproject.toml",
    ):
        response = get(path)
        assert response.status_code == 404, (path, response.status_code, response.text[:200])
        assert "jupyter" not in response.text.lower(), path
    for query, why in (
        ("?template=reveal", "unknown parameter 'template'"),
        ("?region=..%2F..%2Fetc", "must be an id"),
        ("?notebook=region_report.ipynb", "unknown parameter 'notebook'"),
    ):
        response = get("/" + query)
        assert response.status_code == 400 and why in response.text, query
    briefing = get("/briefing/madre-de-dios")
    assert briefing.status_code == 200 and "<h1>Briefing</h1>" in briefing.text
    assert "default-src 'none'" in briefing.headers["Content-Security-Policy"]  # no script runs
    assert get("/briefing/la-pampa").text.startswith(
        "404: no briefing for la-pampa: run `asmspotter report"
    )
    assert get("/", headers={"Host": "attacker.example:80"}).status_code == 403  # DNS rebinding


# --- pages -------------------------------------------------------------------------------


def test_madre_de_dios_from_the_reference(server: Server, chromium: Any) -> None:
    server.app.wait_idle()  # the kernel Voila starts ahead of time is ready
    shown = open_offline(chromium, server.url + "?region=madre-de-dios", ".asm-panel-numbers td")
    page = shown.page
    colours = dict(zip(("2019", "2020", "2021"), period_colours(3), strict=True))
    page.wait_for_selector(f".asm-map path[fill='{colours['2021']}']", state="attached")
    print(f"\nMadre de Dios (reference): interactive {shown.seconds:.1f} s after the request")
    assert all(count_paths(page, c) > 0 for c in colours.values())
    legend = page.inner_text(".asm-legend")
    assert "Amazon Mining Watch reference footprints" in legend
    assert all(t in legend for t in ("up to 2019", "new in 2020", "new in 2021", "Mining corridor"))

    analysis = layout.analysis_files("madre-de-dios", base=server.output / "reports")
    periods = {r["period"]: r for r in rows(analysis.periods_csv)}
    layers = {(r["layer"], r["period"]): r for r in rows(analysis.overlay_layers_csv)}
    assert (
        figure(page, "cumulative")
        == format_ha(float(periods["2021"]["cumulative_ha"]))
        == "49,935 ha"
    )
    assert figure(page, "new") == format_ha(float(periods["2021"]["new_ha"]))
    for kind, layer in (
        ("protected_area", "protected-areas"),
        ("indigenous_territory", "indigenous-territories"),
        ("mining_zone", "mining-corridor"),
    ):
        assert figure(page, f"inside:{kind}") == format_ha(
            float(layers[(layer, "2021")]["inside_ha"])
        )
    assert figure(page, "outside-legal") == format_ha(
        float(layers[("mining-corridor", "2021")]["outside_ha"])
    )
    findings = page.inner_text(".asm-findings")  # the briefing's sentences
    assert "grew by a factor 1.11, from 45,001 ha in 2019 to 49,935 ha in 2021" in findings
    note = page.inner_text("[data-note='satellite']")
    assert "asmspotter fetch madre-de-dios --period 2021" in note
    assert page.get_attribute("a.asm-briefing", "href") == "briefing/madre-de-dios"

    # clicking a polygon of 2021 shows its period and the area the analysis counts for it
    target = page.locator(f".asm-map path[fill='{colours['2021']}']").first
    box = target.bounding_box()
    target.dispatch_event(
        "click", {"clientX": box["x"] + box["width"] / 2, "clientY": box["y"] + box["height"] / 2}
    )
    popup = page.wait_for_selector(".asm-info .asm-popup")
    text = popup.inner_text()
    areas = gpd.read_file(analysis.gpkg, layer="period_2021")["area_ha"]
    assert "new in 2021" in text and "Amazon Mining Watch" in text
    assert page.inner_text(".asm-popup [data-figure='area']") in {format_ha(a) for a in areas}
    page.screenshot(path=str(server.screenshots / "madre-de-dios-2021.png"))

    # the downloads are the analysis files of what is shown
    page.click(".asm-prepare")
    link = page.wait_for_selector(".asm-downloads a[data-file='periods.csv']")
    assert link.get_attribute("download") == "madre-de-dios-reference-periods.csv"
    encoded = link.get_attribute("href").split("base64,", 1)[1]
    shown_rows = list(csv.DictReader(io.StringIO(base64.b64decode(encoded).decode())))
    assert format_ha(float(shown_rows[-1]["cumulative_ha"])) == "49,935 ha"
    assert page.locator(".asm-downloads a[data-file='analysis.gpkg']").count() == 1

    # a period switch draws mining up to that period only, and its numbers
    expected = format_ha(float(periods["2019"]["cumulative_ha"]))
    switch = choose_period(page, "2019", list(colours.values()), list(colours), expected)
    assert count_paths(page, colours["2020"]) == 0 and count_paths(page, colours["2019"]) > 0
    assert figure(page, "cumulative") == "45,001 ha"
    page.wait_for_selector(".asm-info", state="hidden")  # closed by the switch
    # toggling a layer hides it
    mining = f".asm-map path[fill='{colours['2019']}']"
    toggle = toggle_layer(page, "mining", mining, shown=False)
    green = overlay_colour("protected_area")
    protected = f".asm-map path[stroke='{green}']"
    assert count_paths(page, green, "stroke") > 0
    toggle_layer(page, "protected_area", protected, shown=False)
    toggle_layer(page, "mining", mining, shown=True)
    print(f"period switch {switch:.2f} s, layer toggle {toggle:.2f} s")
    page.screenshot(path=str(server.screenshots / "madre-de-dios-2019.png"))
    assert shown.blocked == []
    assert "Traceback" not in page.inner_text("body")
    page.close()


def test_landing_opens_la_pampa_from_the_detector(server: Server, chromium: Any) -> None:
    server.app.wait_idle()  # the kernel Voila starts ahead of time is ready
    shown = open_offline(chromium, server.url, ".asm-landing")
    page = shown.page
    print(f"\nlanding: interactive {shown.seconds:.1f} s")
    catalogue = load_catalogue()
    cards = page.locator(".asm-card")
    assert cards.count() == len(catalogue)
    for region in catalogue.values():
        card = page.locator(f".asm-card[data-region='{region.id}']").inner_text()
        assert region.name in card and region.country in card and region.periods[0].id in card
        button = page.locator(f".asm-open-{region.id}")
        if button.is_disabled():  # nothing to show: the card names the command that makes it
            assert f"asmspotter run {region.id}" in card
    assert not page.locator(".asm-open-madre-de-dios").is_disabled()
    page.screenshot(path=str(server.screenshots / "landing.png"))

    page.click(".asm-open-la-pampa")
    page.wait_for_selector(".asm-panel-numbers td")
    analysis = layout.analysis_files("la-pampa", base=server.output / "reports")
    periods = {r["period"]: r for r in rows(analysis.periods_csv)}
    assert figure(page, "cumulative") == format_ha(float(periods["2021"]["cumulative_ha"]))
    assert "ASMSpotter detector" in page.inner_text(".asm-legend")
    image = page.wait_for_selector(".asm-map img.leaflet-image-layer")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("[data-note='satellite']").count() == 0
    page.screenshot(path=str(server.screenshots / "la-pampa-detector.png"))
    page.click(".asm-source-choice button:has-text('Reference')")
    page.wait_for_function(
        "() => document.querySelector('.asm-legend').innerText.includes('reference footprints')"
    )
    page.click(".asm-back")
    page.wait_for_selector(".asm-landing")
    assert shown.blocked == []
    page.close()
    print(f"screenshots: {server.screenshots}")


def test_refused_address_is_a_message(server: Server, chromium: Any) -> None:
    server.app.wait_idle()  # the kernel Voila starts ahead of time is ready
    shown = open_offline(chromium, server.url + "?region=atlantis", ".asm-landing")
    message = shown.page.inner_text(".asm-message")
    assert message.startswith("unknown region 'atlantis'; known regions: madre-de-dios")
    assert "Traceback" not in shown.page.inner_text("body")
    shown.page.close()


@pytest.mark.usefixtures("autogroups")
def test_kernels_wait_for_their_page_at_the_lowest_priority(server: Server, chromium: Any) -> None:
    # each kernel runs in a session (scheduling group) of its own: nice values of its
    # threads do not count against other sessions, the group's does (asmspotter.app.priority)
    assert server.app.process is not None
    server.app.wait_idle()
    waiting = kernels(server.app.process.pid)
    assert waiting, "Voila keeps kernels started ahead of time"
    for pid in waiting.values():
        assert os.getsid(pid) == pid  # a session of its own
    before = {kid: group_nice(pid) for kid, pid in waiting.items()}
    shown = open_offline(chromium, server.url + "?region=madre-de-dios", ".asm-panel-numbers td")
    serving = page_kernel(shown.page)
    assert before[serving] == BACKGROUND_NICE  # it waited for its page at the lowest priority
    assert group_nice(waiting[serving]) == SERVING_NICE  # and serves it at normal priority
    # the kernel Voila starts to refill its pool waits at the lowest priority too
    deadline = time.monotonic() + 120
    while not (refill := set(kernels(server.app.process.pid)) - set(waiting)):
        assert time.monotonic() < deadline, "Voila did not refill its pool"
        time.sleep(0.5)
    for kid in refill:
        assert group_nice(kernels(server.app.process.pid)[kid]) == BACKGROUND_NICE
    shown.page.close()


def test_a_browser_with_the_offline_switches_reaches_only_this_machine(
    server: Server, chromium: Any
) -> None:
    # what benchmarks/bench_app.py times pages with: no request held by Playwright, the
    # browser itself refuses every other host, and every request is recorded
    from playwright.sync_api import Error

    browser = chromium.browser_type.launch(
        executable_path=CHROMIUM, args=list(OFFLINE_CHROMIUM_ARGS)
    )
    try:
        shown = open_offline(browser, server.url, ".asm-landing", intercept=False)
        assert shown.blocked == []
        shown.page.evaluate("fetch('http://example.org/tile.png').catch(() => null)")
        shown.page.wait_for_timeout(500)
        assert shown.blocked == ["http://example.org/tile.png"]
        with pytest.raises(Error, match="ERR_NAME_NOT_RESOLVED"):
            shown.page.goto(server.url.replace("127.0.0.1", "localhost"))
    finally:
        browser.close()
