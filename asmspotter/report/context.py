"""Everything a briefing shows, gathered once: the analysis, the catalogue and the provenance.

:func:`prepare_briefing` analyses the region's mining from one source, writes that
analysis's files (so the briefing's numbers and the files are the same numbers), and
collects what the sections need: the catalogue's context and credits, the composites' and
detections' provenance, the model card, the software version and commit. The notebook calls
it once and hands the :class:`Briefing` to each section.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmspotter import __version__, layout, paths
from asmspotter.catalogue import Region, load_catalogue
from asmspotter.report.language import Language, load_language
from asmspotter.report.source import (
    BriefingSource,
    PeriodGap,
    analyse_source,
    analysis_folder,
    reference_gaps,
    resolve_source,
)

if TYPE_CHECKING:
    from asmspotter.analyse import AnalysisResult
    from asmspotter.detect.card import ModelCard


@dataclass(frozen=True)
class Imagery:
    """What one period's composite was made from (its provenance, summarised).

    Attributes:
        period: period id.
        kind: ``stac``, ``local`` or ``missing`` (no composite provenance found).
        scenes: scene ids (STAC) or file names (local).
        collection: STAC collection searched (STAC only).
        mask: cloud-mask method (``scl``, ``qa60``, ``s2cloudless``, ``none``).
        clear_fraction: share of the region observed clear.
        radiometry: ``reflectance`` or ``display``.
        composite: the composite file (None when absent).

    """

    period: str
    kind: str
    scenes: tuple[str, ...] = ()
    collection: str | None = None
    mask: str | None = None
    clear_fraction: float | None = None
    radiometry: str | None = None
    composite: Path | None = None


@dataclass(frozen=True, eq=False)
class Briefing:
    """Everything a regional briefing shows.

    Attributes:
        region: the catalogue region.
        language: the briefing's language.
        source: where the mining comes from.
        source_label: the model's name (detector) or who made the reference.
        result: the analysis of that source.
        analysis_folder: where the analysis's files were written.
        gaps: catalogue periods the reference cannot cover (reference source only).
        imagery: per analysed period, what its composite was made from.
        card: the detector's model card (detector source only).
        detection: the last period's detection provenance (detector source only).
        generated: the generation date.
        commit: the software's git commit (``unknown`` outside a checkout).
        parameters: the parameters the briefing was made with.

    """

    region: Region
    language: Language
    source: BriefingSource
    source_label: str
    result: AnalysisResult
    analysis_folder: Path
    gaps: tuple[PeriodGap, ...]
    imagery: tuple[Imagery, ...]
    card: ModelCard | None
    detection: Mapping[str, Any]
    generated: dt.date
    commit: str
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The software version."""
        return __version__

    @property
    def period_ids(self) -> list[str]:
        """The analysed periods, in order."""
        return self.result.accounting.period_ids

    @property
    def background(self) -> Imagery | None:
        """The last period's composite, the map's background, where one is cached."""
        last = self.imagery[-1] if self.imagery else None
        return last if last is not None and last.composite is not None else None


def use_folders(
    shared_data: str | None = None, output: str | None = None, cache: str | None = None
) -> None:
    """Point this process at the given shared data, output and cache folders.

    The briefing notebook calls it first, so that its kernel reads and writes where the
    command that started it does. ``None`` keeps the environment's setting.
    """
    for env, value in (
        (paths.SHARED_DATA_ENV, shared_data),
        (paths.OUTPUT_ENV, output),
        (paths.CACHE_ENV, cache),
    ):
        if value:
            os.environ[env] = str(value)


def generation_date(value: str | dt.date | None = None) -> dt.date:
    """Return the generation date: ``value``, else ``SOURCE_DATE_EPOCH``, else today (UTC).

    Raises:
        InputError: ``value`` is not an ISO date.

    """
    from asmspotter.errors import InputError

    if isinstance(value, dt.date):
        return value
    if value:
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise InputError(f"generation date {value!r} is not YYYY-MM-DD") from None
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC).date()
    return dt.datetime.now(dt.UTC).date()


def software_commit() -> str:
    """Return the git commit of the running source checkout, or ``unknown``."""
    root = paths.source_checkout()
    if root is None or not (root / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _imagery(region: Region, period_id: str) -> Imagery:
    from asmspotter.geoio import read_json

    files = layout.composite_files(region.id, period_id)
    composite = files.tif if files.tif.is_file() else None
    if not files.provenance.is_file():
        return Imagery(period_id, "missing", composite=composite)
    prov = read_json(files.provenance)
    source = prov.get("source") or {}
    mask = prov.get("mask") or {}
    return Imagery(
        period=period_id,
        kind=str(source.get("type", "stac")),
        scenes=tuple(str(i) for i in prov.get("items") or ()),
        collection=source.get("collection"),
        mask=mask.get("method"),
        clear_fraction=prov.get("clear_fraction"),
        radiometry=prov.get("radiometry"),
        composite=composite,
    )


def _detector_card(
    region: Region, period_ids: Sequence[str], model: str | None
) -> tuple[ModelCard, dict[str, Any]]:
    from asmspotter.detect.card import load_card
    from asmspotter.geoio import read_json

    detection: dict[str, Any] = {}
    for pid in reversed(period_ids):
        prov = layout.detection_files(region.id, pid).provenance
        if prov.is_file():
            detection = read_json(prov)
            break
    card_ref = (detection.get("model") or {}).get("card")
    if model is None and card_ref and Path(card_ref).is_file():
        return load_card(card_ref)[0], detection
    return load_card(model)[0], detection


def localised(result: AnalysisResult, region: Region, language: str) -> AnalysisResult:
    """Return the analysis with its overlay layers named in ``language`` (the catalogue's).

    Only the labels change; the files written from the analysis keep the English ones.
    """
    known = {o.id: o for o in region.overlays}
    overlays = tuple(
        dataclasses.replace(o, label=known[o.id].label_in(language)) if o.id in known else o
        for o in result.overlays
    )
    return dataclasses.replace(result, overlays=overlays)


def prepare_briefing(
    region: str | Region,
    *,
    source: str | None = None,
    language: str = "en",
    periods: Sequence[str] | None = None,
    model: str | None = None,
    catalogue: str | None = None,
    generated: str | dt.date | None = None,
    write: bool = True,
) -> Briefing:
    """Analyse a region's mining from one source and gather what its briefing shows.

    Args:
        region: a region id of the catalogue, or a catalogue region.
        source: ``detector`` or ``reference`` (default: the detector where its detections
            exist, else the reference).
        language: the briefing's language code.
        periods: the periods to brief (catalogue periods for the detector, the reference's
            periods for the reference; default: all).
        model: the model card to describe when the detections do not name theirs.
        catalogue: the catalogue file (default: the shipped one).
        generated: the generation date (default: :func:`generation_date`).
        write: write the analysis's files (CSV, GeoPackage, JSON) to the source's folder.

    Empty strings and lists mean the default, as the notebook's parameters cell passes them.

    Raises:
        InputError: unknown region, language, source or periods.
        DataError: the source's inputs are missing or unreadable.

    """
    from asmspotter.analyse import write_analysis

    lang = load_language(language)
    reg = load_catalogue(catalogue or None)[region] if isinstance(region, str) else region
    kind = resolve_source(reg, source or None)
    periods = [str(p) for p in periods] if periods else None
    model = model or None
    result = analyse_source(reg, kind, periods)
    folder = analysis_folder(reg.id, kind)
    parameters = {
        "region": reg.id,
        "source": kind,
        "language": lang.code,
        "periods": list(periods) if periods else None,
        "model": model,
        "catalogue": catalogue or None,
    }
    if write:
        arguments = {"command": "report", **parameters}
        write_analysis(result, folder, crs=reg.crs, arguments=arguments)
    result = localised(result, reg, lang.code)
    card = None
    detection: dict[str, Any] = {}
    if kind == "detector":
        card, detection = _detector_card(reg, result.accounting.period_ids, model)
        label = card.name
    else:
        assert reg.reference is not None
        label = reg.reference.label
    return Briefing(
        region=reg,
        language=lang,
        source=kind,
        source_label=label,
        result=result,
        analysis_folder=folder,
        gaps=reference_gaps(reg) if kind == "reference" else (),
        imagery=tuple(_imagery(reg, pid) for pid in result.accounting.period_ids),
        card=card,
        detection=detection,
        generated=generation_date(generated),
        commit=software_commit(),
        parameters=parameters,
    )
