"""Reading the pipeline's finished training runs (no torch): `Run` with its summary and its
records (through `empirics.outputs.read_records`), and small helpers the aggregators share.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirics.outputs import read_records


@dataclass
class Run:
    dir: Path
    arch: str
    activation: str
    seed: int
    data: str
    sparsity: str
    summary: dict[str, Any]
    _series: dict[tuple[str, str], dict[int, float]] | None = field(default=None, repr=False)

    @property
    def feeds(self) -> dict[str, str]:
        return self.summary.get("feeds", {})

    @property
    def layers(self) -> dict[str, dict[str, dict[str, float]]]:
        return self.summary.get("layers", {})

    def all_series(self) -> dict[tuple[str, str], dict[int, float]]:
        """(layer, metric) -> {step: value} of everything records.csv holds (read once)."""
        if self._series is None:
            index: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
            for row in read_records(self.dir / "records.csv"):
                index[(row["layer"], row["metric"])][row["step"]] = row["value"]
            self._series = dict(index)
        return self._series

    def series(self, layer: str, metric: str) -> dict[int, float]:
        """step -> value of one (layer, metric) from records.csv."""
        return self.all_series().get((layer, metric), {})

    def value_at(self, layer: str | None, metric: str, step: int) -> float:
        """The value logged at the last step <= `step` (NaN when there is none)."""
        s = self.series(layer, metric) if layer else {}
        eligible = [t for t in s if t <= step]
        return s[max(eligible)] if eligible else math.nan

    def delta_at(self, layer: str | None, metric: str, step: int) -> float:
        """`value_at(step)` minus the first value logged (NaN when the metric was not logged)."""
        s = self.series(layer, metric) if layer else {}
        return self.value_at(layer, metric, step) - s[min(s)] if s else math.nan

    def delta(self, layer: str | None, metric: str) -> float | None:
        m = self.layers.get(layer or "", {}).get(metric)
        return None if m is None else m["last"] - m["first"]

    def last(self, layer: str | None, metric: str) -> float | None:
        m = self.layers.get(layer or "", {}).get(metric)
        return None if m is None else m["last"]

    def first(self, layer: str | None, metric: str) -> float | None:
        m = self.layers.get(layer or "", {}).get(metric)
        return None if m is None else m["first"]


def load_runs(group_dir: Path) -> list[Run]:
    """Completed runs of one group (diverged/failed ones are counted by the caller)."""
    out = []
    for summary_path in sorted((group_dir / "runs").glob("*/summary.json")):
        s = json.loads(summary_path.read_text())
        if s.get("status") != "completed":
            continue
        cfg = json.loads((summary_path.parent / "config.json").read_text())
        out.append(
            Run(
                dir=summary_path.parent,
                arch=s["arch"],
                activation=s["activation"],
                seed=int(s["seed"]),
                data=s["data"],
                sparsity=str(cfg.get("model", {}).get("sparsity", "none")),
                summary=s,
            )
        )
    return out


def group_status(group_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for summary_path in (group_dir / "runs").glob("*/summary.json"):
        counts[json.loads(summary_path.read_text()).get("status", "unknown")] += 1
    return dict(counts)


def act_layers(run: Run) -> list[str]:
    """Activation layers in model order (those with a pre-activation record)."""
    return [k for k, v in run.layers.items() if "preact_mean" in v]


def c10_failed(group_dir: Path) -> list[dict[str, Any]]:
    """C10 runs that did not complete (diverged or failed): arch, sparsity control, seed, status."""
    out = []
    for summary_path in sorted((group_dir / "runs").glob("*/summary.json")):
        s = json.loads(summary_path.read_text())
        if s.get("status") == "completed":
            continue
        cfg = json.loads((summary_path.parent / "config.json").read_text())
        out.append(
            {
                "arch": s.get("arch"),
                "activation": s.get("activation"),
                "sparsity": str(cfg.get("model", {}).get("sparsity", "none")),
                "seed": s.get("seed"),
                "status": s.get("status", "unknown"),
            }
        )
    return out


def mean_of(values: Iterable[float | None]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def max_or_none(values: Iterable[float]) -> float | None:
    v = [x for x in values if math.isfinite(x)]
    return max(v) if v else None


def brief(ci: dict[str, Any]) -> dict[str, Any]:
    return {"n": ci["n"], "mean": ci["mean"], "ci": ci["ci"]}


def thin(steps: list[int], max_points: int) -> list[int]:
    """At most max_points of the sorted steps, log-spaced (early training is where drift is)."""
    if len(steps) <= max_points:
        return steps
    keep = np.unique(np.geomspace(1, len(steps), max_points).astype(int) - 1)
    return [steps[i] for i in keep]
