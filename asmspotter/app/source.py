"""Where the app's mining comes from: the detector's outputs or the reference footprints.

:func:`available_sources` says which sources a region has on this machine (from the
on-disk layout and the catalogue), and :func:`load_analysis` returns the analysis of a
region for one source together with the briefing's key-finding sentences, so that the app
shows the same numbers and sentences as the briefings.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asmspotter import layout
from asmspotter.app.state import Source
from asmspotter.errors import DataError

if TYPE_CHECKING:
    from asmspotter.analyse import AnalysisResult
    from asmspotter.catalogue import Region


@dataclass(frozen=True, eq=False)
class RegionAnalysis:
    """A region's analysis for one source, as the app and the briefing show it.

    Attributes:
        region: the catalogue region.
        source: ``detector`` or ``reference``.
        label: who made the mining footprints (named wherever they are shown).
        result: the analysis (areas, expansion, overlays, geometry).
        findings: the briefing's key-finding sentences.

    """

    region: Region
    source: Source
    label: str
    result: AnalysisResult
    findings: tuple[str, ...] = ()

    @property
    def periods(self) -> tuple[str, ...]:
        """The analysed periods, oldest first."""
        return tuple(self.result.accounting.period_ids)


def detector_periods(region: Region) -> tuple[str, ...]:
    """Return the periods of ``region`` with detector outputs on this machine."""
    found = []
    for period in region.periods:
        files = layout.detection_files(region.id, period.id)
        if files.gpkg.is_file() or files.mask.is_file():
            found.append(period.id)
    return tuple(found)


def available_sources(region: Region) -> tuple[Source, ...]:
    """Return the sources ``region`` can be shown from here, the detector first."""
    sources: list[Source] = []
    if detector_periods(region):
        sources.append("detector")
    if region.reference is not None:
        sources.append("reference")
    return tuple(sources)


def missing_source_message(region: Region) -> str:
    """Return the message for a region with neither detections nor a reference."""
    return (
        f"{region.name} has no detections on this machine and no reference footprints in "
        f"the catalogue: run `asmspotter run {region.id}` (it needs internet) to make them"
    )


def detector_model(region: Region) -> str | None:
    """Return the model named in the provenance of the region's detections, if any."""
    for period in detector_periods(region):
        record = layout.detection_files(region.id, period).provenance
        try:
            model = json.loads(record.read_text()).get("model", {}).get("name")
        except (OSError, ValueError, AttributeError):
            continue
        if model:
            return str(model)
    return None


def source_label(region: Region, source: Source) -> str:
    """Name who made the mining footprints shown (named wherever they are shown)."""
    if source == "detector":
        model = detector_model(region)
        return f"ASMSpotter detector (model {model})" if model else "ASMSpotter detector"
    label = region.reference.label if region.reference is not None else "reference"
    return f"{label} reference footprints"


# ------------------------------------------------------------------------------------------
# SEAM (issues #14 / #15). The report package (`asmspotter.report`, branch `report`) owns
# how a region's analysis is obtained for a source (`analyse_source`) and the key-finding
# sentences (`key_findings`); the app shows the same numbers and sentences by calling them.
# Until that branch is merged, the fallback below stands in: it calls the library as
# `asmspotter run` (detector) and the analysis of the catalogue's reference footprints do,
# and has no sentences. Once asmspotter.report is on main, delete the fallback.
# ------------------------------------------------------------------------------------------
def load_analysis(region: Region, source: Source) -> RegionAnalysis:
    """Return the analysis of ``region`` for ``source`` and its key-finding sentences.

    Raises:
        DataError: the source has no data for the region (the message names the command
            that makes it).

    """
    if source == "detector" and not detector_periods(region):
        raise DataError(
            f"no detections for {region.id}: run `asmspotter run {region.id}` to make them"
        )
    if source == "reference" and region.reference is None:
        raise DataError(f"region {region.id!r} has no reference footprints in the catalogue")
    label = source_label(region, source)
    try:
        report = importlib.import_module("asmspotter.report")
    except ModuleNotFoundError as exc:
        if exc.name != "asmspotter.report":
            raise
        return RegionAnalysis(region, source, label, _fallback_analysis(region, source))
    result = report.analyse_source(region, source)
    maker = detector_model(region) if source == "detector" else region.reference.label  # type: ignore[union-attr]
    gaps = report.reference_gaps(region) if source == "reference" else ()
    findings = report.key_findings(result, "en", source=source, source_label=maker, gaps=gaps)
    return RegionAnalysis(region, source, label, result, tuple(findings))


def _fallback_analysis(region: Region, source: Source) -> AnalysisResult:
    """Analyse as `asmspotter run` and the reference analysis do (see the seam)."""
    from asmspotter.analyse import analyse, analyse_region
    from asmspotter.analyse.pipeline import _reference_from_catalogue

    if source == "detector":
        return analyse_region(region, reference=region.reference is not None)
    assert region.reference is not None
    layers, _, _ = _reference_from_catalogue(region)
    overlays: tuple[Any, ...] = region.overlays
    return analyse(
        layers,
        outline=region.outline,
        overlays=overlays,
        area_attribute=region.reference.area_attribute,
        kind="new",
        region=region.id,
        region_name=region.name,
    )
