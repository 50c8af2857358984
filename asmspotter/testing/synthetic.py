"""Seeded generator of small Sentinel-2-like scenes for tests.

Each scene is a set of Cloud Optimized GeoTIFFs (one per band, uint16 digital numbers at
10 m, plus an SCL layer at 20 m for L2A or a QA60 layer for L1C) on a real UTM grid, and a
STAC item (as a JSON dict) describing them the way Earth Search v1 does: canonical asset keys,
``raster:bands`` with scale, offset and no-data, ``eo:cloud_cover``, ``proj:epsg`` and
``s2:processing_baseline``. Items dated from 25 January 2022 on use processing baseline
04.00, whose digital numbers carry the +1000 radiometric offset (``offset: -0.1``).

The true surface reflectance of every pixel and which pixels are clear are kept, so tests
can compute the composite they expect.

Example:
    >>> from asmspotter.testing.synthetic import make_scenes
    >>> scenes = make_scenes(tmp_path)                      # doctest: +SKIP
    >>> scenes.expected_median("red")[20, 20]               # doctest: +SKIP

"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from asmspotter.composite.masks import S2CLOUDLESS_BANDS
from asmspotter.geoio import write_cog

#: SCL classes (Sentinel-2 L2A scene classification).
SCL_NO_DATA, SCL_SATURATED, SCL_SHADOW, SCL_VEGETATION = 0, 1, 3, 4
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = 8, 9, 10, 11
#: QA60 bits (L1C): opaque clouds and cirrus.
QA60_OPAQUE, QA60_CIRRUS = 1 << 10, 1 << 11

#: Processing baseline 04.00 (radiometric offset -1000 DN) applies from this day on.
BASELINE_04_FROM = dt.date(2022, 1, 25)

#: Typical land and cloud digital numbers (reflectance x 10000) per canonical band.
LAND_DN: Mapping[str, int] = {
    "coastal": 300,
    "blue": 350,
    "green": 600,
    "red": 400,
    "rededge1": 900,
    "rededge2": 1800,
    "rededge3": 2600,
    "nir": 3000,
    "nir08": 3200,
    "nir09": 1000,
    "cirrus": 10,
    "swir16": 1600,
    "swir22": 800,
}
CLOUD_DN: Mapping[str, int] = {
    "coastal": 6500,
    "blue": 6400,
    "green": 6300,
    "red": 6300,
    "rededge1": 6300,
    "rededge2": 6400,
    "rededge3": 6400,
    "nir": 6500,
    "nir08": 6400,
    "nir09": 3500,
    "cirrus": 800,
    "swir16": 4500,
    "swir22": 3000,
}
_MASKED_SCL = (
    SCL_NO_DATA,
    SCL_SATURATED,
    SCL_SHADOW,
    SCL_CLOUD_MEDIUM,
    SCL_CLOUD_HIGH,
    SCL_CIRRUS,
    SCL_SNOW,
)
_CLOUDY_SCL = (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS)

#: A box of one class in 20 m pixels: (class, row0, row1, col0, col1), end exclusive.
ClassBox = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class SceneSpec:
    """What one synthetic scene looks like.

    Attributes:
        date: acquisition day (sets the processing baseline and its offset).
        boxes: SCL class boxes in 20 m pixels; everything else is vegetation (4).
        cloud_cover: the item's ``eo:cloud_cover``.

    """

    date: dt.date
    boxes: tuple[ClassBox, ...] = ()
    cloud_cover: float = 10.0

    def __post_init__(self) -> None:
        assert 0 <= self.cloud_cover <= 100, "cloud cover is a percentage"
        for box in self.boxes:
            assert len(box) == 5 and box[1] < box[2] and box[3] < box[4], f"bad box {box}"


def default_specs() -> tuple[SceneSpec, ...]:
    """Three scenes around the 04.00 baseline change with known cloud pixels.

    In 10 m pixels of the 64 x 64 grid (the region of :meth:`SyntheticScenes.region` covers
    rows and columns 5-58):

    - rows 8-23, cols 8-23: cloud in all three scenes (composite no-data);
    - rows 24-27, cols 8-23: cloud shadow in scene 0 only;
    - rows 44-45, cols 8-9: saturated in scene 0 only;
    - rows 32-39, cols 32-47: cirrus in scene 1 only;
    - rows 48-51, cols 48-51: snow in scene 2 only;
    - cols 52-55: no-data (DN 0) in scene 2;
    - everything else is clear in all scenes.
    """
    return (
        SceneSpec(
            dt.date(2021, 12, 15),
            (
                (SCL_CLOUD_HIGH, 4, 12, 4, 12),
                (SCL_SHADOW, 12, 14, 4, 12),
                (SCL_SATURATED, 22, 23, 4, 5),
            ),
            cloud_cover=12.0,
        ),
        SceneSpec(
            dt.date(2022, 2, 10),
            ((SCL_CLOUD_MEDIUM, 4, 12, 4, 12), (SCL_CIRRUS, 16, 20, 16, 24)),
            cloud_cover=20.0,
        ),
        SceneSpec(
            dt.date(2022, 3, 5),
            (
                (SCL_CLOUD_HIGH, 4, 12, 4, 12),
                (SCL_SNOW, 24, 26, 24, 26),
                (SCL_NO_DATA, 0, 32, 26, 28),
            ),
            cloud_cover=8.0,
        ),
    )


@dataclass(frozen=True)
class SyntheticScene:
    """One generated scene.

    Attributes:
        item_id: the STAC item id.
        date: acquisition day.
        offset_dn: radiometric offset in DN (0, or -1000 for baseline 04.00).
        item: the STAC item as a dict; asset hrefs are relative (``data/<file>``).
        files: asset key -> generated COG.

    """

    item_id: str
    date: dt.date
    offset_dn: int
    item: Mapping[str, Any]
    files: Mapping[str, Path]


@dataclass(frozen=True)
class SyntheticScenes:
    """A set of scenes on one grid plus the truth needed to check a composite.

    Attributes:
        crs: the UTM CRS (``EPSG:327xx``).
        transform: affine transform of the 10 m grid.
        shape: (rows, cols) of the 10 m grid.
        bands: canonical names of the reflectance bands.
        level: ``L2A`` (SCL) or ``L1C`` (QA60).
        collection: the STAC collection the items belong to.
        scenes: the scenes, oldest first.
        reflectance: band -> (scenes, rows, cols) true reflectance (NaN where no data).
        clear: (scenes, rows, cols) True where the mask layer says clear.
        footprint: (min lon, min lat, max lon, max lat) of the grid.

    """

    crs: str
    transform: Any
    shape: tuple[int, int]
    bands: tuple[str, ...]
    level: Literal["L2A", "L1C"]
    collection: str
    scenes: tuple[SyntheticScene, ...]
    reflectance: Mapping[str, np.ndarray] = field(repr=False)
    clear: np.ndarray = field(repr=False)
    footprint: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        assert self.scenes, "at least one scene"
        assert self.clear.shape == (len(self.scenes), *self.shape)

    @property
    def items(self) -> list[dict[str, Any]]:
        """The STAC items (relative hrefs)."""
        return [dict(s.item) for s in self.scenes]

    @property
    def files(self) -> dict[str, Path]:
        """File name -> path of every generated COG (what a server must serve)."""
        return {p.name: p for s in self.scenes for p in s.files.values()}

    def expected_median(self, band: str) -> np.ndarray:
        """Per-pixel median of the clear observations of ``band`` (NaN where none)."""
        values = np.where(self.clear, self.reflectance[band], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(values, axis=0)

    def pixel_xy(self, row: int, col: int) -> tuple[float, float]:
        """UTM coordinates of the centre of a grid pixel."""
        x, y = self.transform @ (col + 0.5, row + 0.5)
        return float(x), float(y)

    def inner_bbox(self, margin_m: float = 50.0) -> tuple[float, float, float, float]:
        """Return a lon/lat box well inside the grid (an outline every scene covers)."""
        from pyproj import Transformer

        rows, cols = self.shape
        x0, y1 = self.transform @ (0, 0)
        x1, y0 = self.transform @ (cols, rows)
        tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        xs = [x0 + margin_m, x1 - margin_m]
        ys = [y0 + margin_m, y1 - margin_m]
        lons, lats = tr.transform([xs[0], xs[1], xs[0], xs[1]], [ys[0], ys[0], ys[1], ys[1]])
        # the lon/lat box inside the rotated quadrilateral
        return (
            max(lons[0], lons[2]),
            max(lats[0], lats[1]),
            min(lons[1], lons[3]),
            min(lats[2], lats[3]),
        )

    def region(
        self,
        stac_url: str,
        *,
        region_id: str = "synthetic",
        periods: Sequence[Any] | None = None,
        max_cloud: float = 40.0,
    ) -> Any:
        """Return a catalogue :class:`~asmspotter.catalogue.Region` over these scenes.

        Args:
            stac_url: the STAC API to search (a :class:`StacServer`'s ``url``).
            region_id: the region's id.
            periods: catalogue period specs; default one period spanning all scenes.
            max_cloud: the source's scene cloud filter.

        """
        from asmspotter.catalogue import Period, Region, Source

        if periods is None:
            start, end = self.scenes[0].date, self.scenes[-1].date
            parsed: tuple[Period, ...] = (Period("all", start, end),)
        else:
            parsed = tuple(p if isinstance(p, Period) else Period.parse(p) for p in periods)
        return Region(
            id=region_id,
            name=f"Synthetic {region_id}",
            country="Nowhere",
            outline_spec={"bbox": list(self.inner_bbox())},
            crs=self.crs,
            periods=parsed,
            source=Source(stac_url=stac_url, collection=self.collection, max_cloud=max_cloud),
        )

    def write_catalogue(self, path: str | Path, stac_url: str, region_id: str = "loop") -> Path:
        """Write a catalogue file of one region over these scenes, for CLI runs.

        The region (``region_id``, period ``winter``: 2021-12-01 to 2022-03-31) searches
        ``stac_url``; pass the file to a command's ``--catalogue``.
        """
        import yaml

        region = {
            "name": "Loop",
            "country": "Nowhere",
            "outline": {"bbox": list(self.inner_bbox())},
            "periods": [{"id": "winter", "start": "2021-12-01", "end": "2022-03-31"}],
            "source": {"type": "stac", "url": stac_url},
        }
        out = Path(path)
        out.write_text(yaml.safe_dump({"regions": {region_id: region}}))
        return out


def make_scenes(
    directory: str | Path,
    *,
    seed: int = 0,
    specs: Sequence[SceneSpec] | None = None,
    shape: tuple[int, int] = (64, 64),
    crs: str = "EPSG:32719",
    origin: tuple[float, float] = (399960.0, 8566000.0),
    bands: Sequence[str] = ("blue", "green", "red", "nir"),
    level: Literal["L2A", "L1C"] = "L2A",
    all_cloudy: bool = False,
    blocksize: int = 32,
) -> SyntheticScenes:
    """Generate scenes, their COGs and STAC items in ``directory``.

    Args:
        directory: where the COGs go (created).
        seed: seed of the random texture; the same seed gives the same files.
        specs: the scenes (default :func:`default_specs`).
        shape: (rows, cols) of the 10 m grid; both even (the mask layer is 20 m for L2A).
        crs: a UTM CRS.
        origin: (x, y) of the grid's top-left corner in ``crs``.
        bands: canonical reflectance bands to write. For ``L1C`` the s2cloudless bands
            are always added.
        level: ``L2A`` writes an SCL layer; ``L1C`` writes QA60 (10 m) instead.
        all_cloudy: make every pixel of every scene high cloud.
        blocksize: internal COG tile size (small, so that readers make several range requests).

    Returns:
        The scenes and the truth to check composites against.

    """
    from pyproj import CRS

    rows, cols = shape
    assert rows % 2 == 0 and cols % 2 == 0, "shape must be even"
    assert CRS.from_user_input(crs).is_projected, "crs must be projected (UTM)"
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    specs = tuple(specs if specs is not None else default_specs())
    band_list = tuple(dict.fromkeys([*bands, *(S2CLOUDLESS_BANDS if level == "L1C" else ())]))
    unknown = [b for b in band_list if b not in LAND_DN]
    assert not unknown, f"unknown bands {unknown}"
    grid = _Grid(crs, origin, rows, cols, blocksize)
    rng = np.random.default_rng(seed)
    collection = "sentinel-2-l2a" if level == "L2A" else "sentinel-2-l1c"

    scenes: list[SyntheticScene] = []
    refl = {b: np.full((len(specs), rows, cols), np.nan) for b in band_list}
    clear = np.zeros((len(specs), rows, cols), dtype=bool)
    for i, spec in enumerate(specs):
        assert level == "L2A" or all(b[0] != SCL_SATURATED for b in spec.boxes), (
            "L1C has no saturation flag"
        )
        scl20 = np.full((rows // 2, cols // 2), SCL_VEGETATION, dtype=np.uint8)
        for cls, r0, r1, c0, c1 in spec.boxes:
            scl20[r0:r1, c0:c1] = cls
        if all_cloudy:
            scl20[:] = SCL_CLOUD_HIGH
        baseline = "04.00" if spec.date >= BASELINE_04_FROM else "03.01"
        offset_dn = -1000 if baseline == "04.00" else 0
        item_id = f"S2A_SYN_{spec.date:%Y%m%d}_{i}_{level}"
        files: dict[str, Path] = {}
        assets: dict[str, Any] = {}
        scl = np.kron(scl20, np.ones((2, 2), dtype=np.uint8))
        for b in band_list:
            files[b], assets[b], refl[b][i] = grid.write_band(
                out / f"{item_id}_{b}.tif", b, scl, rng, i, offset_dn
            )
        mask = "scl" if level == "L2A" else "qa60"
        files[mask], assets[mask], clear[i] = grid.write_mask(
            out / f"{item_id}_{mask}.tif", scl20, level
        )
        item = _item(item_id, collection, grid, spec, baseline, assets)
        scenes.append(SyntheticScene(item_id, spec.date, offset_dn, item, files))
    return SyntheticScenes(
        crs=crs,
        transform=grid.transform,
        shape=(rows, cols),
        bands=band_list,
        level=level,
        collection=collection,
        scenes=tuple(scenes),
        reflectance=refl,
        clear=clear,
        footprint=grid.footprint,
    )


@dataclass(frozen=True)
class _Grid:
    """The 10 m grid of synthetic scenes and how their files are written."""

    crs: str
    origin: tuple[float, float]
    rows: int
    cols: int
    blocksize: int

    @property
    def transform(self) -> Any:
        from rasterio.transform import from_origin

        return from_origin(self.origin[0], self.origin[1], 10.0, 10.0)

    @property
    def ring(self) -> list[list[float]]:
        """The grid's outline in EPSG:4326 (closed)."""
        from pyproj import Transformer

        to_lonlat = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        x0, y1 = self.origin
        x1, y0 = x0 + 10 * self.cols, y1 - 10 * self.rows
        lons, lats = to_lonlat.transform([x0, x1, x1, x0], [y1, y1, y0, y0])
        ring = [[float(a), float(b)] for a, b in zip(lons, lats, strict=True)]
        return [*ring, ring[0]]

    @property
    def footprint(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat)."""
        lons, lats = zip(*self.ring[:-1], strict=True)
        return (min(lons), min(lats), max(lons), max(lats))

    def write_band(
        self,
        path: Path,
        band: str,
        scl: np.ndarray,
        rng: np.random.Generator,
        i: int,
        offset_dn: int,
    ) -> tuple[Path, dict[str, Any], np.ndarray]:
        """Write scene ``i``'s band; return the file, its asset and the true reflectance."""
        shape = (self.rows, self.cols)
        nodata = scl == SCL_NO_DATA
        dn = LAND_DN[band] + rng.integers(0, 400, size=shape) + 50 * i
        dn = np.where(
            np.isin(scl, _CLOUDY_SCL), CLOUD_DN[band] + rng.integers(0, 200, size=shape), dn
        )
        dn = np.where(scl == SCL_SHADOW, dn // 3, dn)
        stored = (dn - offset_dn).astype(np.uint16)
        stored[scl == SCL_SATURATED] = 65535
        stored[nodata] = 0
        write_cog(
            path,
            stored,
            crs=self.crs,
            transform=self.transform,
            nodata=0,
            band_names=[band],
            blocksize=self.blocksize,
        )
        asset = _asset(path.name, band, "uint16", 10, scale=1e-4, offset=offset_dn / 10000)
        return path, asset, np.where(nodata, np.nan, dn / 10000.0)

    def write_mask(
        self, path: Path, scl20: np.ndarray, level: str
    ) -> tuple[Path, dict[str, Any], np.ndarray]:
        """Write the SCL (L2A, 20 m) or QA60 (L1C) layer; return it, its asset and the clear."""
        from rasterio.transform import from_origin

        scl = np.kron(scl20, np.ones((2, 2), dtype=np.uint8))
        if level == "L2A":
            transform = from_origin(self.origin[0], self.origin[1], 20.0, 20.0)
            write_cog(
                path,
                scl20,
                crs=self.crs,
                transform=transform,
                nodata=0,
                band_names=["scl"],
                blocksize=self.blocksize,
            )
            return path, _asset(path.name, "scl", "uint8", 20), ~np.isin(scl, _MASKED_SCL)
        qa = np.zeros((self.rows, self.cols), dtype=np.uint16)
        qa[np.isin(scl, (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH))] = QA60_OPAQUE
        qa[scl == SCL_CIRRUS] = QA60_CIRRUS
        write_cog(
            path,
            qa,
            crs=self.crs,
            transform=self.transform,
            band_names=["qa60"],
            blocksize=self.blocksize,
        )
        asset = _asset(path.name, "qa60", "uint16", 10, nodata=None)
        return path, asset, (qa == 0) & ~(scl == SCL_NO_DATA)


def _item(
    item_id: str,
    collection: str,
    grid: _Grid,
    spec: SceneSpec,
    baseline: str,
    assets: Mapping[str, Any],
) -> dict[str, Any]:
    """Return a scene's STAC item, as Earth Search writes them."""
    from pyproj import CRS

    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": collection,
        "bbox": list(grid.footprint),
        "geometry": {"type": "Polygon", "coordinates": [grid.ring]},
        "properties": {
            "datetime": f"{spec.date.isoformat()}T14:57:12.024000Z",
            "platform": "sentinel-2a",
            "constellation": "sentinel-2",
            "eo:cloud_cover": spec.cloud_cover,
            "proj:epsg": CRS.from_user_input(grid.crs).to_epsg(),
            "s2:processing_baseline": baseline,
        },
        "assets": dict(assets),
        "links": [],
    }


def _asset(
    name: str,
    band: str,
    data_type: str,
    resolution: int,
    *,
    scale: float | None = None,
    offset: float | None = None,
    nodata: int | None = 0,
) -> dict[str, Any]:
    raster: dict[str, Any] = {"data_type": data_type, "spatial_resolution": resolution}
    if nodata is not None:
        raster["nodata"] = nodata
    if scale is not None:
        raster["scale"] = scale
        raster["offset"] = offset or 0.0
    asset: dict[str, Any] = {
        "href": f"data/{name}",
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "title": band,
        "roles": ["data"],
        "raster:bands": [raster],
    }
    if band in LAND_DN:
        asset["eo:bands"] = [{"name": band, "common_name": band}]
    return asset


def planetary_computer_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a synthetic item shaped like Planetary Computer's Sentinel-2 L2A items.

    Assets are keyed by band id (``B04``, ``SCL``) with ``eo:bands`` naming the band id and
    its common name, and carry no ``raster:bands`` (so no scale or offset): readers must
    take the offset from ``s2:processing_baseline``, as with Planetary Computer. Hrefs and
    files are unchanged.
    """
    import copy

    from asmspotter.bands import S2_BAND_IDS

    out = copy.deepcopy(dict(item))
    assets: dict[str, Any] = {}
    for key, asset in out["assets"].items():
        band_id = S2_BAND_IDS.get(key, key)
        asset.pop("raster:bands", None)
        if "eo:bands" in asset:
            asset["eo:bands"] = [{"name": band_id, "common_name": key}]
        assets[band_id] = asset
    out["assets"] = assets
    return out
