"""C10: measured sparsity against relative performance, with the fitted cliff and its knee's CI.

`python paper_figures/cliff.py --results results/experiments/full --out FILE.png` (reads
c10_cliff.json: one point per controlled run; the line is the pooled hinge fit, the band the
bootstrap 95 % CI of its knee; right: measured against nominal level per control).
"""

from __future__ import annotations

import numpy as np
from common import ARCH_COLORS, CONTROL_MARKERS, figure_parser, need, plt, save


def hinge(fit: dict, xs: np.ndarray) -> np.ndarray:
    return fit["a"] + fit["b"] * xs + fit["c"] * np.maximum(0.0, xs - fit["knee"])


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    body = need(args.results / "c10_cliff.json")
    points = body["points"]
    if not points:
        raise SystemExit("c10_cliff.json has no controlled runs")
    archs = sorted({p["arch"] for p in points})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    ax = axes[0]
    for p in points:
        ax.scatter(
            p["measured_sparsity"],
            p["relative"],
            s=14,
            marker=CONTROL_MARKERS.get(p["control"], "x"),
            color=ARCH_COLORS.get(p["arch"], "0.4"),
            alpha=0.75,
            lw=0,
        )
    xs = np.linspace(0, 1, 200)
    for key, style in [("pooled", dict(color="k", lw=1.6))] + [
        (a, dict(color=ARCH_COLORS.get(a, "0.4"), lw=0.8, ls="--")) for a in archs
    ]:
        f = body["fits"].get(key) or {}
        if f.get("fit"):
            ax.plot(xs, hinge(f["fit"], xs), **style)
    pooled = body["fits"].get("pooled") or {}
    if pooled.get("fit") and None not in pooled.get("knee_ci", [None]):
        lo, hi = pooled["knee_ci"]
        ax.axvspan(lo, hi, color="k", alpha=0.08, lw=0)
        ax.axvline(pooled["fit"]["knee"], color="k", lw=0.8, ls=":")
        ax.text(
            pooled["fit"]["knee"],
            ax.get_ylim()[0],
            f" knee {pooled['fit']['knee']:.2f} [{lo:.2f}, {hi:.2f}]",
            va="bottom",
            fontsize=7,
        )
    ax.axvline(0.7, color="C3", lw=0.8, ls="-.", alpha=0.6)
    ax.set_xlim(0, 1)
    ax.set_xlabel("measured sparsity (mean over activation layers, last step)")
    ax.set_ylabel("performance relative to the uncontrolled run")
    handles = [
        plt.Line2D([], [], color=ARCH_COLORS.get(a, "0.4"), marker="o", ls="", label=a)
        for a in archs
    ] + [
        plt.Line2D([], [], color="0.3", marker=m, ls="", label=k)
        for k, m in CONTROL_MARKERS.items()
        if k != "none"
    ]
    handles.append(plt.Line2D([], [], color="k", lw=1.6, label="pooled hinge fit"))
    handles.append(plt.Line2D([], [], color="C3", ls="-.", label="the paper's ~70%"))
    ax.legend(handles=handles, loc="lower left", ncol=2)
    ax.set_title(
        f"C10: {body['configurations']} configurations, {body['runs']} runs "
        "(band: bootstrap 95% CI of the knee)"
    )
    ax2 = axes[1]
    for p in points:
        if p["control"] == "none":
            continue
        ax2.scatter(
            p["level"],
            p["measured_sparsity"],
            s=12,
            marker=CONTROL_MARKERS.get(p["control"], "x"),
            color=ARCH_COLORS.get(p["arch"], "0.4"),
            alpha=0.7,
            lw=0,
        )
    ax2.plot([0, 1], [0, 1], color="k", lw=0.6)
    ax2.set_xlabel("nominal level (fraction the control zeroes)")
    ax2.set_ylabel("measured sparsity")
    ax2.set_title("measured vs nominal")
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
