"""C7/C8: drift per architecture and layer (mean ± 95 % CI over seeds) beside the sign D(σ) gives.

`python paper_figures/drift_layers.py --results results/experiments/full --data real --out F.png`
(`--data synthetic`: C7's random-input runs). Reads drift.json, theory/drift_coefficient.json.
"""

from __future__ import annotations

from pathlib import Path

from common import ci_err, color, figure_parser, label, need, plt, read_json, save, short_layer

ROWS = (
    ("d_preact_mean", "Δ mean pre-activation"),
    ("feed_d_bias_mean", "Δ bias of the feeding layer\n(ResNet: BN shift β)"),
    ("cons_drift_score", "drift_score of the layer\nfed by the activation"),
)
ARCH_ORDER = ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")


def predicted(results: Path) -> dict[str, float]:
    """D(σ, 1) by quadrature where the pipeline computed it (theory/drift_coefficient.json)."""
    path = results / "theory" / "drift_coefficient.json"
    if not path.exists():
        return {}
    return {r["activation"]: r["theory"] for r in read_json(path)["rows"] if r["s"] == 1.0}


def main() -> int:
    ap = figure_parser(__doc__)
    ap.add_argument("--data", default="real", choices=("real", "synthetic"))
    args = ap.parse_args()
    rows = [r for r in need(args.results / "drift.json")["rows"] if r["data"] == args.data]
    if not rows:
        raise SystemExit(f"no {args.data}-data drift runs in {args.results}/drift.json")
    d_of = predicted(args.results)
    archs = [a for a in ARCH_ORDER if any(r["arch"] == a for r in rows)]
    fig, axes = plt.subplots(
        len(ROWS), len(archs), figsize=(2.9 * len(archs), 2.2 * len(ROWS)), squeeze=False
    )
    for col, arch in enumerate(archs):
        order = ("relu", "gelu", "silu", "tanh")
        mine = sorted(
            (r for r in rows if r["arch"] == arch),
            key=lambda r: order.index(r["activation"]) if r["activation"] in order else 9,
        )
        layers = list(mine[0]["layers"])
        width = 0.8 / max(len(mine), 1)
        for row_i, (quantity, ylabel) in enumerate(ROWS):
            ax = axes[row_i][col]
            for k, r in enumerate(mine):
                xs, ys, lo, hi = [], [], [], []
                for i, layer in enumerate(layers):
                    m, el, eh = ci_err(r["layers"].get(layer, {}).get(quantity))
                    xs.append(i - 0.4 + width * (k + 0.5))
                    ys.append(m)
                    lo.append(el)
                    hi.append(eh)
                d = d_of.get(r["activation"])
                sign = "" if d is None else (" (D>0: ↓)" if d > 1e-12 else " (D=0)")
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[lo, hi],
                    fmt="o",
                    ms=3,
                    lw=1,
                    color=color(r["activation"]),
                    label=f"{label(r['activation'])}{sign}" if row_i == 0 else None,
                )
            ax.axhline(0, color="k", lw=0.6)
            if not any(quantity in r["layers"].get(x, {}) for r in mine for x in layers):
                ax.text(
                    0.5,
                    0.5,
                    "not measured here\n(no such parameter)",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="0.4",
                )
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels(
                [short_layer(x) for x in layers], rotation=60 if len(layers) > 4 else 0
            )
            if col == 0:
                ax.set_ylabel(ylabel)
        n = len(mine[0]["seeds"])
        axes[0][col].set_title(f"{arch} ({n} seeds)")
    handles, names = {}, []
    for ax in axes[0]:  # one legend for the figure: the activations present anywhere
        for h, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name not in handles:
                handles[name] = h
                names.append(name)
    fig.legend([handles[n] for n in names], names, loc="upper right", ncol=len(names),
               bbox_to_anchor=(1.0, 0.965), frameon=False)  # fmt: skip
    what = "random inputs (C7)" if args.data == "synthetic" else "real data (C8)"
    fig.suptitle(
        f"Drift per layer over training, {what}: mean and 95% CI over seeds; "
        "the legend gives the sign D(σ) predicts for the pre-activation"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
