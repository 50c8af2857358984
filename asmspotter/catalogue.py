"""The region catalogue: which places and periods ASMSpotter knows, and their overlays.

The catalogue is a YAML file (``data/regions.yaml`` by default). :func:`load_catalogue`
validates every entry and raises :class:`~asmspotter.errors.CatalogueError` naming the
offending region and field. A new region is one entry away.

Example:
    >>> from asmspotter.catalogue import get_region
    >>> region = get_region("la-pampa")
    >>> [p.id for p in region.periods]
    ['2019', '2021']

"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from asmspotter import catalogue_checks, paths
from asmspotter.bands import RADIOMETRIES, Radiometry
from asmspotter.errors import CatalogueError, DataError, InputError
from asmspotter.periods import Period, parse_date, plain

OverlayKind = Literal["protected_area", "indigenous_territory", "mining_zone", "other"]
OVERLAY_KINDS: tuple[str, ...] = ("protected_area", "indigenous_territory", "mining_zone", "other")
#: How asset hrefs are signed before they are read: ``auto`` signs for Planetary Computer
#: when the STAC URL's host is planetarycomputer.microsoft.com, ``none`` never signs.
SignMethod = Literal["auto", "none", "planetary-computer"]
SIGN_METHODS: tuple[str, ...] = ("auto", "none", "planetary-computer")

DEFAULT_STAC_URL = "https://earth-search.aws.element84.com/v1"
DEFAULT_COLLECTION = "sentinel-2-l2a"
DEFAULT_L1C_COLLECTION = "sentinel-2-l1c"


def default_catalogue_path() -> Path:
    """Return the catalogue shipped with the project (``data/regions.yaml``)."""
    return paths.project_data_dir() / "regions.yaml"


@dataclass(frozen=True)
class Overlay:
    """A layer of zones to intersect mining with (protected areas, territories, ...).

    Attributes:
        id: short name (``protected-areas``).
        kind: what the zones are; ``mining_zone`` marks legal mining areas.
        label: human-readable name for reports, in English.
        path: local file, already resolved against the shared data folder, if any.
        url: where to download the file from, if it is not local.
        id_field: column holding each feature's id.
        name_field: column holding each feature's name.
        where: attribute filter applied after reading ({column: value}).
        credit: who made the layer and under which licence.
        labels: the label in other languages, per language code (``es``).

    """

    id: str
    kind: OverlayKind
    label: str
    path: Path | None
    url: str | None
    id_field: str
    name_field: str
    where: Mapping[str, Any] | None = None
    credit: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def label_in(self, language: str) -> str:
        """Return the label in ``language`` (the English label where none is given)."""
        return self.labels.get(language, self.label)

    def __post_init__(self) -> None:
        if self.kind not in OVERLAY_KINDS:
            raise ValueError(f"overlay {self.id!r}: kind {self.kind!r} not in {OVERLAY_KINDS}")
        if self.path is None and self.url is None:
            raise ValueError(f"overlay {self.id!r} needs a file or a url")

    def require_path(self) -> Path:
        """Return the local file, raising :class:`DataError` if it is absent."""
        if self.path is None or not self.path.is_file():
            where = self.path if self.path is not None else self.url
            hint = paths.shared_data_hint(self.path) if self.path is not None else ""
            raise DataError(f"overlay {self.id!r}: file not found: {where}{hint}")
        return self.path


@dataclass(frozen=True)
class Source:
    """Where a region's imagery comes from.

    Attributes:
        kind: ``stac`` (search a STAC API) or ``local`` (GeoTIFFs per period).
        stac_url: STAC API root.
        collection: L2A collection searched by default.
        l1c_collection: collection for periods before ``l2a_from``.
        l2a_from: first day the L2A archive covers the region (None: always L2A).
        max_cloud: maximum scene cloud cover in percent for the search.
        local_dir: folder of local GeoTIFFs (resolved against the shared data folder).
        local_files: file name per period id.
        bands: canonical band names of the local files, in order.
        radiometry: how local values are to be read (``display`` or ``reflectance``).
        fallback: ``stac`` to search the STAC API when local files are absent.
        sign: how asset hrefs are signed (:data:`SIGN_METHODS`): ``auto`` (Planetary
            Computer SAS tokens when the STAC URL's host is planetarycomputer.microsoft.com),
            ``planetary-computer`` or ``none``.
        credit: who made the imagery and under which licence (local scenes).

    """

    kind: Literal["stac", "local"] = "stac"
    stac_url: str = DEFAULT_STAC_URL
    collection: str = DEFAULT_COLLECTION
    l1c_collection: str = DEFAULT_L1C_COLLECTION
    l2a_from: dt.date | None = None
    max_cloud: float = 40.0
    local_dir: Path | None = None
    local_files: Mapping[str, str] = field(default_factory=dict)
    bands: tuple[str, ...] = ()
    radiometry: Radiometry = "reflectance"
    fallback: Literal["stac"] | None = None
    sign: SignMethod = "auto"
    credit: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("stac", "local"):
            raise ValueError(f"source type {self.kind!r} must be 'stac' or 'local'")
        if not 0 <= self.max_cloud <= 100:
            raise ValueError(f"max_cloud {self.max_cloud} must be within 0..100")
        if self.kind == "local":
            if self.local_dir is None or not self.local_files:
                raise ValueError("a local source needs 'dir' and 'files'")
            if not self.bands:
                raise ValueError("a local source needs its 'bands'")
        if self.radiometry not in RADIOMETRIES:
            raise ValueError(f"radiometry {self.radiometry!r} must be reflectance or display")
        if self.sign not in SIGN_METHODS:
            raise ValueError(f"sign {self.sign!r} must be one of {', '.join(SIGN_METHODS)}")

    def collection_for(self, period: Period, level: str | None = None) -> str:
        """Return the collection to search for ``period`` (L1C before ``l2a_from``).

        ``level`` (``L1C`` or ``L2A``, e.g. what a model's card asks for) picks that
        level's collection for every period instead.
        """
        if level == "L1C":
            return self.l1c_collection
        if level is None and self.l2a_from is not None and period.start < self.l2a_from:
            return self.l1c_collection
        return self.collection


@dataclass(frozen=True)
class Reference:
    """Reference footprints to compare detections with (e.g. Amazon Mining Watch).

    Attributes:
        label: who made them.
        files: per catalogue period id, the files holding what is new since the previous
            period (the first period's files hold everything up to it).
        area_attribute: column carrying each polygon's mined area in hectares, if any.
        series: every period the reference has, in order, with its files: the catalogue's
            periods named in ``files`` and the reference's own periods beyond them (a year
            such as ``2022``), so a briefing can follow the reference's whole timeline.
        credit: who made the footprints and under which licence.

    """

    label: str
    files: Mapping[str, tuple[Path, ...]]
    area_attribute: str | None = None
    series: tuple[tuple[Period, tuple[Path, ...]], ...] = ()
    credit: str | None = None

    @property
    def periods(self) -> tuple[Period, ...]:
        """The reference's periods, in chronological order."""
        return tuple(period for period, _ in self.series)


@dataclass(frozen=True)
class RegionContext:
    """A region's background for briefings: a paragraph per language and its sources.

    Attributes:
        text: per language code (``en``, ``es``), the paragraph.
        sources: the works the paragraphs cite.

    """

    text: Mapping[str, str]
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Region:
    """A place to watch, with its periods, overlays and imagery source.

    The outline is read lazily (it may live in a boundary file) and cached.
    """

    id: str
    name: str
    country: str
    outline_spec: Mapping[str, Any]
    crs: str
    periods: tuple[Period, ...]
    overlays: tuple[Overlay, ...] = ()
    source: Source = field(default_factory=Source)
    reference: Reference | None = None
    context: RegionContext | None = None

    def __post_init__(self) -> None:
        ids = [p.id for p in self.periods]
        if not ids:
            raise ValueError("a region needs at least one period")
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate period ids {ids}")
        starts = [p.start for p in self.periods]
        if starts != sorted(starts):
            raise ValueError(f"periods {ids} are not in chronological order")
        oids = [o.id for o in self.overlays]
        if len(set(oids)) != len(oids):
            raise ValueError(f"duplicate overlay ids {oids}")

    def period(self, period_id: str | int) -> Period:
        """Return the period with this id.

        Raises:
            InputError: no such period, naming the known ones.

        """
        key = str(period_id)
        for p in self.periods:
            if p.id == key:
                return p
        known = ", ".join(p.id for p in self.periods)
        raise InputError(f"region {self.id!r} has no period {key!r}; known periods: {known}")

    def select_periods(self, period_ids: Sequence[str | int] | None) -> tuple[Period, ...]:
        """Return the named periods (all when ``period_ids`` is empty or None)."""
        if not period_ids:
            return self.periods
        return tuple(self.period(p) for p in period_ids)

    def overlay(self, overlay_id: str) -> Overlay:
        """Return the overlay with this id, raising :class:`InputError` if unknown."""
        for o in self.overlays:
            if o.id == overlay_id:
                return o
        known = ", ".join(o.id for o in self.overlays) or "none"
        raise InputError(f"region {self.id!r} has no overlay {overlay_id!r}; known: {known}")

    @functools.cached_property
    def outline(self) -> Any:
        """The region's outline as a shapely geometry in EPSG:4326."""
        return _load_outline(self.id, self.outline_spec)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(min lon, min lat, max lon, max lat) of the outline."""
        return cast(tuple[float, float, float, float], tuple(self.outline.bounds))


def _load_outline(region_id: str, spec: Mapping[str, Any]) -> Any:
    from shapely.geometry import box

    if "bbox" in spec:
        return box(*spec["bbox"])
    import geopandas as gpd
    from shapely import make_valid, union_all

    path = paths.shared_data_dir() / str(spec["file"])
    if not path.is_file():
        raise DataError(
            f"region {region_id!r}: outline file not found: {path} "
            f"(set {paths.SHARED_DATA_ENV} to the shared data folder)"
        )
    frame = gpd.read_file(path)
    for column, value in (spec.get("where") or {}).items():
        if column not in frame.columns:
            raise CatalogueError(f"region {region_id!r}: outline file has no column {column!r}")
        frame = frame[frame[column] == value]
    if frame.empty:
        where = spec.get("where")
        raise CatalogueError(f"region {region_id!r}: no outline feature matches {where}")
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs("EPSG:4326")
    return make_valid(union_all(frame.geometry.values))


class Catalogue(Mapping[str, Region]):
    """A validated, read-only mapping of region id to :class:`Region`."""

    def __init__(self, regions: Mapping[str, Region], path: Path) -> None:
        self._regions = dict(regions)
        self.path = path

    def __getitem__(self, region_id: str) -> Region:
        try:
            return self._regions[region_id]
        except KeyError:
            known = ", ".join(sorted(self._regions))
            raise InputError(f"unknown region {region_id!r}; known regions: {known}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._regions)

    def __len__(self) -> int:
        return len(self._regions)


def load_catalogue(path: str | Path | None = None, *, check_files: bool | None = None) -> Catalogue:
    """Read and validate a region catalogue.

    Args:
        path: the YAML file; defaults to ``data/regions.yaml``.
        check_files: check that overlay, outline and reference files exist. By default
            they are checked when the shared data folder is present.

    Besides each entry's fields, the checks of :mod:`asmspotter.catalogue_checks` run: no
    key given twice, outlines inside their CRS's area of use (not with longitude and
    latitude swapped), outline filters that match a feature (when the files are checked),
    periods that neither overlap nor predate Sentinel-2.

    Raises:
        CatalogueError: the file is unreadable or an entry is invalid; the message names
            the region and the field, on one line.

    """
    cat_path = Path(path) if path is not None else default_catalogue_path()
    doc = catalogue_checks.read_yaml(cat_path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("regions"), Mapping):
        raise CatalogueError(f"{cat_path}: expected a mapping with a 'regions' section")
    if check_files is None:
        check_files = paths.shared_data_available()
    defaults = doc.get("defaults") or {}
    regions: dict[str, Region] = {}
    for region_id, entry in doc["regions"].items():
        try:
            regions[str(region_id)] = _parse_region(str(region_id), entry, defaults, check_files)
        except CatalogueError as exc:
            raise CatalogueError(f"{cat_path.name}: {exc}") from None
        except (ValueError, TypeError, KeyError) as exc:
            msg = exc.args[0] if exc.args else exc
            raise CatalogueError(f"{cat_path.name}: region {region_id!r}: {msg}") from None
    return Catalogue(regions, cat_path)


def get_region(region_id: str, catalogue: str | Path | None = None) -> Region:
    """Return one region of the catalogue, raising :class:`InputError` if unknown."""
    return load_catalogue(catalogue)[region_id]


_REGION_KEYS = set("name country outline crs periods overlays source reference context".split())


def _parse_region(
    region_id: str, entry: Any, defaults: Mapping[str, Any], check_files: bool
) -> Region:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", region_id):
        raise ValueError("region ids are lower-case letters, digits and '-'")
    if not isinstance(entry, Mapping):
        raise ValueError("entry must be a mapping")
    unknown = set(entry) - _REGION_KEYS
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_REGION_KEYS)}")
    for key in ("name", "country", "outline", "periods"):
        if key not in entry:
            raise ValueError(f"missing field {key!r}")
    outline = _parse_outline(entry["outline"], check_files)
    periods = []
    for spec in entry["periods"] or []:
        try:
            periods.append(Period.parse(spec))
        except ValueError as exc:
            text = str(exc)
            message = text if text.startswith("period ") else f"period {plain(spec)}: {text}"
            raise ValueError(message) from None
    crs = str(entry.get("crs") or _utm_crs_for(outline))
    catalogue_checks.check_crs(crs)
    if "bbox" in outline:
        catalogue_checks.check_outline_bbox(outline["bbox"], crs)
    elif check_files:
        path = paths.shared_data_dir() / str(outline["file"])
        catalogue_checks.check_outline_file(path, outline.get("where"), crs)
    overlays = tuple(_parse_overlay(o, check_files) for o in entry.get("overlays") or [])
    source = _parse_source({**(defaults.get("source") or {}), **(entry.get("source") or {})})
    for pid in source.local_files:
        if pid not in {p.id for p in periods}:
            raise ValueError(f"source: file for unknown period {pid!r}")
    reference = _parse_reference(entry.get("reference"), periods, check_files)
    region = Region(
        id=region_id,
        name=str(entry["name"]),
        country=str(entry["country"]),
        outline_spec=outline,
        crs=crs,
        periods=tuple(periods),
        overlays=overlays,
        source=source,
        reference=reference,
        context=_parse_context(entry.get("context")),
    )
    catalogue_checks.check_periods(region.periods, satellite=source.kind == "stac")
    return region


def _parse_context(spec: Any) -> RegionContext | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("text"), Mapping):
        raise ValueError("context must be {text: {language: paragraph}, sources: [...]}")
    sources = spec.get("sources") or []
    return RegionContext(
        text={str(k): " ".join(str(v).split()) for k, v in spec["text"].items()},
        sources=tuple(" ".join(str(v).split()) for v in sources),
    )


def _parse_labels(oid: str, spec: Any) -> dict[str, str]:
    """Return an overlay's labels per language: ``label: text`` or ``label: {en: ..., es: ...}``."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        return {"en": " ".join(str(spec).split())}
    if "en" not in spec:
        raise ValueError(f"overlay {oid!r}: label {plain(spec)} needs an 'en' entry")
    return {str(k): " ".join(str(v).split()) for k, v in spec.items()}


def _parse_outline(spec: Any, check_files: bool) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping) or ("bbox" in spec) == ("file" in spec):
        raise ValueError("outline must be {bbox: [...]} or {file: ..., where: {...}}")
    if "bbox" in spec:
        bbox = [float(v) for v in spec["bbox"]]
        if len(bbox) != 4:
            raise ValueError(f"outline bbox {bbox} must have 4 numbers")
        x0, y0, x1, y1 = bbox
        if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
            raise ValueError(
                f"invalid outline bbox {bbox}: expected min_lon < max_lon, min_lat < max_lat "
                "within lon -180..180, lat -90..90"
            )
        return {"bbox": bbox}
    if check_files:
        _check_shared_file("outline", str(spec["file"]))
    return dict(spec)


def _bbox_center(spec: Mapping[str, Any]) -> tuple[float, float] | None:
    if "bbox" in spec:
        x0, y0, x1, y1 = spec["bbox"]
        return (x0 + x1) / 2, (y0 + y1) / 2
    return None


def utm_crs(lon: float, lat: float) -> str:
    """Return the WGS 84 / UTM zone CRS (``EPSG:326zz`` / ``EPSG:327zz``) of a point."""
    zone = min(60, int((lon + 180.0) // 6.0) + 1)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _utm_crs_for(outline: Mapping[str, Any]) -> str:
    center = _bbox_center(outline)
    if center is None:
        raise ValueError("give a 'crs' for outlines read from files")
    return utm_crs(*center)


def _check_shared_file(what: str, rel: str) -> Path:
    path = paths.shared_data_dir() / rel
    if not path.is_file():
        raise ValueError(f"{what} file {rel!r} not found in {paths.shared_data_dir()}")
    return path


def _parse_overlay(spec: Any, check_files: bool) -> Overlay:
    if not isinstance(spec, Mapping) or "id" not in spec:
        raise ValueError(f"overlay {plain(spec)} must be a mapping with an 'id'")
    oid = str(spec["id"])
    for key in ("kind", "id_field", "name_field"):
        if key not in spec:
            raise ValueError(f"overlay {oid!r}: missing field {key!r}")
    labels = _parse_labels(oid, spec.get("label"))
    file = spec.get("file")
    if file is not None and check_files:
        try:
            path = _check_shared_file("overlay", str(file))
            if spec.get("where"):
                catalogue_checks.filtered_bounds(path, spec["where"], "overlay")
        except ValueError as exc:
            raise ValueError(f"overlay {oid!r}: {exc}") from None
    try:
        return Overlay(
            id=oid,
            kind=cast(OverlayKind, str(spec["kind"])),
            label=labels.get("en", oid),
            labels=labels,
            path=(paths.shared_data_dir() / str(file)) if file is not None else None,
            url=spec.get("url"),
            id_field=str(spec["id_field"]),
            name_field=str(spec["name_field"]),
            where=dict(spec["where"]) if spec.get("where") else None,
            credit=spec.get("credit"),
        )
    except ValueError as exc:
        raise ValueError(str(exc)) from None


_SOURCE_KEYS = {
    "type",
    "url",
    "collection",
    "l1c_collection",
    "l2a_from",
    "max_cloud",
    "dir",
    "files",
    "bands",
    "radiometry",
    "fallback",
    "sign",
    "credit",
}


def _parse_source(spec: Mapping[str, Any]) -> Source:
    unknown = set(spec) - _SOURCE_KEYS
    if unknown:
        raise ValueError(f"source: unknown field(s) {sorted(unknown)}")
    try:
        return Source(
            kind=spec.get("type", "stac"),
            stac_url=str(spec.get("url", DEFAULT_STAC_URL)),
            collection=str(spec.get("collection", DEFAULT_COLLECTION)),
            l1c_collection=str(spec.get("l1c_collection", DEFAULT_L1C_COLLECTION)),
            l2a_from=parse_date(spec["l2a_from"]) if spec.get("l2a_from") else None,
            max_cloud=float(spec.get("max_cloud", 40)),
            local_dir=(paths.shared_data_dir() / str(spec["dir"])) if spec.get("dir") else None,
            local_files={str(k): str(v) for k, v in (spec.get("files") or {}).items()},
            bands=tuple(str(b) for b in spec.get("bands") or ()),
            radiometry=spec.get("radiometry", "reflectance"),
            fallback=spec.get("fallback"),
            sign=_sign_method(spec.get("sign", "auto")),
            credit=spec.get("credit"),
        )
    except ValueError as exc:
        raise ValueError(f"source: {exc}") from None


def _sign_method(value: Any) -> SignMethod:
    if value is False or value is None:  # YAML ``sign: false`` / ``sign: null``
        return "none"
    return cast(SignMethod, str(value))


def _parse_reference(spec: Any, periods: Sequence[Period], check_files: bool) -> Reference | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("files"), Mapping):
        raise ValueError("reference must be {label, files: {period: file(s)}, area_attribute}")
    known = {p.id: p for p in periods}
    series: list[tuple[Period, tuple[Path, ...]]] = []
    for pid, value in spec["files"].items():
        try:  # a catalogue period, or the reference's own period beyond them
            period = known.get(str(pid)) or Period.parse(pid)
        except ValueError as exc:
            raise ValueError(f"reference: {exc}") from None
        rels = [value] if isinstance(value, str) else list(value)
        if check_files:
            for rel in rels:
                try:
                    _check_shared_file("reference", str(rel))
                except ValueError as exc:
                    raise ValueError(f"reference: {exc}") from None
        series.append((period, tuple(paths.shared_data_dir() / str(r) for r in rels)))
    if any(b.start <= a.end for (a, _), (b, _) in zip(series, series[1:], strict=False)):
        raise ValueError(f"reference: periods {[p.id for p, _ in series]} overlap or are unordered")
    return Reference(
        label=str(spec.get("label", "reference")),
        files={p.id: f for p, f in series if p.id in known},
        area_attribute=spec.get("area_attribute"),
        series=tuple(series),
        credit=spec.get("credit"),
    )
