"""Writing an analysis: CSV tables, a GeoPackage and a JSON record, published as a unit.

The folder is written complete beside the previous analysis and swapped in for it
(:func:`asmspotter.geoio.publish_folder`), so a kill or a full disk never leaves new
tables beside an old ``analysis.json``.

The files and their names are :class:`asmspotter.layout.AnalysisFiles`:

=========================  =========================================================
``periods_csv``            per period: cumulative, new (active, stopped) hectares
``expansion_csv``          every pair of periods: factors and yearly growth
``overlay_layers_csv``     per layer and period: inside / outside the layer
``overlay_features_csv``   per layer, feature and period: inside / new inside
``reference_csv``          agreement with the reference (when compared)
``gpkg``                   ``period_<id>`` (new area of that period; stopped area for
                           per-period masks) and ``overlay_<id>`` layers, region CRS
``json``                   provenance and the whole result (the ``--json`` output)
=========================  =========================================================
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from asmspotter.analyse.accounting import M2_PER_HA
from asmspotter.analyse.pipeline import AnalysisResult, rounded
from asmspotter.geoio import atomic_output, provenance_base, publish_folder, write_json
from asmspotter.layout import AnalysisFiles

#: The files an analysis folder holds (``reference_csv`` only when compared).
_OUTPUTS = (
    "periods_csv",
    "expansion_csv",
    "overlay_layers_csv",
    "overlay_features_csv",
    "reference_csv",
    "gpkg",
    "json",
)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with atomic_output(path) as tmp:
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in rows:
                writer.writerow(["" if v is None else v for v in row])
    return path


def _num(value: float | None, digits: int = 4) -> float | None:
    if value is None or value != value:
        return None
    return round(float(value), digits)


def layer_name(prefix: str, ident: str) -> str:
    """Return a GeoPackage-safe layer name such as ``period_2020_Q3``."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]+', '_', ident)}"


def _frame(rows: dict[str, list[Any]], geoms: list[Any], src_crs: Any, dst_crs: Any) -> Any:
    frame = gpd.GeoDataFrame(rows, geometry=gpd.GeoSeries(geoms, crs=src_crs))
    return frame.to_crs(dst_crs) if dst_crs is not None else frame


def write_geopackage(result: AnalysisResult, path: Path, crs: Any | None = None) -> Path:
    """Write the period and overlay layers to one GeoPackage, atomically.

    Args:
        result: the analysis.
        path: destination ``.gpkg``.
        crs: CRS of the layers (default: the analysis's equal-area CRS).

    """
    import pyogrio

    acc = result.accounting
    piece_ha = acc.piece_ha()
    geom_ha = np.asarray(shapely.area(acc.pieces), dtype=float) / M2_PER_HA
    layers: list[tuple[str, Any]] = []
    for k, period in enumerate(acc.periods):
        sel = np.flatnonzero(acc.piece_period == k)
        geoms = list(acc.pieces[sel])
        rows: dict[str, list[Any]] = {
            "period": [period.id] * len(sel),
            "status": ["new"] * len(sel),
            "area_ha": [round(float(v), 4) for v in piece_ha[sel]],
            "polygon_ha": [round(float(v), 4) for v in geom_ha[sel]],
        }
        if acc.stopped is not None and acc.stopped[k] is not None:
            for part in shapely.get_parts(acc.stopped[k]):
                if part.geom_type != "Polygon" or part.area <= 0:
                    continue
                geoms.append(part)
                rows["period"].append(period.id)
                rows["status"].append("stopped")
                ha = round(part.area / M2_PER_HA, 4)
                rows["area_ha"].append(ha)
                rows["polygon_ha"].append(ha)
        layers.append((layer_name("period", period.id), _frame(rows, geoms, acc.crs, crs)))
    for o in result.overlays:
        rows = {"feature_id": [], "name": [], "area_ha": []}
        for pid in acc.period_ids:
            rows[f"inside_ha_{pid}"] = []
            rows[f"new_inside_ha_{pid}"] = []
        for f in o.features:
            rows["feature_id"].append(f.id)
            rows["name"].append(f.name)
            rows["area_ha"].append(round(f.area_ha, 4))
            for z in f.periods:
                rows[f"inside_ha_{z.period}"].append(round(z.inside_ha, 4))
                rows[f"new_inside_ha_{z.period}"].append(round(z.new_inside_ha, 4))
        geoms = list(result.overlay_geoms.get(o.id, [None] * len(o.features)))
        layers.append((layer_name("overlay", o.id), _frame(rows, geoms, acc.crs, crs)))
    with atomic_output(path) as tmp:
        for i, (name, frame) in enumerate(layers):
            pyogrio.write_dataframe(
                frame,
                tmp,
                layer=name,
                driver="GPKG",
                append=i > 0,
                promote_to_multi=True,
                geometry_type="MultiPolygon",
            )
    return path


def write_analysis(
    result: AnalysisResult,
    out_dir: str | os.PathLike[str],
    *,
    crs: Any | None = None,
    arguments: dict[str, Any] | None = None,
) -> list[Path]:
    """Write every output of an analysis into ``out_dir``, published as a unit.

    The files are written into a new folder beside ``out_dir`` that replaces it only when
    all of them are complete; until then (and after any error, kill or full disk) the
    previous analysis stays as it was.

    Args:
        result: the analysis.
        out_dir: the folder (:func:`asmspotter.layout.analysis_files`, ``.folder``); created
            if needed. A folder holding other files than an analysis's is not replaced.
        crs: CRS of the GeoPackage layers (the region's working CRS).
        arguments: the command's arguments, for the provenance record.

    Returns:
        The files written, the JSON record last.

    Raises:
        OutputError: the folder holds other files, or the file system refused a write
            (disk full, permission); names the file.

    """
    final = AnalysisFiles(Path(out_dir))
    names = [getattr(final, name).name for name in _OUTPUTS]
    with publish_folder(final.folder, names) as staging:
        written = _write_files(result, AnalysisFiles(staging), crs, arguments)
    return [final.folder / p.name for p in written]


def _write_files(
    result: AnalysisResult, files: AnalysisFiles, crs: Any | None, arguments: dict[str, Any] | None
) -> list[Path]:
    """Write the analysis's files into ``files.folder``, the JSON record last."""
    acc = result.accounting
    active = acc.kind == "active"
    written = [
        *_period_tables(result, files, active),
        *_overlay_tables(result, files, active),
        *_reference_table(result, files, active),
    ]
    written.append(write_geopackage(result, files.gpkg, crs=crs))

    record = {
        "provenance": {
            **provenance_base(),
            "stage": "analyse",
            "arguments": arguments,
            "outputs": [p.name for p in written] + [files.json.name],
            "gpkg_crs": str(crs) if crs is not None else acc.crs.srs,
        },
        **result.to_dict(),
    }
    written.append(write_json(files.json, record))
    return written


def _period_tables(result: AnalysisResult, files: AnalysisFiles, active: bool) -> list[Path]:
    """Write the per-period areas and the expansion between periods."""
    acc = result.accounting
    written: list[Path] = []
    header = ["period", "start", "end", "cumulative_ha", "new_ha"]
    if active:
        header += ["active_ha", "stopped_ha"]
    rows = []
    for f in acc.figures:
        row = [
            f.period,
            f.start.isoformat(),
            f.end.isoformat(),
            _num(f.cumulative_ha),
            _num(f.new_ha),
        ]
        if active:
            row += [_num(f.active_ha), _num(f.stopped_ha)]
        rows.append(row)
    written.append(_write_csv(files.periods_csv, header, rows))

    header = [
        "from",
        "to",
        "years",
        "cumulative_factor",
        "cumulative_growth_per_year",
        "new_ha_per_year",
    ]
    if active:
        header.append("active_factor")
    rows = []
    for p in result.expansion.pairs:
        row = [
            p.from_period,
            p.to_period,
            _num(p.years),
            _num(p.cumulative_factor, 6),
            _num(p.cumulative_growth_per_year, 6),
            _num(p.new_ha_per_year),
        ]
        if active:
            row.append(_num(p.active_factor, 6))
        rows.append(row)
    written.append(_write_csv(files.expansion_csv, header, rows))
    return written


def _overlay_tables(result: AnalysisResult, files: AnalysisFiles, active: bool) -> list[Path]:
    """Write the overlay statistics per layer and per feature."""
    written: list[Path] = []
    header = [
        "layer",
        "kind",
        "period",
        "inside_ha",
        "outside_ha",
        "new_inside_ha",
        "new_outside_ha",
    ] + (["active_inside_ha"] if active else [])
    rows = []
    for o in result.overlays:
        for z in o.layer:
            row = [
                o.id,
                o.kind,
                z.period,
                _num(z.inside_ha),
                _num(z.outside_ha),
                _num(z.new_inside_ha),
                _num(z.new_outside_ha),
            ]
            if active:
                row.append(_num(z.active_inside_ha))
            rows.append(row)
    written.append(_write_csv(files.overlay_layers_csv, header, rows))

    header = ["layer", "kind", "feature_id", "name", "period", "inside_ha", "new_inside_ha"]
    header += ["active_inside_ha"] if active else []
    rows = []
    for o in result.overlays:
        for feat in o.features:
            for z in feat.periods:
                row = [
                    o.id,
                    o.kind,
                    feat.id,
                    feat.name,
                    z.period,
                    _num(z.inside_ha),
                    _num(z.new_inside_ha),
                ]
                if active:
                    row.append(_num(z.active_inside_ha))
                rows.append(row)
    written.append(_write_csv(files.overlay_features_csv, header, rows))
    return written


def _reference_table(result: AnalysisResult, files: AnalysisFiles, _active: bool) -> list[Path]:
    """Write the agreement with the reference, when compared."""
    written: list[Path] = []
    ref_csv = files.reference_csv
    if result.reference is not None:
        header = [
            "period",
            "reference_period",
            "ours_ha",
            "reference_ha",
            "ours_inside_reference_ha",
            "ours_outside_reference_ha",
            "reference_missed_ha",
            "share_of_ours_in_reference",
            "share_of_reference_found",
        ]
        items = list(result.reference.periods)
        if result.reference.overall is not None:
            items.append(result.reference.overall)
        rows = [
            [
                a.period,
                a.reference_period,
                _num(a.ours_ha),
                _num(a.reference_ha),
                _num(a.ours_inside_reference_ha),
                _num(a.ours_outside_reference_ha),
                _num(a.reference_missed_ha),
                _num(a.share_of_ours_in_reference, 6),
                _num(a.share_of_reference_found, 6),
            ]
            for a in items
        ]
        written.append(_write_csv(ref_csv, header, rows))
    return written


def format_summary(result: AnalysisResult) -> str:
    """Return a plain-text summary of an analysis: areas, expansion, overlays, reference.

    Figures are rounded as in :meth:`AnalysisResult.to_dict` before they are printed.
    """
    acc = result.accounting
    active = acc.kind == "active"

    def f(v: float | None) -> str:
        r = rounded(v)
        return "-" if r is None else f"{r:,.1f}"

    how = (
        f"from {acc.area_attribute!r} by area share"
        if acc.area_attribute
        else "polygon areas, equal-area projection"
    )
    lines = [
        f"{result.region_name or result.region}: mined area per period ({how})",
        f"  {'period':<12}{'cumulative ha':>15}{'new ha':>12}"
        + (f"{'active ha':>12}{'stopped ha':>12}" if active else ""),
    ]
    for fig in acc.figures:
        line = f"  {fig.period:<12}{f(fig.cumulative_ha):>15}{f(fig.new_ha):>12}"
        if active:
            line += f"{f(fig.active_ha):>12}{f(fig.stopped_ha):>12}"
        lines.append(line)
    head = result.expansion.headline
    factor = rounded(head.cumulative_factor, 4) if head is not None else None
    if head is not None and factor is not None:
        rate = rounded(head.cumulative_growth_per_year, 4)
        lines.append(
            f"  expansion {head.from_period} -> {head.to_period}: cumulative area x{factor:.3f}"
            + (f" ({rate * 100:+.1f} % a year)" if rate is not None else "")
            + f"; {f(head.new_ha_per_year)} ha newly mined a year"
        )
    for o in {o.id: o for o in result.overlays}.values():
        if not o.layer:
            continue
        last = o.layer[-1]
        lines.append(
            f"  {o.label} ({o.id}): {f(last.inside_ha)} ha inside, "
            f"{f(last.outside_ha)} ha outside by {last.period}; "
            f"{o.features_in_region} feature(s) in the region"
        )
        features = {feat.id: feat for feat in o.features}  # one per id, as in the JSON
        top = sorted(features.values(), key=lambda ft: -(rounded(ft.periods[-1].inside_ha) or 0))
        for feat in top[:5]:
            inside = rounded(feat.periods[-1].inside_ha) or 0
            if inside > 0:
                lines.append(f"      {feat.name or feat.id} [{feat.id}]: {f(inside)} ha")
    ref = result.reference
    if ref is not None and ref.overall is not None:
        agree = ref.overall
        lines.append(
            f"  vs {ref.label} (polygon areas): {f(agree.ours_inside_reference_ha)} ha of ours "
            f"inside the reference, {f(agree.ours_outside_reference_ha)} ha outside, "
            f"{f(agree.reference_missed_ha)} ha of the reference missed"
        )
    return "\n".join(lines)
