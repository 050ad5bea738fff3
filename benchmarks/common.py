"""What the benchmarks share: the dense matmul rate they compare against and interleaved timing.

Not run on its own; `make bench` runs the benchmarks that use it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from empirics.outputs import resolve_device

MATMUL_N = 1024  # the reference problem: one n x n x n float32 matmul


def device_arg(text: str) -> str:
    """`--device` for argparse: auto/cpu/cuda[:N] resolved, else exit 2 with the reason."""
    try:
        return resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def dense_matmul_rate(device: str, seconds: float = 1.5) -> float:
    """FLOP/s of a 1024^3 float32 matmul on this machine, measured now."""
    a = torch.randn(MATMUL_N, MATMUL_N, device=device)
    b = torch.randn(MATMUL_N, MATMUL_N, device=device)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    sync(device)
    return n * 2 * MATMUL_N**3 / (time.perf_counter() - start)


def matmul_burst(device: str, count: int = 3) -> tuple[Callable[[], None], float]:
    """A callable doing `count` 1024^3 matmuls, and the FLOPs it does: timed in turn with the
    steps it is compared with, so that the rate and the steps see the same machine load."""
    a = torch.randn(MATMUL_N, MATMUL_N, device=device)
    b = torch.randn(MATMUL_N, MATMUL_N, device=device)

    def burst() -> None:
        for _ in range(count):
            a @ b

    return burst, count * 2.0 * MATMUL_N**3


def interleaved(
    steps: dict[str, Callable[[], None]], reps: int, device: str, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each callable, taking turns so drifts in load hit all."""
    for fn in steps.values():  # warm-up: allocator, first-call dispatch
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for name, fn in steps.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
