"""Shared reading, style and saving for the figure scripts: files in, PNG and PDF out.

No project training or estimation code is imported here; `make figures` runs every script.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# One colour per activation across every figure.
COLORS = {
    "relu": "#1f77b4",
    "gelu": "#ff7f0e",
    "silu": "#2ca02c",
    "tanh": "#d62728",
    "identity": "#7f7f7f",
    "relu2": "#9467bd",
    "relu2_clip": "#8c564b",
    "relu2_clip50": "#e377c2",
    "gelu2": "#17becf",
    "gelu2_clip": "#bcbd22",
}
ARCH_COLORS = {
    "mlp": "#1f77b4",
    "resnet": "#d62728",
    "vit": "#2ca02c",
    "gpt_nano": "#9467bd",
    "mp_senet": "#8c564b",
}
CONTROL_MARKERS = {"topk": "o", "quantile": "s", "shift": "^", "none": "*"}
LABELS = {
    "relu2": "ReLU²",
    "relu2_clip": "ReLU² clip 15",
    "relu2_clip50": "ReLU² clip 50",
    "gelu2": "GELU²",
    "gelu2_clip": "GELU² clip",
    "relu": "ReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "tanh": "tanh",
}

plt.rcParams.update(
    {
        "font.size": 8,
        "axes.titlesize": 9,
        "axes.labelsize": 8,
        "legend.fontsize": 7,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.25,
        "figure.dpi": 130,
    }
)


def label(act: str) -> str:
    return LABELS.get(act, act)


def color(act: str) -> str:
    return COLORS.get(act, "0.4")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def need(path: Path) -> Any:
    """A result file the figure needs; a clear exit when the pipeline has not produced it."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path} missing: run `make experiments` (or experiments-quick) first")
    return read_json(path)


def series(records: Path, metric: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """run -> layer -> [(step, value)] for one metric of a tidy records.csv."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    with open(records, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["metric"] == metric:
                out[row["run"]][row["layer"]].append((int(row["step"]), float(row["value"])))
    return out


def ci_err(entry: dict[str, Any] | None) -> tuple[float, float, float]:
    """(mean, lower error, upper error) of a mean_ci entry; nan where it has none."""
    if not entry or entry.get("mean") is None:
        return math.nan, math.nan, math.nan
    m = entry["mean"]
    lo, hi = entry.get("ci") or (None, None)
    return m, (m - lo) if lo is not None else 0.0, (hi - m) if hi is not None else 0.0


def short_layer(name: str) -> str:
    """A compact layer label: blocks.2.mlp.act -> b2, layers.act3 -> act3, stages.1.0.act2 ->
    s1.0.a2."""
    parts = name.split(".")
    if name.startswith("blocks."):
        return f"b{parts[1]}"
    if name.startswith("layers."):
        return parts[-1]
    if name.startswith("stages."):
        return f"s{parts[1]}.{parts[2]}.{parts[3].replace('act', 'a')}"
    if name.startswith("stem"):
        return "stem"
    return name[-14:]


def figure_parser(doc: str | None, *, results_repeat: bool = False) -> argparse.ArgumentParser:
    """The command line every figure script shares: --results DIR (repeatable where a figure
    reads several directories) and --out FILE.png; the description is the first line of the
    script's docstring. Scripts add their own options and call parse_args()."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    if results_repeat:
        ap.add_argument("--results", type=Path, action="append", required=True, help="repeatable")
    else:
        ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    return ap


def save(fig: Any, out: Path) -> None:
    """Write OUT (PNG) and the same figure as PDF beside it, each atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, out.with_suffix(".pdf")):
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(path)
    plt.close(fig)
    print(f"wrote {out} (+ .pdf)")


__all__ = [
    "figure_parser",
    "ARCH_COLORS",
    "COLORS",
    "CONTROL_MARKERS",
    "ci_err",
    "color",
    "label",
    "need",
    "plt",
    "read_json",
    "save",
    "series",
    "short_layer",
]
