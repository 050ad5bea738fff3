"""C1 against depth: the moments of V = d out / d h_l below 0..4 ReLU gating layers, Theorem D1
beside the Monte Carlo, for a sign-symmetric and an asymmetric zero-mean init.

`python paper_figures/c1_depth.py --results results/experiments/full --out FILE.png` (reads
theory/c1_depth.json written by `python -m empirics.experiments`). Every moment is divided by
Theorem D1's alpha_l: the diagonal is then 1 and the off-diagonal 0 for sign-symmetric laws
(lines); the centred exponential law has no such theorem (no line).
"""

from __future__ import annotations

from common import figure_parser, need, plt, save

PANELS = (
    ("diag", "E|v_i|² | h_l  / α_l", 1.0),
    ("offdiag", "E⟨v_i, v_j⟩ | h_l  / α_l  (i ≠ j)", 0.0),
    ("offdiag_h", "h-weighted off-diagonal / α_l", 0.0),
)
STYLE = {"gaussian": ("o", "#1f77b4"), "exponential": ("s", "#d62728")}


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
    fig.suptitle(
        f"C1 at depth: conditional moments of V over {body['networks']:,} networks per point "
        "(95% intervals), width 32, biases 0.3"
    )
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
