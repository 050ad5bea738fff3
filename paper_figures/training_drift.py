"""C8 over time: mean pre-activation and negative rate of the activation layers during training,
per architecture and activation, seeds as 95 % CI bands.

`python paper_figures/training_drift.py --results results/experiments/full --out FILE.png`
(reads drift.json, whose trajectories average each run over its activation layers).
"""

from __future__ import annotations

from common import color, figure_parser, label, need, plt, save

ARCH_ORDER = ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")
METRICS = (("preact_mean", "mean pre-activation"), ("negative_rate", "negative rate"))


def main() -> int:
    ap = figure_parser(__doc__)
    ap.add_argument("--data", default="real", choices=("real", "synthetic"))
    args = ap.parse_args()
    rows = [r for r in need(args.results / "drift.json")["rows"] if r["data"] == args.data]
    if not rows:
        raise SystemExit(f"no {args.data}-data runs in drift.json: run `make experiments`")
    archs = [a for a in ARCH_ORDER if any(r["arch"] == a for r in rows)]
    fig, axes = plt.subplots(2, len(archs), figsize=(3.0 * len(archs), 5.0), squeeze=False)
    for col, arch in enumerate(archs):
        for r in (r for r in rows if r["arch"] == arch):
            for row, (metric, _) in enumerate(METRICS):
                traj = r["trajectory"][metric]
                xs = [p["step"] for p in traj]
                ys = [p["mean"] for p in traj]
                lo = [p["ci"][0] if p["ci"][0] is not None else p["mean"] for p in traj]
                hi = [p["ci"][1] if p["ci"][1] is not None else p["mean"] for p in traj]
                c = color(r["activation"])
                axes[row][col].plot(xs, ys, color=c, lw=1, label=label(r["activation"]))
                axes[row][col].fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
        n = max(len(r["seeds"]) for r in rows if r["arch"] == arch)
        axes[0][col].set_title(f"{arch} ({n} seeds)")
        axes[1][col].set_xlabel("step")
    for row, (_, name) in enumerate(METRICS):
        axes[row][0].set_ylabel(name)
    axes[0][0].legend()
    fig.suptitle(
        f"Activation drift over training ({args.data} data), mean over activation layers; "
        "bands: 95% CI over seeds"
    )
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
