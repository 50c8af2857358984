"""Running ``asmspotter app`` in the background, and opening it in a browser offline.

What the browser tests and ``benchmarks/bench_app.py`` share: :class:`AppProcess` starts
the command on a free loopback port (exactly as a user starts it) and stops it;
:func:`open_offline` opens a page in a Playwright browser with every request that does not
go to 127.0.0.1 blocked and recorded, so a page that needs the internet is caught.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from asmspotter import paths

#: Seconds to wait for the server to listen.
START_TIMEOUT_S = 120.0
#: Requests a page may make: this machine's loopback address only.
LOOPBACK = re.compile(r"(https?|wss?)://127\.0\.0\.1[:/]")
#: Chromium switches for a browser that cannot reach any host by name but 127.0.0.1 (every
#: other name fails to resolve), with no GPU: off-machine requests fail in the browser
#: itself, so a page need not pass each request through Playwright (see
#: :func:`open_offline`'s ``intercept``).
OFFLINE_CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """``python -m asmspotter.cli app`` on a free loopback port, as a context manager.

    Args:
        log: file that receives the server's output.
        env: environment variables to set for the server (and so its kernels).
        args: more arguments of ``asmspotter app`` (``--region``, ``--catalogue``).

    """

    def __init__(
        self, log: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        self._env = {
            **os.environ,
            **(env or {}),
            # the server and its kernels import the package of this checkout, if any
            "PYTHONPATH": os.pathsep.join(
                str(p) for p in (paths.source_checkout(), os.environ.get("PYTHONPATH")) if p
            ),
        }
        self._args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AppProcess:
        command = [sys.executable, "-m", "asmspotter.cli", "app", "--port", str(self.port)]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, *self._args], env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the app server did not start:\n{self.log.read_text()}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_idle(self, quiet_s: float = 3.0, limit_s: float = 600.0) -> float:
        """Wait until the server and its kernels idle (see :func:`wait_idle`)."""
        assert self.process is not None, "the server is not running"
        return wait_idle(self.process.pid, quiet_s, limit_s)

    def stop(self) -> None:
        """Stop the server (and with it its kernels)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_idle(pid: int, quiet_s: float = 3.0, limit_s: float = 600.0) -> float:
    """Wait until a process and its children use (almost) no CPU for ``quiet_s`` seconds.

    A kernel Voila starts ahead of time is ready once it idles; waiting for that keeps the
    kernel's start out of a measured page load.

    Returns:
        The seconds waited (at most ``limit_s``).

    """
    import psutil  # a dependency of ipykernel

    root = psutil.Process(pid)

    def cpu_seconds() -> float:
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    start = time.monotonic()
    last, calm_since = cpu_seconds(), start
    while time.monotonic() - start < limit_s:
        time.sleep(0.5)
        now = cpu_seconds()
        if now - last > 0.05:
            calm_since = time.monotonic()
        last = now
        if time.monotonic() - calm_since >= quiet_s:
            break
    return time.monotonic() - start


def kernels(pid: int) -> dict[str, int]:
    """Return the kernels a server process started: kernel id to process id."""
    import psutil  # a dependency of ipykernel

    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "ipykernel" in command and (match := _CONNECTION_FILE.search(command)):
            found[match.group(1)] = child.pid
    return found


#: A kernel's connection file on its command line, which names the kernel's id.
_CONNECTION_FILE = re.compile(r"kernel-([0-9a-f-]{36})\.json")


@dataclass
class OfflinePage:
    """A browser page of the app, what it asked for off this machine, and its load time.

    Attributes:
        page: the Playwright page.
        blocked: addresses the page asked for that were not on 127.0.0.1 (refused).
        seconds: from asking for the page until ``ready`` was visible.

    """

    page: Any
    blocked: list[str] = field(default_factory=list)
    seconds: float = 0.0


def open_offline(
    browser: Any, url: str, ready: str, timeout_s: float = 120.0, intercept: bool = True
) -> OfflinePage:
    """Open ``url`` in a Playwright ``browser`` with every off-loopback request refused.

    Args:
        browser: a Playwright browser.
        url: the page's address.
        ready: CSS selector whose visibility marks the page as ready.
        timeout_s: how long any single wait may take.
        intercept: True: Playwright holds every request and refuses those off 127.0.0.1
            (strict, but each request makes a round trip through this process, which
            costs a page of about 100 scripts 0.5 s on two cores). False: requests are
            only recorded, and the browser must be launched with
            :data:`OFFLINE_CHROMIUM_ARGS` to refuse them (as a user's browser would load
            the page; for timing).

    """
    page = browser.new_page(viewport={"width": 1400, "height": 950})
    page.set_default_timeout(timeout_s * 1000)
    shown = OfflinePage(page)

    def route(request: Any) -> None:
        target = request.request.url
        if LOOPBACK.match(target):
            request.continue_()
        else:
            shown.blocked.append(target)
            request.abort()

    def record(request: Any) -> None:
        if not LOOPBACK.match(request.url) and not request.url.startswith("data:"):
            shown.blocked.append(request.url)

    if intercept:
        page.route("**/*", route)
    else:
        page.on("request", record)
    start = time.monotonic()
    page.goto(url)
    page.wait_for_selector(ready, state="visible")
    shown.seconds = time.monotonic() - start
    return shown


# --- reading the app's page (browser tests and benchmark) ---------------------------------


def page_kernel(page: Any) -> str:
    """Return the id of the kernel serving a Voila page."""
    config = json.loads(page.text_content("#jupyter-config-data"))
    return str(config["kernelId"])


#: True once paths of every ``present`` colour and none of the ``absent`` colours are drawn
#: and the cumulative figure reads ``v``.
_SWITCHED = """([present, absent, v]) => {
  const drawn = (c) => document.querySelector(`.asm-map path[fill='${c}']`) !== null;
  const cell = document.querySelector(".asm-panel-numbers td[data-figure='cumulative']");
  return present.every(drawn) && !absent.some(drawn) && cell.innerText.startsWith(v);
}"""


def figure(page: Any, name: str) -> str:
    """Return the side panel's figure ``name`` (``cumulative``, ``new``, ``inside:<kind>``)."""
    cell = page.inner_text(f".asm-panel-numbers td[data-figure='{name}']")
    return str(cell).split("\n")[0].strip()


def count_paths(page: Any, colour: str, attribute: str = "fill") -> int:
    """Return how many map paths are drawn with ``colour`` as their fill (or stroke)."""
    return int(page.locator(f".asm-map path.leaflet-interactive[{attribute}='{colour}']").count())


def choose_period(
    page: Any, period: str, colours: Sequence[str], periods: Sequence[str], cumulative: str
) -> float:
    """Click a period; wait until its mining (and no later period's) and its figure show.

    Args:
        page: the app's page, showing a region's map.
        period: the period to click.
        colours: the colour of each period's mining.
        periods: the region's periods, in the order of ``colours``.
        cumulative: the cumulative figure the panel must then show.

    Returns:
        Seconds from the click until the map and the panel were redrawn.

    """
    k = list(periods).index(period)
    start = time.monotonic()
    page.click(f".asm-period button:has-text('{period}')")
    page.wait_for_function(
        _SWITCHED, arg=[list(colours[: k + 1]), list(colours[k + 1 :]), cumulative]
    )
    return time.monotonic() - start


def toggle_layer(page: Any, key: str, selector: str, shown: bool) -> float:
    """Click a layer's toggle; wait until ``selector`` is (or is no longer) on the map.

    Returns:
        Seconds from the click until the map was redrawn.

    """
    start = time.monotonic()
    page.click(f".asm-layer-{key.replace('_', '-')} input")
    page.wait_for_selector(selector, state="attached" if shown else "detached")
    return time.monotonic() - start
