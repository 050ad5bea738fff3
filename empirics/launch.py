"""The one grid launcher (submitit): `Launch` says where a grid's jobs run (local processes,
SLURM arrays, this process), `execute` submits items one per job or in chunks and reports each
as it finishes, `cancel` stops unfinished jobs and their processes. Library module (no CLI);
`python -m empirics.experiments.sweep run --help` lists the flags that set it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class LaunchError(ValueError):
    """Launch settings that are invalid or that this machine cannot honour; the message names
    the flag, the value and what is accepted."""


CLUSTERS = ("auto", "local", "slurm", "debug")
POLL_S = 0.5
# Seconds a cancelled local job gets to stop (the controller SIGKILLs its task after ~1 s).
CANCEL_GRACE_S = 20.0


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _positive_int(name: str, value: object, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise LaunchError(f"{name}: expected an integer >= {lo}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Launch:
    """How the grid's runs execute: a submitit executor and its parameters.

    cluster: `auto` (SLURM where `srun` exists, else local), `local` (one process per run on this
    machine, at most `parallel` at a time), `slurm` (one job array per grid, `parallel` array
    tasks at a time, in `partition`, `gpus_per_job` GPUs and `time_min` minutes each) or `debug`
    (in this process, one run after the other: tests). `threads` is torch's thread count per
    run (default: this machine's CPUs divided among the parallel local runs; on SLURM the CPUs
    the job was given). `chunk` runs share one local job, one after the other: they pay the
    worker's start-up (Python, torch, the first meta-device pass, data loading) once, which is
    most of the cost of a run of a few seconds; every run keeps its own directory, lock and
    entry, so resume works run by run (SLURM arrays keep one run per task).
    """

    cluster: str = "auto"
    parallel: int = 1
    threads: int | None = None
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    time_min: int = 24 * 60
    chunk: int = 1

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise LaunchError(
                f"--cluster: unknown value {self.cluster!r}; valid: {', '.join(CLUSTERS)}"
            )
        _positive_int("--parallel", self.parallel)
        _positive_int("--time", self.time_min)
        _positive_int("--chunk", self.chunk)
        _positive_int("--gpus-per-job", self.gpus_per_job, 0)
        if self.threads is not None:
            _positive_int("--threads", self.threads)
        if self.cpus_per_job is not None:
            _positive_int("--cpus-per-job", self.cpus_per_job)
        if self.partition is not None and not str(self.partition).strip():
            raise LaunchError("--partition: expected a SLURM partition name, got ''")

    @property
    def resolved_cluster(self) -> str:
        if self.cluster == "auto":
            return "slurm" if shutil.which("srun") else "local"
        return self.cluster

    def check(self) -> None:
        """Refuse settings this machine cannot honour (before anything is written)."""
        cluster = self.resolved_cluster
        if cluster == "slurm" and not shutil.which("srun"):
            raise LaunchError("--cluster slurm: `srun` is not on PATH; this is not a SLURM node")
        if cluster != "slurm":
            for flag, value in (
                ("--partition", self.partition),
                ("--cpus-per-job", self.cpus_per_job),
            ):
                if value is not None:
                    raise LaunchError(
                        f"{flag} {value}: only applies on SLURM, and the sweep runs on the "
                        f"{cluster} executor here (no `srun` on PATH, or --cluster {cluster})"
                    )
            if self.gpus_per_job:
                import torch

                have = torch.cuda.device_count()
                if self.gpus_per_job > have:
                    raise LaunchError(
                        f"--gpus-per-job {self.gpus_per_job}: this machine has {have} CUDA "
                        "device(s)"
                    )

    def threads_per_run(self) -> int | None:
        if self.threads is not None:
            return self.threads
        cluster = self.resolved_cluster
        if cluster == "slurm":
            return self.cpus_per_job  # None: the worker uses the CPUs SLURM gave its job
        if cluster == "debug":
            return cpus()
        return max(1, cpus() // self.parallel)

    def executor_parameters(self) -> dict[str, Any]:
        """submitit's `update_parameters` arguments for this launch."""
        params: dict[str, Any] = {
            "name": "sweep",
            "timeout_min": self.time_min,
            "gpus_per_node": self.gpus_per_job,
            "tasks_per_node": 1,
        }
        if self.resolved_cluster == "slurm":
            params["slurm_array_parallelism"] = self.parallel
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.cpus_per_job is not None:
                params["cpus_per_task"] = self.cpus_per_job
        return params


def make_executor(launch: Launch, folder: Path) -> Any:
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=launch.resolved_cluster)
    executor.update_parameters(**launch.executor_parameters())
    return executor


@contextlib.contextmanager
def sigterm_raises(interrupt: Callable[[int], BaseException]) -> Iterator[None]:
    """SIGTERM raises `interrupt(SIGTERM)`, so it cancels the jobs as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise interrupt(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _descendants(pid: int) -> list[int]:
    """Pids below `pid` in the process tree (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Processes started inside inherit SIGINT as ignored (Python then installs no
    KeyboardInterrupt handler): a Ctrl-C at the terminal reaches the whole process group, and
    the driver alone should answer it, by cancelling the jobs cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cancel(jobs: Sequence[Any]) -> None:
    """Cancel jobs and, for local ones, wait until their processes are gone (SIGKILL what is
    left after CANCEL_GRACE_S), so that no worker outlives the sweep."""
    local = []
    for job in jobs:
        process = getattr(job, "_process", None)
        if process is None:  # SLURM (scancel) or debug
            with contextlib.suppress(Exception):
                job.cancel(check=False)
            continue
        # submitit's local controller forwards SIGTERM to its task and exits once it has.
        local.append((process, _descendants(process.pid)))
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CANCEL_GRACE_S
    for process, below in local:
        with contextlib.suppress(Exception):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for pid in [process.pid, *below]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            process.wait(timeout=5)


def execute(
    todo: Sequence[T],
    launch: Launch,
    folder: Path,
    *,
    one: Callable[[T, bool], tuple[Callable[..., Any], tuple[Any, ...]]],
    many: Callable[[list[T], bool], tuple[Callable[..., Any], tuple[Any, ...]]],
    running: Callable[[T, str], None],
    finished: Callable[[Any, T | list[T]], None],
) -> None:
    """Submit `todo` and report each item as it finishes. `one(item, own_process)` and
    `many(items, own_process)` give the function and arguments of a job running one item or a
    chunk of `launch.chunk` items; `running(item, job_id)` is called once an item's job is
    submitted, `finished(job, item or chunk)` once it is done. SLURM gets one job array for the
    grid (at most `parallel` tasks at a time); the local and debug executors have no arrays, so
    at most `parallel` jobs are kept submitted there. Any exception (an interrupt included)
    cancels the unfinished jobs before it propagates."""
    if not todo:
        return
    executor = make_executor(launch, folder)
    queue = list(todo)
    own = launch.resolved_cluster != "debug"
    active: list[tuple[Any, Any]] = []
    try:
        if launch.resolved_cluster == "slurm":
            calls = [one(item, True) for item in queue]
            columns = [list(col) for col in zip(*(args for _, args in calls), strict=True)]
            jobs = executor.map_array(calls[0][0], *columns)
            active = list(zip(jobs, queue, strict=True))
            for job, item in active:
                running(item, str(job.job_id))
            queue = []
        size = launch.chunk if launch.resolved_cluster != "slurm" else 1
        while queue or active:
            while queue and len(active) < launch.parallel:
                queue = _submit_next(executor, queue, size, launch.parallel, own, one, many,
                                     active, running)  # fmt: skip
            ready = [(job, item) for job, item in active if job.done()]
            for job, item in ready:
                active.remove((job, item))
                finished(job, item)
            if not ready:
                time.sleep(POLL_S)
    except BaseException:
        cancel([job for job, _ in active])
        raise


def _submit_next(
    executor: Any,
    queue: list[Any],
    size: int,
    parallel: int,
    own: bool,
    one: Callable[..., tuple[Callable[..., Any], tuple[Any, ...]]],
    many: Callable[..., tuple[Callable[..., Any], tuple[Any, ...]]],
    active: list[tuple[Any, Any]],
    running: Callable[[Any, str], None],
) -> list[Any]:
    """Submit the next job (one item, or a chunk) and return the queue left."""
    if size == 1:
        item = queue[0]
        fn, args = one(item, own)
        with children_ignore_sigint():
            job = executor.submit(fn, *args)
        active.append((job, item))
        running(item, str(job.job_id))
        return queue[1:]
    # Deal the remaining items evenly over all slots (busy ones free up soon), at most `size`
    # per job, so that the grid's last jobs do not leave a core idle.
    take = min(size, -(-len(queue) // parallel))
    part = queue[:take]
    fn, args = many(part, own)
    with children_ignore_sigint():
        job = executor.submit(fn, *args)
    active.append((job, part))
    for item in part:
        running(item, str(job.job_id))
    return queue[take:]
