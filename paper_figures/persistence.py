"""C6, the referee's question: how long E[dl/dp | p > 0] keeps its sign and size in early training.

`python paper_figures/persistence.py --results results/experiments/full/early_training --out F.png`
draws, for both input laws (half-normal and Gaussian) and every layer, E[dl/dp | p > 0] over all
k N networks relative to its step-0 value per optimizer and lr (one curve per seed, its
simultaneous band shaded), and on the 0 line (reversal) and the decay line the horizons C6 reads:
the change point of the mean curve with its 95 % bootstrap interval over networks, at k N
networks (filled) and at the first N (hollow). `--kind horizons` draws the same intervals cell by
cell, seed by seed, N beside k N; a seed whose two intervals do not overlap is drawn in grey: its
horizon moves with N and enters no verdict. Reads horizons.json and runs/*/records.csv only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from common import figure_parser, plt, read_json, save, series

OPTIMIZERS = ("sgd", "adamw", "muon")
DATA_ORDER = ("halfnormal", "gaussian", "fashion_mnist")
KINDS = {"reversal": "v", "decay": "o"}
SUBSETS = ("kN", "N")


def _rows(results: Path) -> tuple[list[dict], dict[str, Any]]:
    path = results / "horizons.json"
    if not path.exists():
        raise SystemExit(
            f"{path} missing: run `python -m empirics.montecarlo.early_training --sweep` first"
        )
    body = read_json(path)
    return body.get("rows") or [], body


def _data_key(d: str) -> tuple[int, str]:
    return (DATA_ORDER.index(d) if d in DATA_ORDER else len(DATA_ORDER), d)


def horizon_span(est: dict[str, Any] | None, steps: int) -> dict[str, Any] | None:
    """A change-point estimate as drawable numbers: point, lo, hi in steps, where `None` (beyond
    the run) becomes `steps` and is flagged, so an interval open to the right is drawn to the
    run's end with an arrow."""
    if not est:
        return None
    t_len = int(est.get("steps") or steps)

    def at(v: Any) -> float:
        return float(t_len) if v is None else float(v)

    return {
        "point": at(est.get("point")),
        "lo": at(est.get("lo")),
        "hi": at(est.get("hi")),
        "point_beyond": est.get("point") is None,
        "hi_beyond": est.get("hi") is None,
        "end": t_len,
    }


def _draw_span(ax: Any, span: dict[str, Any], y: float, transform: Any, color: str,
               marker: str, filled: bool, horizontal: bool = True) -> None:  # fmt: skip
    """One interval with its point; beyond-the-run ends get an arrow head pointing outward."""
    face = color if filled else "white"
    # a point beyond the run is drawn as an arrow head at the run's end, not as a horizon
    pm = (">" if horizontal else "^") if span["point_beyond"] else marker
    if horizontal:
        if span["lo"] < span["hi"]:
            ax.plot([span["lo"], span["hi"]], [y, y], color=color, lw=1.4 if filled else 0.9,
                    transform=transform, solid_capstyle="butt")  # fmt: skip
        if span["hi_beyond"] and not span["point_beyond"]:
            ax.plot([span["hi"]], [y], ">", ms=3.5, color=color, transform=transform)
        ax.plot([span["point"]], [y], pm, ms=4.5, mfc=face, mec=color, mew=0.9,
                transform=transform)  # fmt: skip
    else:
        if span["lo"] < span["hi"]:
            ax.plot([y, y], [span["lo"], span["hi"]], color=color, lw=1.4 if filled else 0.9)
        if span["hi_beyond"] and not span["point_beyond"]:
            ax.plot([y], [span["hi"]], "^", ms=3.5, color=color)
        ax.plot([y], [span["point"]], pm, ms=4.5, mfc=face, mec=color, mew=0.9)


def _record_curve(results: Path, run: str, layer: str) -> dict[str, np.ndarray] | None:
    rec = results / "runs" / run / "records.csv"
    if not rec.exists():
        return None
    by_run = series(rec, "g_pos")
    if not by_run:
        return None
    pts = sorted(next(iter(by_run.values())).get(layer) or [])
    if not pts:
        return None
    out = {"mean": np.array([p[1] for p in pts])}
    for side in ("lo", "hi"):
        got = sorted(next(iter(series(rec, f"g_pos_{side}").values()), {}).get(layer) or [])
        if len(got) == len(pts):
            out[side] = np.array([p[1] for p in got])
    return out


def _curves(results: Path, activation: str, loss: str, out: Path) -> None:
    import matplotlib.transforms as mtransforms

    every, body = _rows(results)
    rows = [r for r in every if (r["activation"], r["loss"], r["quantity"]) ==
            (activation, loss, "g_pos")]  # fmt: skip
    if not rows:
        raise SystemExit(f"no {activation}/{loss} g_pos rows in {results}/horizons.json")
    panels = sorted({(r["data"], r["layer"]) for r in rows}, key=lambda k: (_data_key(k[0]), k[1]))
    fig, axes = plt.subplots(
        len(panels), len(OPTIMIZERS), figsize=(4.4 * len(OPTIMIZERS), 3.0 * len(panels)),
        squeeze=False, sharey=True,
    )  # fmt: skip
    f = rows[0]["decay_fraction"]
    for i, (data, layer) in enumerate(panels):
        for j, opt in enumerate(OPTIMIZERS):
            ax = axes[i][j]
            cells = sorted((r for r in rows if (r["data"], r["layer"], r["optimizer"]) ==
                            (data, layer, opt)), key=lambda r: r["lr"])  # fmt: skip
            stack = 0  # the horizon marks of each (lr, seed, subset) stacked around their line
            n_marks = sum(len(r["seeds"]) for r in cells) * len(SUBSETS)
            for c, row in enumerate(cells):
                col = f"C{c}"
                for k, seed in enumerate(row["seeds"]):
                    run = f"{activation}-{loss}-{opt}-lr{row['lr']:g}-{data}-s{seed}"
                    cur = _record_curve(results, run, layer)
                    if cur is not None and cur["mean"][0] != 0:
                        v0 = abs(cur["mean"][0])
                        xs = np.arange(len(cur["mean"]))
                        ax.plot(xs, cur["mean"] / v0, color=col, lw=1.1,
                                label=f"lr {row['lr']:g}" if k == 0 else None)  # fmt: skip
                        if "lo" in cur and "hi" in cur:
                            ax.fill_between(xs, cur["lo"] / v0, cur["hi"] / v0, color=col,
                                            alpha=0.12, lw=0)  # fmt: skip
                    for subset in SUBSETS:
                        dy = (stack - (n_marks - 1) / 2) * 3.2
                        stack += 1
                        shift = mtransforms.offset_copy(ax.transData, fig=fig, y=dy,
                                                        units="points")  # fmt: skip
                        for kind, marker in KINDS.items():
                            est = (row[subset].get(f"{kind}_est") or [None] * (k + 1))[k]
                            span = horizon_span(est, row["steps"] + 1)
                            if span:
                                y = 0.0 if kind == "reversal" else f
                                _draw_span(ax, span, y, shift, col, marker, subset == "kN")
            ax.axhline(0.0, color="k", lw=0.6)
            ax.axhline(f, color="k", lw=0.6, ls=":")
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_ylim(-1.0, 3.5)
            ax.set_xlim(-0.5, rows[0]["steps"] + 1.8)
            ax.set_title(f"{opt}, {layer}, {data} inputs", fontsize=9)
            if cells:
                ax.legend(fontsize=6.5, loc="upper right")
            if i == len(panels) - 1:
                ax.set_xlabel("step")
        axes[i][0].set_ylabel("E[dl/dp | p>0] / |step 0|")
    sizes = rows[0]["n_networks"]
    fig.suptitle(
        f"C6 ({activation}, {loss}): mean over k N = {sizes['kN']} networks per seed (band: "
        f"simultaneous, family-wise {rows[0]['alpha']:g})\nhorizons, change point [95% bootstrap "
        f"over networks] at k N (filled) and N = {sizes['N']} (hollow): reversal (v) on the 0 "
        f"line, decay (o) on the dotted {f:g} x start line; > at the end: beyond the run",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save(fig, out)


def _horizons(results: Path, out: Path, activation: str, loss: str,
              quantities: tuple[str, ...]) -> None:  # fmt: skip
    every, body = _rows(results)
    rows = [r for r in every if r["quantity"] in quantities
            and (r["activation"], r["loss"]) == (activation, loss)]  # fmt: skip
    if not rows:
        raise SystemExit(f"no {activation}/{loss} rows for {quantities} in horizons.json")
    panels = [(kind, q, layer) for q in quantities for kind in KINDS
              for layer in sorted({r["layer"] for r in rows if r["quantity"] == q})]  # fmt: skip
    cells = sorted({(r["data"], r["optimizer"], r["lr"]) for r in rows},
                   key=lambda c: (_data_key(c[0]), OPTIMIZERS.index(c[1])
                                  if c[1] in OPTIMIZERS else 9, c[2]))  # fmt: skip
    index = {(r["data"], r["optimizer"], r["lr"], r["quantity"], r["layer"]): r for r in rows}
    steps = max(r["steps"] for r in rows) + 1
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8.0, 0.75 * len(cells)), 2.3 * len(panels)),
        squeeze=False, sharex=True,
    )  # fmt: skip
    colors = {"reversal": "C3", "decay": "C0"}
    for ax, (kind, quantity, layer) in zip(axes[:, 0], panels, strict=True):
        for x, cell in enumerate(cells):
            row = index.get((*cell, quantity, layer))
            if row is None:
                continue
            agree = row.get(f"{kind}_agree") or []
            n_seeds = len(row["seeds"])
            for k in range(n_seeds):
                ok = k < len(agree) and agree[k]
                col = colors[kind] if ok else "0.6"
                jitter = (k - (n_seeds - 1) / 2) * 0.05
                for subset, dx in (("N", -0.16), ("kN", 0.16)):
                    est = (row[subset].get(f"{kind}_est") or [None] * (k + 1))[k]
                    span = horizon_span(est, steps)
                    if span:
                        _draw_span(ax, span, x + dx + jitter, None, col, KINDS[kind],
                                   subset == "kN", horizontal=False)  # fmt: skip
        # the input laws apart: a thin line between their groups of cells
        for x in range(1, len(cells)):
            if cells[x][0] != cells[x - 1][0]:
                ax.axvline(x - 0.5, color="k", lw=0.8)
        ax.axhline(steps, color="k", lw=0.5, ls=":")
        ax.set_ylim(-2, steps * 1.12)
        ax.set_ylabel(f"{kind}\n{quantity}, {layer}\nstep", fontsize=7.5)
    ax = axes[-1][0]
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"{d}\n{o} {lr:g}" for d, o, lr in cells], fontsize=6.5)
    ax.set_xlim(-0.6, len(cells) - 0.4)
    sizes = rows[0]["n_networks"]
    alarm = body.get("band_false_alarm") or []
    handles = [
        plt.Line2D([], [], color="0.3", marker="o", mfc="white", ls="-", lw=0.9,
                   label=f"first N = {sizes['N']} networks (left)"),
        plt.Line2D([], [], color="0.3", marker="o", ls="-", lw=1.4,
                   label=f"all k N = {sizes['kN']} (right)"),
        plt.Line2D([], [], color="0.6", marker="o", ls="-",
                   label="N and k N intervals disjoint: not used"),
        plt.Line2D([], [], color="0.3", marker="^", ls="", label="open beyond the run"),
    ]  # fmt: skip
    axes[0][0].legend(handles=handles, fontsize=6.5, ncol=4, loc="lower left",
                      bbox_to_anchor=(0.0, 1.02))  # fmt: skip
    title = (
        f"C6 horizons ({activation}, {loss}) per seed: change point of the mean curve [95% "
        f"bootstrap over networks]; reversal: past 0; decay: below "
        f"{rows[0]['decay_fraction']:g} x start; dotted: end of the run ({steps - 1} steps)"
    )
    if alarm:
        title += (
            "\nsimultaneous bands' family-wise false alarm on skewed AR(1) nulls: "
            + ", ".join(
                f"{a['rate']:.3g} at n = {a['n']} (nominal {a['nominal']:g})" for a in alarm
            )
        )
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save(fig, out)


def main() -> int:
    ap = figure_parser(__doc__)
    ap.add_argument("--kind", choices=("curves", "horizons"), default="curves")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--quantities", default="g_pos", help="horizons: comma-separated quantities")
    args = ap.parse_args()
    if args.kind == "curves":
        _curves(args.results, args.activation, args.loss, args.out)
    else:
        quantities = tuple(q for q in args.quantities.split(",") if q)
        _horizons(args.results, args.out, args.activation, args.loss, quantities)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
