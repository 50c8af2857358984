"""Overlay statistics: mined area inside protected areas, territories and mining zones.

Each overlay layer is read, filtered, reprojected to the analysis's equal-area CRS,
repaired (invalid geometries made valid and counted) and clipped to the region. Mined
area inside each feature is apportioned from the accounting's pieces by area share,
so the same code serves geometric areas and area attributes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from asmspotter.analyse.accounting import M2_PER_HA, Accounting, account
from asmspotter.analyse.layers import (
    PeriodLayer,
    clean_polygons,
    clip_to,
    read_vector,
    to_crs_checked,
)
from asmspotter.errors import DataError

log = logging.getLogger(__name__)

#: Overlay kinds whose zones are legal mining areas.
LEGAL_KINDS: tuple[str, ...] = ("mining_zone",)


@dataclass(frozen=True, eq=False)
class OverlayLayer:
    """An overlay layer ready for statistics: features clipped to the region.

    Attributes:
        id: layer id (``indigenous-territories``).
        kind: ``protected_area``, ``indigenous_territory``, ``mining_zone`` or ``other``.
        label: human-readable name.
        source: the file read.
        ids: feature ids (unique).
        names: feature names.
        geoms: feature polygons in the analysis CRS, clipped to the region.
        repaired: invalid geometries made valid.
        read: features read (after the attribute filter, before clipping).
        warnings: things the user should know.

    """

    id: str
    kind: str
    label: str
    source: str
    ids: tuple[str, ...]
    names: tuple[str, ...]
    geoms: np.ndarray
    repaired: int
    read: int
    warnings: tuple[str, ...]

    @property
    def union(self) -> Any:
        """All features of the layer as one geometry."""
        if len(self.geoms) == 0:
            return shapely.Polygon()
        return shapely.union_all(self.geoms)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_overlay(
    path: str | os.PathLike[str] | None,
    *,
    layer_id: str,
    kind: str,
    label: str,
    id_field: str,
    name_field: str,
    where: Mapping[str, Any] | None,
    accounting: Accounting,
    url: str | None = None,
) -> OverlayLayer:
    """Read an overlay layer and prepare it for :func:`overlay_figures`.

    Args:
        path: the local file (None when the catalogue only knows a URL).
        layer_id: the layer's id.
        kind: the layer's kind.
        label: human-readable name.
        id_field: column of feature ids.
        name_field: column of feature names.
        where: attribute filter ``{column: value}`` (a list value matches any of them).
        accounting: the accounting whose CRS and region outline to use.
        url: where the file can be downloaded (for the message when it is absent).

    Raises:
        DataError: the file is absent or unreadable, or a named column is missing.

    """
    what = f"overlay {layer_id!r}"
    if path is None:
        raise DataError(
            f"{what} has no local file (only {url}); download it and set its 'file' "
            "in the catalogue, or leave it out with --overlays / --no-overlays"
        )
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"{what}: file not found: {p} (check {label!r} in the catalogue and "
            "ASMSPOTTER_SHARED_DATA, or leave it out with --overlays / --no-overlays)"
        )
    frame = read_vector(p, what)
    warnings: list[str] = []
    for column, value in (where or {}).items():
        if column not in frame.columns:
            raise DataError(f"{what}: filter column {column!r} not in {p}")
        values = value if isinstance(value, (list, tuple, set)) else [value]
        frame = frame[frame[column].isin(list(values))]
    for field_name, role in ((id_field, "id_field"), (name_field, "name_field")):
        if field_name not in frame.columns:
            cols = ", ".join(str(c) for c in frame.columns if c != frame.geometry.name)
            raise DataError(
                f"{what}: {role} {field_name!r} is not a column of {p}; columns: {cols}"
            )
    read = len(frame)
    if read == 0:
        warnings.append(f"{what}: no features{' match ' + str(dict(where)) if where else ''}")
    frame = to_crs_checked(frame, accounting.crs, f"{what} ({p})")
    geoms, report = clean_polygons(frame.geometry.to_numpy())
    if report.repaired:
        warnings.append(
            f"{what}: {report.repaired} invalid geometr"
            f"{'y was' if report.repaired == 1 else 'ies were'} repaired"
        )
    geoms = clip_to(geoms, accounting.outline)
    ids = [_text(v) for v in frame[id_field]]
    names = [_text(v) for v in frame[name_field]]
    blank = [i for i, v in enumerate(ids) if not v]
    if blank:
        warnings.append(f"{what}: {len(blank)} feature(s) without {id_field!r} named by row number")
        for i in blank:
            ids[i] = f"row{i}"
    keep = [i for i, g in enumerate(geoms) if g is not None and not g.is_empty]
    table = pd.DataFrame(
        {"id": [ids[i] for i in keep], "name": [names[i] for i in keep]}, dtype=object
    )
    table["geom"] = pd.Series([geoms[i] for i in keep], dtype=object)
    if table["id"].duplicated().any():
        dups = sorted(set(table.loc[table["id"].duplicated(), "id"]))
        warnings.append(
            f"{what}: {len(dups)} id(s) occur on several features and were merged: "
            + ", ".join(dups[:5])
            + (" ..." if len(dups) > 5 else "")
        )
        table = (
            table.groupby("id", sort=False)
            .agg(name=("name", "first"), geom=("geom", lambda s: shapely.union_all(list(s))))
            .reset_index()
        )
    for w in warnings:
        log.warning(w)
    return OverlayLayer(
        id=layer_id,
        kind=kind,
        label=label,
        source=str(p),
        ids=tuple(table["id"]),
        names=tuple(table["name"]),
        geoms=np.asarray(list(table["geom"]), dtype=object),
        repaired=report.repaired,
        read=read,
        warnings=tuple(warnings),
    )


def apportion(
    zones: np.ndarray,
    pieces: np.ndarray,
    density: np.ndarray,
    group: np.ndarray,
    n_groups: int,
) -> np.ndarray:
    """Sum ``density x area(piece & zone)`` per zone and group.

    Args:
        zones: zone polygons.
        pieces: footprint pieces (same CRS).
        density: hectares per square metre of each piece.
        group: group index (period) of each piece.
        n_groups: number of groups.

    Returns:
        Array (zones, groups) of hectares.

    """
    out = np.zeros((len(zones), n_groups), dtype=float)
    if len(zones) == 0 or len(pieces) == 0:
        return out
    tree = shapely.STRtree(pieces)
    zi, pi = tree.query(zones, predicate="intersects")
    if len(zi) == 0:
        return out
    for z in zones:
        shapely.prepare(z)
    zg, pg = zones[zi], pieces[pi]
    inside = shapely.contains_properly(zg, pg)
    area = np.empty(len(zi), dtype=float)
    area[inside] = shapely.area(pg[inside])
    cut = ~inside
    if cut.any():
        area[cut] = shapely.area(shapely.intersection(pg[cut], zg[cut]))
    np.add.at(out, (zi, group[pi]), area * density[pi])
    return out


@dataclass(frozen=True)
class ZoneFigures:
    """Mined area of one period inside (and, for a whole layer, outside) a zone.

    Attributes:
        period: period id.
        inside_ha: cumulative mined area inside.
        new_inside_ha: new mined area inside.
        outside_ha: cumulative mined area outside (whole layer only).
        new_outside_ha: new mined area outside (whole layer only).
        active_inside_ha: active area inside (``active`` layers only).

    """

    period: str
    inside_ha: float
    new_inside_ha: float
    outside_ha: float | None = None
    new_outside_ha: float | None = None
    active_inside_ha: float | None = None


@dataclass(frozen=True)
class FeatureFigures:
    """Mined area per period inside one feature of an overlay layer.

    Attributes:
        id: feature id.
        name: feature name.
        area_ha: the feature's area within the region.
        periods: per period figures.

    """

    id: str
    name: str
    area_ha: float
    periods: tuple[ZoneFigures, ...]


@dataclass(frozen=True)
class OverlayResult:
    """Statistics of one overlay layer.

    Attributes:
        id: layer id.
        kind: layer kind.
        label: layer label.
        source: file read.
        features_read: features read (after the filter).
        features_in_region: features intersecting the region.
        repaired: invalid geometries repaired.
        layer: per period, inside / outside the union of all features.
        features: per feature figures.
        warnings: things the user should know.

    """

    id: str
    kind: str
    label: str
    source: str
    features_read: int
    features_in_region: int
    repaired: int
    layer: tuple[ZoneFigures, ...]
    features: tuple[FeatureFigures, ...]
    warnings: tuple[str, ...]

    @property
    def is_legal_zone(self) -> bool:
        """Whether the layer's zones are legal mining areas."""
        return self.kind in LEGAL_KINDS


def overlay_figures(accounting: Accounting, layer: OverlayLayer) -> OverlayResult:
    """Compute per-period mined and new area inside each feature and the whole layer.

    Cumulative area inside a zone is the running sum of new area inside it (pieces of
    different periods are disjoint). Outside = region total minus inside the layer.
    """
    n = len(accounting.periods)
    ids = accounting.period_ids
    new_feat = apportion(
        layer.geoms, accounting.pieces, accounting.piece_density, accounting.piece_period, n
    )
    union = layer.union
    zone_union = np.asarray([union], dtype=object)
    new_layer = apportion(
        zone_union, accounting.pieces, accounting.piece_density, accounting.piece_period, n
    )[0]
    active_feat = active_layer = None
    if accounting.active is not None:
        parts, group = [], []
        for k, geom in enumerate(accounting.active):
            ps = [p for p in shapely.get_parts(geom) if not p.is_empty]
            parts.extend(ps)
            group.extend([k] * len(ps))
        parr = np.asarray(parts, dtype=object)
        dens = np.full(len(parr), 1.0 / M2_PER_HA)
        garr = np.asarray(group, dtype=int)
        active_feat = apportion(layer.geoms, parr, dens, garr, n)
        active_layer = apportion(zone_union, parr, dens, garr, n)[0]
    cum_feat = np.cumsum(new_feat, axis=1)
    cum_layer = np.cumsum(new_layer)
    layer_rows = []
    for k, fig in enumerate(accounting.figures):
        layer_rows.append(
            ZoneFigures(
                period=ids[k],
                inside_ha=float(cum_layer[k]),
                new_inside_ha=float(new_layer[k]),
                outside_ha=max(fig.cumulative_ha - float(cum_layer[k]), 0.0),
                new_outside_ha=max(fig.new_ha - float(new_layer[k]), 0.0),
                active_inside_ha=float(active_layer[k]) if active_layer is not None else None,
            )
        )
    features = []
    areas = shapely.area(layer.geoms) / M2_PER_HA if len(layer.geoms) else np.zeros(0)
    for f, (fid, name) in enumerate(zip(layer.ids, layer.names, strict=True)):
        features.append(
            FeatureFigures(
                id=fid,
                name=name,
                area_ha=float(areas[f]),
                periods=tuple(
                    ZoneFigures(
                        period=ids[k],
                        inside_ha=float(cum_feat[f, k]),
                        new_inside_ha=float(new_feat[f, k]),
                        active_inside_ha=(
                            float(active_feat[f, k]) if active_feat is not None else None
                        ),
                    )
                    for k in range(n)
                ),
            )
        )
    return OverlayResult(
        id=layer.id,
        kind=layer.kind,
        label=layer.label,
        source=layer.source,
        features_read=layer.read,
        features_in_region=len(layer.ids),
        repaired=layer.repaired,
        layer=tuple(layer_rows),
        features=tuple(features),
        warnings=layer.warnings,
    )


# --------------------------------------------------------------------------------------
# Reference agreement
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementFigures:
    """How our cumulative footprint agrees with a reference footprint.

    Attributes:
        period: period id (``all`` for everything of every period).
        reference_period: the reference period compared with (its cumulative footprint).
        ours_ha: our footprint area.
        reference_ha: the reference footprint area.
        ours_inside_reference_ha: our area the reference also marks.
        ours_outside_reference_ha: our area the reference does not mark.
        reference_missed_ha: reference area we do not mark.

    """

    period: str
    reference_period: str
    ours_ha: float
    reference_ha: float
    ours_inside_reference_ha: float
    ours_outside_reference_ha: float
    reference_missed_ha: float

    @property
    def share_of_ours_in_reference(self) -> float | None:
        """Share of our area the reference confirms (a precision), None if we have none."""
        return self.ours_inside_reference_ha / self.ours_ha if self.ours_ha > 0 else None

    @property
    def share_of_reference_found(self) -> float | None:
        """Share of the reference area we mark (a recall), None if the reference is empty."""
        return self.ours_inside_reference_ha / self.reference_ha if self.reference_ha > 0 else None


@dataclass(frozen=True)
class ReferenceResult:
    """Agreement with a reference layer, per period and overall.

    Attributes:
        label: who made the reference.
        sources: its files.
        periods: per compared period.
        overall: everything of ours in all periods against all of the reference.
        warnings: things the user should know.

    """

    label: str
    sources: tuple[str, ...]
    periods: tuple[AgreementFigures, ...]
    overall: AgreementFigures | None
    warnings: tuple[str, ...]


def _agree(period: str, ref_period: str, ours: Any, ref: Any) -> AgreementFigures:
    inter = shapely.intersection(ours, ref)
    ours_ha = float(shapely.area(ours)) / M2_PER_HA
    ref_ha = float(shapely.area(ref)) / M2_PER_HA
    inside = float(shapely.area(inter)) / M2_PER_HA
    return AgreementFigures(
        period=period,
        reference_period=ref_period,
        ours_ha=ours_ha,
        reference_ha=ref_ha,
        ours_inside_reference_ha=inside,
        ours_outside_reference_ha=max(ours_ha - inside, 0.0),
        reference_missed_ha=max(ref_ha - inside, 0.0),
    )


def reference_agreement(
    ours: Accounting, reference_layers: Sequence[PeriodLayer], label: str = "reference"
) -> ReferenceResult:
    """Compare our cumulative footprint with a reference's, per period and overall.

    The reference layers hold, per period, what is new since the previous period (the
    first holding everything up to it); any reference layer works, as their union up to
    a period is compared. For each of our periods the reference is taken up to the
    latest reference period ending no later than ours; periods before any reference
    period are skipped. Areas are geometric (polygon areas), whatever attribute the
    layers carry, since agreement is about where mining is.
    """
    ref = account(reference_layers, crs=ours.crs, kind="new")
    if ours.outline is not None:
        ref_cum = [shapely.intersection(g, ours.outline) for g in ref.cumulative]
    else:
        ref_cum = list(ref.cumulative)
    warnings = list(ref.warnings)
    rows = []
    for k, period in enumerate(ours.periods):
        idx = [j for j, rp in enumerate(ref.periods) if rp.end <= period.end]
        if not idx:
            warnings.append(f"no reference up to period {period.id}: not compared")
            continue
        j = idx[-1]
        rows.append(_agree(period.id, ref.periods[j].id, ours.cumulative[k], ref_cum[j]))
    overall = None
    if ours.periods and ref.periods:
        overall = _agree("all", "all", ours.cumulative[-1], ref_cum[-1])
    sources = tuple(s for la in reference_layers for s in la.sources)
    return ReferenceResult(label, sources, tuple(rows), overall, tuple(warnings))
