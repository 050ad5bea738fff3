"""C12: GPT-nano validation loss per activation over seeds, and the paired differences judging it.

`python paper_figures/val_loss.py --results results/experiments/full --out FILE.png` (reads
c12_val_loss.json; left: each seed as a dot, mean and 95 % CI; right: a − b paired by seed with
95 % CI, Holm-adjusted p beside each; below 0 means a has the lower loss).
"""

from __future__ import annotations

from common import color, figure_parser, label, need, plt, save


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    body = need(args.results / "c12_val_loss.json")
    acts = body["activations"]
    if not acts:
        raise SystemExit("c12_val_loss.json has no runs")
    order = body["ranking"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.2]})
    ax = axes[0]
    for i, act in enumerate(order):
        e = acts[act]
        vals = list(e["by_seed"].values())
        ax.scatter([i] * len(vals), vals, s=8, color=color(act), alpha=0.6, lw=0)
        lo, hi = e["ci"]
        if lo is not None:
            ax.errorbar(
                [i + 0.2], [e["mean"]], yerr=[[e["mean"] - lo], [hi - e["mean"]]], fmt="o",
                ms=4, color=color(act), capsize=2,
            )  # fmt: skip
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([label(a) for a in order], rotation=40, ha="right")
    ax.set_ylabel(body["metric"])
    ax.set_title("val loss per activation (dots: seeds; mean ± 95% CI)")
    ax = axes[1]
    comps = body["comparisons"]
    for j, c in enumerate(comps):
        lo, hi = c["ci"]
        m = c["mean"]
        if m is None:
            continue
        ax.errorbar(
            [m], [j], xerr=[[m - lo], [hi - m]] if lo is not None else None, fmt="o", ms=3,
            color="k" if (lo is not None and (hi < 0 or lo > 0)) else "0.6", capsize=2,
        )  # fmt: skip
        p = c.get("p_holm")
        ax.text(1.01, j, f"p={p:.2g}" if p is not None else "", transform=ax.get_yaxis_transform(),
                va="center", fontsize=6)  # fmt: skip
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(len(comps)))
    ax.set_yticklabels([f"{label(c['a'])} − {label(c['b'])}" for c in comps])
    ax.invert_yaxis()
    ax.set_xlabel("paired difference in val loss (nats/char)")
    ax.set_title("paired by seed, 95% CI (black: excludes 0); Holm p")
    n = max(e["n"] for e in acts.values())
    fig.suptitle(f"C12: GPT-nano validation loss by activation ({n} seeds)")
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
