"""Shared plumbing: device resolution, atomic result files, provenance, tidy CSV records.

Every result file goes through `atomic_write_*` (write a temp file, fsync, rename) so that an
interrupted run never leaves a half-written JSON behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[1]
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it
RECORD_FIELDS = ("run", "step", "layer", "metric", "value")


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when CUDA is present, else 'cpu'; anything else is checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but CUDA is not available here")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`, on any error
    remove it, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; results are for other users and tools too (0644 less
        # whatever the umask takes away), as an ordinary open() would have made them.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def json_safe(obj: Any) -> Any:
    """obj with every NaN or infinity replaced by None: strict JSON that any tool can read."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return json_safe(obj.item())
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON (NaN and infinities become null), written atomically."""
    text = json.dumps(json_safe(obj), indent=2, default=_jsonable, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def git_revision() -> dict[str, Any]:
    """Commit hash and whether the tree had uncommitted changes (None outside a checkout)."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return {"commit": rev or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(device: str | None = None) -> dict[str, Any]:
    """Git revision, library versions and device, stored beside every result file."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for lib in ("torch", "sympy", "mpmath", "numpy", "scipy"):
        try:
            versions[lib] = __import__(lib).__version__
        except ImportError:
            versions[lib] = None
    info: dict[str, Any] = {
        "git": git_revision(),
        "versions": versions,
        "platform": platform.platform(),
        "argv": sys.argv,
    }
    if device is not None:
        info["device"] = device
        if device.startswith("cuda"):
            import torch

            info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


class RecordWriter:
    """Appends tidy rows `run, step, layer, metric, value` to a CSV, flushing as it goes."""

    def __init__(self, path: str | Path, run: str, *, append: bool = False) -> None:
        self.path = Path(path)
        self.run = run
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (append and self.path.exists())
        self._fh = open(self.path, "w" if fresh else "a", newline="")
        self._writer = csv.writer(self._fh)
        if fresh:
            self._writer.writerow(RECORD_FIELDS)

    def write(self, step: int, values: Mapping[tuple[str, str], float]) -> None:
        """values maps (layer, metric) -> value; one row each."""
        for (layer, metric), value in values.items():
            self._writer.writerow((self.run, step, layer, metric, repr(float(value))))
        self._fh.flush()

    def write_rows(self, rows: Iterable[tuple[int, str, str, float]]) -> None:
        for step, layer, metric, value in rows:
            self._writer.writerow((self.run, step, layer, metric, repr(float(value))))
        self._fh.flush()

    def size(self) -> int:
        """Bytes written so far (flushed): where a resumed run truncates the file back to."""
        self._fh.flush()
        return self._fh.tell()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["step"] = int(row["step"])
        row["value"] = float(row["value"])
    return rows
