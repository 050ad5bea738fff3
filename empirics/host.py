"""The C allocator settings a training or benchmark process asks for (glibc's `mallopt`).

With glibc's defaults, freeing an activation-sized tensor (megabytes) hands its pages back to the
kernel, and the next step's tensor of that size faults them in again: on a 2-core machine a
GPT-nano `small` step took about 2000 minor page faults and 8 % longer than with the settings
below (`python -m benchmarks.train_bench` prints both, from fresh processes taking turns). They
only decide when memory returns to the kernel, never what is computed: records are the same.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt(3) parameters (glibc's malloc.h) and the values asked for: blocks below 32 MiB come from
# the heap, which is grown 256 MiB at a time and trimmed only past 1 GiB of free space at its top.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS: dict[str, tuple[int, int]] = {
    "mmap_threshold": (_M_MMAP_THRESHOLD, 32 << 20),
    "trim_threshold": (_M_TRIM_THRESHOLD, 1 << 30),
    "top_pad": (_M_TOP_PAD, 256 << 20),
}
_applied: str | None = None


def tune_allocator() -> str:
    """Ask glibc's allocator for `SETTINGS` (once per process) and say what holds: "glibc
    mallopt: ..." or "default" (not Linux, not glibc, or a setting refused). Safe to call often."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = "default"
    if not sys.platform.startswith("linux"):
        return _applied
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return _applied
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if all(mallopt(param, value) == 1 for param, value in SETTINGS.values()):
        _applied = "glibc mallopt: " + ", ".join(
            f"{name}={value >> 20} MiB" for name, (_, value) in SETTINGS.items()
        )
    return _applied
