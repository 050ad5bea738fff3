"""How long E[dl/dp | p > 0] stays positive in early training, per optimizer and learning rate.

`python paper_figures/persistence.py --results results/montecarlo/early_training_sweep --out F.png`
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import plt, save, series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    records = args.results / "records.csv"
    if not records.exists():
        raise SystemExit(f"{records} missing: run `make experiments` first")
    mean, lo, hi = (series(records, m) for m in ("g_pos", "g_pos_lo", "g_pos_hi"))
    prefix = f"{args.activation}/{args.loss}/"
    runs = sorted(r for r in mean if r.startswith(prefix))
    optimizers = sorted({r.split("/")[2] for r in runs})
    fig, axes = plt.subplots(
        1, len(optimizers), figsize=(3.8 * len(optimizers), 3.2), squeeze=False
    )
    for ax, opt in zip(axes[0], optimizers, strict=False):
        for i, run in enumerate(r for r in runs if r.split("/")[2] == opt):
            pts = sorted(mean[run]["layer1"])
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1] for p in pts], color=f"C{i}", label=run.split("/")[3])
            band_lo = [v for _, v in sorted(lo[run]["layer1"])]
            band_hi = [v for _, v in sorted(hi[run]["layer1"])]
            if len(band_lo) == len(xs) == len(band_hi):
                ax.fill_between(xs, band_lo, band_hi, color=f"C{i}", alpha=0.25)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"{opt} ({args.activation}, {args.loss}, layer 1)")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("E[dl/dp | p > 0]")
    save(fig, args.out)


if __name__ == "__main__":
    main()
