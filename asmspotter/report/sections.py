"""The briefing's sections as HTML, in the order a briefing shows them.

Each function takes the :class:`~asmspotter.report.context.Briefing` and returns a
:class:`Section`, which a notebook displays as HTML. Figures are embedded as PNG data URIs,
so the rendered file needs nothing from the network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asmspotter.report import figures, method, tables
from asmspotter.report.context import Briefing
from asmspotter.report.sentences import key_findings, source_phrase


@dataclass(frozen=True)
class Section:
    """A piece of the briefing's HTML (displayed by notebooks through ``_repr_html_``)."""

    html: str

    def _repr_html_(self) -> str:
        return self.html


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _section(cls: str, heading: str | None, body: Iterable[str]) -> Section:
    head = f"<h2>{_e(heading)}</h2>" if heading else ""
    return Section(f'<section class="{cls}">{head}{"".join(body)}</section>')


def _paragraphs(texts: Sequence[str]) -> str:
    return "".join(f"<p>{_e(t)}</p>" for t in texts)


def render_table(table: tables.Table) -> str:
    """Return a table as HTML (numbers right-aligned)."""

    def cell(tag: str, text: str, numeric: bool) -> str:
        attr = ' class="num"' if numeric else ""
        return f"<{tag}{attr}>{_e(text)}</{tag}>"

    head = "".join(cell("th", c, n) for c, n in zip(table.columns, table.numeric, strict=True))
    rows = []
    for i, row in enumerate(table.rows):
        cells = [cell("td", c, n) for c, n in zip(row, table.numeric, strict=True)]
        if table.grouped and i and row[0] == table.rows[i - 1][0]:
            cells[0] = '<td class="group-continued"></td>'
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    return (
        f'<table id="{_e(table.id)}">{caption}'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _figure(ident: str, png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{ident}"><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _source(b: Briefing) -> str:
    return source_phrase(b.language, b.source, b.source_label)


def header(b: Briefing) -> Section:
    """Return the title, region, country, periods, source and generation date."""
    lang = b.language
    note = lang.text(f"meta.{b.source}_note")
    source = source_phrase(lang, b.source, b.source_label, short=True)
    items = [
        ("region", b.region.name),
        ("country", lang.country(b.region.country)),
        ("periods", lang.join(b.period_ids)),
        ("source", f"{source} ({note})"),
        ("generated", lang.date(b.generated)),
    ]
    meta = "".join(
        f'<dt>{_e(lang.text("meta." + k))}</dt><dd class="meta-{k}">{_e(v)}</dd>' for k, v in items
    )
    title = lang.text("headings.title", region=b.region.name)
    return Section(
        f'<header class="briefing-header" lang="{_e(lang.code)}"><h1>{_e(title)}</h1>'
        f'<p class="subtitle">{_e(lang.text("headings.subtitle"))}</p><dl>{meta}</dl></header>'
    )


def findings(b: Briefing) -> Section:
    """Return the key findings, one sentence per item."""
    sentences = key_findings(
        b.result, b.language, source=b.source, source_label=b.source_label, gaps=b.gaps
    )
    items = "".join(f'<li class="finding">{_e(s)}</li>' for s in sentences)
    return _section(
        "findings", b.language.text("headings.key_findings"), [f'<ul class="findings">{items}</ul>']
    )


def context(b: Briefing) -> Section:
    """Return the region's background paragraph from the catalogue, with its sources."""
    lang = b.language
    ctx = b.region.context
    text = ctx.text.get(lang.code) if ctx is not None else None
    if ctx is None or text is None:
        return _section(
            "context", lang.text("headings.context"), [_paragraphs([lang.text("context.missing")])]
        )
    cited = "".join(f"<li>{_e(s)}</li>" for s in ctx.sources)
    body = [_paragraphs([text])]
    if cited:
        body.append(
            f'<p class="cited">{_e(lang.text("context.sources"))}:</p>'
            f'<ol class="cited">{cited}</ol>'
        )
    return _section("context", lang.text("headings.context"), body)


def map_section(b: Briefing) -> Section:
    """Return the static map of mining per period over the last period's composite."""
    lang = b.language
    bg = b.background
    fig = figures.map_figure(b.result, language=lang, background=bg.composite if bg else None)
    background = (
        lang.text("map.background_composite", period=bg.period)
        if bg is not None
        else lang.text("map.background_none")
    )
    caption = lang.text(
        "map.caption", source=_source(b), first=b.period_ids[0], background=background
    )
    alt = lang.text("map.alt", region=b.region.name)
    return _section(
        "map", lang.text("headings.map"), [_figure("map", figures.figure_png(fig), alt, caption)]
    )


def chart_section(b: Briefing) -> Section:
    """Return the chart of cumulative and new area per period, and its numbers as a table."""
    lang = b.language
    fig = figures.chart_figure(b.result, language=lang)
    caption = lang.text("chart.caption", source=_source(b))
    alt = lang.text("chart.alt", region=b.region.name)
    body = [
        _figure("chart", figures.figure_png(fig), alt, caption),
        render_table(tables.periods_table(b)),
    ]
    return _section("chart", lang.text("headings.chart"), body)


def tables_section(b: Briefing) -> Section:
    """Return overlay layers, leading features, the legal zone and periods not covered."""
    lang = b.language
    body = []
    overlay = tables.overlay_table(b)
    body.append(
        render_table(overlay) if overlay else _paragraphs([lang.text("tables.no_overlays")])
    )
    feats = tables.features_table(b)
    if overlay:
        body.append(
            render_table(feats) if feats else _paragraphs([lang.text("tables.no_features")])
        )
    legal = tables.legal_tables(b)
    body.extend(render_table(t) for t in legal)
    if overlay and not legal:
        body.append(_paragraphs([lang.text("tables.no_legal")]))
    gaps = tables.gaps_table(b)
    if gaps:
        body.append(render_table(gaps))
    return _section("tables", lang.text("headings.tables"), body)


def agreement_section(b: Briefing) -> Section:
    """Return the detector's agreement with the reference footprints, where both exist."""
    lang = b.language
    ref = b.region.reference
    if b.source == "reference":
        body = [_paragraphs([lang.text("agreement.same_source")])]
    elif ref is None:
        body = [_paragraphs([lang.text("agreement.no_reference")])]
    else:
        table = tables.agreement_table(b)
        reference = source_phrase(lang, "reference", ref.label)
        if table is None:
            body = [_paragraphs([lang.text("agreement.none_compared")])]
        else:
            body = [
                _paragraphs([lang.text("agreement.intro", reference=reference)]),
                render_table(table),
            ]
    return _section("agreement", lang.text("headings.agreement"), body)


def method_section(b: Briefing) -> Section:
    """Return the data, model, measured accuracy, limits, area method and warnings."""
    lang = b.language
    body = [_paragraphs(method.method_paragraphs(b))]
    if b.result.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in b.result.warnings)
        body.append(
            f'<p class="warnings">{_e(lang.text("method.warnings"))}:</p>'
            f'<ul class="warnings">{items}</ul>'
        )
    return _section("method", lang.text("headings.method"), body)


def _pairs_table(
    ident: str, caption: str, columns: tuple[str, str], rows: list[tuple[str, str]]
) -> str:
    return render_table(tables.Table(ident, caption, columns, tuple(rows), (False, False)))


def sources_section(b: Briefing) -> Section:
    """Return the sources and licences of every input, then the provenance."""
    lang = b.language
    src_cols = (lang.text("sources.col.input"), lang.text("sources.col.credit"))
    prov_cols = (lang.text("provenance.col.what"), lang.text("provenance.col.value"))
    body = [
        _pairs_table("table-sources", "", src_cols, method.source_rows(b)),
        f"<h2>{_e(lang.text('headings.provenance'))}</h2>",
        _pairs_table("table-provenance", "", prov_cols, method.provenance_rows(b)),
    ]
    return _section("sources", lang.text("headings.sources"), body)
