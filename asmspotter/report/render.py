"""Rendering a briefing: papermill runs the notebook, nbconvert writes HTML, Chromium a PDF.

:func:`write_report` checks what it can before starting a kernel (region, language, source,
periods), executes the shipped notebook ``region_report.ipynb`` with papermill in a
temporary folder, renders its outputs (no input cells) to one self-contained HTML file and
only then replaces ``reports/<region>/report[.<lang>].html`` and the executed notebook, so a
failed run leaves the previous briefing intact. ``pdf=True`` prints that HTML to A4 with
headless Chromium.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from asmspotter import __version__, layout, paths
from asmspotter.catalogue import Region, load_catalogue
from asmspotter.errors import DataError
from asmspotter.geoio import atomic_output
from asmspotter.report.language import load_language
from asmspotter.report.source import (
    BriefingSource,
    analysis_folder,
    reference_periods,
    resolve_source,
)

#: The notebook every briefing is executed from (package data of ``asmspotter.report``).
NOTEBOOK_NAME = "region_report.ipynb"
#: The Jupyter kernel papermill starts (the running interpreter's ipykernel).
KERNEL_NAME = "python3"
#: Environment variable naming the browser that prints PDFs (default: Chromium on PATH).
BROWSER_ENV = "ASMSPOTTER_BROWSER"
BROWSER_NAMES: tuple[str, ...] = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
#: Keeps the kernel's own start-up warnings off the command's terminal.
KERNEL_QUIET = "--IPKernelApp.log_level=ERROR"
#: How long a notebook cell and a PDF print may take (seconds).
CELL_TIMEOUT_S = 900
PRINT_TIMEOUT_S = 180
INSTALL_CHROMIUM = (
    "install Chromium (Debian/Ubuntu: `sudo apt-get install chromium`) or name a Chromium "
    f"or Chrome executable in {BROWSER_ENV}"
)


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote.

    Attributes:
        region: region id.
        language: language code.
        source: where the mining came from.
        html: the briefing.
        notebook: the executed notebook beside it.
        pdf: the PDF (None unless asked for).
        analysis: the folder of the analysis files the briefing quotes.
        seconds: wall time of the whole run.

    """

    region: str
    language: str
    source: BriefingSource
    html: Path
    notebook: Path
    pdf: Path | None
    analysis: Path
    seconds: float


def notebook_path() -> Path:
    """Return the shipped briefing notebook (``notebooks/region_report.ipynb`` links to it)."""
    return Path(str(resources.files("asmspotter.report").joinpath("notebook", NOTEBOOK_NAME)))


def _template_dir() -> Path:
    return Path(str(resources.files("asmspotter.report").joinpath("templates")))


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Let the kernel import this very ``asmspotter`` (a source checkout goes on PYTHONPATH)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYDEVD_DISABLE_FILE_VALIDATION")}
    root = paths.source_checkout()
    if root is not None:
        parts = [str(root)] + [p for p in (saved["PYTHONPATH"] or "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # no debugger warning from the kernel
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute_notebook(parameters: dict[str, Any], output: Path) -> None:
    """Execute the briefing notebook with ``parameters`` into ``output`` (papermill).

    Raises:
        DataError: a cell failed (naming the cell and the error), or no kernel started.

    """
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel

    with _kernel_environment():
        try:
            papermill.execute_notebook(
                str(notebook_path()),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                progress_bar=False,
                log_output=False,
                execution_timeout=CELL_TIMEOUT_S,
                extra_arguments=[KERNEL_QUIET],
            )
        except papermill.PapermillExecutionError as exc:
            first = next((ln for ln in exc.source.splitlines() if ln.strip()), "").strip()
            raise DataError(
                f"the briefing notebook failed in cell {exc.exec_count} (`{first}`): "
                f"{exc.ename}: {exc.evalue}"
            ) from None
        except NoSuchKernel:
            raise DataError(
                f"no Jupyter kernel {KERNEL_NAME!r} for {sys.executable}: install ipykernel "
                "into this environment"
            ) from None


def notebook_html(executed: Path, *, language: str, title: str) -> str:
    """Render an executed briefing notebook's outputs to one self-contained HTML page."""
    import nbformat
    from nbconvert import HTMLExporter

    templates = _template_dir()
    exporter = HTMLExporter(
        template_name="briefing", extra_template_basedirs=[str(templates / "nbconvert")]
    )
    briefing = {
        "lang": language,
        "title": title,
        "version": __version__,
        "css": (templates / "briefing.css").read_text(encoding="utf-8"),
    }
    body, _ = exporter.from_notebook_node(
        nbformat.read(executed, as_version=4), resources={"briefing": briefing}
    )
    return str(body)


def find_browser() -> str | None:
    """Return the Chromium (or Chrome) executable that prints PDFs, or None.

    ``ASMSPOTTER_BROWSER`` names it explicitly; otherwise the first of
    :data:`BROWSER_NAMES` on ``PATH``.
    """
    named = os.environ.get(BROWSER_ENV)
    if named:
        found = shutil.which(named)
        return found if found else None
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html: Path, pdf: Path, browser: str) -> Path:
    """Print ``html`` to an A4 ``pdf`` with headless Chromium, atomically.

    The page's own CSS sets A4 and keeps figures and tables on one page.

    Raises:
        DataError: the browser failed or wrote no PDF.

    """
    with tempfile.TemporaryDirectory(prefix="asmspotter-chromium-") as profile:
        with atomic_output(pdf) as tmp:
            cmd = [
                browser,
                "--headless",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--no-pdf-header-footer",
                f"--user-data-dir={profile}",
                f"--print-to-pdf={tmp}",
                html.resolve().as_uri(),
            ]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd.insert(1, "--no-sandbox")  # Chromium refuses root without it
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DataError(f"{browser} could not print {html.name} to PDF: {exc}") from None
            if not tmp.is_file() or not tmp.read_bytes().startswith(b"%PDF"):
                last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise DataError(
                    f"{browser} wrote no PDF of {html.name} (exit {proc.returncode}: {last})"
                )
    return pdf


def _check_periods(region: Region, source: BriefingSource, periods: Sequence[str] | None) -> None:
    if not periods:
        return
    if source == "reference":
        reference_periods(region, periods)
    else:
        region.select_periods(list(periods))


def _parameters(
    region: str,
    source: BriefingSource,
    language: str,
    periods: Sequence[str] | None,
    model: str | None,
    catalogue: str | None,
    generated: str | None,
) -> dict[str, Any]:
    """Return the notebook's parameters: plain strings and lists, empty meaning the default."""
    return {
        "region": region,
        "periods": [str(p) for p in periods or ()],
        "source": source,
        "model": model or "",
        "language": language,
        "catalogue": catalogue or "",
        "shared_data": str(paths.shared_data_dir()),
        "output_dir": str(paths.output_dir()),
        "cache_dir": str(paths.cache_dir()),
        "generated": generated or "",
    }


def write_report(
    region: str,
    *,
    source: str | None = None,
    language: str = "en",
    pdf: bool = False,
    periods: Sequence[str] | None = None,
    model: str | None = None,
    catalogue: str | os.PathLike[str] | None = None,
    generated: str | None = None,
) -> ReportResult:
    """Write a region's briefing: ``reports/<region>/report[.<lang>].html`` and its notebook.

    ``asmspotter report`` and the end of ``asmspotter run`` call this.

    Args:
        region: region id in the catalogue.
        source: ``detector`` or ``reference`` (default: the detector where its detections
            exist, else the reference).
        language: language code (``en``, ``es``).
        pdf: also print the HTML to ``report[.<lang>].pdf`` with headless Chromium.
        periods: the periods to brief (default: all of the source's).
        model: the model card to describe when the detections do not name theirs.
        catalogue: the catalogue file (default: the shipped one).
        generated: the generation date, ``YYYY-MM-DD`` (default: ``SOURCE_DATE_EPOCH`` or
            today).

    Raises:
        InputError: unknown region (listing the regions), language, source or period.
        DataError: the source's inputs are missing, a notebook cell failed (the previous
            briefing is kept), or ``pdf`` without a browser (the HTML is written first).

    """
    started = time.perf_counter()
    lang = load_language(language)
    cat_path = str(Path(catalogue).resolve()) if catalogue is not None else None
    reg = load_catalogue(cat_path)[region]
    kind = resolve_source(reg, source)
    _check_periods(reg, kind, periods)
    files = layout.report_files(reg.id, lang.code)
    folder = paths.writable_dir(files.folder, "report folder")
    parameters = _parameters(reg.id, kind, lang.code, periods, model, cat_path, generated)
    with tempfile.TemporaryDirectory(prefix=".report-", dir=folder) as tmp:
        executed = Path(tmp) / files.notebook.name
        execute_notebook(parameters, executed)
        title = lang.text("headings.title", region=reg.name)
        page = notebook_html(executed, language=lang.code, title=title)
        with atomic_output(files.html) as out:
            out.write_text(page, encoding="utf-8")
        with atomic_output(files.notebook) as out:
            shutil.copyfile(executed, out)
    files.pdf.unlink(missing_ok=True)  # a PDF of the previous briefing would mislead
    written_pdf = None
    if pdf:
        browser = find_browser()
        if browser is None:
            raise DataError(
                f"--pdf needs a headless browser and none was found; {INSTALL_CHROMIUM}. "
                f"The HTML briefing is written: {files.html}"
            )
        written_pdf = print_pdf(files.html, files.pdf, browser)
    return ReportResult(
        region=reg.id,
        language=lang.code,
        source=kind,
        html=files.html,
        notebook=files.notebook,
        pdf=written_pdf,
        analysis=analysis_folder(reg.id, kind),
        seconds=time.perf_counter() - started,
    )
