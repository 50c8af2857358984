"""The detector's outputs as the analysis reads them: whole sets, of one run each, alike.

A period's detection (:class:`asmspotter.layout.DetectionFiles`) is a set of files whose
provenance, ``detection.json``, is written last. The analysis reads a period only when

- the set is complete: the provenance, the polygons and the mask are there (a mask alone,
  or polygons without their provenance, are what an interrupted run leaves: refused);
- its files belong to its provenance (:func:`check_belongs`): the polygons' count and area
  and the mask's mining and observed pixels are those the provenance records, and any
  per-file size and checksum it records match, so files of two runs are never combined;
- it was made from the composite now in the cache, when that is there (the composite's
  checksum, else its size, as the provenance records it).

Across periods, :func:`check_same_settings` refuses to combine detections made with
different settings (model, weights, threshold, minimum mapping unit, tiling, test-time
views): one line names the periods and settings that differ and the ``asmspotter detect``
command that redoes the odd ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asmspotter import geoio, layout
from asmspotter.errors import DataError
from asmspotter.layout import MASK_NODATA, DetectionFiles

#: The settings that shape a detection, as ``detection.json`` records them: name ->
#: (path of keys in the provenance, ``asmspotter detect`` flag that sets it or None).
SETTINGS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "model": (("model", "name"), "--model"),
    "weights_sha256": (("model", "weights_sha256"), None),
    "threshold": (("threshold",), "--threshold"),
    "min_area_ha": (("min_area_ha",), "--min-area-ha"),
    "tile_size": (("inference", "tile_size"), "--tile-size"),
    "tile_overlap": (("inference", "tile_overlap"), None),
    "tta": (("inference", "tta"), "--tta"),
}
#: Where ``detection.json`` records its input composite's checksum (not yet recorded by
#: every version: its size is compared then).
COMPOSITE_SHA256 = ("input", "sha256")
COMPOSITE_BYTES = ("input", "bytes")
#: Where a provenance may record each output file's size and SHA-256 (name -> record).
FILE_DIGESTS = ("files",)


def _get(record: Mapping[str, Any], keys: Sequence[str]) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


@dataclass(frozen=True)
class DetectionRecord:
    """One period's detection, complete, with the settings it was made with.

    Attributes:
        region: region id.
        period: period id.
        files: its files.
        provenance: the contents of ``detection.json``.
        settings: the values of :data:`SETTINGS` (None where not recorded).

    """

    region: str
    period: str
    files: DetectionFiles
    provenance: Mapping[str, Any] = field(repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict)

    def as_input(self) -> dict[str, Any]:
        """Return the record of this detection in the analysis's provenance."""
        return {
            **{k: v for k, v in self.settings.items()},
            "created": self.provenance.get("created"),
            "composite": _get(self.provenance, ("input", "composite")),
        }


def redo(region: str, periods: Sequence[str], flags: Sequence[str] = ()) -> str:
    """Return the ``asmspotter detect`` command that redoes these periods."""
    return " ".join(["asmspotter detect", region, *(f"-p {p}" for p in periods), *flags])


def read_record(region: str, period: str, files: DetectionFiles) -> DetectionRecord | None:
    """Return a period's detection, None when none of its files exists.

    Raises:
        DataError: the set is incomplete (what a killed run leaves), its provenance is
            unreadable or names another region or period.

    """
    present = [p for p in files.files if p.is_file()]
    if not present:
        return None
    needed = (files.provenance, files.gpkg, files.mask)
    lacking = [p.name for p in needed if not p.is_file()]
    if lacking:
        found = ", ".join(p.name for p in present)
        raise DataError(
            f"the detection of {region} {period} in {files.folder} is incomplete ({found} "
            f"without {', '.join(lacking)}; {files.provenance.name} is written last, so a run "
            f"was interrupted); redo it with `{redo(region, [period])}`"
        )
    prov = geoio.read_json(files.provenance)
    if not isinstance(prov, Mapping):
        raise DataError(
            f"{files.provenance} is not a detection record; redo it with `{redo(region, [period])}`"
        )
    for key, want in (("region", region), ("period", period)):
        got = prov.get(key)
        if got not in (None, "", want):
            raise DataError(
                f"{files.provenance} records {key} {got!r}, not {want!r}: it belongs elsewhere; "
                f"redo it with `{redo(region, [period])}`"
            )
    settings = {name: _get(prov, keys) for name, (keys, _) in SETTINGS.items()}
    return DetectionRecord(region, period, files, prov, settings)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def _mask_counts(path: Any) -> tuple[int, int, int, float]:
    """Mining pixels, observed pixels, all pixels and the pixel area (ha) of a mask."""
    import numpy as np
    import rasterio
    from rasterio.errors import RasterioError

    mining = observed = 0
    try:
        with rasterio.open(path) as src:
            for _, window in src.block_windows(1):
                block = src.read(1, window=window)
                mining += int(np.count_nonzero(block == 1))
                observed += int(np.count_nonzero(block != MASK_NODATA))
            size = src.width * src.height
            px_ha = abs(src.transform.a * src.transform.e) / 1e4
    except RasterioError as exc:
        raise DataError(f"mining mask: cannot read {path} ({exc})") from None
    return mining, observed, size, px_ha


def check_belongs(record: DetectionRecord, polygons: Any) -> None:
    """Check that the files of a detection are those its provenance describes.

    Args:
        record: the detection.
        polygons: its polygons as read (a GeoDataFrame).

    Raises:
        DataError: a file does not match the provenance (files of two runs side by side).

    """
    prov, files = record.provenance, record.files
    problems: list[str] = []
    digests = _get(prov, FILE_DIGESTS)
    if isinstance(digests, Mapping):
        for name, recorded in digests.items():
            if isinstance(recorded, Mapping):
                differs = geoio.digest_differs(files.folder / str(name), recorded)
                if differs:
                    problems.append(f"{name}: {differs}")
    results = prov.get("results")
    if isinstance(results, Mapping):
        n = results.get("polygons")
        if n is not None and int(n) != len(polygons):
            problems.append(f"{files.gpkg.name} holds {len(polygons)} polygons, the record {n}")
        area = results.get("mining_area_ha_polygons")
        if area is not None and "area_ha" in polygons.columns and len(polygons):
            got = float(polygons["area_ha"].sum())
            if not _close(got, float(area)):
                problems.append(f"{files.gpkg.name} holds {got:.2f} ha, the record {area:.2f}")
        mining, observed, size, px_ha = _mask_counts(files.mask)
        mask_ha = results.get("mining_area_ha_mask")
        if mask_ha is not None and not _close(mining * px_ha, float(mask_ha)):
            problems.append(f"{files.mask.name} maps {mining * px_ha:.2f} ha, the record {mask_ha}")
        valid = results.get("valid_fraction")
        if valid is not None and size and not _close(observed / size, float(valid)):
            problems.append(f"{files.mask.name} observes another share of pixels than recorded")
    if problems:
        raise DataError(
            f"the files of the detection of {record.region} {record.period} are not of one run "
            f"({'; '.join(problems[:2])}); redo it with `{redo(record.region, [record.period])}`"
        )


def check_composite(record: DetectionRecord, composite_base: Any = None) -> None:
    """Check that a detection was made from the composite now in the cache (when there).

    Raises:
        DataError: the cached composite is another one (rebuilt since); names the command.

    """
    comp = layout.composite_files(record.region, record.period, base=composite_base)
    if not comp.tif.is_file():
        return  # the cache was cleared: nothing to compare with
    want_sha = _get(record.provenance, COMPOSITE_SHA256)
    want_bytes = _get(record.provenance, COMPOSITE_BYTES)
    cached: Any = None
    if comp.provenance.is_file():
        try:
            cached = geoio.read_json(comp.provenance).get("checksum")
        except (DataError, AttributeError):
            cached = None
    if want_sha and isinstance(cached, Mapping) and cached.get("sha256"):
        same = cached["sha256"] == want_sha
    elif want_bytes is not None:
        same = comp.tif.stat().st_size == int(want_bytes)
    else:
        return
    if not same:
        raise DataError(
            f"the detection of {record.region} {record.period} was made from another composite "
            f"than the one now in {comp.folder} (rebuilt since); redo it with "
            f"`{redo(record.region, [record.period])}`"
        )


def _shown(name: str, value: Any) -> str:
    if value is None:
        return "unrecorded"
    if name == "weights_sha256":
        return str(value)[:12]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _current_defaults(records: Sequence[DetectionRecord]) -> dict[str, Any] | None:
    """Return the settings a plain ``detect`` would use now (the recorded model's card)."""
    from asmspotter.detect.card import load_card

    card_path = _get(records[-1].provenance, ("model", "card"))
    try:
        card = load_card(card_path)[0]
    except Exception:  # noqa: BLE001 (a missing or changed card: no defaults to prefer)
        return None
    return {
        "model": card.name,
        "weights_sha256": card.sha256,
        "threshold": card.pixel_threshold,
        "min_area_ha": card.min_area_ha,
        "tile_size": card.tile_size,
        "tile_overlap": card.tile_overlap,
        "tta": card.tta,
    }


def _model_flag(record: DetectionRecord) -> str:
    """Return a detection's ``--model`` value: its name when shipped, else its card."""
    from asmspotter import paths

    card = _get(record.provenance, ("model", "card"))
    name = str(record.settings.get("model"))
    if card is None:
        return name
    from pathlib import Path

    return name if Path(str(card)).parent == paths.models_dir() else str(card)


def check_same_settings(region: str, records: Sequence[DetectionRecord]) -> None:
    """Refuse to combine detections made with different settings.

    Raises:
        DataError: one line naming the settings that differ, with their values per period,
            and the ``asmspotter detect`` command that redoes the odd periods alike.

    """
    if len(records) < 2:
        return
    groups: dict[tuple[Any, ...], list[DetectionRecord]] = {}
    for r in records:
        groups.setdefault(tuple(r.settings.get(k) for k in SETTINGS), []).append(r)
    if len(groups) == 1:
        return
    names = list(SETTINGS)
    differ = [k for i, k in enumerate(names) if len({key[i] for key in groups}) > 1]
    defaults = _current_defaults(records)
    current = tuple(defaults.get(k) for k in names) if defaults else None
    if current in groups:
        reference = current
    else:
        order = {r.period: i for i, r in enumerate(records)}
        reference = max(
            groups, key=lambda g: (len(groups[g]), max(order[r.period] for r in groups[g]))
        )
    ref = dict(zip(names, reference, strict=True))
    values = ", ".join(
        f"{k} "
        + " vs ".join(
            f"{_shown(k, key[names.index(k)])} ({', '.join(r.period for r in members)})"
            for key, members in groups.items()
        )
        for k in differ
    )
    odd = [r.period for key, members in groups.items() if key != reference for r in members]
    if "weights_sha256" in differ and (defaults is None or reference != current):
        command = redo(region, [r.period for r in records])  # old weights cannot be had again
    else:
        model = _model_flag(groups[reference][0])
        flags = [
            f"{SETTINGS[k][1]} {model if k == 'model' else _shown(k, ref[k])}"
            for k in differ
            if SETTINGS[k][1] is not None
        ]
        command = redo(region, odd, flags)
    raise DataError(
        f"the detections of {region} were made with different settings: {values}; "
        f"analysing them together would mix them, so redo them alike with `{command}`"
    )
