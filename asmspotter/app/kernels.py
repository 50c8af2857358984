"""The app server's kernels: started at the lowest CPU priority, and refilled when pages rest.

Voila keeps a pool of kernels started ahead of time and, each time a page takes one, starts
another. Two things keep that refill off the pages being served on the same cores:

* :class:`BackgroundKernelManager` sets a new kernel's scheduling group to
  :data:`~asmspotter.app.priority.BACKGROUND_NICE` as soon as its process exists, so its
  start (the interpreter, ``ipykernel``, the app's imports and regions) takes only CPU time
  the pages leave over; the kernel goes back to normal priority when its page arrives
  (:func:`~asmspotter.app.priority.serve_at_normal_priority`);
* :class:`AppKernelManager` (Voila's ``multi_kernel_manager_class``, set in ``voila.json``)
  holds a refill back until no page was asked for during
  :attr:`~AppKernelManager.refill_quiet_s` seconds (at most
  :attr:`~AppKernelManager.refill_hold_max_s`), because Voila's server renders the app
  notebook for a new kernel on the event loop that serves the pages. A page that finds no
  kernel ready in the pool releases the refills at once: it waits for one of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_server.services.kernels.kernelmanager import (
    AsyncMappingKernelManager,
    ServerKernelManager,
)
from traitlets import Float, default

from asmspotter.app import preheated
from asmspotter.app.priority import BACKGROUND_NICE, set_group_nice


def for_pool(kwargs: dict[str, Any]) -> bool:
    """Return whether a kernel started with these arguments is one for Voila's pool."""
    return preheated(kwargs.get("env") or {})


class BackgroundKernelManager(ServerKernelManager):
    """A kernel manager whose kernel for the pool starts at the lowest priority.

    A kernel started for a page that found the pool empty keeps normal priority: the page
    waits for it.
    """

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        pid = getattr(self.provisioner, "pid", None)
        if isinstance(pid, int) and for_pool(kw):
            set_group_nice(BACKGROUND_NICE, pid)


class AppKernelManager(AsyncMappingKernelManager):
    """Kernels of the app server (see the module's description)."""

    refill_quiet_s = Float(
        6.0,
        config=True,
        help="Seconds without a page request before a kernel for the pool is started "
        "(a page loads within about 5 s).",
    )
    refill_hold_max_s = Float(
        60.0, config=True, help="Longest a kernel for the pool is held back by pages."
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_page = -float("inf")
        self._page_waits = False  # the last page found no kernel ready: refill now

    @default("kernel_manager_class")
    def _default_kernel_manager_class(self) -> str:
        return f"{BackgroundKernelManager.__module__}.{BackgroundKernelManager.__name__}"

    def page_requested(self) -> None:
        """Note that a page was asked for now (the app's page handler calls it)."""
        self._last_page = time.monotonic()
        self._page_waits = not self.kernel_ready()

    def kernel_ready(self) -> bool:
        """Return whether the next page finds a started kernel in Voila's pool."""
        pools: dict[str, list[asyncio.Task[Any]]] = getattr(self, "_pools", {})
        return all(pool and pool[0].done() for pool in pools.values())

    async def pages_rested(self) -> float:
        """Wait until no page was asked for during :attr:`refill_quiet_s` seconds.

        Returns:
            The seconds waited (at most :attr:`refill_hold_max_s`).

        """
        start = time.monotonic()
        deadline = start + self.refill_hold_max_s
        while (now := time.monotonic()) < deadline and not self._page_waits:
            left = self._last_page + self.refill_quiet_s - now
            if left <= 0:
                break
            await asyncio.sleep(min(left, deadline - now, 0.25))
        return time.monotonic() - start

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        """Start a kernel; one for Voila's pool waits until pages rest (a page's: at once)."""
        if for_pool(kwargs):
            await self.pages_rested()
        return str(await super().start_kernel(*args, **kwargs))
