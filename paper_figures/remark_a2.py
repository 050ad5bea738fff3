"""Remark A.2: the covariance term of E[dl/dW] beside the mean term, step by step in early training.

`python paper_figures/remark_a2.py --results results/montecarlo/early_training --out F.png`
Reads remark_a2.json: per step, the mean over networks (pooled over seeds) of the mean entries of
Cov_x(dl/dp_i, x_j) and of E_x[dl/dp_i] E_x[x_j], with bands simultaneous over the steps.
"""

from __future__ import annotations

import numpy as np
from common import figure_parser, plt, read_json, save

OPTIMIZERS = ("sgd", "adamw", "muon")


def main() -> int:
    ap = figure_parser(__doc__)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--data", default="halfnormal")
    args = ap.parse_args()
    path = args.results / "remark_a2.json"
    if not path.exists():
        raise SystemExit(f"{path} missing: run `python -m empirics.early_training --sweep` first")
    key = (args.activation, args.loss, args.data)
    rows = [r for r in read_json(path)["rows"] if (r["activation"], r["loss"], r["data"]) == key]
    if not rows:
        raise SystemExit(f"no {'/'.join(key)} rows in {path}")
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(
        len(layers), len(OPTIMIZERS), figsize=(4.3 * len(OPTIMIZERS), 3.3 * len(layers)),
        squeeze=False,
    )  # fmt: skip
    fig.subplots_adjust(hspace=0.5)
    for i, layer in enumerate(layers):
        for j, opt in enumerate(OPTIMIZERS):
            ax = axes[i][j]
            cells = sorted((r for r in rows if r["layer"] == layer and r["optimizer"] == opt),
                           key=lambda r: r["lr"])  # fmt: skip
            scale = []
            for c, row in enumerate(cells):
                for term, style in (("cov_term", "-"), ("mean_term", "--")):
                    b = row[term]
                    xs = np.arange(len(b["mean"]))
                    label = f"{'Cov' if term == 'cov_term' else 'mean'} term, lr {row['lr']:g}"
                    ax.plot(xs, b["mean"], ls=style, color=f"C{c}", lw=1.1, label=label)
                    ax.fill_between(xs, b["lo"], b["hi"], color=f"C{c}", alpha=0.18)
                    scale.extend(np.abs(b["mean"]))
                s = row["summary"]
                ax.text(
                    0.98, 0.04 + 0.1 * c,
                    f"lr {row['lr']:g}: Cov band >0 at {s['cov_positive_steps']}, <0 at "
                    f"{s['cov_negative_steps']} of {s['steps']} steps",
                    transform=ax.transAxes, fontsize=6, ha="right", color=f"C{c}",
                )  # fmt: skip
            ax.axhline(0, color="k", lw=0.6)
            nonzero = [v for v in scale if v > 0]
            if nonzero:
                ax.set_yscale("symlog", linthresh=float(np.quantile(nonzero, 0.05)))
            nonneg = bool(cells) and all(r["nonneg_inputs"] for r in cells)
            ax.set_title(
                f"{opt}, {layer} ({'x >= 0' if nonneg else 'x of both signs'})", fontsize=9
            )
            ax.set_xlabel("step")
            if cells:
                ax.legend(fontsize=6, loc="upper right")
        axes[i][0].set_ylabel("mean entry of the term")
    n = rows[0]["networks"]
    fig.suptitle(
        f"Remark A.2 ({'/'.join(key)}): E[dl/dW] = mean term + Cov term; {n} networks per step "
        f"pooled over seeds, bands simultaneous over steps at family-wise {rows[0]['alpha']:g}",
        fontsize=8,
    )
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
