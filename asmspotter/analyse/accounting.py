"""Per-period area accounting: cumulative, new, active and stopped mining, and expansion.

Two ways of measuring a footprint's area:

* **geometry** (default): the polygons' area in an equal-area projection. Overlaps
  between periods are removed, so *new* area is what was mined in a period and in no
  earlier one, and *cumulative* area is the union up to the period.
* **area attribute** (``area_attribute="Mined area (ha)"``): each polygon carries its
  mined area in hectares (Amazon Mining Watch's footprints are 480 m patches whose
  attribute is the mined area inside them). The attribute is spread uniformly over the
  polygon: any part of it counts ``attribute x part area / polygon area``. This is how
  Amazon Mining Watch apportions its statistics to territories. The layers must hold
  new detections per period; cumulative area is their running sum.

Everything downstream (overlays, reference agreement) works on the same *pieces*:
disjoint polygons, each first seen in one period, each with a density in hectares per
square metre, so that a zone's mined area is ``sum(density x area(piece & zone))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from asmspotter.analyse.layers import (
    M2_PER_HA,
    FootprintKind,
    PeriodLayer,
    area_crs,
    clean_polygons,
    clip_to,
    order_periods,
    project_outline,
    to_crs_checked,
)
from asmspotter.errors import DataError, InputError
from asmspotter.periods import Period

AreaMode = Literal["geometry", "attribute"]

#: Overlap (share of a period's area) between attribute-carrying layers that is reported.
OVERLAP_WARN_SHARE = 0.01

#: What each figure measures; written into every result so a briefing cannot confuse them.
DEFINITIONS: dict[str, str] = {
    "cumulative_ha": "all land mined in this period or any earlier analysed period (hectares)",
    "new_ha": (
        "land mined in this period and in no earlier analysed period (hectares); for the "
        "first period, everything up to and including it"
    ),
    "active_ha": "land showing mining in this period itself (only from per-period masks)",
    "stopped_ha": (
        "land showing mining in the previous period and observed without mining in this "
        "one (only from per-period masks; land this period could not observe is excluded)"
    ),
    "cumulative_factor": "cumulative_ha of the later period divided by that of the earlier",
    "cumulative_growth_per_year": (
        "compound yearly growth rate of cumulative_ha between the two periods' mid-points "
        "(0.05 = 5 % a year)"
    ),
    "new_ha_per_year": (
        "land newly mined between the two periods divided by the years between their "
        "mid-points (hectares a year)"
    ),
    "active_factor": "active_ha of the later period divided by that of the earlier",
    "inside_ha": "cumulative_ha inside the zone",
    "new_inside_ha": "new_ha inside the zone",
    "outside_ha": "cumulative_ha outside every zone of the layer (within the region)",
    "new_outside_ha": "new_ha outside every zone of the layer (within the region)",
}


@dataclass(frozen=True)
class PeriodFigures:
    """Mined area of one period.

    Attributes:
        period: period id.
        start: first day.
        end: last day.
        cumulative_ha: mined in this or any earlier period.
        new_ha: mined in this period and no earlier one.
        active_ha: mining visible in this period (None unless layers are ``active``).
        stopped_ha: active in the previous period, not in this one (None unless
            layers are ``active``; None for the first period).
        features: footprint polygons of this period within the region.

    """

    period: str
    start: Any
    end: Any
    cumulative_ha: float
    new_ha: float
    active_ha: float | None
    stopped_ha: float | None
    features: int


@dataclass(frozen=True, eq=False)
class Accounting:
    """Per-period figures and the geometry behind them (in an equal-area CRS).

    Attributes:
        periods: the periods, in chronological order.
        figures: one :class:`PeriodFigures` per period.
        crs: the equal-area CRS of every geometry here.
        outline: the region outline in ``crs`` (None when not clipped).
        mode: ``geometry`` or ``attribute``.
        kind: what the input layers hold (``new`` or ``active``).
        area_attribute: the attribute used in ``attribute`` mode.
        pieces: disjoint polygons (``attribute`` mode: the clipped footprints).
        piece_period: index into ``periods`` of each piece.
        piece_density: hectares per square metre of each piece.
        cumulative: per period, the union of footprints up to it.
        active: per period, that period's footprint union (None for ``new`` layers).
        stopped: per period, area active before and not now (None where unknown).
        repaired: invalid footprint geometries repaired.
        dropped: footprint features without polygon area left out.
        warnings: things the user should know.

    """

    periods: tuple[Period, ...]
    figures: tuple[PeriodFigures, ...]
    crs: CRS
    outline: Any
    mode: AreaMode
    kind: FootprintKind
    area_attribute: str | None
    pieces: np.ndarray
    piece_period: np.ndarray
    piece_density: np.ndarray
    cumulative: tuple[Any, ...]
    active: tuple[Any, ...] | None
    stopped: tuple[Any, ...] | None
    repaired: int
    dropped: int
    warnings: tuple[str, ...]

    @property
    def period_ids(self) -> list[str]:
        """The period ids in order."""
        return [p.id for p in self.periods]

    def piece_ha(self) -> np.ndarray:
        """Hectares of every piece (density times area)."""
        return np.asarray(shapely.area(self.pieces), dtype=float) * self.piece_density


def _union(geoms: Sequence[Any] | np.ndarray) -> Any:
    arr = [g for g in geoms if g is not None and not g.is_empty]
    if not arr:
        return shapely.Polygon()
    return shapely.union_all(np.asarray(arr, dtype=object))


def _ha(geom: Any) -> float:
    return float(shapely.area(geom)) / M2_PER_HA if geom is not None else 0.0


def _attribute_values(layer: PeriodLayer, attribute: str) -> np.ndarray:
    frame = layer.frame
    if attribute not in frame.columns:
        if len(frame) == 0:
            return np.zeros(0)
        cols = ", ".join(str(c) for c in frame.columns if c != frame.geometry.name)
        raise DataError(
            f"{layer.label}: no area attribute {attribute!r}; columns are: {cols or 'none'}"
        )
    values = pd.to_numeric(frame[attribute], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"{layer.label}: {int(bad.sum())} feature(s) have no numeric {attribute!r} "
            "(empty or not a number); fix them or measure areas from geometry instead"
        )
    if (values < 0).any():
        raise DataError(f"{layer.label}: {int((values < 0).sum())} negative {attribute!r} values")
    return values


def account(
    layers: Sequence[PeriodLayer],
    *,
    outline: Any | None = None,
    area_attribute: str | None = None,
    kind: FootprintKind = "new",
    crs: CRS | str | None = None,
) -> Accounting:
    """Compute cumulative, new (and, for ``active`` layers, active and stopped) areas.

    Args:
        layers: one layer per period (any order; they are sorted chronologically).
        outline: the region outline in EPSG:4326; footprints are clipped to it.
        area_attribute: column holding each polygon's mined area in hectares; areas
            are then apportioned by area share instead of measured from geometry.
        kind: ``active`` if each layer holds all mining visible in its period (enables
            active and stopped areas), ``new`` if it holds only new detections.
        crs: CRS to measure areas in (default: :func:`area_crs` of the outline, or of
            the footprints' extent when there is no outline); give a projected CRS in
            metres, preferably equal-area.

    Raises:
        InputError: no layers, periods repeated or overlapping, CRS missing, or an
            area attribute with ``active`` layers.
        DataError: the area attribute is missing or not numeric.

    """
    if not layers:
        raise InputError("no footprint layers to analyse")
    if kind not in ("new", "active"):
        raise InputError(f"footprint kind {kind!r} must be 'new' or 'active'")
    if area_attribute and kind == "active":
        raise InputError(
            "an area attribute can only be summed over layers of new detections "
            "(kind 'new'); per-period active layers overlap each other"
        )
    ordered, warnings = order_periods(layers)
    if crs is not None:
        crs = CRS.from_user_input(crs)
        if not crs.is_projected:
            raise InputError(f"area CRS {crs.name!r} is not projected; areas need metres")
    else:
        if outline is not None:
            crs = area_crs(outline)
        else:
            crs = area_crs(_extent_4326(ordered))
    outline_a = project_outline(outline, crs) if outline is not None else None

    repaired = dropped = 0
    clipped_layers: list[np.ndarray] = []
    densities: list[np.ndarray] = []
    unobserved: list[Any] = []
    for layer in ordered:
        if kind == "active" and layer.unobserved is not None and len(layer.unobserved):
            blind = to_crs_checked(layer.unobserved, crs, f"no-data of {layer.label}")
            unobserved.append(_union(clean_polygons(blind.geometry.to_numpy())[0]))
        else:
            unobserved.append(None)
        frame = to_crs_checked(layer.frame, crs, f"footprints {layer.label}")
        geoms, report = clean_polygons(frame.geometry.to_numpy())
        repaired += report.repaired
        dropped += report.dropped
        if area_attribute:
            values = _attribute_values(layer, area_attribute)
            full_area = np.array([g.area if g is not None else 0.0 for g in geoms], dtype=float)
            lost = (full_area <= 0) & (values > 0)
            if lost.any():
                warnings.append(
                    f"{layer.label}: {int(lost.sum())} feature(s) carry {values[lost].sum():.2f} "
                    f"ha of {area_attribute!r} but no polygon area; they are not counted"
                )
            with np.errstate(divide="ignore", invalid="ignore"):
                density = np.where(full_area > 0, values / np.where(full_area > 0, full_area, 1), 0)
        else:
            density = np.full(len(geoms), 1.0 / M2_PER_HA)
        geoms = clip_to(geoms, outline_a)
        keep = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
        clipped_layers.append(geoms[keep])
        densities.append(density[keep])
    read = sum(len(la.frame) for la in ordered)
    if outline_a is not None and read and not any(len(g) for g in clipped_layers):
        warnings.append(
            f"none of the {read} footprint features lies inside the region outline: check "
            "that the footprints belong to this region and carry the right CRS"
        )
    if repaired:
        warnings.append(
            f"{repaired} invalid footprint "
            f"{'geometry was' if repaired == 1 else 'geometries were'} repaired"
        )
    if dropped:
        warnings.append(f"{dropped} footprint feature(s) without polygon area were left out")

    periods = tuple(la.period for la in ordered)
    cumulative: list[Any] = []
    actives: list[Any] = []
    stopped: list[Any] = []
    piece_list: list[np.ndarray] = []
    piece_period: list[np.ndarray] = []
    piece_density: list[np.ndarray] = []
    figures: list[PeriodFigures] = []
    cum_geom: Any = shapely.Polygon()
    running_ha = 0.0
    for k, (period, geoms, dens) in enumerate(zip(periods, clipped_layers, densities, strict=True)):
        active = _union(geoms)
        if area_attribute:
            if k and not cum_geom.is_empty and not active.is_empty:
                overlap = _ha(shapely.intersection(active, cum_geom))
                if overlap > OVERLAP_WARN_SHARE * _ha(active):
                    warnings.append(
                        f"period {period.id}: {overlap:.1f} ha of its footprints overlap earlier "
                        f"periods; {area_attribute!r} is summed as given (counting them again)"
                    )
            pieces = geoms
            pdens = dens
            new_ha = float(np.sum(shapely.area(pieces) * pdens)) if len(pieces) else 0.0
            running_ha += new_ha
            cum_ha = running_ha
        else:
            new_geom = shapely.difference(active, cum_geom) if not cum_geom.is_empty else active
            pieces = np.asarray(
                [p for p in shapely.get_parts(new_geom) if p.geom_type == "Polygon" and p.area > 0],
                dtype=object,
            )
            pdens = np.full(len(pieces), 1.0 / M2_PER_HA)
            new_ha = _ha(new_geom)
        cum_geom = shapely.union(cum_geom, active) if not cum_geom.is_empty else active
        if not area_attribute:
            cum_ha = _ha(cum_geom)
        active_ha: float | None = None
        stopped_ha: float | None = None
        stop_geom: Any = None
        if kind == "active":
            active_ha = _ha(active)
            if k:
                stop_geom = shapely.difference(actives[-1], active)
                if unobserved[k] is not None:
                    stop_geom = shapely.difference(stop_geom, unobserved[k])
                if outline_a is not None:
                    stop_geom = shapely.intersection(stop_geom, outline_a)
                stopped_ha = _ha(stop_geom)
        cumulative.append(cum_geom)
        actives.append(active)
        stopped.append(stop_geom)
        piece_list.append(pieces)
        piece_period.append(np.full(len(pieces), k, dtype=int))
        piece_density.append(pdens)
        figures.append(
            PeriodFigures(
                period=period.id,
                start=period.start,
                end=period.end,
                cumulative_ha=cum_ha,
                new_ha=new_ha,
                active_ha=active_ha,
                stopped_ha=stopped_ha,
                features=len(geoms),
            )
        )
    all_pieces = (np.concatenate(piece_list) if piece_list else np.empty(0, dtype=object)).astype(
        object
    )
    return Accounting(
        periods=periods,
        figures=tuple(figures),
        crs=crs,
        outline=outline_a,
        mode="attribute" if area_attribute else "geometry",
        kind=kind,
        area_attribute=area_attribute,
        pieces=all_pieces,
        piece_period=np.concatenate(piece_period).astype(int),
        piece_density=np.concatenate(piece_density).astype(float),
        cumulative=tuple(cumulative),
        active=tuple(actives) if kind == "active" else None,
        stopped=tuple(stopped) if kind == "active" else None,
        repaired=repaired,
        dropped=dropped,
        warnings=tuple(warnings),
    )


def _extent_4326(layers: Sequence[PeriodLayer]) -> Any:
    boxes = []
    for layer in layers:
        frame = layer.frame
        if len(frame) == 0:
            continue
        if frame.crs is None:
            raise InputError(
                f"footprints {layer.label} have no coordinate reference system; save them "
                "with one (e.g. EPSG:4326)"
            )
        boxes.append(shapely.box(*frame.to_crs("EPSG:4326").total_bounds))
    if not boxes:
        return shapely.box(-1, -1, 1, 1)  # nothing to measure: any projection will do
    return shapely.union_all(boxes)


# --------------------------------------------------------------------------------------
# Expansion
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpansionPair:
    """How mining grew from one period to a later one.

    Attributes:
        from_period: the earlier period.
        to_period: the later period.
        years: years between the two periods' mid-points.
        cumulative_factor: cumulative area ratio later / earlier (None if earlier is 0).
        cumulative_growth_per_year: compound yearly growth rate of the cumulative area.
        new_ha_per_year: area newly mined between them per year.
        active_factor: active area ratio later / earlier (None unless known and > 0).

    """

    from_period: str
    to_period: str
    years: float
    cumulative_factor: float | None
    cumulative_growth_per_year: float | None
    new_ha_per_year: float
    active_factor: float | None


@dataclass(frozen=True)
class Expansion:
    """Expansion between every pair of periods, and the first-to-last headline.

    Attributes:
        pairs: every (earlier, later) pair of periods.
        headline: first to last period (None with a single period).

    """

    pairs: tuple[ExpansionPair, ...]
    headline: ExpansionPair | None

    def pair(self, from_period: str, to_period: str) -> ExpansionPair:
        """Return the pair for two period ids.

        Raises:
            InputError: no such pair (unknown ids or wrong order).

        """
        for p in self.pairs:
            if p.from_period == from_period and p.to_period == to_period:
                return p
        raise InputError(f"no expansion from period {from_period!r} to {to_period!r}")


def expansion(accounting: Accounting) -> Expansion:
    """Compute expansion factors and yearly growth between all pairs of periods."""
    figs = accounting.figures
    periods = accounting.periods
    pairs: list[ExpansionPair] = []
    for i in range(len(figs)):
        for j in range(i + 1, len(figs)):
            a, b = figs[i], figs[j]
            years = (periods[j].mid - periods[i].mid).days / 365.25
            factor = b.cumulative_ha / a.cumulative_ha if a.cumulative_ha > 0 else None
            growth = factor ** (1.0 / years) - 1.0 if factor is not None and years > 0 else None
            added = b.cumulative_ha - a.cumulative_ha
            active_factor = (
                b.active_ha / a.active_ha
                if a.active_ha is not None and b.active_ha is not None and a.active_ha > 0
                else None
            )
            pairs.append(
                ExpansionPair(
                    from_period=a.period,
                    to_period=b.period,
                    years=years,
                    cumulative_factor=factor,
                    cumulative_growth_per_year=growth,
                    new_ha_per_year=added / years if years > 0 else float("nan"),
                    active_factor=active_factor,
                )
            )
    headline = None
    if len(figs) > 1:
        headline = next(
            p for p in pairs if p.from_period == figs[0].period and p.to_period == figs[-1].period
        )
    return Expansion(tuple(pairs), headline)
