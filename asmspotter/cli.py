"""The ``asmspotter`` command line.

Each sub-command lives in ``asmspotter/commands/<name>.py`` and defines
``add_parser(subparsers)`` and ``run(args) -> int``. Command modules keep heavy
imports (torch, geopandas, ...) inside ``run`` so that ``--help`` stays fast.
User mistakes and data problems (:class:`~asmspotter.errors.AsmSpotterError`)
and writes the file system refuses are printed on one line with exit status 2, never as a
traceback. Ctrl-C exits with 130 and SIGTERM with 143, each after one line, once every
temporary file is removed. Warnings meant for the user
(:class:`~asmspotter.errors.AsmSpotterWarning`) are printed on one line; other libraries'
warnings and log noise (urllib3 retries, GDAL errors that become exceptions) only with
``--verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from asmspotter import __version__
from asmspotter.errors import AsmSpotterError, AsmSpotterWarning, Terminated

#: Libraries whose log lines only repeat what an error message says (shown with -v).
QUIET_LOGGERS: tuple[str, ...] = ("urllib3", "rasterio", "pyogrio", "fiona", "botocore")
#: Lines C libraries print straight to the standard error (libtiff's "_tiffWriteProc: No
#: space left on device.", GDAL's "ERROR 1: ...") that only repeat an error the CLI reports.
NATIVE_NOISE = re.compile(rb"^[\r\n]*(_?tiff\w*|TIFF\w*|ERROR \d+|Warning \d+): ")
#: Exit statuses after Ctrl-C and SIGTERM (128 + the signal's number).
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: Sub-command modules, in the order of the data flow.
COMMAND_MODULES: tuple[str, ...] = (
    "regions",
    "fetch",
    "make_chips",
    "train",
    "evaluate_chips",
    "detect",
    "analyse",
    "run",
    "report",
    "app",
)

DESCRIPTION = """\
Find artisanal and small-scale gold mining in Sentinel-2 imagery, measure how fast it
spreads and how much of it lies in protected areas, indigenous territories and legal
mining zones.

The chain, one command per stage:
  asmspotter regions                 list the regions of the catalogue
  asmspotter fetch REGION            cloud-free Sentinel-2 composites per period (cached)
  asmspotter detect REGION           mining probability, mask and polygons per period
  asmspotter analyse REGION          areas, expansion factors and overlay statistics
  asmspotter run [REGION]            all of the above (default: the offline demo, la-pampa)
  asmspotter report REGION           the region's briefing: offline HTML (--pdf, --lang es)
  asmspotter app                     the interactive map of every region (Voila, local)

The detector's model:
  asmspotter train                   rebuild the shipped weights from the shared chips
  asmspotter evaluate-chips DIR      chip sensitivity and specificity of a model
  asmspotter make-chips POINTS       a multispectral chip gallery around sample points

Environment: ASMSPOTTER_SHARED_DATA (shared real data, default ../shared/data),
ASMSPOTTER_CACHE (composites, default ./cache), ASMSPOTTER_OUTPUT (results, default ./reports).
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="asmspotter",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"asmspotter {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details and show tracebacks"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"asmspotter.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"asmspotter.commands.{name}":
                continue  # stage not installed in this build
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    with (
        _sigterm_interrupts(),
        _one_line_warnings(args.verbose),
        _quiet_libraries(args.verbose),
        _native_noise_filtered(args.verbose),
    ):
        try:
            return _run(args)
        except AsmSpotterError as exc:
            if args.verbose:
                raise
            print(f"asmspotter: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            # the file system refused (an output path under a file, no permission, disk
            # full): the user's to fix, so one line naming the path, not a traceback
            if args.verbose:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            print(f"asmspotter: error: {exc.strerror or exc}{where}", file=sys.stderr)
            return 2
        except Terminated:
            print("asmspotter: terminated", file=sys.stderr)
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            print("asmspotter: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    """Run the command; finalise what its errors hold before the CLI's quiet ends."""
    try:
        return int(args.func(args) or 0)
    finally:
        # an error's traceback keeps files open (a GDAL dataset that failed to write):
        # closed here, their last complaints are silenced like the rest, not at exit
        gc.collect()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` (a KeyboardInterrupt) while the command runs."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _one_line_warnings(verbose: bool) -> Iterator[None]:
    """Print user warnings as ``asmspotter: warning: ...``; log the other libraries' warnings."""
    log = logging.getLogger("asmspotter.cli")

    def show(message: Any, category: Any, filename: str, lineno: int, *rest: Any) -> None:
        if issubclass(category, AsmSpotterWarning):
            print(f"asmspotter: warning: {message}", file=sys.stderr)
        else:
            log.info("%s: %s (%s:%s)", category.__name__, message, filename, lineno)

    with warnings.catch_warnings():
        warnings.simplefilter("always", AsmSpotterWarning)
        warnings.showwarning = show  # type: ignore[assignment]
        yield


@contextlib.contextmanager
def _native_noise_filtered(verbose: bool) -> Iterator[None]:
    """Drop :data:`NATIVE_NOISE` lines from the process's standard error unless verbose.

    C libraries write to file descriptor 2 directly, past Python's logging: it is pointed at
    a pipe whose reader forwards every other byte (progress bars too) to the real stderr.
    """
    try:
        is_fd2 = not verbose and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        is_fd2 = False  # stderr captured or replaced (tests, notebooks): nothing to filter
    if not is_fd2:
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, real), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the forwarder sees its end
        forwarder.join(5)
        os.close(real)


def _forward(read_end: int, real: int) -> None:
    """Copy the pipe to the real stderr line by line (at line ends and carriage returns)."""
    pending = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        pending += chunk
        cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
        if cut < 0:
            continue
        done, pending = pending[: cut + 1], pending[cut + 1 :]
        kept = [p for p in re.split(rb"(?<=[\r\n])", done) if p and not NATIVE_NOISE.match(p)]
        if kept:
            os.write(real, b"".join(kept))
    if pending and not NATIVE_NOISE.match(pending):
        os.write(real, pending)
    os.close(read_end)


@contextlib.contextmanager
def _quiet_libraries(verbose: bool) -> Iterator[None]:
    """Silence the log lines of :data:`QUIET_LOGGERS` below CRITICAL unless verbose."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
