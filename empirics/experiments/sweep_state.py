"""A sweep directory's state (no torch at import): its layout, each grid point's resolved record
and the resume check against it, the locks, and the index of run statuses that
`python -m empirics.experiments.sweep report DIR` reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from empirics.models.common import config_record
from empirics.train.config import NOT_IDENTITY, ConfigError, TrainConfig
from empirics.train.runtime import CHECKPOINT

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
# Fields of a resolved TrainConfig that say where a run is written or how it is displayed, not
# what it computes; every other field must match when a sweep resumes.
NOT_COMPARED = frozenset({"out", "run", "progress", *NOT_IDENTITY})


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finite(value: Any) -> Any:
    """NaN/inf -> None so that the index stays valid JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def summary_fields(out: Path) -> dict[str, Any]:
    body = read_json(out / "summary.json")
    if not isinstance(body, dict):
        return {}
    return finite({k: body.get(k) for k in ("final_loss", "val", "wall_time_s")})


def run_status(out: Path) -> str | None:
    body = read_json(out / "summary.json")
    return body.get("status") if isinstance(body, dict) else None


def _plain(obj: Any) -> dict[str, Any]:
    """A config object as plain JSON data (tuples become lists, as they do on disk)."""
    if hasattr(obj, "model_dump"):
        data = obj.model_dump(mode="json")
    elif dataclasses.is_dataclass(obj):
        data = config_record(obj)
    else:
        data = dict(obj)
    return json.loads(json.dumps(data, default=str))


def point_record(cfg: TrainConfig) -> dict[str, Any]:
    """What a grid point computes: its resolved train and model configs (preset applied)."""
    from empirics.train.loop import plan  # torch: only a sweep that runs needs it

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


def stored_record(root: Path, run: str) -> dict[str, Any] | None:
    """The recorded config of a run: points/NAME.json, else the trainer's config.json."""
    body = read_json(root / POINTS / f"{run}.json")
    if isinstance(body, dict) and "train" in body:
        return body
    body = read_json(root / RUNS / run / "config.json")
    if isinstance(body, dict):
        train = body.get("identity", body.get("train"))
        if isinstance(train, dict):
            return {"run": run, "train": train, "model": body.get("model", {})}
    return None


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
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
        if run_status(run_dir) != "completed":
            continue  # redone from a clean directory if it is in the grid
        stored = stored_record(root, run)
        if stored is None:
            raise ConfigError(
                f"--out {root}: run {run} has no record of the settings it was made with; "
                f"delete {run_dir} or choose a new --out"
            )
        if run in records:
            new = records[run]
        else:  # a run of an earlier, different grid in the same directory
            summary = read_json(run_dir / "summary.json") or {}
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
        diff = differences(stored, new)
        if diff:
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise ConfigError(
                f"--out {root}: completed run {run} was made with other settings ({shown}); "
                "resume with the same settings or choose a new --out"
            )
    return records


def resumable(root: Path, out: Path, record: dict[str, Any]) -> bool:
    """An unfinished run the trainer can resume: stopped or killed (not failed or diverged),
    with a checkpoint, made with the same settings. Anything else is redone from scratch."""
    if run_status(out) not in ("running", "interrupted", "cancelled"):
        return False
    if not (out / CHECKPOINT).is_file():
        return False
    stored = stored_record(root, out.name)
    return stored is not None and not differences(stored, record)


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
def sweep_lock(root: Path) -> Iterator[None]:
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


def held_by_other(lock_path: Path) -> str | None:
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


def index_entry(cfg: TrainConfig, **fields: Any) -> dict[str, Any]:
    return {
        "run": cfg.run,
        "arch": cfg.arch,
        "activation": cfg.activation.spec,
        "seed": cfg.seed,
        "dir": Path(cfg.out).name,
        **fields,
    }


def entry_from_dir(run_dir: Path) -> dict[str, Any]:
    summary = read_json(run_dir / "summary.json")
    summary = summary if isinstance(summary, dict) else {}
    return {
        "run": run_dir.name,
        "arch": summary.get("arch"),
        "activation": summary.get("activation"),
        "seed": summary.get("seed"),
        "dir": run_dir.name,
        "status": summary.get("status") or "unknown",
        **summary_fields(run_dir),
    }


def rebuild_index(root: Path) -> dict[str, Any]:
    """The index as the run directories tell it (the index is derived data)."""
    runs_dir = root / RUNS
    dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    runs = [entry_from_dir(d) for d in dirs]
    return {"runs": runs, "pending": 0, "rebuilt": True}


def load_index(root: Path, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """index.json, or (missing or unreadable) the index rebuilt from root/runs/*; a directory
    with neither raises FileNotFoundError."""
    path = root / INDEX
    body = read_json(path)
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
