"""Shared reading and plotting helpers for the figure scripts (files in, PNG out; no project
training or estimation code is imported)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"relu": "C0", "gelu": "C1", "silu": "C2", "tanh": "C3", "identity": "C7"}


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def series(records: Path, metric: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """run -> layer -> [(step, value)] for one metric of a tidy records.csv."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    with open(records, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["metric"] == metric:
                out[row["run"]][row["layer"]].append((int(row["step"]), float(row["value"])))
    return out


def save(fig: Any, out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    tmp.replace(out)
    plt.close(fig)
    print(f"wrote {out}")


__all__ = ["COLORS", "plt", "read_json", "save", "series"]
