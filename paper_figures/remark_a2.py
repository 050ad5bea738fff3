"""Remark A.2: the covariance term of E[dl/dW] beside the mean term, step by step in early training,
with the theorem's value at init.

`python paper_figures/remark_a2.py --results results/experiments/full/early_training --out F.png`
Reads remark_a2.json (per step, the mean over networks, pooled over seeds, of the mean entries of
Cov_x(dl/dp_i, x_j) and of E_x[dl/dp_i] E_x[x_j], with bands simultaneous over the steps) and
config.json (the networks), for both input laws. At step 0 of layer 1 the stars mark the exact
values at init (`theory.remark_a2`: ReLU, MSE, Gaussian W, zero biases); a band at step 0 that
misses one is ringed in red and listed. Thin dotted lines: ±10 % of the mean term, the scale on
which the verdict reads "around 0"; the shaded steps lie past the verdict's early window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from common import figure_parser, plt, read_json, save

from empirics.ledger.experiment_verdicts import A2_EARLY_STEPS, A2_SMALL

OPTIMIZERS = ("sgd", "adamw", "muon")
DATA_ORDER = ("halfnormal", "gaussian", "fashion_mnist")
TERMS = {"cov_term": ("Cov term", "-"), "mean_term": ("mean term", "--")}


def init_theory(cfg: dict[str, Any], layer: str) -> dict[str, float] | None:
    """The exact covariance and mean terms at init for a run's network (`theory.remark_a2`), or
    None where the theorem does not apply (another layer, activation, loss, init law, input law,
    non-zero biases, or more than two hidden layers)."""
    from theory.remark_a2 import INPUT_LAWS, CovarianceNet, derive_terms

    applies = (
        layer == "layer1"
        and (cfg.get("activation"), cfg.get("loss"), cfg.get("init")) == ("relu", "mse", "gaussian")
        and float(cfg.get("bias_std", 1.0)) == 0.0
        and cfg.get("data") in INPUT_LAWS
        and 1 <= len(cfg.get("widths") or ()) <= 2
    )
    if not applies:
        return None
    net = CovarianceNet(
        d_in=int(cfg["d_in"]),
        widths=tuple(int(w) for w in cfg["widths"]),
        outputs=int(cfg["n_out"]),
        w_gain=float(cfg.get("w_gain", 1.0)),
        inputs=cfg["data"],
    )
    terms = derive_terms(net)
    if terms["cov"] is None or terms["mean"] is None:
        return None  # uniform inputs: the sign is known, not the value
    return {"cov_term": float(terms["cov"]), "mean_term": float(terms["mean"])}


def band_misses(rows: list[dict[str, Any]], theory: dict[tuple, dict[str, float]]) -> list[dict]:
    """Every step-0 band (per row and term) that excludes the theorem's value at init."""
    out = []
    for r in rows:
        th = theory.get((r["data"], r["layer"]))
        if not th:
            continue
        for term, value in th.items():
            lo, hi = r[term]["lo"][0], r[term]["hi"][0]
            if not lo <= value <= hi:
                out.append({"row": r, "term": term, "value": value, "band": [lo, hi]})
    return out


def _configs(results: Path) -> list[dict[str, Any]]:
    path = results / "config.json"
    return (read_json(path).get("configs") or []) if path.exists() else []


def _config_for(configs: list[dict], row: dict[str, Any]) -> dict[str, Any] | None:
    key = ("activation", "loss", "optimizer", "lr", "data")
    return next((c for c in configs if all(c.get(k) == row.get(k) for k in key)), None)


def _theory(rows: list[dict], configs: Any) -> dict[tuple, dict[str, float]]:
    """The theorem's two terms at init for each (data, layer) whose network it covers."""
    theory: dict[tuple, dict[str, float]] = {}
    for r in rows:
        cfg = _config_for(configs, r)
        if cfg is not None and (r["data"], r["layer"]) not in theory:
            th = init_theory(cfg, r["layer"])
            if th is not None:
                theory[(r["data"], r["layer"])] = th
    return theory


def _draw_panel(ax: Any, cells: list[dict], th: dict | None, bad: list[dict]) -> None:
    """One (data, layer, optimizer) panel: each lr's two terms with bands, the theorem at init."""
    scale = []
    for c, row in enumerate(cells):
        for term, (name, style) in TERMS.items():
            b = row[term]
            xs = np.arange(len(b["mean"]))
            ax.plot(xs, b["mean"], ls=style, color=f"C{c}", lw=1.1,
                    label=f"{name}, lr {row['lr']:g}")  # fmt: skip
            ax.fill_between(xs, b["lo"], b["hi"], color=f"C{c}", alpha=0.18, lw=0)
            scale.extend(np.abs(b["mean"]))
        m = np.asarray(row["mean_term"]["mean"])
        for sgn in (1, -1):
            ax.plot(np.arange(len(m)), sgn * A2_SMALL * m, ls=":", color=f"C{c}", lw=0.7)
    if th and cells:
        for term, marker in (("cov_term", "*"), ("mean_term", "D")):
            ax.plot([0], [th[term]], marker, ms=9 if marker == "*" else 5, mfc="gold",
                    mec="k", mew=0.8, zorder=6)  # fmt: skip
        for miss in bad:
            if miss["row"] in cells:
                ax.plot([0], [miss["value"]], "o", ms=14, mfc="none", mec="red", mew=1.2,
                        zorder=7)  # fmt: skip
    ax.axhline(0, color="k", lw=0.6)
    steps = max((len(r["cov_term"]["mean"]) for r in cells), default=0)
    if steps > A2_EARLY_STEPS:
        ax.axvspan(A2_EARLY_STEPS - 0.5, steps - 0.5, color="0.5", alpha=0.08, lw=0)
    nonzero = [v for v in scale if v > 0]
    if nonzero:
        # a power of 10 as the linear range, drawn two decades tall, keeps the tick
        # labels around 0 apart
        lin = 10.0 ** np.floor(np.log10(float(np.quantile(nonzero, 0.05))))
        ax.set_yscale("symlog", linthresh=lin, linscale=2.0)


def _note(bad: list[dict], theory: dict[tuple, dict[str, float]]) -> str:
    """The line under the figure: the misses against the theorem, or what every band contains."""
    if bad:
        return "theorem outside the step-0 band (red rings): " + "; ".join(
            f"{m['row']['data']} {m['row']['layer']} {m['row']['optimizer']} "
            f"{m['row']['lr']:g} {TERMS[m['term']][0]}: {m['value']:.3g} vs "
            f"[{m['band'][0]:.3g}, {m['band'][1]:.3g}]"
            for m in bad
        )
    if theory:
        return (
            "every step-0 band contains the theorem's value at init ("
            + "; ".join(
                f"{d} {lay}: Cov {v['cov_term']:.3g}, mean {v['mean_term']:.3g}"
                for (d, lay), v in sorted(theory.items())
            )
            + ")"
        )
    return "no setting here has the theorem's network (layer 1, ReLU, MSE, Gaussian W, no bias)"


def main() -> int:
    ap = figure_parser(__doc__)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--loss", default="mse")
    args = ap.parse_args()
    path = args.results / "remark_a2.json"
    if not path.exists():
        raise SystemExit(
            f"{path} missing: run `python -m empirics.montecarlo.early_training --sweep` first"
        )
    key = (args.activation, args.loss)
    rows = [r for r in read_json(path)["rows"] if (r["activation"], r["loss"]) == key]
    if not rows:
        raise SystemExit(f"no {'/'.join(key)} rows in {path}")
    theory = _theory(rows, _configs(args.results))
    panels = sorted(
        {(r["data"], r["layer"]) for r in rows},
        key=lambda k: (DATA_ORDER.index(k[0]) if k[0] in DATA_ORDER else 9, k[0], k[1]),
    )
    bad = band_misses(rows, theory)
    fig, axes = plt.subplots(
        len(panels), len(OPTIMIZERS), figsize=(4.4 * len(OPTIMIZERS), 3.1 * len(panels)),
        squeeze=False,
    )  # fmt: skip
    for i, (data, layer) in enumerate(panels):
        for j, opt in enumerate(OPTIMIZERS):
            ax = axes[i][j]
            cells = sorted((r for r in rows if (r["data"], r["layer"], r["optimizer"]) ==
                            (data, layer, opt)), key=lambda r: r["lr"])  # fmt: skip
            _draw_panel(ax, cells, theory.get((data, layer)), bad)
            nonneg = bool(cells) and all(r["nonneg_inputs"] for r in cells)
            ax.set_title(
                f"{opt}, {layer}, {data} inputs ("
                + ("x ≥ 0: in the verdict" if nonneg else "x of both signs: not in the verdict")
                + ")",
                fontsize=8,
            )
            if i == len(panels) - 1:
                ax.set_xlabel("step")
            if cells:
                ax.legend(fontsize=6, loc="upper right")
        axes[i][0].set_ylabel("mean entry of the term")
    n = rows[0]["networks"]
    fig.suptitle(
        f"Remark A.2 ({'/'.join(key)}): E[dl/dW] = mean term + Cov term; {n} networks per step "
        f"pooled over seeds, bands simultaneous over steps at family-wise {rows[0]['alpha']:g}; "
        f"dotted: ±{A2_SMALL:.0%} of the mean term; verdict window: steps < {A2_EARLY_STEPS}\n"
        "at init, layer 1: theorem's Cov term (star) and mean term (diamond), theory.remark_a2",
        fontsize=8,
    )
    fig.text(0.5, 0.0, _note(bad, theory), ha="center", va="top", fontsize=7)
    fig.tight_layout(rect=(0, 0.01, 1, 0.97))
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
