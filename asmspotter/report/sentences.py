"""Key findings written from an analysis's numbers, in any language with a template file.

:func:`key_findings` is the one place where a briefing's sentences are made; the notebook
briefings and the interactive app both call it, so they say the same thing with the same
numbers. Every sentence names its source and says whether its area is cumulative, new or
active.

Example:
    >>> from asmspotter.report import key_findings  # doctest: +SKIP
    >>> key_findings(result, "en", source="reference", source_label="Amazon Mining Watch")[0]
    ... # doctest: +SKIP
    "According to Amazon Mining Watch's reference footprints, the mined area (cumulative) grew
    by a factor 1.11, from 45,001 ha in 2019 to 49,935 ha in 2021."

"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asmspotter.report.language import Language, as_language
from asmspotter.report.source import BriefingSource, PeriodGap

if TYPE_CHECKING:
    from asmspotter.analyse import AnalysisResult, OverlayResult

#: Named features quoted as leading inside a zone.
LEADERS = 3


def source_phrase(
    language: str | Language,
    source: BriefingSource,
    label: str | None = None,
    *,
    short: bool = False,
) -> str:
    """Return how a sentence names its source (``the ASMSpotter detector (asm-rgb-v4)``).

    Args:
        language: a language code or :class:`Language`.
        source: ``detector`` or ``reference``.
        label: the model's name (detector) or who made the reference.
        short: the short form used in captions and headers.

    """
    lang = as_language(language)
    default = "ASMSpotter" if source == "detector" else "reference"
    return lang.text(f"source.{source}{'_short' if short else ''}", label=label or default)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def key_findings(
    result: AnalysisResult,
    language: str | Language = "en",
    *,
    source: BriefingSource = "detector",
    source_label: str | None = None,
    gaps: Sequence[PeriodGap] = (),
) -> list[str]:
    """Write the key findings of an analysis as sentences.

    In order: the expansion factor with both cumulative areas (or that no mining was
    found), new area per year, active area (per-period masks only), the mined area inside
    protected areas, indigenous territories and other overlay layers with the features that
    lead, the split inside and outside the legal mining zone, and the catalogue periods the
    reference cannot cover.

    Args:
        result: the analysis (:func:`asmspotter.analyse.analyse_region` or
            :func:`asmspotter.report.analyse_source`).
        language: a language code (``en``, ``es``) or :class:`Language`.
        source: where the mining comes from.
        source_label: the model's name (detector) or who made the reference.
        gaps: catalogue periods the reference cannot cover
            (:func:`asmspotter.report.reference_gaps`).

    Returns:
        The sentences, each naming its source.

    """
    lang = as_language(language)
    src = source_phrase(lang, source, source_label)
    figs = result.accounting.figures
    out: list[str] = []
    if figs:
        if figs[-1].cumulative_ha <= 0:
            out.append(
                lang.text(
                    "findings.none",
                    source=src,
                    region=result.region_name or result.region or "",
                    period_from=figs[0].period,
                    period_to=figs[-1].period,
                )
            )
        else:
            out.append(_expansion(result, lang, src))
            out.extend(_new_and_active(result, lang, src))
            out.extend(_zones(result, lang, src))
            out.extend(_legal(result, lang, src))
    out.extend(gap_sentences(gaps, lang, source_phrase(lang, "reference", source_label)))
    return out


def _expansion(result: AnalysisResult, lang: Language, src: str) -> str:
    figs = result.accounting.figures
    head = result.expansion.headline
    last = figs[-1]
    if head is None:
        return lang.text(
            "findings.single", source=src, area=lang.area(last.cumulative_ha), period=last.period
        )
    first = figs[0]
    fields = {
        "source": src,
        "period_from": first.period,
        "period_to": last.period,
        "area_from": lang.area(first.cumulative_ha),
        "area_to": lang.area(last.cumulative_ha),
    }
    if head.cumulative_factor is None:
        return lang.text("findings.expansion_from_zero", **fields)
    if last.cumulative_ha == first.cumulative_ha:
        return lang.text("findings.expansion_flat", **fields)
    return lang.text("findings.expansion", factor=lang.factor(head.cumulative_factor), **fields)


def _new_and_active(result: AnalysisResult, lang: Language, src: str) -> list[str]:
    figs = result.accounting.figures
    head = result.expansion.headline
    if head is None:
        return []
    items = [
        lang.text("findings.new_item", area=lang.area(f.new_ha), period=f.period) for f in figs[1:]
    ]
    out = [
        lang.text(
            "findings.new_per_year",
            source=src,
            rate=lang.area(head.new_ha_per_year),
            period_from=figs[0].period,
            period_to=figs[-1].period,
            items=lang.join(items),
        )
    ]
    first, last = figs[0], figs[-1]
    if result.accounting.kind == "active" and first.active_ha is not None:
        out.append(
            lang.text(
                "findings.active",
                source=src,
                period_from=first.period,
                period_to=last.period,
                period_prev=figs[-2].period,
                area_from=lang.area(first.active_ha),
                area_to=lang.area(last.active_ha or 0.0),
                stopped=lang.area(last.stopped_ha or 0.0),
            )
        )
    return out


def zone_name(overlay: OverlayResult, lang: Language, labelled: bool) -> str:
    """Return how a sentence names an overlay layer (by its kind, with its label if asked)."""
    zone = lang.text(f"zones.{overlay.kind}", label=overlay.label)
    if labelled and overlay.kind != "other":
        return lang.text("zones.with_label", zone=zone, label=overlay.label)
    return zone


def leading_features(overlay: OverlayResult, count: int = LEADERS) -> list[tuple[str, float]]:
    """Return the named features holding the most mined area by the last period.

    Returns:
        Up to ``count`` (name, cumulative hectares inside) pairs, largest first, only
        features with mining; ties keep the layer's order.

    """
    ranked = sorted(
        ((f.name or f.id, f.periods[-1].inside_ha) for f in overlay.features if f.periods),
        key=lambda item: -item[1],
    )
    return [(name, ha) for name, ha in ranked if ha > 0][:count]


def _zones(result: AnalysisResult, lang: Language, src: str) -> list[str]:
    total = result.accounting.figures[-1].cumulative_ha
    kinds = Counter(o.kind for o in result.overlays)
    out = []
    for overlay in result.overlays:
        if overlay.is_legal_zone or not overlay.layer:
            continue
        last = overlay.layer[-1]
        zone = zone_name(overlay, lang, kinds[overlay.kind] > 1)
        if last.inside_ha <= 0:
            out.append(lang.text("findings.zone_none", source=src, period=last.period, zone=zone))
            continue
        leaders = leading_features(overlay)
        items = [lang.text("findings.leader_item", name=n, area=lang.area(a)) for n, a in leaders]
        key = "findings.leaders_one" if len(items) == 1 else "findings.leaders_many"
        out.append(
            lang.text(
                "findings.zone_inside",
                source=src,
                period=last.period,
                zone=zone,
                inside=lang.area(last.inside_ha),
                share=lang.percent(last.inside_ha / total),
                new_inside=lang.area(last.new_inside_ha),
                leaders=lang.text(key, items=lang.join(items)),
            )
        )
    return out


def _legal(result: AnalysisResult, lang: Language, src: str) -> list[str]:
    total = result.accounting.figures[-1].cumulative_ha
    out = []
    for overlay in result.overlays:
        if not overlay.is_legal_zone or not overlay.layer:
            continue
        last = overlay.layer[-1]
        zone = zone_name(overlay, lang, True)
        if overlay.features_in_region == 0:
            out.append(
                lang.text(
                    "findings.legal_absent",
                    source=src,
                    zone=zone,
                    region=result.region_name or result.region or "",
                    total=lang.area(total),
                    period=last.period,
                )
            )
            continue
        outside = last.outside_ha or 0.0
        new_out = last.new_outside_ha or 0.0
        new_total = new_out + last.new_inside_ha
        fields = {
            "source": src,
            "zone": zone,
            "period": last.period,
            "outside": lang.area(outside),
            "inside": lang.area(last.inside_ha),
            "share": lang.percent(outside / total),
        }
        if new_total <= 0:
            out.append(lang.text("findings.legal_split_no_new", **fields))
            continue
        out.append(
            lang.text(
                "findings.legal_split",
                new_outside=lang.area(new_out),
                new_share=lang.percent(new_out / new_total),
                **fields,
            )
        )
    return out


def gap_sentences(gaps: Sequence[PeriodGap], language: str | Language, reference: str) -> list[str]:
    """Say plainly which catalogue periods the reference cannot cover, and why.

    Args:
        gaps: the gaps (:func:`asmspotter.report.reference_gaps`).
        language: a language code or :class:`Language`.
        reference: how to name the reference (:func:`source_phrase`).

    """
    lang = as_language(language)
    out = []
    early = [g for g in gaps if g.reason == "first"]
    if early and early[0].reference_period is not None:
        first = early[0].reference_period
        out.append(
            lang.text(
                "findings.gap_first",
                reference=reference,
                periods=lang.join([g.period.id for g in early]),
                first=first.id,
                end=lang.date(first.end),
            )
        )
    for gap in gaps:
        dates = lang.dates(gap.period.start, gap.period.end)
        if gap.reason == "within" and gap.reference_period is not None:
            ref = gap.reference_period
            out.append(
                lang.text(
                    "findings.gap_within",
                    reference=reference,
                    period=gap.period.id,
                    dates=dates,
                    ref_period=ref.id,
                    ref_dates=lang.dates(ref.start, ref.end),
                )
            )
        elif gap.reason == "outside":
            out.append(
                lang.text(
                    "findings.gap_outside", reference=reference, period=gap.period.id, dates=dates
                )
            )
    return [_cap(s) for s in out]
