"""The app's widgets: the landing list of regions, and a region's map with its side panel.

Widgets only turn user events into calls on :class:`~asmspotter.app.state.AppState` and
draw the result. Every event handler is guarded: a refused input or a missing output
becomes a one-line message naming what to do, never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

import ipywidgets as widgets

from asmspotter.app import display, panel
from asmspotter.app.cache import RegionCache
from asmspotter.app.mapview import BASEMAP_NAME, RegionMap
from asmspotter.app.source import (
    RegionAnalysis,
    available_sources,
    missing_source_message,
)
from asmspotter.app.state import (
    LAYER_KEYS,
    LAYER_LABELS,
    AppState,
    Request,
    Source,
    check_source,
)
from asmspotter.catalogue import Catalogue, Region
from asmspotter.errors import AsmSpotterError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

STYLE = """<style>
.asm-app { font-family: system-ui, sans-serif; max-width: 1320px; }
.asm-title h2 { margin: 4px 0; }
.asm-message { color: #8a1c1c; font-weight: 600; }
.asm-loading { color: #555; font-style: italic; }
.asm-card { padding: 6px 10px; line-height: 1.45; }
.asm-card > div, .asm-panel .widget-html-content { line-height: 1.45; }
.asm-card-country { color: #666; font-size: 90%; }
.asm-card-name { font-size: 130%; font-weight: 600; }
.asm-card-source, .asm-source, .asm-legend-source { color: #444; font-size: 90%; }
.asm-cardbox { border: 1px solid #ccc; border-radius: 6px; margin: 6px; width: 300px; }
.asm-note { color: #6b4b00; background: #fff6e0; padding: 4px 6px; border-radius: 4px;
            font-size: 90%; }
.asm-numbers { border-collapse: collapse; width: 100%; font-size: 92%; }
.asm-numbers th { text-align: left; font-weight: normal; padding: 3px 6px 3px 0; }
.asm-numbers td { text-align: right; font-weight: 600; white-space: nowrap; }
.asm-numbers tr { border-bottom: 1px solid #eee; }
.asm-legend { background: rgba(255,255,255,0.92); padding: 6px 8px; font-size: 12px;
              border-radius: 4px; line-height: 1.5; }
.asm-swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px;
              vertical-align: middle; box-sizing: border-box; }
.asm-findings ul, .asm-notes ul { padding-left: 18px; margin: 4px 0; }
.asm-info { background: rgba(255,255,255,0.95); padding: 6px 10px; border-radius: 4px;
            font-size: 13px; line-height: 1.5; box-shadow: 0 1px 4px rgba(0,0,0,0.3); }
.asm-map { border: 1px solid #bbb; background: #e8ecef; }
.asm-panel { padding-left: 12px; }
.asm-panel a, .asm-briefing { color: #1a5fb4; text-decoration: underline; }
</style>"""


def guarded(method: F) -> F:
    """Run an event handler, turning errors into a one-line message for the user."""

    @functools.wraps(method)
    def wrapper(self: App, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except AsmSpotterError as exc:
            self.say(str(exc))
        except OSError as exc:
            self.say(f"cannot read {exc.filename or 'a file'}: {exc.strerror or exc}")
        except Exception:
            log.exception("asmspotter app: unexpected error")
            self.say("Something went wrong while drawing this view (details in the server log).")
        return None

    return cast(F, wrapper)


def _with_class(widget: widgets.DOMWidget, *names: str) -> Any:
    for name in names:
        widget.add_class(name)
    return widget


class RegionPanel:
    """One region's map and side panel for one source.

    Args:
        app: the app (for its state and messages).
        analysis: the region's analysis for the source shown.
        sources: the sources the region can be shown from.

    """

    def __init__(self, app: App, analysis: RegionAnalysis, sources: tuple[Source, ...]) -> None:
        self.app = app
        self.analysis = analysis
        self.sources = sources
        reference: Callable[[], RegionAnalysis] | None = None
        if "reference" in sources:
            reference = functools.partial(app.analysis, analysis.region, "reference")
        self.map = RegionMap(analysis, app.shapes(analysis), reference)
        self._selectors()
        self.satellite_note = widgets.HTML()
        self.numbers = _with_class(widgets.HTML(), "asm-panel-numbers")
        self.findings = widgets.HTML(panel.findings_html(analysis.findings))
        self.briefing = widgets.HTML(panel.briefing_html(analysis.region.id, analysis.source))
        self.prepare = _with_class(
            widgets.Button(
                description="Prepare downloads",
                icon="download",
                tooltip="Write the GeoPackage and CSV files of what is shown",
                layout=widgets.Layout(width="auto"),
            ),
            "asm-prepare",
        )
        self.downloads = _with_class(widgets.HTML(), "asm-download-links")
        self.link = widgets.HTML()
        self.widget = self._layout()
        self.prepare.on_click(self._on_prepare)

    def _selectors(self) -> None:
        """Build the source and period selectors and the layer toggles, and observe them."""
        sel = self.app.state.selection
        self.source = _with_class(
            widgets.ToggleButtons(
                options=[(s.capitalize(), s) for s in self.sources],
                value=self.analysis.source,
                style={"button_width": "110px"},
            ),
            "asm-source-choice",
        )
        self.period = _with_class(
            widgets.ToggleButtons(
                options=list(sel.periods),
                value=sel.period,
                tooltips=[f"Mining up to {p}" for p in sel.periods],
                style={"button_width": "58px"},
            ),
            "asm-period",
        )
        self.toggles = {
            k: _with_class(
                widgets.Checkbox(value=k in sel.layers, description=LAYER_LABELS[k], indent=False),
                "asm-layer",
                f"asm-layer-{k.replace('_', '-')}",
            )
            for k in LAYER_KEYS
            if self._has_toggle(k, self.sources)
        }
        self.basemap = _with_class(
            widgets.Checkbox(
                value=sel.basemap,
                description=f"Online basemap ({BASEMAP_NAME})",
                tooltip="Map tiles from the internet (off by default: the app works offline)",
                indent=False,
            ),
            "asm-basemap",
        )
        self.source.observe(self._on_source, names="value")
        self.period.observe(self._on_period, names="value")
        for key, box in self.toggles.items():
            box.observe(functools.partial(self._on_toggle, key), names="value")
        self.basemap.observe(self._on_basemap, names="value")

    def _layout(self) -> widgets.HBox:
        """Lay the map out beside the side panel."""
        result = self.analysis.result
        notes = list(result.warnings) + list(result.notes)
        label = panel.esc(self.analysis.label)
        side = widgets.VBox(
            [
                widgets.HTML(f"<div class='asm-source'>Mining from: {label}</div>"),
                *([widgets.HTML("<b>Source</b>"), self.source] if len(self.sources) > 1 else []),
                widgets.HTML("<b>Period</b> (mining up to it)"),
                self.period,
                widgets.HTML("<b>Layers</b>"),
                *self.toggles.values(),
                self.basemap,
                self.satellite_note,
                self.numbers,
                self.findings,
                self.briefing,
                self.link,
                widgets.HBox([self.prepare]),
                self.downloads,
                widgets.HTML(panel.notes_html(notes)),
            ],
            layout=widgets.Layout(width="400px", min_width="360px"),
        )
        return widgets.HBox(
            [
                widgets.Box([self.map.map], layout=widgets.Layout(flex="1 1 auto")),
                _with_class(side, "asm-panel"),
            ],
            layout=widgets.Layout(width="100%"),
        )

    def _has_toggle(self, key: str, sources: tuple[Source, ...]) -> bool:
        if key in ("mining", "satellite"):
            return True
        if key == "reference":
            return "reference" in sources
        return key in self.map.overlay_kinds

    def redraw(self) -> None:
        """Draw the current selection: map layers, legend, figures and notes."""
        sel = self.app.state.selection
        assert sel.period is not None
        self.map.show(sel)
        self.link.value = panel.view_link(sel.query())
        numbers = display.period_numbers(self.analysis.result, sel.period)
        self.numbers.value = panel.numbers_html(numbers, self.analysis.label)
        show_note = "satellite" in sel.layers
        self.satellite_note.value = panel.satellite_note(
            self.analysis.region.id, sel.period, not show_note or self.map.has_image(sel.period)
        )

    def _on_source(self, change: dict[str, Any]) -> None:
        self.app.open(self.analysis.region.id, source=change["new"], period=self.period.value)

    def _on_period(self, change: dict[str, Any]) -> None:
        self.app.choose_period(str(change["new"]))

    def _on_toggle(self, key: str, change: dict[str, Any]) -> None:
        self.app.toggle_layer(key, bool(change["new"]))

    def _on_basemap(self, change: dict[str, Any]) -> None:
        self.app.toggle_basemap(bool(change["new"]))

    def _on_prepare(self, _: Any) -> None:
        self.app.prepare_downloads()


class App:
    """The ASMSpotter app: a landing list of the catalogue's regions and each region's map.

    Args:
        catalogue: the region catalogue.
        cache: the regions' analyses and map shapes, maybe loading ahead (None: a new one).

    """

    def __init__(self, catalogue: Catalogue, cache: RegionCache | None = None) -> None:
        self.catalogue = catalogue
        self.state = AppState(tuple(catalogue))
        self.message = _with_class(widgets.HTML(), "asm-message")
        self.title = _with_class(widgets.HTML(), "asm-title")
        self.back = _with_class(
            widgets.Button(description="All regions", icon="arrow-left"), "asm-back"
        )
        self.back.on_click(lambda _: self.show_landing())
        self.body = widgets.VBox()
        header = widgets.HBox([self.back, self.title], layout=widgets.Layout(align_items="center"))
        self.widget = _with_class(
            widgets.VBox([widgets.HTML(STYLE), header, self.message, self.body]), "asm-app"
        )
        self.panel: RegionPanel | None = None
        self.cache = cache if cache is not None else RegionCache()

    def say(self, text: str) -> None:
        """Show a one-line message to the user (empty to clear it)."""
        self.message.value = f"<div>{panel.esc(text)}</div>" if text else ""
        self.state.message = text or None

    def analysis(self, region: Region, source: Source) -> RegionAnalysis:
        """Return (and keep for the session) a region's analysis for one source."""
        return self.cache.analysis(region, source)

    def shapes(self, analysis: RegionAnalysis) -> display.RegionDisplay:
        """Return (and keep for the session) what the map of an analysis draws."""
        return self.cache.shapes(analysis)

    @guarded
    def show_landing(self) -> None:
        """Show the list of the catalogue's regions."""
        self.state.close()
        self.panel = None
        self.say("")
        self.back.layout.display = "none"
        self.title.value = (
            "<h2>ASMSpotter: artisanal gold mining, region by region</h2>"
            "<div>Choose a region to see where mining spread, period by period.</div>"
        )
        cards = [self._card(self.catalogue[rid]) for rid in self.catalogue]
        self.body.children = [
            _with_class(
                widgets.HBox(cards, layout=widgets.Layout(flex_flow="row wrap")), "asm-landing"
            )
        ]

    def _card(self, region: Region) -> widgets.Widget:
        sources = available_sources(region)
        labels = tuple(
            "detector" if s == "detector" else f"{region.reference.label} (reference)"  # type: ignore[union-attr]
            for s in sources
        )
        card = panel.RegionCard(
            region.id,
            region.name,
            region.country,
            tuple(p.id for p in region.periods),
            labels,
            None if sources else missing_source_message(region),
        )
        button = _with_class(
            widgets.Button(description="Open map", disabled=not sources, icon="map"),
            "asm-open",
            f"asm-open-{region.id}",
        )
        button.on_click(lambda _: self.open(region.id))
        return _with_class(
            widgets.VBox([widgets.HTML(panel.card_html(card)), button]), "asm-cardbox"
        )

    @guarded
    def open(
        self,
        region_id: str,
        source: str | None = None,
        period: str | None = None,
        layers: frozenset[str] | None = None,
    ) -> None:
        """Open a region's map (validated against the catalogue and its outputs)."""
        region = self.catalogue[self.state.check_region(region_id)]
        sources = available_sources(region)
        if not sources:
            self.show_landing()
            self.say(missing_source_message(region))
            return
        chosen = check_source(source, sources, region.id) if source else sources[0]
        self.message.value = f"<div class='asm-loading'>Loading {panel.esc(region.name)}...</div>"
        analysis = self.analysis(region, chosen)
        wanted = period if period in analysis.periods else None
        self.state.open(region.id, chosen, analysis.periods, wanted, layers)
        self.panel = RegionPanel(self, analysis, sources)
        self.back.layout.display = None
        self.title.value = (
            f"<h2>{panel.esc(region.name)}, {panel.esc(region.country)}</h2>"
            f"<div>{panel.esc(panel.period_range(analysis.periods))}</div>"
        )
        self.panel.redraw()
        self.body.children = [self.panel.widget]
        self.say("")
        if period and wanted is None:
            self.say(
                f"{region.name} has no analysed period {period}; showing {analysis.periods[-1]}"
            )

    @guarded
    def choose_period(self, period: str) -> None:
        """Show mining up to ``period``."""
        self.state.choose_period(period)
        if self.panel is not None:
            self.panel.map.clear_feature()
            self.panel.redraw()

    @guarded
    def toggle_layer(self, key: str, on: bool) -> None:
        """Switch a layer on or off."""
        self.state.toggle_layer(key, on)
        if self.panel is not None:
            self.panel.redraw()

    @guarded
    def toggle_basemap(self, on: bool) -> None:
        """Show or hide the online basemap."""
        self.state.toggle_basemap(on)
        if self.panel is not None:
            self.panel.redraw()

    @guarded
    def prepare_downloads(self) -> None:
        """Write the shown analysis's files and offer them as downloads."""
        if self.panel is None:
            return
        shown = self.panel.analysis
        self.panel.downloads.value = "<i>Writing the files...</i>"
        self.panel.downloads.value = panel.download_links(shown.result, shown.region, shown.source)

    @guarded
    def start(self, request: Request) -> None:
        """Show what a page's request asks for: a region's map, or the landing list."""
        if request.region is None:
            self.show_landing()
            return
        self.open(request.region, request.source, request.period, request.layers)
        if self.panel is None:  # the region could not be opened: fall back to the list
            text = self.state.message
            self.show_landing()
            self.say(text or "")
