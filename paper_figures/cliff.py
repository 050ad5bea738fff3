"""C10: relative performance against measured sparsity per architecture, with the critical
sparsities the verdict reads.

`python paper_figures/cliff.py --results results/experiments/full --out FILE.png` (reads
c10_cliff.json). One panel per architecture: each ReLU run's performance relative to the same
seed's dense baseline against its measured sparsity (lines join one seed's levels of a control),
and on the 99 % / 95 % lines each control's critical sparsity (the largest sparsity that keeps
that share): mean with its t interval over seeds where grid points bracket every seed, else each
seed's value drawn as censored (an arrow: `>=` kept at the largest sparsity measured, `<` lost
at the smallest). A star marks the baseline's emergent sparsity; the shaded band is where the
verdict reads a cliff "above ~70 %". Last panel: measured against nominal level.
"""

from __future__ import annotations

import math
from typing import Any

from common import CONTROL_MARKERS, figure_parser, need, plt, save

from empirics.ledger.experiment_verdicts import C10_CLIFF_BAND, C10_CONTROL_NAMES

CONTROL_COLORS = {"topk": "C0", "quantile": "C1", "shift": "C2"}
ARCH_ORDER = ("mlp", "resnet", "vit", "gpt_nano")
# vertical offsets (in points) of the controls' marks on a threshold line, so they do not hide
# one another when two controls share a critical sparsity
OFFSETS = {"topk": 3.0, "quantile": 0.0, "shift": -3.0}


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def critical_marks(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """What to draw for one control and threshold: one `interval` mark (mean, CI over seeds) when
    every seed is bracketed and a CI exists, else one mark per seed: `point` (bracketed, no CI:
    one seed), `above` (kept the share at every level: >= value) or `below` (lost it at the
    first level: < value)."""
    ci = cell.get("ci") or [None, None]
    per = [c for c in (cell.get("per_seed") or {}).values() if _finite(c.get("value"))]
    if per and cell.get("bracketed") == len(per) and all(_finite(v) for v in ci):
        return [{"kind": "interval", "value": cell["mean"], "ci": list(ci)}]
    return [{"kind": c.get("censored") or "point", "value": c["value"]} for c in per]


def _panel(
    ax: Any,
    arch: str,
    points: list[dict],
    crit: dict[str, Any],
    thresholds: list[float],
    diverged: list[dict],
) -> None:
    import matplotlib.transforms as mtransforms

    controls = sorted({p["control"] for p in points} - {"none"}, key=list(OFFSETS).index)
    for control in controls:
        col = CONTROL_COLORS.get(control, "0.4")
        mine = [p for p in points if p["control"] == control]
        for seed in sorted({p["seed"] for p in mine}):
            curve = sorted(
                (p["measured_sparsity"], p["relative"]) for p in mine if p["seed"] == seed
            )
            ax.plot([c[0] for c in curve], [c[1] for c in curve], color=col, lw=0.7, alpha=0.6)
            ax.scatter([c[0] for c in curve], [c[1] for c in curve], s=12, color=col, lw=0,
                       marker=CONTROL_MARKERS.get(control, "o"), alpha=0.8)  # fmt: skip
    for q, ls in zip(thresholds, (":", "--"), strict=False):
        ax.axhline(q, color="k", lw=0.7, ls=ls)
    lo, hi = C10_CLIFF_BAND
    ax.axvspan(lo, hi, color="C3", alpha=0.07, lw=0)
    for control in controls:
        col = CONTROL_COLORS.get(control, "0.4")
        shift = mtransforms.offset_copy(ax.transData, fig=ax.figure, y=OFFSETS.get(control, 0.0),
                                        units="points")  # fmt: skip
        for q in thresholds:
            for mark in critical_marks((crit.get(control) or {}).get(f"{q:g}") or {}):
                v = mark["value"]
                if mark["kind"] == "interval":
                    ax.errorbar([v], [q], xerr=[[v - mark["ci"][0]], [mark["ci"][1] - v]],
                                fmt="D", ms=5, color=col, mec="k", mew=0.6, capsize=3, lw=1.4,
                                transform=shift, zorder=5)  # fmt: skip
                elif mark["kind"] == "point":
                    ax.plot([v], [q], "D", ms=5, color=col, mec="k", mew=0.6, transform=shift,
                            zorder=5)  # fmt: skip
                else:  # censored: an open arrow pointing where the true value lies
                    ax.plot([v], [q], ">" if mark["kind"] == "above" else "<", ms=7, mfc="white",
                            mec=col, mew=1.3, transform=shift, zorder=5)  # fmt: skip
    em = (crit.get("none") or {}).get("emergent") or {}
    if _finite(em.get("mean")):
        ci = em.get("ci") or [None, None]
        xerr = [[em["mean"] - ci[0]], [ci[1] - em["mean"]]] if all(map(_finite, ci)) else None
        ax.errorbar([em["mean"]], [1.0], xerr=xerr, fmt="*", ms=10, color="k", mfc="gold",
                    capsize=3, lw=1.0, zorder=6)  # fmt: skip
    ax.set_xlim(0, 1)
    lost = [f for f in diverged if f.get("arch") == arch]
    ax.set_title(arch + (f" ({len(lost)} runs not completed)" if lost else ""))
    ax.set_xlabel("measured sparsity (mean over activation layers, last step)")


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    body = need(args.results / "c10_cliff.json")
    points = [p for p in body.get("points") or [] if p.get("activation") == "relu"]
    if not points:
        raise SystemExit(f"{args.results / 'c10_cliff.json'}: no ReLU runs in 'points'")
    crit = body.get("critical") or {}
    diverged = body.get("diverged") or []
    thresholds = sorted(body.get("critical_thresholds") or [0.99, 0.95], reverse=True)
    archs = sorted({p["arch"] for p in points},
                   key=lambda a: (ARCH_ORDER.index(a) if a in ARCH_ORDER else 99, a))  # fmt: skip
    # top row: the whole range; bottom row: the band around the thresholds, where the critical
    # sparsities sit (at smoke scale a few runs beat their baseline by 1.5x and squeeze it)
    fig = plt.figure(figsize=(3.3 * (len(archs) + 1), 6.6))
    grid = fig.add_gridspec(2, len(archs) + 1, width_ratios=[1.0] * len(archs) + [0.8],
                            height_ratios=[1.0, 0.8])  # fmt: skip
    axes = [[fig.add_subplot(grid[r, c]) for c in range(len(archs))] for r in range(2)]
    rel = [p["relative"] for p in points]
    zoom = (min(thresholds) - 0.05, 1.02)
    for row, (y_lo, y_hi) in enumerate(
        ((max(0.0, min(rel) - 0.03), max(1.05, max(rel) + 0.03)), zoom)
    ):
        for ax, arch in zip(axes[row], archs, strict=True):
            _panel(ax, arch, [p for p in points if p["arch"] == arch], crit.get(arch) or {},
                   thresholds, diverged)  # fmt: skip
            ax.set_ylim(y_lo, y_hi)
            if row == 0:
                ax.set_xlabel("")
            else:
                ax.set_title(f"{arch}: around the thresholds", fontsize=8)
    axes[1][0].set_ylabel("same, zoomed")
    axes[0][0].set_ylabel("performance / same seed's dense baseline")
    styles = (":", "--")
    handles = [
        plt.Line2D([], [], color=CONTROL_COLORS[c], marker=CONTROL_MARKERS[c], ls="-", lw=0.7,
                   label=C10_CONTROL_NAMES.get(c, c))
        for c in CONTROL_COLORS
    ] + [
        plt.Line2D([], [], color="k", ls=ls, lw=0.7, label=f"{q:.0%} of baseline")
        for q, ls in zip(thresholds, styles, strict=False)
    ] + [
        plt.Line2D([], [], color="0.3", marker="D", ls="", label="critical sparsity (± t CI)"),
        plt.Line2D([], [], color="0.3", marker=">", mfc="white", ls="",
                   label="censored: ≥ (kept at every level)"),
        plt.Line2D([], [], color="0.3", marker="<", mfc="white", ls="",
                   label="censored: < (lost at the first)"),
        plt.Line2D([], [], color="k", marker="*", mfc="gold", ls="",
                   label="baseline's emergent sparsity"),
        plt.Rectangle((0, 0), 1, 1, color="C3", alpha=0.15,
                      label=f"cliff band [{C10_CLIFF_BAND[0]:g}, {C10_CLIFF_BAND[1]:g}]"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.1))
    ax2 = fig.add_subplot(grid[:, -1])
    for p in body.get("points") or []:
        if p["control"] == "none":
            continue
        ax2.scatter(p["level"], p["measured_sparsity"], s=12,
                    marker=CONTROL_MARKERS.get(p["control"], "x"),
                    color=CONTROL_COLORS.get(p["control"], "0.4"), alpha=0.7, lw=0)  # fmt: skip
    ax2.plot([0, 1], [0, 1], color="k", lw=0.6)
    ax2.set_xlabel("nominal level (fraction the control zeroes)")
    ax2.set_ylabel("measured sparsity")
    ax2.set_title("measured vs nominal (all runs)")
    seeds = sorted({p["seed"] for p in points})
    fig.suptitle(
        f"C10: critical sparsity per architecture x control ({len(points)} ReLU runs, seeds "
        f"{', '.join(map(str, seeds))}; CI over seeds needs >= 2 bracketed seeds)"
        + (f"; not completed: {len(diverged)} runs" if diverged else ""),
        fontsize=9,
    )
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
