"""The app server's kernels start at the lowest CPU priority (see :mod:`.priority`).

Voila starts its kernels through :class:`BackgroundKernelManager` (set in ``voila.json``):
a kernel's scheduling group gets :data:`~asmspotter.app.priority.BACKGROUND_NICE` as soon
as its process exists, so its start (the interpreter, ``ipykernel``, the app's imports and
regions) takes only CPU time that pages being served leave over. The kernel itself goes
back to normal priority when its page arrives
(:func:`~asmspotter.app.priority.serve_at_normal_priority`).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.kernels.kernelmanager import ServerKernelManager

from asmspotter.app.priority import BACKGROUND_NICE, set_group_nice


class BackgroundKernelManager(ServerKernelManager):
    """A kernel manager whose kernel starts in a scheduling group at the lowest priority."""

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        pid = getattr(self.provisioner, "pid", None)
        if isinstance(pid, int):
            set_group_nice(BACKGROUND_NICE, pid)
