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


def dense_matmul_rate(
    device: str, seconds: float = 1.5, *, dtype: torch.dtype = torch.float32, n: int = MATMUL_N
) -> float:
    """FLOP/s of an n x n x n matmul in `dtype` on this machine, measured now (after a warm-up,
    in groups of 10 synchronised on an accelerator, for at least `seconds`)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen).to(dtype)
    b = torch.randn(n, n, device=device, generator=gen).to(dtype)
    for _ in range(3):
        a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            a @ b
        sync(device)
        count += 10
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count * 2 * n**3 / elapsed


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
