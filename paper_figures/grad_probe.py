"""The gradient-sign probe over early training for one architecture, real and synthetic data.

`python paper_figures/grad_probe.py --results DIR --arch gpt_nano --out F.png` reads every run of
`python -m empirics.train` under DIR (any depth: a records.csv with its config.json) whose
config says this arch and activation and no sparsity control; per activation layer, the median
over seeds with the seeds' min-max as a band, for real and synthetic data.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import figure_parser, plt, read_json, save, series

METRICS = {
    "grad_pos": "E[dl/dp | p > 0]",
    "grad_neg": "E[dl/dp | p < 0]",
    "grad_mean": "E[dl/dp]",
}


def _load(results: Path, arch: str, activation: str) -> dict:
    """data -> metric -> layer -> seed -> [(step, value)] (empty if the directory is absent)."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for records in sorted(results.rglob("records.csv")) if results.is_dir() else []:
        try:
            cfg = read_json(records.parent / "config.json")
            train, model = cfg["train"], cfg.get("model", {})
        except (OSError, ValueError, KeyError):
            continue
        if (train.get("arch"), train.get("activation")) != (arch, activation):
            continue
        if model.get("sparsity", "none") not in (None, "none"):
            continue
        for metric in METRICS:
            for layers in series(records, metric).values():
                for layer, pts in layers.items():
                    out[train["data"]][metric][layer][int(train["seed"])] = sorted(pts)
    return out


def _depth_key(layer: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", layer))


def main() -> int:
    ap = figure_parser(__doc__, results_repeat=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--activation", default="relu")
    args = ap.parse_args()
    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for results in args.results:
        # A later directory adds runs of (data, seed) that an earlier one lacks, never replaces.
        for kind, metrics in _load(results, args.arch, args.activation).items():
            for metric, layers in metrics.items():
                for layer, seeds in layers.items():
                    for seed, pts in seeds.items():
                        data[kind][metric][layer].setdefault(seed, pts)
    if not data:
        where = ", ".join(map(str, args.results))
        raise SystemExit(f"no {args.arch}/{args.activation} runs with records under {where}")
    kinds = [k for k in ("real", "synthetic") if k in data]
    fig, axes = plt.subplots(
        len(kinds), len(METRICS), figsize=(4.2 * len(METRICS), 3.0 * len(kinds)), squeeze=False
    )
    for row, kind in zip(axes, kinds, strict=True):
        for ax, (metric, label) in zip(row, METRICS.items(), strict=True):
            layers = sorted(data[kind][metric], key=_depth_key)
            cmap = plt.get_cmap("viridis")
            seeds_seen = set()
            for i, layer in enumerate(layers):
                runs = data[kind][metric][layer]
                seeds_seen |= set(runs)
                steps = sorted(set.intersection(*(set(s for s, _ in pts) for pts in runs.values())))
                vals = np.array([[dict(pts)[s] for s in steps] for pts in runs.values()])
                color = cmap(i / max(len(layers) - 1, 1))
                positive = 100.0 * float((vals > 0).mean())
                name = f"{layer}: > 0 at {positive:.0f}%"
                ax.plot(steps, np.median(vals, 0), color=color, lw=1.0, label=name)
                if len(runs) > 1:
                    ax.fill_between(steps, vals.min(0), vals.max(0), color=color, alpha=0.2)
            ax.axhline(0, color="k", lw=0.6)
            ax.set_yscale("symlog", linthresh=_linthresh(data[kind][metric]))
            ax.set_title(f"{label}, {kind} data ({len(seeds_seen)} seeds)", fontsize=9)
            ax.set_xlabel("step")
        row[0].set_ylabel(f"{args.arch}, {args.activation}")
        for ax in row:
            ax.legend(fontsize=5, loc="upper left", bbox_to_anchor=(0.0, -0.26), ncol=2)
    fig.subplots_adjust(hspace=0.35 + 0.07 * len(layers), wspace=0.3)
    fig.suptitle(
        "gradient-sign probe on the training batch, per activation layer (median over seeds, "
        "band: min-max; legend: share of (seed, step) values > 0)",
        fontsize=8,
    )
    save(fig, args.out)


def _linthresh(by_layer: dict) -> float:
    """A symlog threshold below the typical magnitude, so sign and size are both readable."""
    vals = np.abs(
        [v for runs in by_layer.values() for pts in runs.values() for _, v in pts if v != 0]
    )
    return float(np.quantile(vals, 0.1)) if vals.size else 1e-8
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
