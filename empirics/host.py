"""The host side of a CPU tensor: the C allocator settings a training or benchmark process asks
for (glibc's `mallopt`), and numpy's view of a tensor's memory (`host_view`).

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

import numpy as np
import torch

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


def host_view(t: torch.Tensor) -> np.ndarray | None:
    """numpy's view of t's memory (same shape, no copy) when t is a contiguous float32/float64
    CPU tensor, else None. numpy's selections, comparisons into bool arrays and counts run
    several times faster on CPU than torch's, and its counts are exact. None while torch.compile
    traces (the hooks of a compiled model): the torch path traces as it is, where numpy arrays
    written in place would not be what the compiled graph sees."""
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
        return None
    if torch.compiler.is_compiling() or not t.is_contiguous():
        return None
    return t.detach().numpy()
