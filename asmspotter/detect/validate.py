"""Validation of the detector on the real La Pampa 2019 scene against Amazon Mining Watch.

Figures (definitions also in the model card):

- **precision**: share of the detected mining area (pixel threshold, minimum mapping unit)
  inside AMW's footprint up to 2019 (``mining_201800`` + ``mining_201900``) buffered by 100 m;
- **polygon recall**: share of that footprint's polygons (single parts, clipped to the tile,
  at least 1 ha inside it) that contain detected mining.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asmspotter import paths
from asmspotter.detect.card import ModelCard, to_model_input

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from asmspotter.detect.model import MiningNet

SCENE_DIR = ("scenes", "madre-de-dios-la-pampa")
SCENE_2019 = "R1_original_2019-08-18.tif"
FOOTPRINTS_2019 = ("mining_201800.geojson", "mining_201900.geojson")
BUFFER_M = 100.0
MIN_FOOTPRINT_HA = 1.0


@dataclass(frozen=True)
class LaPampaResult:
    """Agreement of a detection with AMW's footprint on the La Pampa tile.

    Attributes:
        precision: detected area inside the buffered footprint / detected area.
        polygon_recall: footprint polygons containing detected mining / footprint polygons.
        detected_ha: detected mining area (after the minimum mapping unit).
        detected_inside_ha: part of it inside the buffered footprint.
        footprint_ha: footprint area inside the tile.
        n_footprint_polygons: footprint polygons counted.
        n_hit: of which contain detected mining.
        threshold: pixel threshold used.
        min_area_ha: minimum mapping unit used.
        figure: path of the figure, if written.

    """

    precision: float | None
    polygon_recall: float | None
    detected_ha: float
    detected_inside_ha: float
    footprint_ha: float
    n_footprint_polygons: int
    n_hit: int
    threshold: float
    min_area_ha: float
    figure: Path | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "scene": f"{'/'.join(SCENE_DIR)}/{SCENE_2019}",
            "reference": " + ".join(FOOTPRINTS_2019) + f", buffered {BUFFER_M:g} m",
            "precision_area_within_footprint": self.precision,
            "footprint_polygon_recall": self.polygon_recall,
            "detected_ha": round(self.detected_ha, 2),
            "detected_inside_ha": round(self.detected_inside_ha, 2),
            "footprint_ha_in_tile": round(self.footprint_ha, 2),
            "footprint_polygons": self.n_footprint_polygons,
            "footprint_polygons_with_detection": self.n_hit,
            "threshold": self.threshold,
            "min_area_ha": self.min_area_ha,
            "targets": {"precision": 0.85, "polygon_recall": 0.80},
        }


def la_pampa_available() -> bool:
    """Return True when the La Pampa scene and the AMW footprints are in the shared data."""
    root = paths.shared_data_dir()
    files = [root.joinpath(*SCENE_DIR, SCENE_2019)]
    files += [root / "amw" / "footprints" / f for f in FOOTPRINTS_2019]
    return all(f.is_file() for f in files)


def footprint_polygons(crs: Any, bounds: tuple[float, float, float, float]) -> Any:
    """AMW footprint up to 2019 as single-part polygons clipped to ``bounds`` (in ``crs``)."""
    import geopandas as gpd
    from shapely.geometry import box

    tile = box(*bounds)
    parts = []
    for f in FOOTPRINTS_2019:
        g = gpd.read_file(paths.require_shared_data("amw", "footprints", f)).to_crs(crs)
        g = g[g.intersects(tile)].explode(index_parts=False)
        parts.append(g.clip(tile))
    fp = gpd.GeoDataFrame(
        geometry=[geom for g in parts for geom in g.geometry if not geom.is_empty], crs=crs
    ).explode(index_parts=False)
    return fp[fp.area >= MIN_FOOTPRINT_HA * 1e4].reset_index(drop=True)


def validate_la_pampa(
    model: MiningNet,
    card: ModelCard,
    figure: str | Path | None = None,
    threshold: float | None = None,
    min_area_ha: float | None = None,
    precision: str = "fp32",
) -> LaPampaResult:
    """Run the model on the La Pampa 2019 scene and compare with AMW's footprint.

    The scene is a uint8 visualisation (radiometry ``display``, bands red, green, blue). The
    model runs with the card's tiling and test-time views (``card.tta``).

    Args:
        model: the network.
        card: its card (threshold, minimum mapping unit, tiling).
        figure: where to save the figure (scene, probability, detection with the reference
            outline), or None.
        threshold: pixel threshold (default: the card's).
        min_area_ha: minimum mapping unit (default: the card's).
        precision: what the forward pass computes in, ``fp32`` or ``bf16``.

    """
    import geopandas as gpd
    import rasterio
    import shapely
    from shapely.geometry import box

    from asmspotter.detect.polygons import pixel_polygons
    from asmspotter.detect.tiling import predict_array

    thr = card.pixel_threshold if threshold is None else threshold
    mmu = card.min_area_ha if min_area_ha is None else min_area_ha
    scene = paths.require_shared_data(*SCENE_DIR, SCENE_2019)
    with rasterio.open(scene) as src:
        rgb = src.read([1, 2, 3])
        crs, transform, bounds = src.crs, src.transform, tuple(src.bounds)
    x, valid = to_model_input(rgb, "display")
    prob = predict_array(
        model,
        x,
        valid,
        tile_size=card.tile_size,
        overlap=card.tile_overlap,
        views=card.tta,
        precision=precision,
    )
    mask = np.nan_to_num(prob, nan=0.0) >= thr
    det = [p for p in pixel_polygons(mask, mask, transform) if p.area >= mmu * 1e4]
    fp = footprint_polygons(crs, bounds)
    det_union = shapely.union_all(det) if det else shapely.Polygon()
    ref = shapely.union_all(list(fp.geometry)).buffer(BUFFER_M)
    det_ha = det_union.area / 1e4
    inside_ha = det_union.intersection(ref).area / 1e4
    hits = [bool(g.intersection(det_union).area >= 100.0) for g in fp.geometry]
    result = LaPampaResult(
        precision=inside_ha / det_ha if det_ha > 0 else None,
        polygon_recall=sum(hits) / len(hits) if hits else None,
        detected_ha=det_ha,
        detected_inside_ha=inside_ha,
        footprint_ha=float(shapely.union_all(list(fp.geometry)).intersection(box(*bounds)).area)
        / 1e4,
        n_footprint_polygons=len(hits),
        n_hit=sum(hits),
        threshold=thr,
        min_area_ha=mmu,
        figure=Path(figure) if figure else None,
    )
    if figure:
        from asmspotter.geoio import atomic_output

        det_gdf = gpd.GeoDataFrame(geometry=det, crs=crs)
        fig = validation_figure(rgb, prob, det_gdf, fp, ref, bounds, result)
        with atomic_output(Path(figure)) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    return result


def validation_figure(
    rgb: np.ndarray,
    prob: np.ndarray,
    detected: Any,
    footprint: Any,
    buffered: Any,
    bounds: tuple[float, float, float, float],
    result: LaPampaResult,
) -> Figure:
    """Return a three-panel figure: scene, probability, detection against the reference.

    The figure is a plain :class:`matplotlib.figure.Figure` (no pyplot, no backend is
    selected): save it with ``fig.savefig``, or show it in a notebook.
    """
    import geopandas as gpd
    from matplotlib.figure import Figure

    ext = (bounds[0], bounds[2], bounds[1], bounds[3])
    img = np.moveaxis(rgb, 0, -1)
    fig = Figure(figsize=(18, 6.4), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(img, extent=ext)
    axes[0].set_title("Sentinel-2, La Pampa, 2019-08-18 (display stretch)")
    im = axes[1].imshow(prob, extent=ext, vmin=0, vmax=1, cmap="magma")
    axes[1].set_title("mining probability")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    axes[2].imshow(img, extent=ext, alpha=0.75)
    if len(detected):
        detected.plot(ax=axes[2], facecolor="red", edgecolor="red", alpha=0.55, linewidth=0.3)
    footprint.boundary.plot(ax=axes[2], color="yellow", linewidth=1.0)
    gpd.GeoSeries([buffered], crs=footprint.crs).boundary.plot(
        ax=axes[2], color="cyan", linewidth=0.8, linestyle="--"
    )
    prec = "n/a" if result.precision is None else f"{result.precision:.1%}"
    rec = "n/a" if result.polygon_recall is None else f"{result.polygon_recall:.1%}"
    axes[2].set_title(
        f"detected (red) vs AMW <=2019 (yellow; +100 m cyan)\n"
        f"detected area within footprint: {prec}\n"
        f"footprint polygons hit: {rec} ({result.n_hit}/{result.n_footprint_polygons})"
    )
    for ax in axes:
        ax.set_xlim(ext[0], ext[1])
        ax.set_ylim(ext[2], ext[3])
        # (geopandas labels the CRS axes of the panels it draws on, in a smaller font)
        ax.set_xlabel("easting (m, EPSG:32719)", fontsize="medium")
        ax.set_ylabel("")
        ax.ticklabel_format(useOffset=False, style="plain")
    axes[0].set_ylabel("northing (m)")
    return fig
