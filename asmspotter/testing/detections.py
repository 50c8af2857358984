"""Seeded detection sets for tests: the files ``asmspotter detect`` writes, from a given mask.

:func:`write_detection` writes a period's complete detection
(:class:`asmspotter.layout.DetectionFiles`): the probability and mask COGs, the polygons
(GeoPackage in the mask's CRS, GeoJSON in EPSG:4326) and ``detection.json`` last, with the
results (polygon count and area, mined and observed pixels) computed from what it wrote and
the settings given (default: the shipped model card's), as the detector records them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import geoio, layout
from asmspotter.layout import MASK_NODATA, DetectionFiles


def default_settings() -> dict[str, Any]:
    """Return the shipped model card's detection settings, as ``detection.json`` holds them."""
    from asmspotter.detect.card import load_card

    card, path = load_card()
    return {
        "model": {"name": card.name, "card": str(path), "weights_sha256": card.sha256},
        "threshold": card.pixel_threshold,
        "min_area_ha": card.min_area_ha,
        "inference": {
            "device": "cpu",
            "tile_size": card.tile_size,
            "tile_overlap": card.tile_overlap,
            "tta": card.tta,
        },
    }


def write_detection(
    region: str,
    period: str,
    mask: np.ndarray,
    *,
    crs: str,
    transform: Any,
    polygons: Sequence[Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    base: str | Path | None = None,
    composite: Mapping[str, Any] | None = None,
) -> DetectionFiles:
    """Write a complete detection of one period, consistent with its provenance.

    Args:
        region: region id.
        period: period id.
        mask: uint8 (rows, cols): 1 mining, 0 not, :data:`MASK_NODATA` unobserved.
        crs: the mask's CRS (also the polygons').
        transform: the mask's affine transform.
        polygons: the mining polygons (default: the mask's mining pixels vectorised).
        settings: ``model``, ``threshold``, ``min_area_ha`` and ``inference`` entries to
            record (default :func:`default_settings`; given keys replace the defaults').
        base: the output folder (default: ``ASMSPOTTER_OUTPUT``).
        composite: the ``input`` record (default: no size or checksum, so the cached
            composite, if any, is not compared with it).

    Returns:
        The files written.

    """
    import geopandas as gpd
    import rasterio.features
    import shapely

    files = layout.detection_files(region, period, base=base)
    files.folder.mkdir(parents=True, exist_ok=True)
    prob = np.where(mask == 1, 0.9, 0.1).astype("float32")
    prob[mask == MASK_NODATA] = np.nan
    geoio.write_cog(files.probability, prob, crs=crs, transform=transform, nodata=float("nan"))
    geoio.write_cog(files.mask, mask.astype("uint8"), crs=crs, transform=transform, nodata=255)
    if polygons is None:
        shapes = rasterio.features.shapes(mask, mask=mask == 1, transform=transform)
        polygons = [shapely.geometry.shape(g) for g, _ in shapes]
    polys = list(polygons)
    frame = gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(polys) + 1, dtype=np.int64),
            "region": [region] * len(polys),
            "period": [period] * len(polys),
            "area_ha": np.array([p.area / 1e4 for p in polys], dtype=np.float64),
        },
        geometry=gpd.GeoSeries(polys, crs=crs),
    )
    kw: dict[str, Any] = {"engine": "pyogrio"}
    if not polys:
        kw["geometry_type"] = "MultiPolygon"
    with geoio.atomic_output(files.gpkg) as tmp:
        frame.to_file(tmp, driver="GPKG", layer="mining", **kw)
    with geoio.atomic_output(files.geojson) as tmp:
        frame.to_crs("EPSG:4326").to_file(tmp, driver="GeoJSON", layer="mining", **kw)
    px_ha = abs(transform.a * transform.e) / 1e4
    record = {**default_settings(), **dict(settings or {})}
    prov = {
        **geoio.provenance_base(),
        "stage": "detect",
        "region": region,
        "period": period,
        "input": dict(composite or {"composite": "synthetic"}),
        **record,
        "results": {
            "valid_fraction": float(np.count_nonzero(mask != MASK_NODATA)) / mask.size,
            "mining_area_ha_mask": int(np.count_nonzero(mask == 1)) * px_ha,
            "polygons": len(polys),
            "mining_area_ha_polygons": float(frame["area_ha"].sum()) if polys else 0.0,
        },
        "outputs": {
            "probability": files.probability.name,
            "mask": files.mask.name,
            "polygons_region_crs": files.gpkg.name,
            "polygons_wgs84": files.geojson.name,
        },
    }
    geoio.write_json(files.provenance, prov)
    return files
