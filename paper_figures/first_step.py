"""C5: the first SGD step's bias drift E[Δb], theory beside the Monte Carlo beside the trainers.

`python paper_figures/first_step.py --results results/experiments/full --out FILE.png` (reads
theory/first_step.json and first_step_trainer.json, both written by `python -m
empirics.experiments.pipeline`). Left and middle: one network (pre-activations exactly N(0, 1)),
where
the theory gives E[Δb] = −lr K s₂² D(σ, 1) under MSE and the sign under cross-entropy; the
Monte Carlo estimator and the batched trainer (torch.optim.SGD on the same networks) measure it.
Right: the full trainer's first update of the bias feeding each activation, on real data, over
seeds (its own optimizer and learning rate, so only the sign is predicted).
"""

from __future__ import annotations

from common import ARCH_COLORS, figure_parser, label, need, plt, save

ARCHS = ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")


def _interval(ax, x, entry, **kw) -> None:
    lo, hi = entry["ci"]
    m = entry["mean"]
    ax.errorbar([x], [m], yerr=[[m - lo], [hi - m]], capsize=2, ms=4, lw=0.9, **kw)


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    body = need(args.results / "theory" / "first_step.json")
    trainer = need(args.results / "first_step_trainer.json")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1, 1, 1.3]})
    for ax, loss in zip(axes[:2], ("mse", "cross_entropy"), strict=True):
        rows = [r for r in body["rows"] if r["loss"] == loss]
        for i, r in enumerate(rows):
            if r["theory"] is not None:
                ax.plot([i - 0.3, i + 0.3], [r["theory"]] * 2, "k-", lw=1.6,
                        label="theory −lr K s₂² D(σ,1)" if i == 0 else None)  # fmt: skip
            _interval(ax, i - 0.12, r["montecarlo"], fmt="o", color="#1f77b4",
                      label="Monte Carlo estimator" if i == 0 else None)  # fmt: skip
            _interval(ax, i + 0.12, r["trainer"], fmt="s", color="#d62728",
                      label="batched trainer (SGD step)" if i == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([label(r["activation"]) for r in rows])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("E[Δb] after step 1")
        ax.set_title(
            "MSE: theory, estimator, trainer"
            if loss == "mse"
            else "cross-entropy (theory: E[Δb] ≤ 0, equality for odd σ)"
        )
    axes[0].legend(loc="center left")
    ax = axes[2]
    rows = [
        r for r in trainer["rows"] if r["layer"] == "mean over layers" and r["mean"] is not None
    ]
    order = ("relu", "gelu", "silu", "tanh")
    acts = sorted(
        {r["activation"] for r in rows},
        key=lambda a: (a not in order, order.index(a) if a in order else 0, a),
    )
    width = 0.8 / max(1, len(ARCHS))
    for j, arch in enumerate(ARCHS):
        for i, act in enumerate(acts):
            hit = [r for r in rows if r["arch"] == arch and r["activation"] == act]
            if not hit or hit[0]["ci"][0] is None:
                continue
            _interval(ax, i - 0.4 + (j + 0.5) * width, hit[0], fmt="o", color=ARCH_COLORS[arch],
                      label=arch if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(acts)))
    ax.set_xticklabels([label(a) for a in acts])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_yscale("symlog", linthresh=1e-5)
    n = max((r["n"] for r in rows), default=0)
    ax.set_title(f"full trainer, real data: Δ bias mean at step 1 ({n} seeds, 95% CI)")
    ax.legend(fontsize=6, ncol=2)
    fig.suptitle(
        f"C5: first-step bias drift, {body['networks']:,} networks per point (95% intervals); "
        "predicted < 0 where D(σ) > 0, 0 for tanh"
    )
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
