"""Result files (empirics/outputs.py): atomic writes, strict JSON, tidy records, provenance.

`.venv/bin/python -m pytest -q tests/test_outputs.py`
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

from empirics.outputs import (
    RECORD_FIELDS,
    RecordWriter,
    atomic_open,
    atomic_write_json,
    json_safe,
    provenance,
    read_records,
    resolve_device,
)


def test_an_error_inside_atomic_open_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as fh:
        fh.write("half of the new cont")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_atomic_write_creates_parents_and_honours_the_umask(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a" / "b" / "x.json", {"k": 1})
    assert json.loads(path.read_text()) == {"k": 1}
    umask = os.umask(0)
    os.umask(umask)
    # mkstemp's 0600 is widened to what an ordinary open() would give.
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_json_is_strict_non_finite_numbers_become_null(tmp_path: Path) -> None:
    body = {
        "nan": math.nan,
        "inf": [1.0, -math.inf],
        "tensor": torch.tensor(math.nan),
        "nested": {"t": (2.5, math.inf)},
        "path": Path("/x"),
    }
    assert json_safe({"a": math.nan, "b": [math.inf, 1.0]}) == {"a": None, "b": [None, 1.0]}
    text = atomic_write_json(tmp_path / "s.json", body).read_text()

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    loaded = json.loads(text, parse_constant=refuse)
    assert loaded == {
        "nan": None,
        "inf": [1.0, None],
        "tensor": None,
        "nested": {"t": [2.5, None]},
        "path": "/x",
    }


def test_record_writer_writes_tidy_rows_and_appends_after_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path, "run-a") as w:
        w.write(0, {("fc1", "sparsity"): 0.5, ("model", "loss"): 2.0})
        cut = w.size()
        w.write_rows([(1, "fc1", "sparsity", 0.25)])
    assert path.read_text().splitlines()[0] == ",".join(RECORD_FIELDS)
    rows = read_records(path)
    assert [(r["step"], r["layer"], r["metric"], r["value"]) for r in rows] == [
        (0, "fc1", "sparsity", 0.5),
        (0, "model", "loss", 2.0),
        (1, "fc1", "sparsity", 0.25),
    ]
    # A resumed run cuts the file back to a recorded size and appends without a second header.
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    with RecordWriter(path, "run-a", append=True) as w:
        w.write(1, {("fc1", "sparsity"): 0.125})
    rows = read_records(path)
    assert [r["value"] for r in rows] == [0.5, 2.0, 0.125]
    assert path.read_text().count("run,step") == 1
    # Values keep every bit: repr of the float, read back exactly.
    with RecordWriter(tmp_path / "exact.csv", "r") as w:
        w.write(0, {("l", "m"): 0.1 + 0.2})
    assert read_records(tmp_path / "exact.csv")[0]["value"] == 0.1 + 0.2


def test_provenance_and_device_resolution() -> None:
    info = provenance("cpu")
    assert info["device"] == "cpu" and info["versions"]["torch"] == torch.__version__
    assert set(info["git"]) == {"commit", "dirty"}
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
