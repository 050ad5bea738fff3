"""Grids of training runs (arch × activation × seed) on submitit, and the drift report over them.

`python -m empirics.experiments.sweep run --arch mlp,vit --activation relu --activation 'sq=x**2/2'
--seeds 0,1
--preset small --out results/sweeps/NAME [--parallel 2] [--cluster slurm --partition gpu ...]`
runs or resumes the grid; `python -m empirics.experiments.sweep report DIR` prints the drift table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import threading
import time
import typing
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from empirics.cli import InputError, activation_slug, run_name, split_specs
from empirics.cli import parse_seeds as cli_parse_seeds
from empirics.outputs import atomic_write_json, provenance, read_records
from empirics.train.config import NOT_IDENTITY, ConfigError, TrainConfig, parse_sets
from empirics.train.loop import plan
from empirics.train.runtime import CHECKPOINT, TrainingDiverged

# Layout of a sweep directory:
#   sweep.json        marks the directory as a sweep; the invocations that ran in it
#   index.json        every run's status, rewritten atomically as runs finish (derived: it is
#                     rebuilt from the run directories when missing or unreadable)
#   runs/NAME/        one training run (records.csv, config.json, summary.json)
#   points/NAME.json  the run's resolved configuration, compared when the sweep is resumed
#   locks/NAME.lock   held (flock) by the process training NAME
#   submitit/         submitit's job pickles and per-job logs
INDEX = "index.json"
MARKER = "sweep.json"
RUNS, POINTS, LOCKS, JOBS = "runs", "points", "locks", "submitit"
CLUSTERS = ("auto", "local", "slurm", "debug")
# Fields of a resolved TrainConfig that say where a run is written or how it is displayed, not
# what it computes; every other field must match when a sweep resumes.
NOT_COMPARED = frozenset({"out", "run", "progress", *NOT_IDENTITY})
POLL_S = 0.5
MAX_SEED = 2**63 - 1
# Seconds a cancelled local job gets to stop (the controller SIGKILLs its task after ~1 s).
CANCEL_GRACE_S = 20.0
FINISHED = ("completed", "diverged", "failed", "cancelled", "interrupted")


class SweepInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the sweep; its unfinished jobs were cancelled."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


# ------------------------------------------------------------------------------ the grid


def split_values(values: Sequence[str], field: str = "--arch/--activation") -> list[str]:
    """Repeated `--arch`/`--activation` values, each a comma list unless it holds '=' (the one
    list grammar of `empirics.cli.split_specs`: `mlp,,vit` is refused, not read as two)."""
    try:
        return split_specs(values, field)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def parse_seeds(values: Sequence[str]) -> list[int]:
    """`--seeds 0,1 --seeds 2` -> [0, 1, 2] in the one seed range; ConfigError names the bad
    entry."""
    try:
        return cli_parse_seeds(list(values), "--seeds")
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def grid(
    archs: Sequence[str],
    activations: Sequence[str],
    seeds: Sequence[int],
    base: TrainConfig,
    root: Path,
    model_sets: Sequence[str] = (),
) -> list[TrainConfig]:
    """One TrainConfig per grid point, each checked (ConfigError) before anything runs."""
    for flag, values in (("--arch", archs), ("--activation", activations), ("--seeds", seeds)):
        if not values:
            raise ConfigError(f"{flag}: no values given, so the grid is empty")
    configs = []
    for arch, act, seed in itertools.product(archs, activations, seeds):
        name = run_name(arch, activation_slug(act), base.data, seed=seed)
        cfg = base.replace(
            arch=arch,
            activation=act,
            seed=seed,
            run=name,
            out=str(Path(root) / RUNS / name),
            progress=False,
            model=parse_sets(arch, model_sets) if model_sets else dict(base.model),
        )
        plan(cfg)
        configs.append(cfg)
    _unique_names(configs)
    return configs


def _unique_names(configs: Sequence[TrainConfig]) -> None:
    names = [c.run for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"grid: two grid points share the run name(s) {', '.join(repeated)} "
            "(a repeated seed, or two activations with the same name)"
        )


# ----------------------------------------------------------------- where and how runs execute


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _positive_int(name: str, value: object, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{name}: expected an integer >= {lo}, got {value!r}")


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
            raise ConfigError(
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
            raise ConfigError("--partition: expected a SLURM partition name, got ''")

    @property
    def resolved_cluster(self) -> str:
        if self.cluster == "auto":
            return "slurm" if shutil.which("srun") else "local"
        return self.cluster

    def check(self) -> None:
        """Refuse settings this machine cannot honour (before anything is written)."""
        cluster = self.resolved_cluster
        if cluster == "slurm" and not shutil.which("srun"):
            raise ConfigError("--cluster slurm: `srun` is not on PATH; this is not a SLURM node")
        if cluster != "slurm":
            for flag, value in (
                ("--partition", self.partition),
                ("--cpus-per-job", self.cpus_per_job),
            ):
                if value is not None:
                    raise ConfigError(
                        f"{flag} {value}: only applies on SLURM, and the sweep runs on the "
                        f"{cluster} executor here (no `srun` on PATH, or --cluster {cluster})"
                    )
            if self.gpus_per_job:
                import torch

                have = torch.cuda.device_count()
                if self.gpus_per_job > have:
                    raise ConfigError(
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
            return _cpus()
        return max(1, _cpus() // self.parallel)

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


# ------------------------------------------------------------------------ one run (the job)


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
        entry["threads"] = threads if threads is not None else _cpus()
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
    entry.update(_summary_fields(Path(cfg.out)))
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _finite(value: Any) -> Any:
    """NaN/inf -> None so that the index stays valid JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _summary_fields(out: Path) -> dict[str, Any]:
    body = _read_json(out / "summary.json")
    if not isinstance(body, dict):
        return {}
    return _finite({k: body.get(k) for k in ("final_loss", "val", "wall_time_s")})


def _status(out: Path) -> str | None:
    body = _read_json(out / "summary.json")
    return body.get("status") if isinstance(body, dict) else None


# -------------------------------------------------------------- resolved configs and resume


def _plain(obj: Any) -> dict[str, Any]:
    """A config object as plain JSON data (tuples become lists, as they do on disk)."""
    if hasattr(obj, "model_dump"):
        data = obj.model_dump(mode="json")
    elif dataclasses.is_dataclass(obj):
        data = dataclasses.asdict(obj)
    else:
        data = dict(obj)
    return json.loads(json.dumps(data, default=str))


def point_record(cfg: TrainConfig) -> dict[str, Any]:
    """What a grid point computes: its resolved train and model configs (preset applied)."""
    p = plan(cfg)
    resolved = p.cfg.identity() if hasattr(p.cfg, "identity") else _plain(p.cfg)
    train = {k: v for k, v in resolved.items() if k not in NOT_COMPARED}
    return {
        "run": cfg.run,
        "arch": cfg.arch,
        "activation": cfg.activation.spec,
        "seed": cfg.seed,
        "train": train,
        "model": _plain(p.model_cfg),
    }


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.get("train", {}).items() if k not in NOT_COMPARED}
    out.update({f"model.{k}": v for k, v in record.get("model", {}).items()})
    return out


def _stored_record(root: Path, run: str) -> dict[str, Any] | None:
    """The recorded config of a run: points/NAME.json, else the trainer's config.json."""
    body = _read_json(root / POINTS / f"{run}.json")
    if isinstance(body, dict) and "train" in body:
        return body
    body = _read_json(root / RUNS / run / "config.json")
    if isinstance(body, dict):
        train = body.get("identity", body.get("train"))
        if isinstance(train, dict):
            return {"run": run, "train": train, "model": body.get("model", {})}
    return None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _flat(old), _flat(new)
    return [
        f"{key}: {a.get(key, '(unset)')!r} then, {b.get(key, '(unset)')!r} now"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def check_resume(root: Path, configs: Sequence[TrainConfig]) -> dict[str, dict[str, Any]]:
    """Resolved records of the grid; ConfigError when a completed run in `root` was made with
    other settings (resuming must never pass old runs off as the new grid's)."""
    records = {cfg.run: point_record(cfg) for cfg in configs}
    same_arch = {cfg.arch: cfg for cfg in configs}
    for run_dir in sorted((root / RUNS).glob("*")) if (root / RUNS).is_dir() else []:
        run = run_dir.name
        if _status(run_dir) != "completed":
            continue  # redone from a clean directory if it is in the grid
        stored = _stored_record(root, run)
        if stored is None:
            raise ConfigError(
                f"--out {root}: run {run} has no record of the settings it was made with; "
                f"delete {run_dir} or choose a new --out"
            )
        if run in records:
            new = records[run]
        else:  # a run of an earlier, different grid in the same directory
            summary = _read_json(run_dir / "summary.json") or {}
            arch = stored.get("arch") or stored["train"].get("arch") or summary.get("arch")
            if arch not in same_arch:
                continue  # an architecture this grid does not run: nothing to compare with
            new = point_record(
                same_arch[arch].replace(
                    activation=stored.get("activation") or stored["train"]["activation"],
                    seed=stored.get("seed", stored["train"].get("seed")),
                    run=run,
                    out=str(run_dir),
                )
            )
        diff = _differences(stored, new)
        if diff:
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise ConfigError(
                f"--out {root}: completed run {run} was made with other settings ({shown}); "
                "resume with the same settings or choose a new --out"
            )
    return records


def _resumable(root: Path, out: Path, record: dict[str, Any]) -> bool:
    """An unfinished run the trainer can resume: stopped or killed (not failed or diverged),
    with a checkpoint, made with the same settings. Anything else is redone from scratch."""
    if _status(out) not in ("running", "interrupted", "cancelled"):
        return False
    if not (out / CHECKPOINT).is_file():
        return False
    stored = _stored_record(root, out.name)
    return stored is not None and not _differences(stored, record)


def check_out_dir(root: Path) -> None:
    """--out must be a directory we may write, and either new, empty or a sweep directory."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out: {root} is a file; expected a directory for the sweep")
    ancestor = root
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"--out: {root} lies under {ancestor}, which is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"--out: {ancestor} is not writable")
    if root.is_dir() and any(root.iterdir()):
        if not any((root / name).exists() for name in (MARKER, INDEX, RUNS)):
            raise ConfigError(
                f"--out: {root} exists and is not a sweep directory (no {MARKER}, {INDEX} or "
                f"{RUNS}/); choose a new or empty directory"
            )


@contextlib.contextmanager
def _sweep_lock(root: Path) -> Iterator[None]:
    """One driver per sweep directory at a time."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".sweep.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            raise ConfigError(
                f"--out {root}: another sweep (pid {pid}) is running in this directory"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


def _held_by_other(lock_path: Path) -> str | None:
    """The pid written in a run's lock file when a live process holds it, else None."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        return (lock_path.read_text().strip() or "?") if lock_path.exists() else "?"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- the index


def _entry(cfg: TrainConfig, **fields: Any) -> dict[str, Any]:
    return {
        "run": cfg.run,
        "arch": cfg.arch,
        "activation": cfg.activation.spec,
        "seed": cfg.seed,
        "dir": Path(cfg.out).name,
        **fields,
    }


def _entry_from_dir(run_dir: Path) -> dict[str, Any]:
    summary = _read_json(run_dir / "summary.json")
    summary = summary if isinstance(summary, dict) else {}
    return {
        "run": run_dir.name,
        "arch": summary.get("arch"),
        "activation": summary.get("activation"),
        "seed": summary.get("seed"),
        "dir": run_dir.name,
        "status": summary.get("status") or "unknown",
        **_summary_fields(run_dir),
    }


def rebuild_index(root: Path) -> dict[str, Any]:
    """The index as the run directories tell it (the index is derived data)."""
    runs_dir = root / RUNS
    dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    runs = [_entry_from_dir(d) for d in dirs]
    return {"runs": runs, "pending": 0, "rebuilt": True}


def load_index(root: Path, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """index.json, or (missing or unreadable) the index rebuilt from root/runs/*; a directory
    with neither raises FileNotFoundError."""
    path = root / INDEX
    body = _read_json(path)
    valid = (
        isinstance(body, dict)
        and isinstance(body.get("runs"), list)
        and all(isinstance(e, dict) and {"run", "status"} <= set(e) for e in body["runs"])
    )
    if valid:
        return body
    if not (root / RUNS).is_dir():
        raise FileNotFoundError(f"{root} has no {INDEX} and no {RUNS}/: not a sweep directory")
    if warn is not None:
        reason = "missing" if not path.exists() else "unreadable"
        warn(f"{path} is {reason}; rebuilt it from {root / RUNS}")
    return rebuild_index(root)


# ------------------------------------------------------------------------------- running


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM becomes SweepInterrupted, so it cancels the jobs as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SweepInterrupted(signal.SIGTERM)

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
def _children_ignore_sigint() -> Iterator[None]:
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


def _cancel(jobs: Sequence[Any]) -> None:
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


def _collect_chunk(job: Any, cfgs: Sequence[TrainConfig]) -> list[dict[str, Any]]:
    """Entries of a chunked job; if the job died, each run is judged by its own directory (a
    run that completed before the job died stays completed)."""
    try:
        entries = [dict(e) for e in job.result()]
    except Exception as exc:  # noqa: BLE001 -- a dead job: read each run's summary
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        entries = []
        for cfg in cfgs:
            if _status(Path(cfg.out)) == "completed":
                entries.append({"status": "completed", **_summary_fields(Path(cfg.out))})
            else:
                entries.append(
                    {
                        "status": "failed",
                        "message": f"{type(exc).__name__}: {first}"[:500],
                        **_summary_fields(Path(cfg.out)),
                    }
                )
    log = getattr(getattr(job, "paths", None), "stderr", None)
    for entry in entries:
        if entry.get("status") != "completed" and log is not None:
            entry["log"] = str(log)
    return entries


def _collect(job: Any, cfg: TrainConfig) -> dict[str, Any]:
    try:
        entry = dict(job.result())
    except Exception as exc:  # noqa: BLE001 -- a job that died (killed, OOM) is one failed run
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        entry = {"status": "failed", "message": f"{type(exc).__name__}: {first}"[:500]}
        entry.update(_summary_fields(Path(cfg.out)))
    log = getattr(getattr(job, "paths", None), "stderr", None)
    if entry.get("status") != "completed" and log is not None:
        entry["log"] = str(log)
    return entry


def _describe(entry: dict[str, Any]) -> str:
    parts = [entry["status"]]
    if entry.get("final_loss") is not None:
        parts.append(f"loss {entry['final_loss']:.4g}")
    for key, value in (entry.get("val") or {}).items():
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value:.4g}")
            break
    if entry.get("wall_time_s") is not None:
        parts.append(f"{entry['wall_time_s']:.1f} s")
    if entry.get("message") and entry["status"] != "completed":
        parts.append(entry["message"].splitlines()[0][:200])
    return "  ".join(parts)


def run_sweep(
    configs: Sequence[TrainConfig],
    root: Path,
    launch: Launch | None = None,
    *,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run every config not already completed under root/runs through submitit; keep
    root/index.json current as runs finish and return it.

    Everything is checked before anything is written (ConfigError): the grid, the launch, the
    output directory, and that every completed run in root was made with the same settings. A
    run directory whose summary.json does not say "completed" (killed, diverged, failed) is
    deleted and redone from scratch, so no run mixes records of two attempts. SIGINT/SIGTERM
    cancel the unfinished jobs, wait for their processes, mark them "cancelled" and raise
    SweepInterrupted; rerunning the same call resumes.
    """
    launch = launch if launch is not None else Launch()
    say = echo if echo is not None else (lambda line: None)
    root = Path(root)
    if not configs:
        raise ConfigError("grid: no grid points (an empty --arch, --activation or --seeds)")
    _unique_names(configs)
    for cfg in configs:  # resume, locks and the index find a run by this layout
        if not cfg.run or Path(cfg.out or "").absolute() != (root / RUNS / cfg.run).absolute():
            raise ConfigError(
                f"grid: run {cfg.run!r} must write to {root / RUNS / str(cfg.run)}, not {cfg.out}"
            )
    launch.check()
    check_out_dir(root)
    records = check_resume(root, configs)
    threads = launch.threads_per_run()
    started = time.perf_counter()
    with _sweep_lock(root), _sigterm_raises():
        for cfg in configs:
            holder = _held_by_other(root / LOCKS / f"{cfg.run}.lock")
            if holder is not None and _status(Path(cfg.out)) != "completed":
                raise ConfigError(
                    f"--out {root}: run {cfg.run} is still being trained by process {holder} "
                    "(left running by a killed sweep?); stop it or wait, then rerun"
                )
        marker = _read_json(root / MARKER)
        history = marker.get("invocations", []) if isinstance(marker, dict) else []
        history.append({"grid": len(configs), "cluster": launch.resolved_cluster, **provenance()})
        atomic_write_json(root / MARKER, {"invocations": history[-50:]})
        if (root / INDEX).exists() and not isinstance(_read_json(root / INDEX), dict):
            say(f"{root / INDEX} was unreadable; rewriting it from {root / RUNS}")
        entries: dict[str, dict[str, Any]] = {}
        in_grid = {cfg.run for cfg in configs}
        for run_dir in sorted((root / RUNS).glob("*")) if (root / RUNS).is_dir() else []:
            if run_dir.name not in in_grid and run_dir.is_dir():
                entries[run_dir.name] = {**_entry_from_dir(run_dir), "in_grid": False}
        todo = []
        for cfg in configs:
            out = Path(cfg.out)
            if _status(out) == "completed":
                entries[cfg.run] = _entry(
                    cfg, status="completed", skipped=True, **_summary_fields(out)
                )
                continue
            if out.exists() and not _resumable(root, out, records[cfg.run]):
                shutil.rmtree(out)
            atomic_write_json(root / POINTS / f"{cfg.run}.json", records[cfg.run])
            entries[cfg.run] = _entry(cfg, status="pending")
            todo.append(cfg)
        order = [cfg.run for cfg in configs] + sorted(set(entries) - in_grid)

        def save() -> None:
            runs = [entries[name] for name in order if name in entries]
            pending = sum(1 for e in runs if e["status"] in ("pending", "running"))
            atomic_write_json(root / INDEX, _finite({"runs": runs, "pending": pending}))

        save()
        skipped = len(configs) - len(todo)
        say(
            f"sweep {root}: {len(configs)} runs, {skipped} already completed, {len(todo)} to run "
            f"on the {launch.resolved_cluster} executor ({launch.parallel} at a time)"
        )
        finished = 0

        def done(cfg: TrainConfig, entry: dict[str, Any]) -> None:
            nonlocal finished
            finished += 1
            job_id = entries[cfg.run].get("job_id")
            entries[cfg.run] = _entry(cfg, **{**entry, "run": cfg.run, "job_id": job_id})
            save()
            width = len(str(len(todo)))
            say(f"[{finished:>{width}}/{len(todo)}] {cfg.run}: {_describe(entries[cfg.run])}")

        def running(cfg: TrainConfig, job_id: str) -> None:
            entries[cfg.run].update(status="running", job_id=job_id)
            save()

        try:
            _execute(todo, root, launch, threads, running, done)
        except KeyboardInterrupt as exc:
            for name in order:
                if entries.get(name, {}).get("status") in ("pending", "running"):
                    entries[name]["status"] = "cancelled"
            save()
            signum = exc.signum if isinstance(exc, SweepInterrupted) else signal.SIGINT
            raise SweepInterrupted(signum) from None
    index = _read_json(root / INDEX)
    runs = [e for e in index["runs"] if e["run"] in in_grid]
    counts = defaultdict(int)
    for e in runs:
        counts[e["status"]] += 1
    other = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "completed")
    say(
        f"sweep {root}: {counts['completed']}/{len(configs)} completed ({skipped} already done)"
        + (f", {other}" if other else "")
        + f" in {time.perf_counter() - started:.0f} s; index {root / INDEX}"
    )
    return index


def _execute(
    todo: Sequence[TrainConfig],
    root: Path,
    launch: Launch,
    threads: int | None,
    running: Callable[[TrainConfig, str], None],
    done: Callable[[TrainConfig, dict[str, Any]], None],
) -> None:
    """Submit the runs and report each as it finishes. SLURM gets one job array for the grid
    (at most `parallel` tasks at a time); the local and debug executors have no arrays, so at
    most `parallel` jobs are kept submitted there."""
    if not todo:
        return
    executor = make_executor(launch, root / JOBS)

    def lock(cfg: TrainConfig) -> str:
        return str(root / LOCKS / f"{cfg.run}.lock")

    queue = list(todo)
    own = launch.resolved_cluster != "debug"
    active: list[tuple[Any, TrainConfig]] = []
    try:
        if launch.resolved_cluster == "slurm":
            n = len(queue)
            jobs = executor.map_array(
                run_point, queue, [threads] * n, [lock(c) for c in queue], [True] * n
            )
            active = list(zip(jobs, queue, strict=True))
            for job, cfg in active:
                running(cfg, str(job.job_id))
            queue = []
        size = launch.chunk if launch.resolved_cluster != "slurm" else 1
        while queue or active:
            while queue and len(active) < launch.parallel:
                if size == 1:
                    cfg = queue.pop(0)
                    with _children_ignore_sigint():
                        job = executor.submit(run_point, cfg, threads, lock(cfg), own)
                    active.append((job, cfg))
                    running(cfg, str(job.job_id))
                    continue
                # Deal the remaining runs evenly over all slots (busy ones free up soon), at
                # most `size` per job, so that the grid's last jobs do not leave a core idle.
                share = -(-len(queue) // launch.parallel)
                part, queue = queue[: min(size, share)], queue[min(size, share) :]
                with _children_ignore_sigint():
                    job = executor.submit(run_points, part, threads, [lock(c) for c in part], own)
                active.append((job, part))
                for cfg in part:
                    running(cfg, str(job.job_id))
            ready = [(job, item) for job, item in active if job.done()]
            for job, item in ready:
                active.remove((job, item))
                if isinstance(item, list):
                    for cfg, entry in zip(item, _collect_chunk(job, item), strict=True):
                        done(cfg, entry)
                else:
                    done(item, _collect(job, item))
            if not ready:
                time.sleep(POLL_S)
    except BaseException:
        _cancel([job for job, _ in active])
        raise


# ------------------------------------------------------------------------------ the report

REPORT_COLUMNS = (
    "arch",
    "activation",
    "runs",
    "step_k",
    "preact_0",
    "preact_k",
    "d_preact",
    "falling",
    "d_sparsity",
    "d_negative_rate",
    "d_weight_part",
    "d_mean_part",
    "d_bias",
    "d_weight_mean",
    "d_weight_meandir",
    "drift_score_k",
    "responsible",
)


def _value_at(series: dict[int, float], step: int) -> float:
    """The value at the last logged step <= step."""
    eligible = [s for s in series if s <= step]
    return series[max(eligible)] if eligible else math.nan


def _run_drift(
    rows: list[dict[str, Any]], feeds: dict[str, str], k: int | None
) -> tuple[int, dict[str, float]] | None:
    series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in rows:
        series[(r["layer"], r["metric"])][r["step"]] = r["value"]
    act_layers = sorted({layer for layer, metric in series if metric == "preact_mean"})
    if not act_layers:
        return None
    steps = sorted(series[(act_layers[0], "preact_mean")])
    step_k = steps[-1] if k is None else k
    per_layer: dict[str, list[float]] = defaultdict(list)
    for act in act_layers:

        def delta(layer: str, metric: str) -> float:
            s = series.get((layer, metric))
            if not s:
                return math.nan
            return _value_at(s, step_k) - s[min(s)]

        p = series[(act, "preact_mean")]
        per_layer["preact_0"].append(p[min(p)])
        per_layer["preact_k"].append(_value_at(p, step_k))
        per_layer["d_preact"].append(delta(act, "preact_mean"))
        per_layer["d_sparsity"].append(delta(act, "sparsity"))
        per_layer["d_negative_rate"].append(delta(act, "negative_rate"))
        src = feeds.get(act)
        for col, metric in (
            ("d_weight_part", "preact_weight_part"),
            ("d_mean_part", "preact_weight_meanpart"),
            ("d_bias", "bias_mean"),
            ("d_weight_mean", "weight_mean"),
            ("d_weight_meandir", "weight_meandir"),
        ):
            per_layer[col].append(delta(src, metric) if src else math.nan)
        ds = series.get((src, "drift_score")) if src else None
        per_layer["drift_score_k"].append(_value_at(ds, step_k) if ds else math.nan)
    out = {col: _nanmean(vals) for col, vals in per_layer.items()}
    out["falling"] = sum(1 for d in per_layer["d_preact"] if d < 0)
    out["layers"] = len(act_layers)
    return step_k, out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def _responsible(row: dict[str, Any]) -> str:
    """Which part of the pre-activation shift moved most: biases, the weights' plain mean, or
    the weights along the mean input direction x̄ (d_weight_part − d_mean_part)."""
    parts = {
        "biases": row["d_bias"],
        "weights: plain mean": row["d_mean_part"],
        "weights: along x̄": row["d_weight_part"] - row["d_mean_part"],
    }
    finite = {k: v for k, v in parts.items() if not math.isnan(v)}
    if not finite:
        return "n/a"
    return max(finite, key=lambda k: abs(finite[k]))


def drift_report(
    sweep_dir: str | Path,
    *,
    step_k: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Per arch × activation (seeds and activation layers averaged): preact_mean at step 0 vs
    step k (default the last logged step), the sparsity / negative_rate change, and the
    weight/bias metric deltas of the feeding layers with which part moved the pre-activation.

    `falling` counts activation layers (summed over seeds) whose preact_mean went down. A
    completed run whose files cannot be read is left out (with `warn`).
    """
    root = Path(sweep_dir)
    runs = load_index(root, warn)["runs"]
    groups: dict[tuple[str, str], list[tuple[int, dict[str, float]]]] = defaultdict(list)
    for entry in runs:
        if entry.get("status") != "completed":
            continue
        run_dir = root / RUNS / entry.get("dir", entry["run"])
        summary = _read_json(run_dir / "summary.json")
        try:
            rows = read_records(run_dir / "records.csv")
        except (OSError, ValueError, KeyError) as exc:
            rows = None
            problem = f"{type(exc).__name__}: {exc}"
        if not isinstance(summary, dict) or rows is None:
            if warn is not None:
                warn(f"{run_dir}: unreadable ({problem if rows is None else 'summary.json'})")
            continue
        got = _run_drift(rows, summary.get("feeds", {}), step_k)
        if got is not None:
            groups[(summary.get("arch"), summary.get("activation"))].append(got)
    rows_out = []
    for (arch, act), results in groups.items():
        row: dict[str, Any] = {"arch": arch, "activation": act, "runs": len(results)}
        row["step_k"] = min(k for k, _ in results)
        for col in REPORT_COLUMNS[4:-1]:
            if col == "falling":
                continue
            row[col] = _nanmean([r[col] for _, r in results])
        falling = sum(r["falling"] for _, r in results)
        row["falling"] = f"{falling}/{sum(r['layers'] for _, r in results)}"
        row["responsible"] = _responsible(row)
        rows_out.append(row)
    return rows_out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:+.4g}"
        return str(v)

    table = [list(REPORT_COLUMNS)] + [[cell(r[c]) for c in REPORT_COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(REPORT_COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in table
    )


# ---------------------------------------------------------------------------------- the CLI

PROG = "python -m empirics.experiments.sweep"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the run subcommand's usage alone is a dozen lines."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog=PROG,
        description="Run (or resume) a grid of training runs through submitit; "
        "`report DIR` prints its drift table. Exit codes: 0 all runs completed, 1 a run "
        "failed, diverged or was cancelled, 2 bad input.",
    )
    sub = ap.add_subparsers(
        dest="command", required=True, metavar="{run,report}", parser_class=_Parser
    )
    run = sub.add_parser("run", help="run or resume a grid (arch x activation x seed)")
    run.add_argument(
        "--arch", action="append", required=True, help="architectures (repeatable, or a,b)"
    )
    run.add_argument(
        "--activation",
        action="append",
        required=True,
        help="registry names or NAME=EXPR (repeatable; a value without '=' may be a comma list)",
    )
    run.add_argument("--seeds", action="append", default=None, help="integers (default 0)")
    run.add_argument("--preset", default="small", help="smoke | small | paper")
    run.add_argument("--data", default="real")
    run.add_argument("--steps", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--optimizer")
    run.add_argument("--early-steps", type=int)
    run.add_argument(
        "--checkpoint-every",
        type=int,
        help="each run writes a checkpoint every N steps; a killed run then resumes from it",
    )
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--out", required=True, help="sweep directory, e.g. results/sweeps/NAME")
    where = run.add_argument_group("where the runs execute (submitit)")
    where.add_argument(
        "--cluster",
        default="auto",
        help="auto (SLURM if srun exists, else local) | local | slurm | debug (in this process)",
    )
    where.add_argument(
        "--parallel",
        "--jobs",
        dest="parallel",
        type=int,
        default=1,
        help="runs at a time (local processes, or SLURM array tasks)",
    )
    where.add_argument("--threads", type=int, help="torch threads per run (default CPUs/parallel)")
    where.add_argument(
        "--chunk", type=int, default=1, help="runs per local job, in turn (start-up paid once)"
    )
    where.add_argument("--partition", help="SLURM partition")
    where.add_argument("--gpus-per-job", type=int, default=0)
    where.add_argument("--cpus-per-job", type=int, help="SLURM CPUs per task")
    where.add_argument(
        "--time", dest="time_min", type=int, default=24 * 60, help="minutes per run (limit)"
    )
    report = sub.add_parser("report", help="print the drift table of a sweep directory")
    report.add_argument("dir")
    report.add_argument("--step", type=int, help="compare step 0 with this step (default last)")
    return ap


def _fail(command: str, message: str) -> int:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return 2


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        return _fail("report", f"DIR: {root} is not a directory")
    if args.step is not None and args.step < 0:
        return _fail("report", f"--step: expected an integer >= 0, got {args.step}")
    try:
        rows = drift_report(root, step_k=args.step, warn=_warn)
    except FileNotFoundError as exc:
        return _fail("report", f"DIR: {exc}")
    if not rows:
        print(f"{root}: no completed run with activation metrics to report", file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        archs = split_values(args.arch, "--arch")
        activations = split_values(args.activation, "--activation")
        seeds = parse_seeds(args.seeds if args.seeds is not None else ["0"])
        launch = Launch(
            cluster=args.cluster,
            parallel=args.parallel,
            threads=args.threads,
            partition=args.partition,
            gpus_per_job=args.gpus_per_job,
            cpus_per_job=args.cpus_per_job,
            time_min=args.time_min,
            chunk=args.chunk,
        )
        given = {
            "preset": args.preset,
            "data": args.data,
            "steps": args.steps,
            "lr": args.lr,
            "optimizer": args.optimizer,
            "early_steps": args.early_steps,
            "checkpoint_every": args.checkpoint_every,
        }
        # Only what was given: a field passed as None would override the preset's value.
        base = TrainConfig(**{k: v for k, v in given.items() if v is not None})
        root = Path(args.out)
        configs = grid(archs, activations, seeds, base, root, args.set)
        index = run_sweep(configs, root, launch, echo=lambda line: print(line, flush=True))
    except ConfigError as exc:
        return _fail("run", str(exc))
    except SweepInterrupted as exc:
        print(
            f"{PROG}: interrupted by {exc}; unfinished runs were cancelled. "
            "Run the same command again to resume.",
            file=sys.stderr,
        )
        return 128 + exc.signum  # as a process killed by the signal reports it
    bad = [e for e in index["runs"] if e.get("status") != "completed" and e.get("in_grid", True)]
    for e in bad:
        where = f" (log: {e['log']})" if e.get("log") else ""
        print(f"  {e['run']}: {e['status']}: {e.get('message', '')}{where}", file=sys.stderr)
    rows = drift_report(root, warn=_warn)
    if rows:
        print(format_table(rows))
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("run", "report", "-h", "--help"):
        argv = [
            "run",
            *argv,
        ]  # the form before subcommands: `python -m empirics.experiments.sweep --arch ...`
    args = build_parser().parse_args(argv)
    return _report(args) if args.command == "report" else _run(args)


if __name__ == "__main__":
    raise SystemExit(main())
