"""The HTML the app shows: landing cards, the side panel's figures, legend, popups, links.

Pure functions from typed data to HTML strings (every text from data is escaped), so the
app's wording is testable without a browser. Cells carry ``data-figure`` attributes naming
what they hold, for the browser tests.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asmspotter import layout
from asmspotter.app.display import OverlayDisplay, PeriodNumbers
from asmspotter.app.state import LAYER_LABELS, Selection
from asmspotter.palette import REFERENCE_COLOUR, period_colours

#: Path (relative to the app's page) under which the server serves a region's briefing.
BRIEFING_ROUTE = "briefing"


def esc(value: Any) -> str:
    """Escape a value for HTML text and attributes."""
    return html.escape(str(value), quote=True)


def format_ha(value: float | None) -> str:
    """Format hectares: whole hectares from 100 ha, one decimal below (``49,935 ha``)."""
    if value is None or value != value:
        return "n/a"
    digits = 0 if abs(value) >= 100 else 1
    return f"{value:,.{digits}f} ha"


def period_range(period_ids: Sequence[str]) -> str:
    """Return ``2019-2021`` (or the single period)."""
    if not period_ids:
        return ""
    first, last = period_ids[0], period_ids[-1]
    return first if first == last else f"{first} to {last}"


@dataclass(frozen=True)
class RegionCard:
    """What the landing list says about a region.

    Attributes:
        id: region id.
        name: region name.
        country: its country.
        periods: its catalogue periods.
        sources: the sources it can be shown from here (labels).
        note: why it cannot be opened, naming the command to run (None when it can).

    """

    id: str
    name: str
    country: str
    periods: tuple[str, ...]
    sources: tuple[str, ...]
    note: str | None


def card_html(card: RegionCard) -> str:
    """Return a landing card's text."""
    shown = "; ".join(card.sources) if card.sources else "nothing to show yet"
    note = f"<div class='asm-note'>{esc(card.note)}</div>" if card.note else ""
    return (
        f"<div class='asm-card' data-region='{esc(card.id)}'>"
        f"<div class='asm-card-country'>{esc(card.country)}</div>"
        f"<div class='asm-card-name'>{esc(card.name)}</div>"
        f"<div class='asm-card-periods'>{esc(period_range(card.periods))}</div>"
        f"<div class='asm-card-source'>Mining from: {esc(shown)}</div>{note}</div>"
    )


def numbers_html(numbers: PeriodNumbers, source_label: str) -> str:
    """Return the side panel's table of the chosen period's figures."""
    p = esc(numbers.period)
    new_label = f"Up to {p} (first period)" if numbers.first else f"New in {p}"
    rows = [
        f"<tr><th>Mined area up to {p} (cumulative)</th>"
        f"<td data-figure='cumulative'>{format_ha(numbers.cumulative_ha)}</td></tr>",
        f"<tr><th>{new_label}</th><td data-figure='new'>{format_ha(numbers.new_ha)}</td></tr>",
    ]
    for zone in numbers.zones:
        label = esc(zone.label)
        rows.append(
            f"<tr><th>Inside {label}</th><td data-figure='inside:{esc(zone.kind)}'>"
            f"{format_ha(zone.inside_ha)}<br><small>new: {format_ha(zone.new_inside_ha)}"
            "</small></td></tr>"
        )
        if zone.legal:
            rows.append(
                f"<tr><th>Outside the legal mining zone ({label})</th>"
                f"<td data-figure='outside-legal'>{format_ha(zone.outside_ha)}</td></tr>"
            )
    return (
        f"<table class='asm-numbers'>{''.join(rows)}</table>"
        f"<div class='asm-source'>Source: {esc(source_label)}</div>"
    )


def findings_html(findings: Sequence[str]) -> str:
    """Return the key-finding sentences as a list (empty when there are none)."""
    if not findings:
        return ""
    items = "".join(f"<li>{esc(s)}</li>" for s in findings)
    return f"<div class='asm-findings'><b>Key findings</b><ul>{items}</ul></div>"


def notes_html(notes: Sequence[str]) -> str:
    """Return the analysis's warnings and notes as small print."""
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return f"<details class='asm-notes'><summary>Notes</summary><ul>{items}</ul></details>"


def legend_html(selection: Selection, source_label: str, overlays: Sequence[OverlayDisplay]) -> str:
    """Return the map legend: each drawn period's colour, the overlays and the reference."""
    colours = period_colours(len(selection.periods))
    rows = []
    if "mining" in selection.layers:
        for k, period in enumerate(selection.periods_shown):
            text = f"up to {period}" if k == 0 else f"new in {period}"
            rows.append(_swatch(colours[k], text, filled=True, key=f"period:{period}"))
    shown = selection.layers
    for o in overlays:
        if o.kind in shown and o.data["features"]:
            rows.append(_swatch(o.colour, o.label, filled=False, key=f"overlay:{o.id}"))
    if "reference" in shown:
        rows.append(_swatch(REFERENCE_COLOUR, LAYER_LABELS["reference"], False, "reference"))
    return (
        "<div class='asm-legend'><b>Detected ASGM sites</b>"
        f"<div class='asm-legend-source'>{esc(source_label)}</div>{''.join(rows)}</div>"
    )


def _swatch(colour: str, text: str, filled: bool, key: str) -> str:
    style = f"background:{colour};" if filled else f"border:2px solid {colour};"
    return (
        f"<div class='asm-legend-row' data-legend='{esc(key)}'>"
        f"<span class='asm-swatch' style='{style}'></span>{esc(text)}</div>"
    )


def popup_html(properties: Mapping[str, Any]) -> str:
    """Return a popup's text for a clicked feature's (server-side) properties."""
    layer = properties.get("layer")
    if layer in ("mining", "reference"):
        period = esc(properties["period"])
        when = f"up to {period}" if properties.get("first") else f"new in {period}"
        what = "Mining" if layer == "mining" else "Reference footprint"
        lines = [
            f"<b>{what}, {when}</b>",
            f"<span data-figure='area'>{format_ha(properties['area_ha'])}</span> mined",
        ]
        if "polygon_ha" in properties and properties["polygon_ha"] != properties["area_ha"]:
            lines.append(f"polygon: {format_ha(properties['polygon_ha'])}")
        lines.append(f"<small>{esc(properties['source'])}</small>")
        return "<div class='asm-popup'>" + "<br>".join(lines) + "</div>"
    return (
        f"<div class='asm-popup'><b>{esc(properties.get('name', ''))}</b><br>"
        f"{esc(properties.get('overlay', ''))}<br>"
        f"<small>area in the region: {format_ha(properties.get('area_ha'))}</small></div>"
    )


def satellite_note(region: str, period: str, has_image: bool) -> str:
    """Return the note shown when the chosen period has no composite on this machine."""
    if has_image:
        return ""
    return (
        f"<div class='asm-note' data-note='satellite'>No satellite image for {esc(period)} here: "
        f"<code>asmspotter fetch {esc(region)} --period {esc(period)}</code> makes it "
        "(it needs internet).</div>"
    )


def briefing_html(region: str, source: str) -> str:
    """Return the link to the region's HTML briefing, or the command that writes it."""
    if layout.report_files(region).html.is_file():
        return (
            f"<a class='asm-briefing' href='{BRIEFING_ROUTE}/{esc(region)}' target='_blank' "
            "rel='noopener'>Open the briefing (HTML)</a>"
        )
    return (
        f"<div class='asm-note' data-note='briefing'>No briefing yet: "
        f"<code>asmspotter report {esc(region)} --source {esc(source)}</code> writes it.</div>"
    )


def view_link(query: str) -> str:
    """Return a link that reopens this view (the query holds only checked ids)."""
    return f"<a class='asm-link' href='?{esc(query)}'>Link to this view</a>"


#: MIME type of each analysis file offered for download, by suffix.
_MIME = {".csv": "text/csv", ".gpkg": "application/geopackage+sqlite3"}


def download_links(result: Any, region: Any, source: str) -> str:
    """Write the analysis files of what is shown and return links that download them.

    The files are written with the analysis's own writer (the GeoPackage and CSV tables
    that ``asmspotter analyse`` writes) into a temporary folder, then offered as data
    URLs, so that what is downloaded is exactly what the panel shows.
    """
    from asmspotter.analyse import write_analysis

    with tempfile.TemporaryDirectory(prefix="asmspotter-app-") as tmp:
        files = layout.analysis_files(region.id, base=tmp)
        write_analysis(result, files.folder, crs=region.crs)
        wanted = (
            files.gpkg,
            files.periods_csv,
            files.expansion_csv,
            files.overlay_layers_csv,
            files.overlay_features_csv,
            files.reference_csv,
        )
        links = [_data_link(p, f"{region.id}-{source}-{p.name}") for p in wanted if p.is_file()]
    return "<div class='asm-downloads'>" + "<br>".join(links) + "</div>"


def _data_link(path: Path, name: str) -> str:
    mime = _MIME.get(path.suffix, "application/octet-stream")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = path.stat().st_size / 1024
    return (
        f"<a download='{esc(name)}' href='data:{mime};base64,{data}' "
        f"data-file='{esc(path.name)}'>{esc(path.name)}</a> <small>({size:,.0f} kB)</small>"
    )
