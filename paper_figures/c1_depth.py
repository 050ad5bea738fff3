"""C1 against depth: the moments of V = d out / d h_l below 0..4 ReLU gating layers, Theorem D1
beside the Monte Carlo, for a sign-symmetric and an asymmetric zero-mean init.

`python paper_figures/c1_depth.py --results results/experiments/full --out FILE.png` (reads
theory/c1_depth.json written by `python -m empirics.experiments`). Every moment is divided by
Theorem D1's alpha_l: the diagonal is then 1 and the off-diagonal 0 for sign-symmetric laws
(lines); the centred exponential law has no such theorem (no line). A sign-symmetric interval
that misses the theorem is ringed in red and listed under the figure.
"""

from __future__ import annotations

from typing import Any

from common import figure_parser, need, plt, save

PANELS = (
    ("diag", "E|v_i|² | h_l  / α_l", 1.0),
    ("offdiag", "E⟨v_i, v_j⟩ | h_l  / α_l  (i ≠ j)", 0.0),
    ("offdiag_h", "h-weighted off-diagonal / α_l", 0.0),
)
STYLE = {"gaussian": ("o", "#1f77b4"), "exponential": ("s", "#d62728")}
LEVEL = 0.95  # the intervals in c1_depth.json


def misses(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every plotted interval of a sign-symmetric law (where Theorem D1 applies) that excludes
    the theorem's value: panel key, init, depth, the interval and z = (mean - theory) / SE, all
    divided by alpha_l."""
    out = []
    for r in rows:
        if not r.get("symmetric"):
            continue
        a = r["alpha_l"]
        for key, _, theory in PANELS:
            e = r.get(key)
            if not e or e.get("ci") is None or None in e["ci"]:
                continue
            lo, hi = e["ci"][0] / a, e["ci"][1] / a
            if not lo <= theory <= hi:
                se = (e.get("stderr") or 0.0) / a
                z = (e["mean"] / a - theory) / se if se > 0 else float("nan")
                out.append(
                    {"key": key, "init": r["init"], "depth": r["gating_layers"],
                     "mean": e["mean"] / a, "ci": [lo, hi], "z": z, "theory": theory}
                )  # fmt: skip
    return out


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    body = need(args.results / "theory" / "c1_depth.json")
    rows = body["rows"]
    inits = sorted({r["init"] for r in rows}, key=lambda i: (i != "gaussian", i))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (key, title, theory) in zip(axes, PANELS, strict=True):
        for k, init in enumerate(inits):
            mine = sorted((r for r in rows if r["init"] == init and key in r),
                          key=lambda r: r["gating_layers"])  # fmt: skip
            if not mine:
                continue
            xs = [r["gating_layers"] + (k - 0.5) * 0.12 for r in mine]
            ms = [r[key]["mean"] / r["alpha_l"] for r in mine]
            lo = [m - r[key]["ci"][0] / r["alpha_l"] for m, r in zip(ms, mine, strict=True)]
            hi = [r[key]["ci"][1] / r["alpha_l"] - m for m, r in zip(ms, mine, strict=True)]
            marker, col = STYLE.get(init, ("^", "0.4"))
            sym = "sign-symmetric" if mine[0]["symmetric"] else "asymmetric, zero mean"
            ax.errorbar(xs, ms, yerr=[lo, hi], fmt=marker, color=col, ms=4, capsize=2,
                        label=f"{init} ({sym})")  # fmt: skip
        depths = sorted({r["gating_layers"] for r in rows})
        ax.plot(depths, [theory] * len(depths), "k-", lw=1, label="Theorem D1 (symmetric laws)")
        ax.set_xticks(depths)
        ax.set_xlabel("ReLU gating layers above layer l")
        ax.set_title(title)
    axes[0].legend(fontsize=6)
    bad = misses(rows)
    for m in bad:
        ax = axes[[k for k, _, _ in PANELS].index(m["key"])]
        x = m["depth"] + (inits.index(m["init"]) - 0.5) * 0.12
        ax.plot([x], [m["mean"]], "o", ms=12, mfc="none", mec="red", mew=1.2)
    tested = sum(1 for r in rows if r.get("symmetric") for k, _, _ in PANELS if r.get(k))
    if bad:
        note = "Theorem D1 outside the plotted 95% interval (red rings): " + "; ".join(
            f"{m['key']}, {m['init']}, depth {m['depth']}: [{m['ci'][0]:.3g}, {m['ci'][1]:.3g}] "
            f"vs {m['theory']:g} (z = {m['z']:+.1f})"
            for m in bad
        )
        note += f"; about {(1 - LEVEL) * tested:.2g} of {tested} expected by chance at 95%"
    else:
        note = f"every sign-symmetric interval ({tested}) contains Theorem D1's value"
    fig.text(0.5, -0.01, note, ha="center", va="top", fontsize=7)
    fig.suptitle(
        f"C1 at depth: conditional moments of V over {body['networks']:,} networks per point "
        "(95% intervals), width 32, biases 0.3"
    )
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
