"""The whole analysis: accounting, expansion, overlays and reference agreement.

:func:`analyse` works on plain period layers and overlay specifications, so notebooks
and tests can use it without a catalogue; :func:`analyse_region` adds the catalogue
(region outline, periods, overlays, reference) and the detector's outputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from asmspotter.analyse.accounting import (
    DEFINITIONS,
    Accounting,
    Expansion,
    ExpansionPair,
    account,
    expansion,
)
from asmspotter.analyse.layers import (
    FootprintKind,
    LayerAssignment,
    PeriodLayer,
    detector_layers,
    file_fingerprint,
    layers_from_files,
)
from asmspotter.analyse.overlays import (
    AgreementFigures,
    OverlayLayer,
    OverlayResult,
    ReferenceResult,
    ZoneFigures,
    load_overlay,
    overlay_figures,
    reference_agreement,
)
from asmspotter.errors import InputError

log = logging.getLogger(__name__)


class OverlaySpec(Protocol):
    """What :func:`analyse` needs to know about an overlay (a catalogue ``Overlay``)."""

    id: str
    kind: str
    label: str
    path: Path | None
    url: str | None
    id_field: str
    name_field: str
    where: Any


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """Everything an analysis found, ready to be written or printed.

    Attributes:
        region: region id (None for an ad-hoc analysis).
        region_name: human-readable region name.
        accounting: per-period figures and geometry.
        expansion: expansion factors and growth.
        overlays: per overlay layer statistics.
        reference: agreement with a reference layer, if asked for.
        inputs: provenance of the inputs (files, how periods were chosen, parameters).
        notes: remarks on how the figures were made.
        warnings: things the user should know.
        overlay_geoms: per overlay layer id, its features' polygons (analysis CRS, clipped
            to the region), in the order of ``OverlayResult.features``.

    """

    region: str | None
    region_name: str | None
    accounting: Accounting
    expansion: Expansion
    overlays: tuple[OverlayResult, ...]
    reference: ReferenceResult | None
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    overlay_geoms: dict[str, Any] = field(default_factory=dict)

    def overlay(self, layer_id: str) -> OverlayResult:
        """Return one overlay layer's result.

        Raises:
            InputError: no such layer.

        """
        for o in self.overlays:
            if o.id == layer_id:
                return o
        known = ", ".join(o.id for o in self.overlays) or "none"
        raise InputError(f"no overlay {layer_id!r} in this analysis; analysed: {known}")

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data (the ``--json`` output).

        Top-level keys: ``region``, ``periods`` (``period``, ``cumulative_ha``,
        ``new_ha``, ...), ``expansion_factor``, ``growth``, ``overlays`` (per layer id:
        ``layer`` totals and ``features`` per feature id with ``name`` and per-period
        ``inside_ha`` / ``new_inside_ha``), ``legal_zone``, ``reference``,
        ``definitions``, ``inputs``, ``notes``, ``warnings``.
        """
        acc = self.accounting
        active = acc.kind == "active"
        periods = []
        for fig in acc.figures:
            row: dict[str, Any] = {
                "period": fig.period,
                "start": fig.start.isoformat(),
                "end": fig.end.isoformat(),
                "cumulative_ha": rounded(fig.cumulative_ha),
                "new_ha": rounded(fig.new_ha),
            }
            if active:
                row["active_ha"] = rounded(fig.active_ha)
                row["stopped_ha"] = rounded(fig.stopped_ha)
            row["features"] = fig.features
            periods.append(row)
        head = self.expansion.headline
        expansion_factor: dict[str, Any] = {
            "measure": "cumulative_ha of the later period / cumulative_ha of the earlier",
            "from": head.from_period if head else None,
            "to": head.to_period if head else None,
            "value": rounded(head.cumulative_factor, 4) if head else None,
            "pairs": [
                {
                    "from": p.from_period,
                    "to": p.to_period,
                    "cumulative_factor": rounded(p.cumulative_factor, 4),
                }
                for p in self.expansion.pairs
            ],
        }
        growth = [_pair_dict(p, active) for p in self.expansion.pairs]
        overlays = {o.id: _overlay_dict(o, active) for o in self.overlays}
        legal = [
            {
                "layer": o.id,
                "label": o.label,
                "periods": [
                    {
                        "period": z.period,
                        "inside_legal_zone_ha": rounded(z.inside_ha),
                        "outside_legal_zone_ha": rounded(z.outside_ha),
                        "new_inside_legal_zone_ha": rounded(z.new_inside_ha),
                        "new_outside_legal_zone_ha": rounded(z.new_outside_ha),
                        "share_inside": rounded(_share(z.inside_ha, z.outside_ha), 4),
                    }
                    for z in o.layer
                ],
            }
            for o in self.overlays
            if o.is_legal_zone
        ]
        reference = None
        if self.reference is not None:
            ref = self.reference
            reference = {
                "label": ref.label,
                "sources": list(ref.sources),
                "measure": (
                    "geometric areas of our cumulative footprint and the reference's "
                    "cumulative footprint, within the region"
                ),
                "periods": [_agree_dict(a) for a in ref.periods],
                "overall": _agree_dict(ref.overall) if ref.overall else None,
            }
        return {
            "region": {"id": self.region, "name": self.region_name},
            "area_method": {
                "mode": acc.mode,
                "area_attribute": acc.area_attribute,
                "footprint_kind": acc.kind,
                "crs": acc.crs.srs,
                "description": (
                    f"areas apportioned from {acc.area_attribute!r} by area share"
                    if acc.mode == "attribute"
                    else "polygon areas in a Lambert azimuthal equal-area projection "
                    "centred on the region"
                ),
            },
            "periods": periods,
            "expansion_factor": expansion_factor,
            "growth": growth,
            "overlays": overlays,
            "legal_zone": legal,
            "reference": reference,
            "definitions": DEFINITIONS,
            "inputs": self.inputs,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def rounded(value: float | None, digits: int = 2) -> float | None:
    """Return a figure rounded as the result's JSON gives it (None for None and NaN)."""
    if value is None:
        return None
    if value != value:  # NaN
        return None
    return round(float(value), digits)


def _share(inside: float | None, outside: float | None) -> float | None:
    if inside is None or outside is None or inside + outside <= 0:
        return None
    return inside / (inside + outside)


def _pair_dict(p: ExpansionPair, active: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "from": p.from_period,
        "to": p.to_period,
        "years": rounded(p.years, 3),
        "cumulative_factor": rounded(p.cumulative_factor, 4),
        "cumulative_growth_per_year": rounded(p.cumulative_growth_per_year, 4),
        "new_ha_per_year": rounded(p.new_ha_per_year),
    }
    if active:
        out["active_factor"] = rounded(p.active_factor, 4)
    return out


def _zone_dict(z: ZoneFigures, active: bool, whole: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "period": z.period,
        "inside_ha": rounded(z.inside_ha),
        "new_inside_ha": rounded(z.new_inside_ha),
    }
    if whole:
        out["outside_ha"] = rounded(z.outside_ha)
        out["new_outside_ha"] = rounded(z.new_outside_ha)
    if active:
        out["active_inside_ha"] = rounded(z.active_inside_ha)
    return out


def _overlay_dict(o: OverlayResult, active: bool) -> dict[str, Any]:
    return {
        "label": o.label,
        "kind": o.kind,
        "source": o.source,
        "features_read": o.features_read,
        "features_in_region": o.features_in_region,
        "repaired_geometries": o.repaired,
        "layer": [_zone_dict(z, active, True) for z in o.layer],
        "features": {
            f.id: {
                "name": f.name,
                "area_ha": rounded(f.area_ha),
                "periods": [_zone_dict(z, active, False) for z in f.periods],
            }
            for f in o.features
        },
    }


def _agree_dict(a: AgreementFigures) -> dict[str, Any]:
    return {
        "period": a.period,
        "reference_period": a.reference_period,
        "ours_ha": rounded(a.ours_ha),
        "reference_ha": rounded(a.reference_ha),
        "ours_inside_reference_ha": rounded(a.ours_inside_reference_ha),
        "ours_outside_reference_ha": rounded(a.ours_outside_reference_ha),
        "reference_missed_ha": rounded(a.reference_missed_ha),
        "share_of_ours_in_reference": rounded(a.share_of_ours_in_reference, 4),
        "share_of_reference_found": rounded(a.share_of_reference_found, 4),
    }


def analyse(
    layers: Sequence[PeriodLayer],
    *,
    outline: Any | None = None,
    overlays: Sequence[OverlaySpec | OverlayLayer] = (),
    area_attribute: str | None = None,
    kind: FootprintKind = "new",
    reference_layers: Sequence[PeriodLayer] | None = None,
    reference_label: str = "reference",
    crs: Any | None = None,
    region: str | None = None,
    region_name: str | None = None,
    inputs: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> AnalysisResult:
    """Run the full analysis on period layers.

    Args:
        layers: footprints per period.
        outline: region outline (EPSG:4326); footprints and overlays are clipped to it.
        overlays: overlay specifications (catalogue ``Overlay`` objects) or loaded layers.
        area_attribute: apportion this per-polygon hectare attribute instead of
            measuring polygon areas.
        kind: ``active`` (per-period masks) or ``new`` (new detections per period).
        reference_layers: reference footprints per period to compare with.
        reference_label: who made the reference.
        crs: CRS to measure areas in (default: equal-area centred on the outline).
        region: region id for the record.
        region_name: region name for the record.
        inputs: provenance of the inputs.
        notes: remarks to carry into the result.
        warnings: warnings gathered before the call (e.g. while reading files).

    Returns:
        The :class:`AnalysisResult`.

    """
    acc = account(layers, outline=outline, area_attribute=area_attribute, kind=kind, crs=crs)
    all_warnings = list(warnings) + list(acc.warnings)
    all_notes = list(notes)
    results = []
    geoms: dict[str, Any] = {}
    for spec in overlays:
        if isinstance(spec, OverlayLayer):
            loaded = spec
        else:
            loaded = load_overlay(
                spec.path,
                layer_id=spec.id,
                kind=spec.kind,
                label=spec.label,
                id_field=spec.id_field,
                name_field=spec.name_field,
                where=spec.where,
                accounting=acc,
                url=spec.url,
            )
        res = overlay_figures(acc, loaded)
        geoms[loaded.id] = loaded.geoms
        all_warnings.extend(res.warnings)
        results.append(res)
    if not overlays:
        all_notes.append("no overlay layers: inside/outside figures are not computed")
    ref = None
    if reference_layers:
        ref = reference_agreement(acc, reference_layers, reference_label)
        all_warnings.extend(ref.warnings)
    return AnalysisResult(
        region=region,
        region_name=region_name,
        accounting=acc,
        expansion=expansion(acc),
        overlays=tuple(results),
        reference=ref,
        inputs=dict(inputs or {}),
        notes=tuple(all_notes),
        warnings=tuple(dict.fromkeys(all_warnings)),
        overlay_geoms=geoms,
    )


def _reference_from_catalogue(region: Any) -> tuple[list[PeriodLayer], str, list[str]]:
    from asmspotter.analyse.layers import files_layer

    ref = region.reference
    if ref is None:
        raise InputError(
            f"region {region.id!r} has no reference footprints in the catalogue; "
            "give reference files with --reference FILE ..."
        )
    label = f"reference {ref.label}"
    layers = [files_layer(region.period(pid), files, label) for pid, files in ref.files.items()]
    return layers, ref.label, [str(f) for fs in ref.files.values() for f in fs]


def analyse_region(
    region: Any,
    *,
    footprints: Sequence[str | os.PathLike[str]] | None = None,
    period_ids: Sequence[str] | None = None,
    area_attribute: str | None = None,
    kind: FootprintKind | None = None,
    overlay_ids: Sequence[str] | None = None,
    use_overlays: bool = True,
    reference: bool | Sequence[str | os.PathLike[str]] = False,
    reference_period_ids: Sequence[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    allow_empty: bool = False,
) -> AnalysisResult:
    """Analyse a catalogue region from the detector's outputs or from given footprints.

    Args:
        region: a catalogue ``Region``.
        footprints: footprint files (None: the detector's outputs for the region).
        period_ids: the period of each footprint file (see
            :func:`~asmspotter.analyse.layers.layers_from_files`).
        area_attribute: per-polygon hectare attribute to apportion.
        kind: what each layer holds; default ``active`` for detector outputs and
            ``new`` for footprint files.
        overlay_ids: analyse only these overlays of the region (default: all).
        use_overlays: False to skip overlays altogether.
        reference: True for the catalogue's reference footprints, or reference files.
        reference_period_ids: the period of each reference file.
        output_dir: where detector outputs live (default ``paths.output_dir()``).
        allow_empty: accept footprint files none of whose features overlaps the region
            (analysed as 0 ha) instead of refusing them.

    Raises:
        InputError: bad arguments (unknown overlay, periods, ...); footprints that are not
            polygons, not in their declared CRS, or (unless ``allow_empty``) all outside the
            region.
        DataError: missing or unreadable files; detector outputs that are incomplete, mix
            two runs, or were made with different settings.

    """
    if footprints:
        from asmspotter.analyse.footprints import check_overlap

        assignment: LayerAssignment = layers_from_files(footprints, region.periods, period_ids)
        check_overlap(
            [la.frame for la in assignment.layers],
            [str(f) for f in footprints],
            region.outline,
            region.id,
            allow_empty,
        )
        default_kind: FootprintKind = "new"
    else:
        if period_ids:
            periods = tuple(region.period(p) for p in period_ids)
        else:
            periods = region.periods
        assignment = detector_layers(region.id, periods, output_dir)
        default_kind = "active"
    chosen_kind: FootprintKind = kind or default_kind
    if area_attribute and kind is None:
        chosen_kind = "new"
    if not use_overlays:
        overlays: tuple[Any, ...] = ()
    elif overlay_ids:
        overlays = tuple(region.overlay(o) for o in overlay_ids)
    else:
        overlays = tuple(region.overlays)
    notes = list(assignment.notes)
    if use_overlays and not region.overlays:
        notes.append(f"region {region.id!r} has no overlay layers in the catalogue")
    ref_layers = None
    ref_label = "reference"
    ref_files: list[str] = []
    warnings = list(assignment.warnings)
    if reference is True:
        ref_layers, ref_label, ref_files = _reference_from_catalogue(region)
    elif reference:
        ref_paths = list(reference)
        ref_assign = layers_from_files(ref_paths, region.periods, reference_period_ids)
        ref_layers = list(ref_assign.layers)
        ref_files = [str(p) for p in ref_paths]
        warnings.extend(f"reference: {w}" for w in ref_assign.warnings)
    records = assignment.records or (None,) * len(assignment.layers)
    inputs = {
        "footprints": [
            {
                "period": la.period.id,
                "files": [file_fingerprint(s) for s in la.sources],
                **({"detection": rec.as_input()} if rec is not None else {}),
            }
            for la, rec in zip(assignment.layers, records, strict=True)
        ],
        "period_assignment": list(assignment.notes),
        "area_attribute": area_attribute,
        "footprint_kind": chosen_kind,
        "region_outline": "catalogue outline of " + region.id,
        "overlays": [
            {"id": o.id, "kind": o.kind, **file_fingerprint(o.path)} if o.path else {"id": o.id}
            for o in overlays
        ],
        "reference": [file_fingerprint(f) for f in ref_files],
    }
    return analyse(
        assignment.layers,
        outline=region.outline,
        overlays=overlays,
        area_attribute=area_attribute,
        kind=chosen_kind,
        reference_layers=ref_layers,
        reference_label=ref_label,
        region=region.id,
        region_name=region.name,
        inputs=inputs,
        notes=notes,
        warnings=warnings,
    )
