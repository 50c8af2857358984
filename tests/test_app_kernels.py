"""The app server's kernel managers: a pool refill waits until pages rest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from asmspotter.app.kernels import AppKernelManager, BackgroundKernelManager, for_pool


@pytest.fixture
def manager(tmp_path: Path) -> AppKernelManager:
    return AppKernelManager(connection_dir=str(tmp_path), refill_quiet_s=0.6)


def test_kernels_start_through_the_background_kernel_manager(manager: AppKernelManager) -> None:
    assert isinstance(manager.kernel_manager_factory(), BackgroundKernelManager)


def test_a_refill_starts_at_once_when_no_page_came(manager: AppKernelManager) -> None:
    assert asyncio.run(manager.pages_rested()) < 0.3


def test_a_refill_waits_until_no_page_came_for_a_while(manager: AppKernelManager) -> None:
    manager.page_requested()  # no pool: nothing for the page to wait for
    assert asyncio.run(manager.pages_rested()) >= 0.55


def test_a_page_finding_no_kernel_ready_releases_the_refill(
    manager: AppKernelManager,
) -> None:
    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        started = loop.create_future()  # a kernel of the pool, still starting
        started.set_result({"kernel_id": "k"})
        starting = loop.create_future()
        manager._pools = {"app.ipynb": [started]}  # type: ignore[attr-defined]
        assert manager.kernel_ready()
        manager.page_requested()  # it takes the started kernel: the refill waits
        held = await manager.pages_rested()
        manager._pools = {"app.ipynb": [starting]}  # type: ignore[attr-defined]
        assert not manager.kernel_ready()
        manager.page_requested()  # it waits for the pool's next kernel
        released = await manager.pages_rested()
        starting.cancel()
        return held, released

    held, released = asyncio.run(scenario())
    assert held >= 0.55 and released < 0.3


def test_a_refill_is_held_back_for_a_limited_time(tmp_path: Path) -> None:
    manager = AppKernelManager(
        connection_dir=str(tmp_path), refill_quiet_s=60.0, refill_hold_max_s=0.4
    )
    manager.page_requested()
    assert 0.35 <= asyncio.run(manager.pages_rested()) < 30


def test_only_kernels_for_the_pool_start_at_the_lowest_priority() -> None:
    assert for_pool({"env": {"VOILA_PREHEAT": "True", "PATH": "/usr/bin"}})
    assert not for_pool({"env": {"VOILA_PREHEAT": "False"}})  # a page waits for it
    assert not for_pool({})
