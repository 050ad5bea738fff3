"""C11: GPT-nano activation spikes per layer and their amplification relative to ReLU, over seeds.

`python paper_figures/spikes.py --results results/experiments/full --out FILE.png` (reads
c11_spikes.json; left: spike_max at the last step, mean and 95 % CI over seeds; right: the
geometric-mean ratio to ReLU of the same seed with its 95 % CI, the paper's 25x dashed).
"""

from __future__ import annotations

from common import ci_err, color, figure_parser, label, need, plt, save, short_layer


def main() -> int:
    ap = figure_parser(__doc__)
    ap.add_argument("--metric", default="spike_max", choices=("spike_max", "spike_ratio"))
    args = ap.parse_args()
    body = need(args.results / "c11_spikes.json")
    acts = body.get("activations") or {}
    if not acts:
        raise SystemExit("c11_spikes.json has no GPT-nano runs")
    layers = body["layers"]
    names = [a for a in acts if a != "relu"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(acts)
    for k, act in enumerate(acts):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(layers))]
        m, lo, hi = zip(
            *(ci_err(acts[act]["layers"][layer][args.metric]) for layer in layers), strict=True
        )
        lo = [min(e, 0.95 * v) for e, v in zip(lo, m, strict=True)]  # a log axis: keep > 0
        axes[0].errorbar(
            xs, m, yerr=[lo, hi], fmt="o", ms=3, color=color(act), label=label(act), lw=1
        )
    axes[0].set_yscale("log")
    axes[0].set_ylabel(f"{args.metric} at the last step")
    axes[0].legend(ncol=2)
    for k, act in enumerate(names):
        xs = [i - 0.4 + 0.8 / len(names) * (k + 0.5) for i in range(len(layers))]
        amps = [acts[act]["layers"][layer][f"amp_{args.metric}_last"] for layer in layers]
        g = [a["geo_mean"] for a in amps]
        lo = [a["geo_mean"] - a["ci"][0] if a["ci"][0] is not None else 0 for a in amps]
        hi = [a["ci"][1] - a["geo_mean"] if a["ci"][1] is not None else 0 for a in amps]
        axes[1].errorbar(xs, g, yerr=[lo, hi], fmt="o", ms=3, color=color(act), label=label(act))
    axes[1].axhline(1, color="k", lw=0.6)
    axes[1].axhline(25, color="C3", lw=0.8, ls="--", label="paper: ~25×")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("amplification vs ReLU (same seed)")
    axes[1].legend(ncol=2)
    for ax in axes:
        ax.set_xticks(range(len(layers)))
        ax.set_xticklabels([short_layer(x) for x in layers])
        ax.set_xlabel("GPT-nano MLP layer")
    n = len(acts["relu"]["seeds"])
    fig.suptitle(f"C11: activation spikes per layer ({n} seeds; 95% CIs, paired t on log ratios)")
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
