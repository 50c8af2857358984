"""Benchmark: the app for Madre de Dios from the reference, in headless Chromium.

Starts ``asmspotter app`` on a loopback port (empty output folders, so the map shows the
catalogue's reference footprints), waits until the server is idle (its kernel started ahead
of time has loaded the regions), then, for each run, opens ``/?region=madre-de-dios`` with
every off-machine request blocked (by Chromium itself, launched with
``asmspotter.app.launch.OFFLINE_CHROMIUM_ARGS``; every request is recorded, and the page
must make none off this machine) and measures:

* time to interactive: from asking for the page until the side panel's figures and the
  mining polygons are drawn;
* period switches (2019, 2020, 2021 in turn) and layer toggles, each from the click until
  the map and the panel are redrawn;
* the peak memory (VmHWM) of the server's kernels.

For scale it also times a page of a one-widget notebook served by Voila the same way (the
floor of any Voila app on this machine), and prints the load average and a CPU reference
loop (this machine's speed drifts). Targets on the 2-core machine: interactive <= 5 s,
switch <= 1 s, kernel peak < 1 GB.

Usage: .venv/bin/python benchmarks/bench_app.py [--runs N] [--switches N] [--intercept]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import psutil

from asmspotter import paths
from asmspotter.app.launch import (
    OFFLINE_CHROMIUM_ARGS,
    AppProcess,
    choose_period,
    figure,
    free_port,
    kernels,
    open_offline,
    toggle_layer,
    wait_idle,
)
from asmspotter.palette import overlay_colour, period_colours

CHROMIUM = "/usr/bin/chromium"
PERIODS = ("2019", "2020", "2021")
CUMULATIVE = {"2019": "45,001 ha", "2020": "46,761 ha", "2021": "49,935 ha"}
TARGET_INTERACTIVE_S = 5.0
TARGET_SWITCH_S = 1.0
TARGET_KERNEL_MB = 1024.0


def kernel_peaks_mb(pid: int) -> list[float]:
    """Return the peak resident memory (VmHWM) of each kernel of the server, in MiB."""
    peaks = []
    for kernel in kernels(pid).values():
        try:
            status = Path(f"/proc/{kernel}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def kernels_started(pid: int, since: float, until: float) -> int:
    """Return how many kernels of the server started between two ``time.time()`` values."""
    count = 0
    for kernel in kernels(pid).values():
        try:
            count += since <= psutil.Process(kernel).create_time() <= until
        except psutil.NoSuchProcess:
            continue
    return count


def measure_app(
    browser: object, app: AppProcess, runs: int, switches: int, intercept: bool = False
) -> dict[str, list[float]]:
    """Open Madre de Dios ``runs`` times; return the timings and kernel peaks."""
    colours = dict(zip(PERIODS, period_colours(len(PERIODS)), strict=True))
    figures: dict[str, list[float]] = {
        "interactive": [], "refill": [], "switch": [], "toggle": [], "kernel": []
    }  # fmt: skip
    assert app.process is not None
    for run in range(runs):
        waited = app.wait_idle()
        since = time.time()
        shown = open_offline(
            browser, app.url + "?region=madre-de-dios", ".asm-panel-numbers td", intercept=intercept
        )
        page = shown.page
        page.wait_for_selector(f".asm-map path[fill='{colours['2021']}']", state="attached")
        interactive = shown.seconds + 0.0
        # Voila starts a kernel for its pool fill_delay s after a page took one: a page
        # load that overlaps that start shares the CPU with it
        refill = kernels_started(app.process.pid, since, time.time())
        assert figure(page, "cumulative") == CUMULATIVE["2021"], figure(page, "cumulative")
        assert not shown.blocked, shown.blocked
        figures["interactive"].append(interactive)
        if refill:
            figures["refill"].append(interactive)
        for i in range(switches):  # 2019, 2020, 2021, 2019, ...
            period = PERIODS[i % len(PERIODS)]
            seconds = choose_period(
                page, period, list(colours.values()), PERIODS, CUMULATIVE[period]
            )
            figures["switch"].append(seconds)
        mining = f".asm-map path[fill='{colours['2019']}']"
        for key, selector in (
            ("mining", mining),
            ("protected_area", f".asm-map path[stroke='{overlay_colour('protected_area')}']"),
            (
                "indigenous_territory",
                f".asm-map path[stroke='{overlay_colour('indigenous_territory')}']",
            ),
        ):
            figures["toggle"].append(toggle_layer(page, key, selector, shown=False))
            figures["toggle"].append(toggle_layer(page, key, selector, shown=True))
        figures["kernel"].append(max(kernel_peaks_mb(app.process.pid), default=float("nan")))
        print(
            f"run {run + 1}: waited {waited:.0f} s for an idle server; interactive "
            f"{interactive:.2f} s{' (a kernel started meanwhile)' if refill else ''}; "
            f"kernel peak {figures['kernel'][-1]:.0f} MiB"
        )
        page.close(run_before_unload=True)
    return figures


def measure_floor(browser: object, workdir: Path, intercept: bool = False) -> float:
    """Time a one-widget notebook page served by Voila with a kernel started ahead of time."""
    notebook = workdir / "floor.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import ipywidgets\nw = ipywidgets.HTML('floor')\nw.add_class('floor')\nw"
        )
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, notebook)
    port = free_port()
    command = [
        sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--no-browser",
        "--Voila.ip=127.0.0.1", "--VoilaConfiguration.preheat_kernel=True",
    ]  # fmt: skip
    with (workdir / "floor.log").open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        wait_idle(proc.pid)
        shown = open_offline(browser, f"http://127.0.0.1:{port}/", ".floor", intercept=intercept)
        shown.page.close()
        return shown.seconds
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cpu_reference_s() -> float:
    """Seconds one core takes for a fixed pure-Python loop: how fast this machine is now.

    The 2-core machine's speed drifts (the same loop took 3.8-7.0 s within an hour), so
    the page times are printed with it.
    """
    start = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i * i
    return time.perf_counter() - start


def summary(
    name: str, values: list[float], unit: str, target: float, better: Callable[[float, float], bool]
) -> str:
    if not values:
        return f"{name}: not measured"
    worst = max(values)
    verdict = "OK" if better(worst, target) else "MISSED"
    return (
        f"{name}: median {statistics.median(values):.2f} {unit}, worst {worst:.2f} {unit} "
        f"over {len(values)} (target {target:g} {unit}): {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="page loads (default 3)")
    parser.add_argument("--switches", type=int, default=7, help="period clicks per page load")
    parser.add_argument(
        "--intercept",
        action="store_true",
        help="pass every request through Playwright, as the browser tests do (how this "
        "benchmark timed pages before 2026-11-30 16:00 UTC; about 0.5 s slower)",
    )
    args = parser.parse_args()
    if not paths.shared_data_available():
        print(f"shared data not found at {paths.shared_data_dir()}", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).is_file():
        print(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"CPU reference loop before: {cpu_reference_s():.2f} s")
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp, sync_playwright() as pw:
        work = Path(tmp)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(OFFLINE_CHROMIUM_ARGS))
        env = {paths.OUTPUT_ENV: str(work / "reports"), paths.CACHE_ENV: str(work / "cache")}
        with AppProcess(work / "server.log", env) as app:
            figures = measure_app(browser, app, args.runs, args.switches, args.intercept)
        floor = measure_floor(browser, work, args.intercept)
        browser.close()
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"CPU reference loop after: {cpu_reference_s():.2f} s")
    below = float.__le__
    print(summary("time to interactive", figures["interactive"], "s", TARGET_INTERACTIVE_S, below))
    print(
        f"  of which {len(figures['refill'])} while Voila started a kernel for its pool"
        + (f": worst {max(figures['refill']):.2f} s" if figures["refill"] else "")
    )
    print(f"  (a one-widget Voila page on this machine now: {floor:.2f} s)")
    print(summary("period switch", figures["switch"], "s", TARGET_SWITCH_S, below))
    print(summary("layer toggle", figures["toggle"], "s", TARGET_SWITCH_S, below))
    print(summary("kernel peak memory", figures["kernel"], "MiB", TARGET_KERNEL_MB, float.__lt__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
