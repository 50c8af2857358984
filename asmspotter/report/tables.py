"""The briefing's tables, as plain data: a caption naming the source, columns and rows of text.

Every number is written by the briefing's :class:`~asmspotter.report.language.Language`
from the analysis (the same numbers as the analysis files). :mod:`.sections` renders the
tables to HTML; the app may show them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from asmspotter.report.context import Briefing
from asmspotter.report.sentences import source_phrase

#: Named features listed per overlay layer in the leading-features table.
FEATURES_PER_LAYER = 5
DASH = "–"
#: Shares below this are written as "< 0.1 %" rather than rounded to nothing.
SMALL_SHARE = 0.001


@dataclass(frozen=True)
class Table:
    """One table of a briefing.

    Attributes:
        id: a stable identifier (the HTML element's id).
        caption: what the table shows and from which source.
        columns: column headings.
        rows: cells as written text.
        numeric: per column, whether it holds numbers (right-aligned).
        grouped: rows come in groups named by their first cell (shown once per group).

    """

    id: str
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]
    grouped: bool = False


def _src(b: Briefing) -> str:
    return source_phrase(b.language, b.source, b.source_label, short=True)


def _share(b: Briefing, part: float | None, whole: float | None) -> str:
    if part is None or whole is None or whole <= 0:
        return DASH
    share = part / whole
    if 0 < share < SMALL_SHARE:
        return b.language.text("percent_below", value=b.language.percent(SMALL_SHARE))
    return b.language.percent(share)


def periods_table(b: Briefing) -> Table:
    """Return cumulative and new (and active, stopped) area per period."""
    lang = b.language
    active = b.result.accounting.kind == "active"
    cols = ["period", "dates", "cumulative", "new"] + (["active", "stopped"] if active else [])
    rows = []
    for f in b.result.accounting.figures:
        row = [
            f.period,
            lang.dates(f.start, f.end),
            lang.area(f.cumulative_ha),
            lang.area(f.new_ha),
        ]
        if active:
            row += [
                lang.area(f.active_ha) if f.active_ha is not None else DASH,
                lang.area(f.stopped_ha) if f.stopped_ha is not None else DASH,
            ]
        rows.append(tuple(row))
    return Table(
        "table-periods",
        lang.text("tables.periods", source=_src(b)),
        tuple(lang.text(f"tables.col.{c}") for c in cols),
        tuple(rows),
        tuple(c not in ("period", "dates") for c in cols),
    )


def overlay_table(b: Briefing) -> Table | None:
    """Return mining inside and outside each overlay layer by the last period (or None)."""
    lang = b.language
    if not b.result.overlays:
        return None
    last = b.period_ids[-1]
    rows = []
    for o in b.result.overlays:
        z = o.layer[-1]
        total = z.inside_ha + (z.outside_ha or 0.0)
        rows.append(
            (
                o.label,
                lang.area(z.inside_ha),
                lang.area(z.outside_ha or 0.0),
                _share(b, z.inside_ha, total),
                lang.area(z.new_inside_ha),
                lang.area(z.new_outside_ha or 0.0),
            )
        )
    cols = (
        lang.text("tables.col.layer"),
        lang.text("tables.col.inside"),
        lang.text("tables.col.outside"),
        lang.text("tables.col.share_inside"),
        lang.text("tables.col.new_inside", period=last),
        lang.text("tables.col.new_outside", period=last),
    )
    caption = lang.text("tables.overlays", period=last, source=_src(b))
    return Table("table-overlays", caption, cols, tuple(rows), (False,) + (True,) * 5)


def features_table(b: Briefing, per_layer: int = FEATURES_PER_LAYER) -> Table | None:
    """Return the named features holding the most mining, per layer (None: none has any)."""
    lang = b.language
    last = b.period_ids[-1]
    rows = []
    for o in b.result.overlays:
        ranked = sorted(o.features, key=lambda f: -f.periods[-1].inside_ha if f.periods else 0)
        for f in ranked[:per_layer]:
            z = f.periods[-1]
            if z.inside_ha <= 0:
                continue
            rows.append(
                (
                    o.label,
                    f.name or f.id,
                    lang.area(z.inside_ha),
                    lang.area(z.new_inside_ha),
                    _share(b, z.inside_ha, f.area_ha),
                )
            )
    if not rows:
        return None
    cols = (
        lang.text("tables.col.layer"),
        lang.text("tables.col.feature"),
        lang.text("tables.col.inside"),
        lang.text("tables.col.new_inside", period=last),
        lang.text("tables.col.feature_share"),
    )
    caption = lang.text("tables.features", period=last, source=_src(b))
    numeric = (False, False, True, True, True)
    return Table("table-features", caption, cols, tuple(rows), numeric, grouped=True)


def legal_tables(b: Briefing) -> list[Table]:
    """Return, per legal mining zone layer, mining inside and outside it per period."""
    lang = b.language
    out = []
    for o in b.result.overlays:
        if not o.is_legal_zone:
            continue
        rows = []
        for z in o.layer:
            outside = z.outside_ha or 0.0
            rows.append(
                (
                    z.period,
                    lang.area(z.inside_ha),
                    lang.area(outside),
                    _share(b, outside, z.inside_ha + outside),
                    lang.area(z.new_inside_ha),
                    lang.area(z.new_outside_ha or 0.0),
                )
            )
        cols = tuple(
            lang.text(f"tables.col.{c}")
            for c in (
                "period",
                "inside",
                "outside",
                "share_outside",
                "new_inside_any",
                "new_outside_any",
            )
        )
        caption = lang.text("tables.legal", label=o.label, source=_src(b))
        out.append(Table(f"table-legal-{o.id}", caption, cols, tuple(rows), (False,) + (True,) * 5))
    return out


def gaps_table(b: Briefing) -> Table | None:
    """Return the catalogue periods the reference cannot cover, and why (None: no gap)."""
    from asmspotter.report.sentences import gap_sentences

    if not b.gaps:
        return None
    lang = b.language
    ref = source_phrase(lang, "reference", b.source_label)
    rows = []
    for gap in b.gaps:
        why = gap_sentences([gap], lang, ref)
        rows.append((gap.period.id, lang.dates(gap.period.start, gap.period.end), " ".join(why)))
    cols = tuple(lang.text(f"tables.col.{c}") for c in ("period", "dates", "why"))
    caption = lang.text("tables.gaps", reference=ref)
    return Table("table-gaps", caption, cols, tuple(rows), (False, False, False))


def agreement_table(b: Briefing) -> Table | None:
    """Return the detector's agreement with the reference per period (None: none)."""
    ref = b.result.reference
    if b.source != "detector" or ref is None or not ref.periods:
        return None
    lang = b.language
    rows = []
    for a in [*ref.periods, *([ref.overall] if ref.overall else [])]:
        rows.append(
            (
                a.period,
                a.reference_period,
                lang.area(a.ours_ha),
                lang.area(a.reference_ha),
                lang.area(a.ours_inside_reference_ha),
                _share(b, a.ours_inside_reference_ha, a.ours_ha),
                _share(b, a.ours_inside_reference_ha, a.reference_ha),
            )
        )
    keys = ("period", "reference_period", "ours", "reference", "inside", "precision", "recall")
    cols = tuple(lang.text(f"agreement.col.{k}") for k in keys)
    reference = source_phrase(lang, "reference", ref.label)
    caption = lang.text("agreement.caption", label=b.source_label, reference=reference)
    return Table("table-agreement", caption, cols, tuple(rows), (False, False) + (True,) * 5)
