"""C9, C11, C12 against tokens, one line per model size, seeds as bands, the fitted trend carried
to the paper's point, where the paper's number is marked; residuals of each fit below.

Reads the ladder's aggregate (`results/scale/aggregate.json`, or the committed reference's):
`python paper_figures/scaling.py --results results/scale --claim c9 --out FIG.png`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from common import figure_parser, need, plt, save

SIZE_COLORS = {"xs": "#9ecae1", "s": "#3182bd", "m": "#08519c"}


def _band(ax: Any, rows: list[dict], size: str, transform, label: str) -> None:
    mine = sorted((r for r in rows if r["size"] == size and r.get("n")), key=lambda r: r["tokens"])
    if not mine:
        return
    t = np.array([r["tokens"] for r in mine], dtype=float)
    m = np.array([transform(r["mean"]) for r in mine])
    lo = np.array([transform(r["ci"][0]) if r["ci"][0] is not None else np.nan for r in mine])
    hi = np.array([transform(r["ci"][1]) if r["ci"][1] is not None else np.nan for r in mine])
    c = SIZE_COLORS.get(size, "k")
    ax.plot(t, m, "o-", color=c, ms=3, lw=1, label=label)
    ax.fill_between(t, lo, hi, color=c, alpha=0.25, lw=0)


def _trend(ax: Any, fit: dict, params: dict[str, float], transform, paper: float | None) -> None:
    """The fitted plane along tokens for each size (dashed), extended to the paper's tokens, and
    its prediction interval at the paper's point (an error bar) beside the paper's number."""
    if not fit.get("ok"):
        return
    b = fit["coef"]
    t_paper = fit["paper_point"]["tokens"]
    grid = np.logspace(3.5, math.log10(t_paper), 50)
    for size, n in params.items():
        y = b[0] + b[1] * np.log10(grid) + (b[2] * math.log10(n) if len(b) > 2 else 0.0)
        ax.plot(grid, [transform(v) for v in y], "--", color=SIZE_COLORS.get(size, "k"), lw=0.7)
    lo, hi = (transform(v) for v in fit["pi"])
    pred = transform(fit["prediction"])
    ax.errorbar(
        [t_paper * 0.8],
        [pred],
        yerr=[[pred - lo], [hi - pred]],
        fmt="s",
        color="k",
        ms=4,
        capsize=3,
        label="trend at the paper's scale (95 % PI)"
        if fit.get("size_extrapolated")
        else "trend in tokens, one size (95 % PI)",
    )
    if paper is not None:
        ax.plot([t_paper * 1.2], [paper], "*", color="#d62728", ms=10, label="the paper")


def _residuals(ax: Any, fit: dict, ylabel: str) -> None:
    if not fit.get("ok"):
        ax.text(0.5, 0.5, f"no fit: {fit.get('reason', '?')}", transform=ax.transAxes, ha="center")
        return
    r = fit["residuals"]
    ax.axhline(0, color="0.6", lw=0.6)
    for size_params in sorted({x["params"] for x in r}):
        mine = [x for x in r if x["params"] == size_params]
        ax.plot(
            [x["tokens"] for x in mine],
            [x["resid"] for x in mine],
            "o",
            ms=3,
            label=f"{size_params / 1e6:.2g}M block params",
        )
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel(ylabel)
    curv = fit.get("curvature_p")
    inter = fit.get("interaction_p")
    tests = [f"curvature p = {curv:.2g}" if curv is not None else ""]
    tests.append(f"tokens×size p = {inter:.2g}" if inter is not None else "")
    ax.set_title(
        f"residuals, SD {fit['resid_sd']:.2g}\n" + "; ".join(t for t in tests if t),
        fontsize=7,
    )


def draw(agg: dict[str, Any], claim: str, out: Path) -> None:
    sizes = agg["ladder"]["sizes"]
    params = {k: v["block_params"] for k, v in sizes.items()}
    if claim == "c12":
        pairs = agg["c12"]["pairs"]
        keys = [k for k, p in pairs.items() if p["series"]]
        fig, axes = plt.subplots(2, len(keys), figsize=(2.8 * len(keys), 5.4), squeeze=False)
        for j, key in enumerate(keys):
            p = pairs[key]
            ax = axes[0, j]
            for size in sizes:
                _band(ax, p["series"], size, lambda v: v, f"{size}")
            _trend(
                ax,
                p["fit"],
                {s: params[s] for s in {r["size"] for r in p["series"]}},
                lambda v: v,
                None,
            )
            ax.axhline(0, color="0.5", lw=0.6)
            ax.set_xscale("log")
            ax.set_title(p["label"], fontsize=8)
            ax.set_xlabel("training tokens")
            if j == 0:
                ax.set_ylabel("val-loss difference (nats)")
                ax.legend(fontsize=6, loc="best")
            _residuals(axes[1, j], p["fit"], "residual (nats)" if j == 0 else "")
        fig.suptitle("C12: paired val-loss differences (the paper says < 0)", fontsize=9)
        fig.tight_layout(h_pad=3.0)
        save(fig, out)
        return
    block = agg[claim]
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    if claim == "c9":
        rows = block["series"]["sparsity_max"]
        transform = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731 -- logit scale of the fit
        raw = lambda v: v  # noqa: E731
        for size in sizes:
            _band(ax, rows, size, raw, f"{size} ({params[size] / 1e6:.2g}M)")
        _trend(ax, block["fit"], params, transform, block["paper"])
        ax.set_ylabel("ReLU sparsity, largest layer (end of run)")
        ax.set_ylim(0, 1)
        title = "C9: ReLU sparsity (paper: up to 90 %)"
        rlabel = "residual (logit)"
    else:
        rows = block["series"]
        raw = lambda v: v  # noqa: E731
        transform = lambda z: 10**z  # noqa: E731 -- log10 scale of the fit
        for size in sizes:
            _band(ax, rows, size, raw, f"{size} ({params[size] / 1e6:.2g}M)")
        _trend(ax, block["fit"], params, transform, block["paper"])
        ax.set_yscale("log")
        ax.set_ylabel("spike_max ReLU² / ReLU (largest layer)")
        title = "C11: ReLU² spike amplification (paper: ~25×)"
        rlabel = "residual (log10)"
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    ax.set_title(title)
    ax.legend(fontsize=6, loc="best")
    _residuals(axr, block["fit"], rlabel)
    axr.legend(fontsize=6)
    save(fig, out)


def main() -> None:
    ap = figure_parser(__doc__)
    ap.add_argument("--claim", choices=("c9", "c11", "c12"), required=True)
    args = ap.parse_args()
    agg = need(Path(args.results) / "aggregate.json")
    draw(agg, args.claim, Path(args.out))


if __name__ == "__main__":
    main()
