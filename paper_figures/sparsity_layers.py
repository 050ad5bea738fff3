"""C9: ReLU sparsity per layer over training in every architecture, seeds as 95 % CI bands.

`python paper_figures/sparsity_layers.py --results results/experiments/full --out FILE.png`
(reads c9_sparsity.json; the dotted line is each layer's sparsity at initialisation).
"""

from __future__ import annotations

from common import figure_parser, need, plt, save, short_layer

ARCH_ORDER = ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    archs = need(args.results / "c9_sparsity.json")["archs"]
    if not archs:
        raise SystemExit("c9_sparsity.json has no ReLU runs")
    names = [a for a in ARCH_ORDER if a in archs]
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 2.8), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, arch in zip(axes[0], names, strict=True):
        body = archs[arch]
        layers = list(body["layers"])
        for i, layer in enumerate(layers):
            c = cmap(i / max(len(layers) - 1, 1))
            traj = body["layers"][layer]["trajectory"]
            xs = [p["step"] for p in traj]
            ys = [p["mean"] for p in traj]
            lo = [p["ci"][0] if p["ci"][0] is not None else p["mean"] for p in traj]
            hi = [p["ci"][1] if p["ci"][1] is not None else p["mean"] for p in traj]
            ax.plot(xs, ys, color=c, lw=1.2, label=short_layer(layer))
            ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
            init = body["layers"][layer]["init"]["mean"]
            if init is not None:
                ax.axhline(init, color=c, lw=0.7, ls=":")
        ax.set_ylim(0, 1)
        ax.set_xlabel("step")
        ax.set_title(f"{arch} (ReLU, {len(body['seeds'])} seeds)")
        if len(layers) > 8:  # below the panel, not over the curves
            ax.legend(ncol=2, fontsize=5, loc="upper left", bbox_to_anchor=(0.0, -0.22))
        else:
            ax.legend(ncol=2 if len(layers) > 4 else 1, loc="lower right")
    axes[0][0].set_ylabel("sparsity (fraction of exact zeros)")
    fig.suptitle("C9: ReLU activation sparsity per layer over training (dotted: at init)")
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
