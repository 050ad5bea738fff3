"""How long the sign of E[dl/dp | p > 0] and the drift hold in early training (C6, the referee).

`python paper_figures/persistence.py --results results/montecarlo/early_training --out F.png`
draws E[dl/dp | p > 0] relative to step 0 per optimizer, lr and layer (seeds as bands) with each
seed's decay and reversal horizons; `--kind horizons` draws every cell's horizons, seed by seed,
at N and at 4N networks (the N-check). Reads horizons.json and runs/*/records.csv only.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from common import figure_parser, plt, read_json, save, series

OPTIMIZERS = ("sgd", "adamw", "muon")


def _rows(results: Path) -> list[dict]:
    path = results / "horizons.json"
    if not path.exists():
        raise SystemExit(f"{path} missing: run `python -m empirics.early_training --sweep` first")
    return read_json(path)["rows"]


def _curves(results: Path, activation: str, loss: str, data: str, out: Path) -> None:
    rows = [
        r
        for r in _rows(results)
        if (r["activation"], r["loss"], r["data"], r["quantity"])
        == (activation, loss, data, "g_pos")
    ]
    if not rows:
        raise SystemExit(f"no {activation}/{loss}/{data} rows in {results}/horizons.json")
    layers = sorted({r["layer"] for r in rows})
    steps = rows[0]["steps"]
    fig, axes = plt.subplots(
        len(layers), len(OPTIMIZERS), figsize=(4.3 * len(OPTIMIZERS), 3.3 * len(layers)),
        squeeze=False, sharey=True,
    )  # fmt: skip
    fig.subplots_adjust(hspace=0.45)
    for i, layer in enumerate(layers):
        for j, opt in enumerate(OPTIMIZERS):
            ax = axes[i][j]
            cells = sorted((r for r in rows if r["layer"] == layer and r["optimizer"] == opt),
                           key=lambda r: r["lr"])  # fmt: skip
            for c, row in enumerate(cells):
                color = f"C{c}"
                curves = []
                for seed in row["seeds"]:
                    run = f"{activation}-{loss}-{opt}-lr{row['lr']:g}-{data}-s{seed}"
                    rec = results / "runs" / run / "records.csv"
                    if not rec.exists():
                        continue
                    pts = sorted(series(rec, "g_pos")[_run_name(rec)][layer])
                    v = np.array([p[1] for p in pts])
                    curves.append(v / v[0])
                if not curves:
                    continue
                arr = np.array(curves)
                xs = np.arange(arr.shape[1])
                ax.plot(xs, np.median(arr, 0), color=color, lw=1.3, label=f"lr {row['lr']:g}")
                ax.fill_between(xs, arr.min(0), arr.max(0), color=color, alpha=0.2)
                _marks(ax, row, color, c, steps)
            ax.axhline(0.0, color="k", lw=0.6)
            ax.axhline(rows[0]["decay_fraction"], color="k", lw=0.6, ls=":")
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_ylim(-1.0, 3.5)
            ax.set_title(f"{opt}, {layer} ({activation}, {loss}, {data})", fontsize=9)
            ax.set_xlabel("step")
            if cells:
                ax.legend(fontsize=7, loc="lower left")
        axes[i][0].set_ylabel("E[dl/dp | p>0] / its value at step 0")
    fig.suptitle(
        "median over seeds (band: min-max); strip at top: each seed's decay (o) and reversal (v)"
        f" horizon at {rows[0]['n_networks']['kN']} networks (filled) and "
        f"{rows[0]['n_networks']['N']} (hollow); dotted: {rows[0]['decay_fraction']:g} x start",
        fontsize=8,
    )
    save(fig, out)


def _run_name(records: Path) -> str:
    with open(records) as fh:
        fh.readline()
        return fh.readline().split(",")[0]


def _marks(ax, row: dict, color: str, c: int, steps: int) -> None:
    """Per seed, the decay (o) and reversal (v) horizons in a strip above the curves, filled at
    kN networks and hollow at N (a horizon beyond the run is not drawn)."""
    for subset, y0, fill in (("kN", 2.6, True), ("N", 1.9, False)):
        y = y0 - 0.3 * c
        for kind, marker in (("decay", "o"), ("reversal", "v")):
            xs = [h for h in row[subset][kind] if h is not None]
            if xs:
                ax.scatter(xs, [y] * len(xs), marker=marker, s=16, edgecolors=color,
                           facecolors=color if fill else "none", lw=0.8)  # fmt: skip


def _horizons(results: Path, out: Path, quantities: tuple[str, ...]) -> None:
    rows = [r for r in _rows(results) if r["quantity"] in quantities]
    if not rows:
        raise SystemExit(f"no rows for {quantities} in {results}/horizons.json")
    panels = sorted({(r["quantity"], r["layer"]) for r in rows})
    cells = sorted(
        {(r["activation"], r["loss"], r["data"], r["optimizer"], r["lr"]) for r in rows},
        key=lambda c: (c[0] != "relu", c[0], c[1], c[2], OPTIMIZERS.index(c[3]), c[4]),
    )
    steps = rows[0]["steps"]
    beyond = steps + 12
    index = {(r["activation"], r["loss"], r["data"], r["optimizer"], r["lr"], r["quantity"],
              r["layer"]): r for r in rows}  # fmt: skip
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8.0, 0.42 * len(cells)), 2.4 * len(panels)),
        squeeze=False, sharex=True,
    )  # fmt: skip
    styles = {
        ("decay", "kN"): dict(marker="o", color="C0"),
        ("decay", "N"): dict(marker="o", color="C0", facecolors="none"),
        ("reversal", "kN"): dict(marker="v", color="C3"),
        ("reversal", "N"): dict(marker="v", color="C3", facecolors="none"),
    }
    for ax, (quantity, layer) in zip(axes[:, 0], panels, strict=True):
        seen = defaultdict(bool)
        for x, cell in enumerate(cells):
            row = index.get((*cell, quantity, layer))
            if row is None:
                continue
            for (kind, subset), style in styles.items():
                hs = row[subset][kind]
                signs = row[subset]["init_sign"]
                ys = [beyond if h is None else h for h, s in zip(hs, signs, strict=True)
                      if s != "undetermined"]  # fmt: skip
                offset = {"kN": -0.15, "N": 0.15}[subset]
                name = "all k x N networks" if subset == "kN" else "the first N networks"
                label = None if seen[(kind, subset)] else f"{kind}, {name}"
                seen[(kind, subset)] = True
                jitter = np.linspace(-0.06, 0.06, max(len(ys), 1))[: len(ys)]
                ax.scatter(x + offset + jitter, ys, s=14, lw=0.8, label=label, **style)
        ax.axhline(steps + 6, color="k", lw=0.5, ls=":")
        ax.text(-0.5, beyond, "beyond T", fontsize=6, ha="left", va="bottom")
        ax.set_ylim(-5, beyond + 12)
        ax.set_ylabel(f"{quantity}, {layer}\nstep", fontsize=8)
    ax = axes[-1][0]
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"{a} {lo[:2]} {d[:4]}\n{o} {lr:g}" for a, lo, d, o, lr in cells],
                       fontsize=6, rotation=90)  # fmt: skip
    axes[0][0].legend(fontsize=6, ncol=4, loc="lower left", bbox_to_anchor=(0.0, 1.12))
    axes[0][0].set_title(
        "horizons per seed (bands simultaneous over steps, family-wise "
        f"{rows[0]['alpha']:g}); decay: below {rows[0]['decay_fraction']:g} x start; (N, k) in "
        + ", ".join(
            sorted(
                {
                    f"({r['n_networks']['N']}, {r['n_networks']['kN'] // r['n_networks']['N']})"
                    for r in rows
                }
            )
        ),
        fontsize=9,
    )
    save(fig, out)


def main() -> int:
    ap = figure_parser(__doc__)
    ap.add_argument("--kind", choices=("curves", "horizons"), default="curves")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--data", default="halfnormal")
    ap.add_argument("--quantities", default="g_pos,delta_b")
    args = ap.parse_args()
    if args.kind == "curves":
        _curves(args.results, args.activation, args.loss, args.data, args.out)
    else:
        _horizons(args.results, args.out, tuple(args.quantities.split(",")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
