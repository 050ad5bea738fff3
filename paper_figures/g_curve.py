"""C2/C3: the conditional expected gradient g(p), theory beside Monte Carlo, both losses and inits.

`python paper_figures/g_curve.py --results results/experiments/full/theory/g_curve --out F.png`
(runs of `python -m empirics.montecarlo g_curve`, one directory ACT-LOSS-INIT each). Theory by
sympy: MSE g(p) = K s² σ(p)σ'(p), exact for either init law; cross-entropy is proved only up to
a positive factor (s² E[tr ∇²ℓ] for Gaussian weights), so its curve is σσ' with that factor fitted
to the Monte Carlo bins (weighted least squares) and labelled so.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from common import color, figure_parser, label, plt, read_json, save

from theory.gradient import K, derive_expected_gradient, drift_product, s
from theory.registry import x

ACTS = ("relu", "gelu", "silu", "tanh")
COLUMNS = (("mse", "gaussian"), ("mse", "uniform"), ("cross_entropy", "gaussian"),
           ("cross_entropy", "uniform"))  # fmt: skip


def bins(summary: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E[p | bin], mean, CI half-width) of the Monte Carlo bins that hold data."""
    est = next(iter(summary["estimates"].values()))
    rows = [
        (e["extra"]["p_mean"], e["mean"], e["mean"] - e["ci"][0])
        for e in est.values()
        if e.get("extra", {}).get("p_mean") is not None and e.get("mean") is not None
    ]
    if not rows:
        return np.array([]), np.array([]), np.array([])
    pm, m, h = (np.array(v, dtype=float) for v in zip(*rows, strict=True))
    return pm, m, h


def main() -> int:
    args = figure_parser(__doc__).parse_args()
    if not any(args.results.glob("*/summary.json")):
        raise SystemExit(f"no g_curve results under {args.results}: run `make experiments`")
    fig, axes = plt.subplots(len(ACTS), len(COLUMNS), figsize=(11, 8.5), squeeze=False)
    ps = np.linspace(-4, 4, 400)
    for r, act in enumerate(ACTS):
        shape = sp.lambdify(x, sp.N(drift_product(act)), ["scipy", "numpy"])
        for c, (loss, init) in enumerate(COLUMNS):
            ax = axes[r][c]
            d = args.results / f"{act}-{loss}-{init}"
            if not (d / "summary.json").exists():
                ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
                continue
            cfg = next(iter(read_json(d / "config.json")["configs"].values()))
            pm, m, h = bins(read_json(d / "summary.json"))
            ax.errorbar(pm, m, yerr=h, fmt="o", ms=2.5, color=color(act), lw=0.8,
                        label="Monte Carlo (CI)")  # fmt: skip
            if loss == "mse":
                s2 = cfg["w_gain"] / cfg["widths"][-1]
                g = derive_expected_gradient(act, "mse").subs({K: cfg["n_out"], s: sp.sqrt(s2)})
                fn = sp.lambdify(x, sp.N(g), ["scipy", "numpy"])
                ax.plot(ps, np.broadcast_to(fn(ps), ps.shape), "k-", lw=1, label="theory g(p)")
            else:
                base = np.broadcast_to(shape(pm), pm.shape).astype(float) if pm.size else pm
                w = 1 / np.maximum(h, 1e-12) ** 2 if pm.size else pm
                scale = float(np.sum(w * base * m) / np.sum(w * base * base)) if pm.size else 0.0
                ax.plot(ps, scale * np.broadcast_to(shape(ps), ps.shape), "k--", lw=1,
                        label=f"σσ′ × {scale:.3g} (fitted)")  # fmt: skip
            ax.axhline(0, color="0.6", lw=0.5)
            if r == 0:
                ax.set_title(f"{loss}, {init} init")
            if c == 0:
                ax.set_ylabel(f"{label(act)}\nE[∂ℓ/∂p | p]")
            if r == len(ACTS) - 1:
                ax.set_xlabel("p")
            ax.legend(loc="upper left", fontsize=6)
    fig.suptitle("g(p) = E[∂ℓ/∂p | p] at initialisation: theory beside Monte Carlo")
    fig.tight_layout()
    save(fig, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
