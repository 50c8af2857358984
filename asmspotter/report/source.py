"""Where a briefing's mining comes from: the chain's detections or the catalogue's reference.

``detector`` analyses what ``asmspotter run`` / ``detect`` wrote for the region (and compares
it with the catalogue's reference where one exists); ``reference`` analyses the catalogue's
reference footprints (Amazon Mining Watch) over the reference's own periods. Both go
through the library's analytics (:func:`asmspotter.analyse.analyse_region` and
:func:`asmspotter.analyse.analyse`), so a briefing's figures are those of
``asmspotter analyse``. Each source's analysis has its own folder (see
:mod:`asmspotter.layout`), so the two never mix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from asmspotter import layout
from asmspotter.catalogue import Period, Region
from asmspotter.errors import DataError, InputError

if TYPE_CHECKING:
    from asmspotter.analyse import AnalysisResult, PeriodLayer

BriefingSource = Literal["detector", "reference"]
#: The sources a briefing can be made from.
SOURCES: tuple[BriefingSource, ...] = ("detector", "reference")

GapReason = Literal["first", "within", "outside"]


@dataclass(frozen=True)
class PeriodGap:
    """A catalogue period that the reference cannot give figures for.

    Attributes:
        period: the catalogue period.
        reason: ``first`` (the reference's first period lumps everything up to its end, so
            earlier periods cannot be told apart), ``within`` (a longer reference period
            holds it and cannot be split) or ``outside`` (no reference period for its dates).
        reference_period: the reference period that holds it (None for ``outside``).

    """

    period: Period
    reason: GapReason
    reference_period: Period | None


def detected_periods(region: Region, base: str | os.PathLike[str] | None = None) -> list[str]:
    """Return the ids of the region's periods that have detector outputs, in order."""
    found = []
    for period in region.periods:
        files = layout.detection_files(region.id, period.id, base)
        if files.gpkg.is_file() or files.mask.is_file():
            found.append(period.id)
    return found


def resolve_source(
    region: Region, source: str | None = None, base: str | os.PathLike[str] | None = None
) -> BriefingSource:
    """Return the source to brief ``region`` from, checking that its inputs exist.

    Without ``source``: the detector where its detections exist, else the reference.

    Raises:
        InputError: an unknown source, or ``reference`` for a region without one.
        DataError: ``detector`` without detections (naming the command that makes them),
            or no source at all.

    """
    if source is not None and source not in SOURCES:
        raise InputError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
    detections = detected_periods(region, base)
    if source is None:
        if detections:
            return "detector"
        if region.reference is not None:
            return "reference"
        raise DataError(
            f"region {region.id!r} has no detections (`asmspotter run {region.id}` makes "
            "them) and no reference footprints in the catalogue: nothing to brief from"
        )
    if source == "detector" and not detections:
        folder = layout.detection_files(region.id, region.periods[0].id, base).folder.parent
        hint = "; or brief from the reference with --source reference" if region.reference else ""
        raise DataError(
            f"no detections for region {region.id!r} under {folder}: `asmspotter run "
            f"{region.id}` (or `asmspotter detect {region.id}`) makes them{hint}"
        )
    if source == "reference" and region.reference is None:
        raise InputError(
            f"region {region.id!r} has no reference footprints in the catalogue; brief from "
            "the detector with --source detector, or add a 'reference' entry to the catalogue"
        )
    return cast(BriefingSource, source)


def reference_periods(
    region: Region, period_ids: Sequence[str] | None = None
) -> tuple[tuple[Period, tuple[Path, ...]], ...]:
    """Return the reference periods to brief (all, or the named ones) with their files.

    Raises:
        InputError: the region has no reference, or a named period is not one of it.

    """
    ref = region.reference
    if ref is None:
        raise InputError(f"region {region.id!r} has no reference footprints in the catalogue")
    if not period_ids:
        return ref.series
    known = {p.id: (p, files) for p, files in ref.series}
    unknown = [p for p in period_ids if str(p) not in known]
    if unknown:
        raise InputError(
            f"the reference of region {region.id!r} has no period {', '.join(unknown)}; "
            f"its periods: {', '.join(known)}"
        )
    wanted = {str(p) for p in period_ids}
    return tuple(item for item in ref.series if item[0].id in wanted)


def reference_layers(region: Region, period_ids: Sequence[str] | None = None) -> list[PeriodLayer]:
    """Read the catalogue's reference footprints, one layer per reference period.

    Raises:
        InputError: see :func:`reference_periods`.
        DataError: a footprint file is missing or unreadable.

    """
    from asmspotter.analyse.layers import files_layer

    assert region.reference is not None
    label = f"reference {region.reference.label}"
    return [
        files_layer(period, files, label) for period, files in reference_periods(region, period_ids)
    ]


def reference_gaps(region: Region) -> tuple[PeriodGap, ...]:
    """Return the catalogue periods the region's reference cannot give figures for.

    A catalogue period is covered when the reference names it; otherwise the gap says why
    (see :class:`PeriodGap`). A region without a reference has no gaps.
    """
    ref = region.reference
    if ref is None or not ref.series:
        return ()
    periods = ref.periods
    first = periods[0]
    gaps = []
    for period in region.periods:
        if period.id in ref.files:
            continue
        holding = [r for r in periods if r.start <= period.end and r.end >= period.start]
        if holding:
            gaps.append(PeriodGap(period, "within", holding[0]))
        elif period.end < first.start:
            gaps.append(PeriodGap(period, "first", first))
        else:
            gaps.append(PeriodGap(period, "outside", None))
    return tuple(gaps)


def analysis_folder(
    region_id: str, source: BriefingSource, base: str | os.PathLike[str] | None = None
) -> Path:
    """Return the folder where a source's analysis of the region is written."""
    if source == "reference":
        return layout.reference_analysis_files(region_id, base).folder
    return layout.analysis_files(region_id, base).folder


def analyse_source(
    region: Region,
    source: BriefingSource,
    period_ids: Sequence[str] | None = None,
    base: str | os.PathLike[str] | None = None,
) -> AnalysisResult:
    """Analyse the region's mining from one source, with the library's analytics.

    ``detector``: :func:`~asmspotter.analyse.analyse_region` on the detector's outputs, as
    ``asmspotter run`` does (compared with the catalogue's reference where it names the
    same periods). ``reference``: :func:`~asmspotter.analyse.analyse` on the reference's
    layers (new mining per period, areas from its area attribute), with every overlay.

    Raises:
        InputError: unknown periods.
        DataError: missing or unreadable inputs.

    """
    from asmspotter.analyse import analyse, analyse_region

    if source == "detector":
        return analyse_region(
            region,
            period_ids=list(period_ids) if period_ids else None,
            reference=region.reference is not None,
            output_dir=base,
        )
    ref = region.reference
    assert ref is not None
    layers = reference_layers(region, period_ids)
    overlays: tuple[Any, ...] = region.overlays  # catalogue overlays meet analyse's OverlaySpec
    inputs = {
        "source": "reference",
        "footprints": [{"period": la.period.id, "files": list(la.sources)} for la in layers],
        "period_assignment": ["the catalogue's reference periods"],
        "area_attribute": ref.area_attribute,
        "footprint_kind": "new",
        "region_outline": "catalogue outline of " + region.id,
        "overlays": [{"id": o.id, "kind": o.kind, "path": str(o.path)} for o in region.overlays],
    }
    return analyse(
        layers,
        outline=region.outline,
        overlays=overlays,
        area_attribute=ref.area_attribute,
        kind="new",
        region=region.id,
        region_name=region.name,
        inputs=inputs,
        notes=[f"reference footprints of {ref.label} from the catalogue"],
    )
