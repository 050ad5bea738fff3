"""One grid point as a job: `run_point` trains it while holding its lock, `run_points` a chunk of
them in turn, and `collect`/`collect_chunk` read a finished job's index entries (a job that
died is judged by each run's own directory). The sweep (`python -m empirics.experiments.sweep
run`) submits these through `empirics.launch`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from empirics.experiments.sweep_state import run_status, summary_fields
from empirics.launch import cpus
from empirics.train.config import TrainConfig
from empirics.train.runtime import TrainingDiverged


def run_point(
    cfg: TrainConfig, threads: int | None, lock_path: str, own_process: bool = True
) -> dict[str, Any]:
    """The body of one job: train one grid point while holding its lock. An Exception becomes
    the entry's status (one bad run must not lose the others). In a job's own process (local,
    SLURM) SIGINT/SIGTERM stop the run at a step boundary with its records kept; in the
    driver's process (debug executor) an interrupt propagates to the driver."""
    import torch

    from empirics.train.loop import train
    from empirics.train.runtime import StopFlag

    entry: dict[str, Any] = {"run": cfg.run, "status": "failed"}
    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            entry["message"] = f"another process holds {lock_path}; this point is running there"
            return entry
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        before = torch.get_num_threads()
        entry["threads"] = threads if threads is not None else cpus()
        stop = StopFlag()
        handle = own_process and threading.current_thread() is threading.main_thread()
        try:
            with stop.installed() if handle else contextlib.nullcontext():
                train(cfg.replace(threads=entry["threads"]), stop=stop)
            entry["status"] = "completed"
        except TrainingDiverged as exc:
            entry["status"], entry["message"] = "diverged", str(exc)
        except KeyboardInterrupt as exc:
            if not own_process:
                raise
            entry["status"], entry["message"] = "interrupted", str(exc) or "SIGINT"
        except Exception as exc:  # noqa: BLE001 -- recorded in the index, the sweep goes on
            entry["message"] = f"{type(exc).__name__}: {exc}"
        finally:
            torch.set_num_threads(before)
    entry.update(summary_fields(Path(cfg.out)))
    return entry


def run_points(
    cfgs: Sequence[TrainConfig],
    threads: int | None,
    lock_paths: Sequence[str],
    own_process: bool = True,
) -> list[dict[str, Any]]:
    """The body of a chunked job: `run_point` for each config in turn, stopping at the first
    interrupted one (the rest are reported "cancelled" and left for a resume)."""
    entries: list[dict[str, Any]] = []
    for cfg, lock_path in zip(cfgs, lock_paths, strict=True):
        if entries and entries[-1]["status"] == "interrupted":
            entries.append({"run": cfg.run, "status": "cancelled", "message": "chunk interrupted"})
            continue
        entries.append(run_point(cfg, threads, lock_path, own_process))
    return entries


def collect_chunk(job: Any, cfgs: Sequence[TrainConfig]) -> list[dict[str, Any]]:
    """Entries of a chunked job (see `_collect`)."""
    return _collect(job, cfgs, lambda result: [dict(e) for e in result])


def collect(job: Any, cfg: TrainConfig) -> dict[str, Any]:
    """The entry of a one-run job (see `_collect`)."""
    return _collect(job, [cfg], lambda result: [dict(result)])[0]


def _collect(
    job: Any, cfgs: Sequence[TrainConfig], entries_of: Callable[[Any], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The entries a job reports; if the job died (killed, OOM), each run is judged by its own
    directory: one that completed before the job died stays completed, the others failed."""
    try:
        entries = entries_of(job.result())
    except Exception as exc:  # noqa: BLE001 -- a dead job: read each run's summary
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        entries = []
        for cfg in cfgs:
            if run_status(Path(cfg.out)) == "completed":
                entries.append({"status": "completed", **summary_fields(Path(cfg.out))})
            else:
                entries.append(
                    {
                        "status": "failed",
                        "message": f"{type(exc).__name__}: {first}"[:500],
                        **summary_fields(Path(cfg.out)),
                    }
                )
    log = getattr(getattr(job, "paths", None), "stderr", None)
    for entry in entries:
        if entry.get("status") != "completed" and log is not None:
            entry["log"] = str(log)
    return entries
