"""The briefing's method, sources and provenance, written from the card, catalogue and files.

No measured figure is typed into these texts: accuracy comes from the model card's metrics,
composites from their provenance, credits from the catalogue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asmspotter import bands, paths
from asmspotter.report.context import Briefing, Imagery
from asmspotter.report.language import Language

#: Scene ids listed per period in the provenance before the rest are counted.
SCENES_LISTED = 5
#: Area of one 10 m Sentinel-2 pixel in hectares.
PIXEL_HA = 0.01


def _imagery_item(item: Imagery, lang: Language) -> str:
    if item.kind == "local":
        radiometry = lang.raw("method.radiometry").get(item.radiometry or "", item.radiometry)
        what = lang.text(
            "method.composite_local", file=", ".join(item.scenes), radiometry=radiometry
        )
    elif item.kind == "stac":
        mask = lang.raw("method.masks").get(item.mask or "none", item.mask)
        clear = lang.percent(item.clear_fraction) if item.clear_fraction is not None else "?"
        what = lang.text(
            "method.composite_stac",
            n=len(item.scenes),
            collection=item.collection or "?",
            mask=mask,
            clear=clear,
        )
    else:
        what = lang.text("method.composite_missing")
    return lang.text("method.imagery_item", period=item.period, what=what)


def _detector_paragraphs(b: Briefing) -> list[str]:
    lang, card = b.language, b.card
    assert card is not None
    items = " ".join(_imagery_item(i, lang) for i in b.imagery)
    threshold = float(b.detection.get("threshold", card.pixel_threshold))
    min_area = float(b.detection.get("min_area_ha", card.min_area_ha))
    out = [
        lang.text("method.imagery", items=items),
        lang.text(
            "method.model",
            name=card.name,
            bands=lang.join(list(card.bands)),
            threshold=lang.number(threshold, 2),
            min_area=lang.number(min_area, 1),
        ),
    ]
    chips = card.metrics.get("test_chips") or {}
    pampa = card.metrics.get("la_pampa_2019") or {}
    if chips and pampa.get("footprint_ha_in_tile"):
        out.append(
            lang.text(
                "method.accuracy",
                sensitivity=lang.percent(chips["sensitivity"]),
                specificity=lang.number(chips["specificity"], 3),
                auc=lang.number(chips["auc"], 3),
                precision=lang.percent(pampa["precision_area_within_footprint"]),
                coverage=lang.percent(pampa["detected_inside_ha"] / pampa["footprint_ha_in_tile"]),
            )
        )
    rgb = set(card.bands) == set(bands.TRUE_COLOUR)
    bands_limit = (
        lang.text("method.rgb_only")
        if rgb
        else lang.text("method.bands_used", bands=lang.join(list(card.bands)))
    )
    out.append(
        lang.text(
            "method.limits",
            min_area=lang.number(min_area, 1),
            pixels=lang.number(min_area / PIXEL_HA, 0),
            bands_limit=bands_limit,
        )
    )
    return out


def _reference_paragraphs(b: Briefing) -> list[str]:
    lang = b.language
    ref = b.region.reference
    assert ref is not None
    out = [lang.text("method.reference", credit=ref.credit or ref.label)]
    if ref.area_attribute:
        out.append(lang.text("method.reference_attribute", attribute=ref.area_attribute))
    else:
        out.append(lang.text("method.reference_geometry"))
    out.append(lang.text("method.reference_limits"))
    return out


def method_paragraphs(b: Briefing) -> list[str]:
    """Return the method: data, model and its measured accuracy, limits, how areas are made."""
    lang = b.language
    out = _detector_paragraphs(b) if b.source == "detector" else _reference_paragraphs(b)
    attribute = b.result.accounting.area_attribute
    how = (
        lang.text("method.area_attribute", attribute=attribute)
        if attribute
        else lang.text("method.area_geometry")
    )
    out.append(lang.text("method.areas", method=how))
    return out


def _credit(value: str | None, lang: Language) -> str:
    return value or lang.text("sources.not_stated")


def source_rows(b: Briefing) -> list[tuple[str, str]]:
    """Return (input, source and licence) for every input of the briefing."""
    lang, region = b.language, b.region
    rows: list[tuple[str, str]] = []
    if b.source == "detector" and b.card is not None:
        training = str(b.card.training.get("data") or b.card.name)
        rows.append(
            (
                lang.text("sources.detections"),
                lang.text("sources.detections_credit", model=b.card.name, training=training),
            )
        )
        years = sorted({str(f.start.year) for f in b.result.accounting.figures})
        imagery = region.source.credit or lang.text(
            "sources.imagery_credit", years=lang.join(years)
        )
        rows.append((lang.text("sources.imagery"), imagery))
    if region.reference is not None and (b.source == "reference" or b.result.reference):
        rows.append((lang.text("sources.footprints"), _credit(region.reference.credit, lang)))
    for overlay in region.overlays:
        rows.append((overlay.label_in(lang.code), _credit(overlay.credit, lang)))
    outline = region.outline_spec
    rows.append(
        (
            lang.text("sources.outline"),
            lang.text("sources.outline_bbox")
            if "bbox" in outline
            else _credit(outline.get("credit"), lang),
        )
    )
    rows.append(
        (lang.text("sources.software"), lang.text("sources.software_credit", version=b.version))
    )
    return rows


def _name(path: Any) -> str:
    text = str(path.get("path", "")) if isinstance(path, dict) else str(path)
    p = Path(text)
    for root in (paths.shared_data_dir(), paths.output_dir()):
        try:
            return str(p.relative_to(root))
        except ValueError:
            continue
    return p.name


def _listed(items: list[str], lang: Language) -> str:
    shown = ", ".join(items[:SCENES_LISTED])
    if len(items) > SCENES_LISTED:
        shown += " " + lang.text("provenance.more", n=len(items) - SCENES_LISTED)
    return shown


def provenance_rows(b: Briefing) -> list[tuple[str, str]]:
    """Return (what, value): software and commit, model, imagery, inputs, parameters."""
    lang = b.language
    rows = [
        (
            lang.text("provenance.software"),
            lang.text("provenance.software_value", version=b.version, commit=b.commit),
        )
    ]
    if b.card is not None:
        sha = (b.detection.get("model") or {}).get("weights_sha256") or b.card.sha256
        rows.append(
            (
                lang.text("provenance.model"),
                lang.text("provenance.model_value", name=b.card.name, sha=sha),
            )
        )
        for item in b.imagery:
            if item.scenes:
                rows.append(
                    (
                        lang.text("provenance.imagery", period=item.period),
                        _listed(list(item.scenes), lang),
                    )
                )
    for entry in b.result.inputs.get("footprints") or []:
        files = [_name(f) for f in entry.get("files", [])]
        rows.append(
            (lang.text("provenance.footprints", period=entry.get("period")), _listed(files, lang))
        )
    params = ", ".join(f"{k}={v}" for k, v in b.parameters.items() if v is not None)
    rows.append((lang.text("provenance.parameters"), params))
    rows.append((lang.text("provenance.analysis"), _name(b.analysis_folder) + "/"))
    return rows
