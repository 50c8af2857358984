"""Regional briefings: papermill notebooks rendered to offline HTML and PDF, in any language.

The briefing notebook (``notebooks/region_report.ipynb``, shipped as package data) holds no
logic: it calls :func:`prepare_briefing` once and displays each section of
:mod:`asmspotter.report.sections`. :func:`write_report` runs it and writes
``reports/<region>/report[.<lang>].html`` (and ``.pdf``); ``asmspotter report`` and
``asmspotter run`` call it.

Public API:

* :func:`write_report` -> :class:`ReportResult`: execute and render one briefing.
* :func:`prepare_briefing` -> :class:`Briefing`: analyse a source and gather what a briefing
  shows (the notebook's one computation).
* :func:`key_findings`: the key-finding sentences of an analysis in a language (the app
  shows the same sentences).
* :func:`analyse_source`, :func:`resolve_source`, :func:`reference_gaps`: the mining's
  source (``detector`` or ``reference``).
* :func:`map_figure`, :func:`chart_figure`, :func:`figure_png`: the static figures.
* :func:`load_language`, :func:`languages`: the template files.

Modules: :mod:`.source`, :mod:`.language`, :mod:`.sentences`, :mod:`.context`,
:mod:`.figures`, :mod:`.tables`, :mod:`.method`, :mod:`.sections`, :mod:`.render`.
"""

from __future__ import annotations

from asmspotter.report import sections
from asmspotter.report.context import Briefing, Imagery, prepare_briefing, use_folders
from asmspotter.report.figures import chart_figure, figure_png, map_figure
from asmspotter.report.language import Language, languages, load_language
from asmspotter.report.render import ReportResult, find_browser, notebook_path, write_report
from asmspotter.report.sentences import key_findings, source_phrase
from asmspotter.report.source import (
    SOURCES,
    BriefingSource,
    PeriodGap,
    analyse_source,
    detected_periods,
    reference_gaps,
    resolve_source,
)

__all__ = [
    "SOURCES",
    "Briefing",
    "BriefingSource",
    "Imagery",
    "Language",
    "PeriodGap",
    "ReportResult",
    "analyse_source",
    "chart_figure",
    "detected_periods",
    "figure_png",
    "find_browser",
    "key_findings",
    "languages",
    "load_language",
    "map_figure",
    "notebook_path",
    "prepare_briefing",
    "reference_gaps",
    "resolve_source",
    "sections",
    "source_phrase",
    "use_folders",
    "write_report",
]
