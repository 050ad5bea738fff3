"""C4: the net drift coefficient D(σ, s) = E[σ(p)σ'(p)], p ~ N(0, s²), against s: theory as a
curve in s beside a fixed-size Monte Carlo.

`python paper_figures/drift_coefficient.py --results results/experiments/full --out FILE.png`
(reads theory/drift_coefficient.json written by `python -m empirics.experiments run`: `curves`,
D on a dense grid of s from the closed form where theory has one, quadrature otherwise; `rows`,
the Monte Carlo at a few s beside quadrature there). Left: linear axes; right: log-log (|D| > 0),
where a power of s is a straight line (ReLU: s, ReLU²: s³). A Monte Carlo interval that misses
the theory is ringed in red and listed under the figure.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from common import color, figure_parser, label, need, plt, save

Z = 1.96  # the plotted Monte Carlo interval: mean ± Z standard errors (95 %)


def misses(rows: list[dict[str, Any]], z: float = Z) -> list[dict[str, Any]]:
    """The rows whose Monte Carlo interval (mean ± z SE) excludes the theory value at its s."""
    return [r for r in rows if abs(r["mc_mean"] - r["theory"]) > z * r["mc_stderr"]]


def _note(curves: dict, rows: list[dict], bad: list[dict]) -> str:
    """The line under the figure: how each theory curve was obtained, and the Monte Carlo misses."""
    how: dict[str, list[str]] = defaultdict(list)
    for a, c in curves.items():
        how[c["method"].split(":")[0].split(" (")[0]].append(label(a))
    note = (
        "theory: " + "; ".join(f"{m} ({', '.join(v)})" for m, v in sorted(how.items()))
        if how
        else "theory: quadrature at the dots only"
    )
    if bad:
        note += (
            f"\ntheory outside the Monte Carlo's {Z} SE interval (red rings): "
            + ", ".join(
                f"{label(r['activation'])} s={r['s']:g} "
                f"(z = {(r['mc_mean'] - r['theory']) / r['mc_stderr']:+.1f})"
                for r in bad
            )
            + f"; about {0.05 * len(rows):.1f} of {len(rows)} expected by chance"
        )
    else:
        note += f"\nevery Monte Carlo interval ({len(rows)}) contains the theory value"
    return note


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    body = need(args.results / "theory" / "drift_coefficient.json")
    rows, curves = body.get("rows") or [], body.get("curves") or {}
    if not rows and not curves:
        raise SystemExit(f"{args.results}/theory/drift_coefficient.json has no rows or curves")
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["activation"]].append(r)
    acts = list(dict.fromkeys([*curves, *by]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    for act in acts:
        col = color(act)
        cur = curves.get(act)
        if cur:
            s, d = np.array(cur["s"]), np.array(cur["theory"])
            axes[0].plot(s, d, "-", color=col, lw=1.2, label=label(act))
            pos = d > 0
            if pos.sum() >= 2:
                axes[1].plot(s[pos], d[pos], "-", color=col, lw=1.2, label=label(act))
                # the local power of s at the small end: 1 for ReLU, 3 for ReLU², 2 for GELU
                k = np.diff(np.log(d[pos][:2])) / np.diff(np.log(s[pos][:2]))
                axes[1].annotate(rf"$\propto s^{{{k[0]:.2g}}}$", (s[pos][0], d[pos][0]),
                                 xytext=(2, 4), textcoords="offset points", ha="left",
                                 va="bottom", fontsize=7, color=col)  # fmt: skip
        rs = sorted(by.get(act, []), key=lambda r: r["s"])
        if not rs:
            continue
        xs = np.array([r["s"] for r in rs])
        ms = np.array([r["mc_mean"] for r in rs])
        es = Z * np.array([r["mc_stderr"] for r in rs])
        axes[0].errorbar(xs, ms, yerr=es, fmt="o", ms=3.5, color=col, lw=0.9, capsize=2,
                         label=None if cur else label(act))  # fmt: skip
        pos = ms > 0
        if pos.any():
            # on log axes an interval reaching 0 or below is cut at a tenth of the mean
            lower = np.minimum(es[pos], 0.9 * ms[pos])
            axes[1].errorbar(xs[pos], ms[pos], yerr=[lower, es[pos]], fmt="o", ms=3.5, color=col,
                             lw=0.9, capsize=2)  # fmt: skip
    bad = misses(rows)
    for r in bad:
        for ax in axes:
            if ax is axes[1] and r["mc_mean"] <= 0:
                continue
            ax.plot([r["s"]], [r["mc_mean"]], "o", ms=11, mfc="none", mec="red", mew=1.2)
    axes[0].set_ylabel("D(σ, s)")
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_title(f"curves: theory; dots: Monte Carlo ± {Z} SE", fontsize=8)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_title("log-log, D > 0 (odd σ: D = 0, left only); slope at the small end",
                      fontsize=8)  # fmt: skip
    for ax in axes:
        ax.set_xlabel("pre-activation std s")
    axes[0].legend(ncol=2)
    n = rows[0]["mc_n"] if rows else 0
    note = _note(curves, rows, bad)
    fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=7)
    fig.suptitle(f"C4: net drift coefficient D(σ, s) against s (Monte Carlo n = {n:,} per dot)")
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
