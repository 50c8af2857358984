"""Compare two runs' outputs of one region (a tiled run and a single-process one).

:func:`compare_runs` reads what two runs wrote below two output folders (the analysis's
``analysis.json``, each period's ``detection.json``, mask and probability COGs) and returns a
:class:`RunComparison`: per period, both runs' polygon counts and areas, the largest relative
area difference, the mask pixels that differ and the largest probability difference.
``python -m asmspotter.scale.compare REGION OUTPUT_A OUTPUT_B`` prints it and exits 1 when
the runs differ beyond the tolerance (areas within 0.1 %, polygon counts equal).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asmspotter import layout
from asmspotter.errors import DataError

#: Relative tolerance on areas (0.1 %).
AREA_RTOL = 1e-3
#: Areas compared per period: analysis.json's figures, then detection.json's.
ANALYSIS_AREAS = ("cumulative_ha", "new_ha", "active_ha", "stopped_ha")
DETECTION_AREAS = ("mining_area_ha_polygons", "mining_area_ha_mask")


@dataclass(frozen=True)
class PeriodComparison:
    """One period of two runs.

    Attributes:
        period: the period id.
        features: polygons counted by each run's analysis.
        polygons: polygons in each run's detection.
        areas: area name -> (run A, run B) in ha (analysis and detection figures).
        mask_pixels_differing: pixels whose mask value differs.
        probability_max_diff: largest absolute probability difference (NaN on both: equal).

    """

    period: str
    features: tuple[int, int]
    polygons: tuple[int, int]
    areas: dict[str, tuple[float, float]]
    mask_pixels_differing: int
    probability_max_diff: float

    @property
    def max_area_rel_diff(self) -> float:
        """Largest relative difference of any area (0 when both are 0)."""
        return max((_rel(a, b) for a, b in self.areas.values()), default=0.0)

    def same(self, rtol: float = AREA_RTOL) -> bool:
        """Whether counts are equal and every area within ``rtol``."""
        return (
            self.features[0] == self.features[1]
            and self.polygons[0] == self.polygons[1]
            and self.max_area_rel_diff <= rtol
        )


@dataclass(frozen=True)
class RunComparison:
    """Two runs of one region, period by period."""

    region: str
    periods: tuple[PeriodComparison, ...]

    def same(self, rtol: float = AREA_RTOL) -> bool:
        """Whether every period is the same within ``rtol``."""
        return bool(self.periods) and all(p.same(rtol) for p in self.periods)

    def lines(self) -> list[str]:
        """Return the comparison as text: a line a period, then the verdict."""
        out = [f"{self.region}: run A vs run B"]
        for p in self.periods:
            areas = ", ".join(f"{k} {a:,.2f}/{b:,.2f}" for k, (a, b) in p.areas.items())
            out.append(
                f"  {p.period}: features {p.features[0]}/{p.features[1]}, polygons "
                f"{p.polygons[0]}/{p.polygons[1]}; {areas}; largest area difference "
                f"{p.max_area_rel_diff:.2e}; mask pixels differing {p.mask_pixels_differing}; "
                f"largest probability difference {p.probability_max_diff:.2e}"
            )
        verdict = "SAME" if self.same() else "DIFFERENT"
        out.append(f"  {verdict} (areas within {AREA_RTOL:.1%}, polygon counts equal)")
        return out


def compare_runs(region: str, output_a: str | Path, output_b: str | Path) -> RunComparison:
    """Compare what two runs of ``region`` wrote below the output folders ``a`` and ``b``.

    Raises:
        DataError: an analysis or detection is missing, or the runs hold different periods.

    """
    analyses = [_json(layout.analysis_files(region, base).json) for base in (output_a, output_b)]
    periods = [{p["period"]: p for p in a["periods"]} for a in analyses]
    if list(periods[0]) != list(periods[1]):
        raise DataError(f"the runs hold different periods: {list(periods[0])}, {list(periods[1])}")
    out = []
    for pid in periods[0]:
        pa, pb = periods[0][pid], periods[1][pid]
        files = [layout.detection_files(region, pid, base) for base in (output_a, output_b)]
        da, db = (_json(f.provenance)["results"] for f in files)
        areas = {k: (_ha(pa[k]), _ha(pb[k])) for k in ANALYSIS_AREAS}
        areas |= {k: (_ha(da[k]), _ha(db[k])) for k in DETECTION_AREAS}
        mask_a, mask_b = (_read(f.mask) for f in files)
        prob_a, prob_b = (_read(f.probability) for f in files)
        both_nan = np.isnan(prob_a) & np.isnan(prob_b)
        diff = np.where(both_nan, 0.0, np.abs(prob_a - prob_b))
        out.append(
            PeriodComparison(
                period=pid,
                features=(int(pa["features"]), int(pb["features"])),
                polygons=(int(da["polygons"]), int(db["polygons"])),
                areas=areas,
                mask_pixels_differing=int((mask_a != mask_b).sum()),
                probability_max_diff=float(np.nanmax(diff, initial=0.0)),
            )
        )
    return RunComparison(region, tuple(out))


def _rel(a: float, b: float) -> float:
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def _ha(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}); did the run finish?") from None
    return data


def _read(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            return src.read(1, masked=False)
    except RasterioError as exc:
        raise DataError(f"cannot read {path} ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    """Print the comparison of two runs; 0 when the same, 1 when not, 2 on missing data."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("region")
    p.add_argument("output_a", type=Path, help="output folder of run A (its ASMSPOTTER_OUTPUT)")
    p.add_argument("output_b", type=Path, help="output folder of run B")
    args = p.parse_args(argv)
    try:
        comparison = compare_runs(args.region, args.output_a, args.output_b)
    except DataError as exc:
        print(f"asmspotter: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(comparison.lines()))
    return 0 if comparison.same() else 1


if __name__ == "__main__":
    sys.exit(main())
