"""Process settings of the commands that run the network: the allocator and the precision.

Two things decide how fast the network runs on a CPU besides the network itself:

* **The allocator.** Activation buffers are larger than glibc's mmap threshold, so by
  default each one is mapped and unmapped for every operation and the kernel zeroes fresh
  pages each time (millions of page faults, as much system time as user time).
  :func:`tune_allocator` makes glibc keep freed memory in the heap and reuse it
  (``mallopt``: no mmap, no trimming, a 512 MiB top pad), on Linux with glibc only; other
  platforms are left as they are. It also puts the same settings in the environment
  (``MALLOC_MMAP_MAX_``, ...), so that worker processes started afterwards get them from
  their first allocation.
* **The precision.** Under bf16 autocast the forward pass runs about twice as fast on CPUs
  with native bf16 (AVX512-BF16, AMX) and on GPUs, and several times slower on CPUs without
  it. :func:`resolve_precision` turns ``auto`` into ``bf16`` where it is fast and ``fp32``
  elsewhere; :func:`autocast` is the context the forward pass runs in. Probabilities
  always leave the forward pass as float32.

Nothing here imports torch at import time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import Any

#: The ``--precision`` choices.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: CPU flags (``/proc/cpuinfo``) that mean native bf16 arithmetic.
BF16_CPU_FLAGS: frozenset[str] = frozenset({"avx512_bf16", "amx_bf16"})
#: The glibc allocator settings, as the environment variables glibc reads at start-up.
MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(16 << 30),
    "MALLOC_TOP_PAD_": str(512 << 20),
}
# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_INT_MAX = 2**31 - 1
_TUNED: list[bool] = []


def _glibc() -> Any:
    """Return the C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError on musl and others)
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Make glibc reuse large freed buffers instead of returning them to the kernel.

    Idempotent; a no-op (returning False) where the C library is not glibc on Linux.

    Returns:
        True when the settings are in force in this process.

    """
    if _TUNED:
        return _TUNED[0]
    libc = _glibc()
    ok = False
    if libc is not None:
        mallopt = libc.mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        ok = all(
            mallopt(param, value) == 1
            for param, value in (
                (_M_MMAP_MAX, 0),
                (_M_TRIM_THRESHOLD, _INT_MAX),
                (_M_TOP_PAD, int(MALLOC_ENV["MALLOC_TOP_PAD_"])),
            )
        )
        for key, value in MALLOC_ENV.items():  # processes started from here on
            os.environ.setdefault(key, value)
    _TUNED.append(ok)
    return ok


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """Return the CPU's feature flags (empty where ``cpuinfo`` cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """Return whether the CPU computes in bf16 natively (AVX512-BF16 or AMX).

    Args:
        flags: the CPU's flags (default: read from ``/proc/cpuinfo``, else torch's view of
            the CPU).

    """
    found = cpu_flags() if flags is None else flags
    if found:
        return bool(found & BF16_CPU_FLAGS)
    import torch

    return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()


def resolve_precision(precision: str | None, device: str) -> str:
    """Return the precision the network runs at: ``fp32`` or ``bf16``.

    Args:
        precision: ``auto`` (or None), ``fp32`` or ``bf16``.
        device: the torch device.

    Raises:
        ValueError: an unknown precision.

    """
    choice = precision or "auto"
    if choice not in PRECISIONS:
        raise ValueError(f"unknown precision {choice!r}: choose one of {', '.join(PRECISIONS)}")
    if choice != "auto":
        return choice
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Return the context the forward pass runs in at ``precision`` (``fp32``: none)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
