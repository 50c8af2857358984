"""Where the app's mining comes from: the detector's outputs or the reference footprints.

:func:`available_sources` says which sources a region has on this machine (from the
on-disk layout and the catalogue), and :func:`load_analysis` returns the analysis of a
region for one source together with the briefing's key-finding sentences, so that the app
shows the same numbers and sentences as the briefings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    from asmspotter.report import detected_periods

    return tuple(detected_periods(region))


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


def load_analysis(region: Region, source: Source) -> RegionAnalysis:
    """Return the analysis of ``region`` for ``source`` and its key-finding sentences.

    The analysis and the sentences are the briefing's (:func:`asmspotter.report.analyse_source`
    and :func:`asmspotter.report.key_findings`), so the app shows the same numbers and
    sentences as ``asmspotter report``.

    Raises:
        DataError: the source has no data for the region (the message names the command
            that makes it).

    """
    from asmspotter.report import analyse_source, key_findings, reference_gaps

    if source == "detector" and not detector_periods(region):
        raise DataError(
            f"no detections for {region.id}: run `asmspotter run {region.id}` to make them"
        )
    if region.reference is None and source == "reference":
        raise DataError(f"region {region.id!r} has no reference footprints in the catalogue")
    result = analyse_source(region, source)
    maker: str | None
    if source == "reference":
        assert region.reference is not None
        maker, gaps = region.reference.label, reference_gaps(region)
    else:
        maker, gaps = detector_model(region), ()
    findings = key_findings(result, "en", source=source, source_label=maker, gaps=gaps)
    return RegionAnalysis(region, source, source_label(region, source), result, tuple(findings))
