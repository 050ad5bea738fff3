"""C4: the net drift coefficient D(σ, s) = E[σ(p)σ'(p)], p ~ N(0, s²), against s: quadrature
beside a fixed-size Monte Carlo.

`python paper_figures/drift_coefficient.py --results results/experiments/full --out FILE.png`
(reads theory/drift_coefficient.json written by `python -m empirics.experiments run`).
"""

from __future__ import annotations

from collections import defaultdict

from common import color, figure_parser, label, need, plt, save


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    rows = need(args.results / "theory" / "drift_coefficient.json")["rows"]
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["activation"]].append(r)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for act, rs in by.items():
        rs.sort(key=lambda r: r["s"])
        xs = [r["s"] for r in rs]
        for ax in axes:
            ax.plot(xs, [r["theory"] for r in rs], "-", color=color(act), lw=1, label=label(act))
            ax.errorbar(xs, [r["mc_mean"] for r in rs], yerr=[1.96 * r["mc_stderr"] for r in rs],
                        fmt="o", ms=3, color=color(act), lw=0.8)  # fmt: skip
    axes[0].set_ylabel("D(σ, s)")
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_title("same, symmetric log scale")
    axes[0].set_title("lines: quadrature; dots: Monte Carlo ± 1.96 SE")
    for ax in axes:
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("pre-activation std s")
    axes[0].legend(ncol=2)
    n = rows[0]["mc_n"] if rows else 0
    fig.suptitle(f"C4: net drift coefficient D(σ, s) against s (Monte Carlo n = {n:,} per point)")
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
