"""Expansion and overlay analytics: the figures a regional briefing stands on.

From per-period mining footprints (the detector's outputs, or any footprint layer such
as Amazon Mining Watch's), compute per period:

* cumulative and new mined area (and, from per-period masks, active area and area that
  stopped being active), in hectares in an equal-area projection;
* expansion factors and yearly growth between any two periods, each labelled with what
  it measures;
* mined and new area inside and outside each overlay layer (protected areas,
  indigenous territories, legal mining zones), per feature, apportioned by area share
  so that per-polygon area attributes (``Mined area (ha)``) work too;
* agreement with a reference footprint.

Example:
    >>> from asmspotter.analyse import analyse_region, write_analysis  # doctest: +SKIP
    >>> result = analyse_region(get_region("madre-de-dios"), footprints=files,
    ...                         area_attribute="Mined area (ha)")  # doctest: +SKIP
    >>> [p["cumulative_ha"] for p in result.to_dict()["periods"]]  # doctest: +SKIP

Modules: :mod:`.layers` (reading, periods, geometry), :mod:`.accounting` (areas and
expansion), :mod:`.overlays` (overlay statistics, reference agreement),
:mod:`.pipeline` (the whole analysis), :mod:`.output` (writers).

"""

from __future__ import annotations

from asmspotter.analyse.accounting import (
    DEFINITIONS,
    Accounting,
    Expansion,
    ExpansionPair,
    PeriodFigures,
    account,
    expansion,
)
from asmspotter.analyse.layers import (
    FOOTPRINT_KINDS,
    FootprintKind,
    LayerAssignment,
    PeriodLayer,
    area_crs,
    clean_polygons,
    detector_layers,
    layers_from_files,
    order_periods,
    read_vector,
)
from asmspotter.analyse.output import (
    format_summary,
    write_analysis,
    write_geopackage,
)
from asmspotter.analyse.overlays import (
    AgreementFigures,
    FeatureFigures,
    OverlayLayer,
    OverlayResult,
    ReferenceResult,
    ZoneFigures,
    apportion,
    load_overlay,
    overlay_figures,
    reference_agreement,
)
from asmspotter.analyse.pipeline import AnalysisResult, analyse, analyse_region

__all__ = [
    "DEFINITIONS",
    "FOOTPRINT_KINDS",
    "Accounting",
    "AgreementFigures",
    "AnalysisResult",
    "Expansion",
    "ExpansionPair",
    "FeatureFigures",
    "FootprintKind",
    "LayerAssignment",
    "OverlayLayer",
    "OverlayResult",
    "PeriodFigures",
    "PeriodLayer",
    "ReferenceResult",
    "ZoneFigures",
    "account",
    "analyse",
    "analyse_region",
    "apportion",
    "area_crs",
    "clean_polygons",
    "detector_layers",
    "expansion",
    "format_summary",
    "layers_from_files",
    "load_overlay",
    "order_periods",
    "overlay_figures",
    "read_vector",
    "reference_agreement",
    "write_analysis",
    "write_geopackage",
]
