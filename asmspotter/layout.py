"""The on-disk contract: where every output of the chain lives and what it is called.

Every stage, command, notebook and test finds its files here; no output path or file name
is written anywhere else. CONTRIBUTING.md's layout table lists the same paths (a test
checks). Roots come from :mod:`asmspotter.paths` (``ASMSPOTTER_CACHE``,
``ASMSPOTTER_OUTPUT``) unless a ``base`` folder is given.

============  ==========================================================================
what          path
============  ==========================================================================
composite     ``cache/<region>/<period>/composite.tif`` + ``composite.json``
detection     ``reports/<region>/<period>/mining_probability.tif``, ``mining_mask.tif``,
              ``mining.gpkg``, ``mining.geojson`` (EPSG:4326), ``detection.json``
analysis      ``reports/<region>/analysis/`` (``periods.csv``, ``expansion.csv``,
              ``overlay_layers.csv``, ``overlay_features.csv``, ``reference.csv``,
              ``analysis.gpkg``, ``analysis.json``): detections or given footprints
ref-analysis  ``reports/<region>/analysis-reference/`` (the same files): the catalogue's
              reference footprints (briefings' reference source), kept apart
report        ``reports/<region>/report.html`` (``report.<lang>.html`` for other languages),
              ``report.pdf`` (``report.<lang>.pdf``), ``report.ipynb`` (the executed notebook)
training      ``reports/models-smoke/`` (``train --smoke``), ``reports/crossval/crossval.json``
              (``train --cv``)
tiles         tiled (Dask) runs, per tile of a grid: ``cache/<region>/<period>/tiles/<grid>/
              <tile>/composite.tif`` + ``composite.json``; ``reports/<region>/<period>/tiles/
              <grid>/<tile>/mining_probability.tif``, ``mining_mask.tif``, ``detection.json``,
              ``mining.gpkg``, ``polygons.json``; the mosaics ``composite.vrt`` and
              ``mining_probability.vrt``, ``mining_mask.vrt`` in the ``<grid>`` folders,
              with their overviews (``composite.x2.vrt``, ``composite.x4.vrt``, ...)
============  ==========================================================================

Files written to folders the user names: a model (:class:`ModelFiles`: ``<name>.pt``,
``<name>.card.json``, ``<name>.md``, as in ``data/models``) and a chip gallery cut around
sample points (:class:`GalleryFiles`: ``<stem>.tif``, ``<stem>.geojson``, ``<stem>.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asmspotter import paths

#: Dataset tag of composites saying how to read their values (see :mod:`asmspotter.bands`).
RADIOMETRY_TAG = "ASMSPOTTER_RADIOMETRY"
#: Dataset tags of composites naming the region and period they were made for.
REGION_TAG = "ASMSPOTTER_REGION"
PERIOD_TAG = "ASMSPOTTER_PERIOD"
#: No-data value of the detector's uint8 mask rasters (0 = not mining, 1 = mining).
MASK_NODATA = 255
#: No-data value of the detector's float32 probability rasters.
PROBABILITY_NODATA = float("nan")

#: Name of the folder of a tiled run's tiles below a period's composite and detection folders.
TILES_FOLDER = "tiles"

#: Name of the analysis folder below ``reports/<region>/``.
ANALYSIS_FOLDER = "analysis"
#: Default folders of ``asmspotter train``'s outputs below the output folder: the smoke
#: models, and the cross-validation record (:data:`CROSSVAL_NAME`).
SMOKE_MODELS_FOLDER = "models-smoke"
CROSSVAL_FOLDER = "crossval"
#: File name of the cross-validation record.
CROSSVAL_NAME = "crossval.json"
#: File name of the chip table beside a folder of galleries (each chip's site, category and
#: position; :mod:`asmspotter.detect.places`).
CHIP_PLACES_NAME = "chips.csv"
#: Name of the folder of the analysis of the catalogue's reference footprints.
REFERENCE_ANALYSIS_FOLDER = "analysis-reference"
#: Name of a region's lock file, in its output folder (``reports/<region>/``): the process
#: writing the region's outputs holds it (:mod:`asmspotter.locking`).
LOCK_NAME = ".asmspotter.lock"
#: The language whose report files carry no language suffix.
DEFAULT_LANGUAGE = "en"
#: Files ``evaluate-chips --errors OUT`` writes into OUT: the table of the chips it got
#: wrong, and contact sheets of the missed mining chips and of the false alarms.
CHIP_ERROR_FILES = ("errors.csv", "missed_mining.png", "false_alarms.png")
#: The La Pampa validation figure ``train`` draws for the docs, relative to the project root.
VALIDATION_FIGURE = ("docs", "figures", "la_pampa_2019_validation.png")

PathLike = str | os.PathLike[str]


def _root(base: PathLike | None, default: Path) -> Path:
    return Path(base) if base is not None else default


@dataclass(frozen=True)
class CompositeFiles:
    """One period's cached composite: ``cache/<region>/<period>/``."""

    folder: Path

    @property
    def tif(self) -> Path:
        """The composite COG."""
        return self.folder / "composite.tif"

    @property
    def provenance(self) -> Path:
        """Its provenance JSON."""
        return self.folder / "composite.json"


@dataclass(frozen=True)
class DetectionFiles:
    """One period's detection: ``reports/<region>/<period>/``."""

    folder: Path

    @property
    def probability(self) -> Path:
        """Mining probability COG (float32, NaN = no-data)."""
        return self.folder / "mining_probability.tif"

    @property
    def mask(self) -> Path:
        """Mining mask COG (uint8: 1 mining, 0 not, :data:`MASK_NODATA` unobserved)."""
        return self.folder / "mining_mask.tif"

    @property
    def gpkg(self) -> Path:
        """Mining polygons in the region's CRS."""
        return self.folder / "mining.gpkg"

    @property
    def geojson(self) -> Path:
        """Mining polygons in EPSG:4326."""
        return self.folder / "mining.geojson"

    @property
    def provenance(self) -> Path:
        """Its provenance JSON (written last)."""
        return self.folder / "detection.json"

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the set, the provenance last."""
        return (self.probability, self.mask, self.gpkg, self.geojson, self.provenance)


@dataclass(frozen=True)
class TileDetectionFiles:
    """One tile's detection in a tiled run: ``reports/<region>/<period>/tiles/<grid>/<tile>/``.

    The probability, mask and polygons cover the tile's core and are named as a period's
    (:class:`DetectionFiles`); ``detection.json`` and ``polygons.json`` are the records of
    the tile's detection and vectorising, each written after its files.
    """

    folder: Path

    @property
    def probability(self) -> Path:
        """Mining probability COG of the tile's core."""
        return DetectionFiles(self.folder).probability

    @property
    def mask(self) -> Path:
        """Mining mask COG of the tile's core."""
        return DetectionFiles(self.folder).mask

    @property
    def provenance(self) -> Path:
        """The record of the tile's detection (written last)."""
        return DetectionFiles(self.folder).provenance

    @property
    def gpkg(self) -> Path:
        """The polygons of the tile's core (before merging and the minimum mapping unit)."""
        return DetectionFiles(self.folder).gpkg

    @property
    def polygons_record(self) -> Path:
        """The record of the tile's vectorising (written after ``mining.gpkg``)."""
        return self.folder / "polygons.json"


@dataclass(frozen=True)
class MosaicFiles:
    """A tiled run's whole-region virtual mosaics of one period and grid (GDAL VRTs).

    The mosaic COGs at :func:`composite_files` and :func:`detection_files` are translated
    from them.
    """

    composite_folder: Path
    detection_folder: Path

    @property
    def composite(self) -> Path:
        """The composite tiles as one raster."""
        return self.composite_folder / "composite.vrt"

    @property
    def probability(self) -> Path:
        """The probability tiles as one raster."""
        return self.detection_folder / "mining_probability.vrt"

    @property
    def mask(self) -> Path:
        """The mask tiles as one raster."""
        return self.detection_folder / "mining_mask.vrt"

    @staticmethod
    def overview(vrt: Path, factor: int) -> Path:
        """Return the overview of a mosaic ``vrt`` at 1/``factor`` (a VRT beside it)."""
        return vrt.with_name(f"{vrt.stem}.x{factor}{vrt.suffix}")


@dataclass(frozen=True)
class AnalysisFiles:
    """A region's analysis: ``reports/<region>/analysis/``."""

    folder: Path

    @property
    def periods_csv(self) -> Path:
        """Per-period areas."""
        return self.folder / "periods.csv"

    @property
    def expansion_csv(self) -> Path:
        """Expansion factors between periods."""
        return self.folder / "expansion.csv"

    @property
    def overlay_layers_csv(self) -> Path:
        """Mining inside and outside each overlay layer."""
        return self.folder / "overlay_layers.csv"

    @property
    def overlay_features_csv(self) -> Path:
        """Mining inside each named overlay feature."""
        return self.folder / "overlay_features.csv"

    @property
    def reference_csv(self) -> Path:
        """Agreement with the reference footprints (when compared)."""
        return self.folder / "reference.csv"

    @property
    def gpkg(self) -> Path:
        """Per-period footprints and expansion layers."""
        return self.folder / "analysis.gpkg"

    @property
    def json(self) -> Path:
        """The whole result and its provenance (written last)."""
        return self.folder / "analysis.json"


@dataclass(frozen=True)
class ReportFiles:
    """A region's briefing in one language: ``reports/<region>/report[.<lang>].*``."""

    folder: Path
    language: str = DEFAULT_LANGUAGE

    @property
    def _stem(self) -> str:
        return "report" if self.language == DEFAULT_LANGUAGE else f"report.{self.language}"

    @property
    def html(self) -> Path:
        """The self-contained HTML briefing."""
        return self.folder / f"{self._stem}.html"

    @property
    def pdf(self) -> Path:
        """The briefing printed to PDF."""
        return self.folder / f"{self._stem}.pdf"

    @property
    def notebook(self) -> Path:
        """The executed notebook the briefing was rendered from."""
        return self.folder / f"{self._stem}.ipynb"


@dataclass(frozen=True)
class ModelFiles:
    """A trained model: ``<folder>/<name>.*`` (the shipped ones in ``data/models``)."""

    folder: Path
    name: str

    @property
    def weights(self) -> Path:
        """The weights and network configuration (a torch file)."""
        return self.folder / f"{self.name}.pt"

    @property
    def card(self) -> Path:
        """The model card (JSON)."""
        return self.folder / f"{self.name}.card.json"

    @property
    def markdown(self) -> Path:
        """The card rendered for people."""
        return self.folder / f"{self.name}.md"


@dataclass(frozen=True)
class GalleryFiles:
    """A chip gallery cut around sample points: ``<folder>/<stem>.*``."""

    folder: Path
    stem: str

    @property
    def tif(self) -> Path:
        """The GeoTIFF gallery."""
        return self.folder / f"{self.stem}.tif"

    @property
    def points(self) -> Path:
        """The points that gave chips (chip i = feature i), EPSG:4326."""
        return self.folder / f"{self.stem}.geojson"

    @property
    def provenance(self) -> Path:
        """Its provenance JSON (written last)."""
        return self.folder / f"{self.stem}.json"


def composite_files(region: str, period: str, base: PathLike | None = None) -> CompositeFiles:
    """Return the files of a region's composite for one period (below the cache folder)."""
    return CompositeFiles(_root(base, paths.cache_dir()) / region / period)


def detection_files(region: str, period: str, base: PathLike | None = None) -> DetectionFiles:
    """Return the files of a region's detection for one period (below the output folder)."""
    return DetectionFiles(_root(base, paths.output_dir()) / region / period)


def composite_tile_files(
    region: str, period: str, grid: str, tile: str, base: PathLike | None = None
) -> CompositeFiles:
    """Return the files of one tile's composite in a tiled run (below the cache folder)."""
    return CompositeFiles(_tiles_dir(composite_files(region, period, base).folder, grid) / tile)


def detection_tile_files(
    region: str, period: str, grid: str, tile: str, base: PathLike | None = None
) -> TileDetectionFiles:
    """Return the files of one tile's detection in a tiled run (below the output folder)."""
    folder = _tiles_dir(detection_files(region, period, base).folder, grid) / tile
    return TileDetectionFiles(folder)


def mosaic_files(
    region: str,
    period: str,
    grid: str,
    cache: PathLike | None = None,
    output: PathLike | None = None,
) -> MosaicFiles:
    """Return the virtual mosaics of a tiled run's period (composite in the cache folder)."""
    return MosaicFiles(
        _tiles_dir(composite_files(region, period, cache).folder, grid),
        _tiles_dir(detection_files(region, period, output).folder, grid),
    )


def _tiles_dir(period_folder: Path, grid: str) -> Path:
    return period_folder / TILES_FOLDER / grid


def analysis_files(region: str, base: PathLike | None = None) -> AnalysisFiles:
    """Return the files of a region's analysis (below the output folder)."""
    return AnalysisFiles(_root(base, paths.output_dir()) / region / ANALYSIS_FOLDER)


def reference_analysis_files(region: str, base: PathLike | None = None) -> AnalysisFiles:
    """Return the files of the analysis of a region's reference footprints (output folder)."""
    return AnalysisFiles(_root(base, paths.output_dir()) / region / REFERENCE_ANALYSIS_FOLDER)


def region_folders(region: str) -> tuple[Path, Path]:
    """Return a region's folders below the cache and the output folder (they may be absent)."""
    return paths.cache_dir() / region, paths.output_dir() / region


def lock_file(region: str) -> Path:
    """Return the lock file of a region's outputs (:data:`LOCK_NAME` in its output folder)."""
    return paths.output_dir() / region / LOCK_NAME


def report_files(
    region: str, language: str = DEFAULT_LANGUAGE, base: PathLike | None = None
) -> ReportFiles:
    """Return the files of a region's briefing in one language (below the output folder)."""
    return ReportFiles(_root(base, paths.output_dir()) / region, language)


def smoke_models_dir(base: PathLike | None = None) -> Path:
    """Return the default folder of ``train --smoke`` models (below the output folder)."""
    return _root(base, paths.output_dir()) / SMOKE_MODELS_FOLDER


def crossval_dir(base: PathLike | None = None) -> Path:
    """Return the default folder of ``train --cv`` records (below the output folder)."""
    return _root(base, paths.output_dir()) / CROSSVAL_FOLDER


@dataclass(frozen=True)
class Templates:
    """The layout as documents and help texts write it.

    Paths are relative to the default root folders (``cache``, ``reports``), with
    ``<region>`` and ``<period>`` for the ids; CONTRIBUTING.md's table is checked against
    them.
    """

    composite: CompositeFiles
    detection: DetectionFiles
    analysis: AnalysisFiles
    reference_analysis: AnalysisFiles
    report: ReportFiles
    composite_tile: CompositeFiles
    detection_tile: TileDetectionFiles
    mosaic: MosaicFiles


#: The layout with placeholders, for help texts and documents.
TEMPLATES = Templates(
    composite=composite_files("<region>", "<period>", base=paths.CACHE_FOLDER),
    detection=detection_files("<region>", "<period>", base=paths.OUTPUT_FOLDER),
    analysis=analysis_files("<region>", base=paths.OUTPUT_FOLDER),
    reference_analysis=reference_analysis_files("<region>", base=paths.OUTPUT_FOLDER),
    report=report_files("<region>", base=paths.OUTPUT_FOLDER),
    composite_tile=composite_tile_files(
        "<region>", "<period>", "<grid>", "<tile>", base=paths.CACHE_FOLDER
    ),
    detection_tile=detection_tile_files(
        "<region>", "<period>", "<grid>", "<tile>", base=paths.OUTPUT_FOLDER
    ),
    mosaic=mosaic_files(
        "<region>", "<period>", "<grid>", cache=paths.CACHE_FOLDER, output=paths.OUTPUT_FOLDER
    ),
)
