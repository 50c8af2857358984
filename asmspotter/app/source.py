"""Where the app's mining comes from: the detector's outputs or the reference footprints.

:func:`available_sources` says which sources a region has on this machine (from the
on-disk layout and the catalogue), and :func:`load_analysis` returns the analysis of a
region for one source together with the briefing's key-finding sentences, so that the app
shows the same numbers and sentences as the briefings.
"""

from __future__ import annotations

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


def detector_label(region: Region) -> str:
    """Name the detector's outputs of ``region`` (with the model named in their provenance)."""
    for period in detector_periods(region):
        record = layout.detection_files(region.id, period).provenance
        try:
            model = json.loads(record.read_text()).get("model", {}).get("name")
        except (OSError, ValueError, AttributeError):
            continue
        if model:
            return f"ASMSpotter detector (model {model})"
    return "ASMSpotter detector"


def reference_label(region: Region) -> str:
    """Name the catalogue's reference footprints of ``region``."""
    label = region.reference.label if region.reference is not None else "reference"
    return f"{label} reference footprints"


# ------------------------------------------------------------------------------------------
# SEAM (issues #14 / #15). The report package (`asmspotter.report`, branch `report`) owns
# how a region's analysis is obtained for a source and the key-finding sentences; the app
# must show the same numbers and sentences. Until that branch is merged, this one function
# stands in: it calls the library exactly as `asmspotter run` (detector) and the analysis of
# the catalogue's reference footprints do, and returns no sentences. Once asmspotter.report
# is on main, its body becomes a call of the report's functions.
# ------------------------------------------------------------------------------------------
def load_analysis(region: Region, source: Source) -> RegionAnalysis:
    """Return the analysis of ``region`` for ``source`` and its key-finding sentences.

    Raises:
        DataError: the source has no data for the region (the message names the command
            that makes it).

    """
    from asmspotter.analyse import analyse, analyse_region
    from asmspotter.analyse.pipeline import _reference_from_catalogue

    if source == "detector":
        if not detector_periods(region):
            raise DataError(
                f"no detections for {region.id}: run `asmspotter run {region.id}` to make them"
            )
        result = analyse_region(region, reference=region.reference is not None)
        return RegionAnalysis(region, source, detector_label(region), result)
    ref = region.reference
    if ref is None:
        raise DataError(f"region {region.id!r} has no reference footprints in the catalogue")
    layers, label, _ = _reference_from_catalogue(region)
    overlays: tuple[Any, ...] = region.overlays
    result = analyse(
        layers,
        outline=region.outline,
        overlays=overlays,
        area_attribute=ref.area_attribute,
        kind="new",
        region=region.id,
        region_name=region.name,
    )
    return RegionAnalysis(region, source, reference_label(region), result)
