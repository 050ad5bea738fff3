"""The conditional expected gradient g(p): theory's closed form against Monte Carlo bins.

`python paper_figures/g_curve.py --results results/montecarlo/g_curve --out FILE.png`
(MSE runs of `python -m empirics.montecarlo g_curve`; theory evaluated with sympy, not torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import sympy as sp
from common import plt, read_json, save

from theory.gradient import K, derive_expected_gradient, s
from theory.registry import x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    dirs = sorted(d for d in args.results.glob("*") if (d / "summary.json").exists())
    if not dirs:
        raise SystemExit(f"no g_curve results under {args.results}: run `make experiments`")
    fig, axes = plt.subplots(1, len(dirs), figsize=(3.6 * len(dirs), 3.2), squeeze=False)
    for ax, d in zip(axes[0], dirs, strict=False):
        cfg = next(iter(read_json(d / "config.json")["configs"].values()))
        act, loss = cfg["activation"], cfg["loss"]
        if loss != "mse":
            continue
        s2 = cfg["w_gain"] / cfg["widths"][-1]
        g = derive_expected_gradient(act, "mse").subs({K: cfg["n_out"], s: sp.sqrt(s2)})
        fn = sp.lambdify(x, sp.N(g), ["scipy", "numpy"])
        ps = np.linspace(-4, 4, 400)
        ax.plot(ps, np.broadcast_to(fn(ps), ps.shape), "k-", lw=1, label="theory g(p)")
        est = next(iter(read_json(d / "summary.json")["estimates"].values()))
        pm = [e["extra"]["p_mean"] for e in est.values() if e["extra"].get("p_mean") is not None]
        mean = [e["mean"] for e in est.values() if e["extra"].get("p_mean") is not None]
        err = [e["mean"] - e["ci"][0] for e in est.values() if e["extra"].get("p_mean") is not None]
        ax.errorbar(pm, mean, yerr=err, fmt="o", ms=3, color="C1", label="Monte Carlo (99% CI)")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_title(f"{act}, {loss}")
        ax.set_xlabel("p")
    axes[0][0].set_ylabel("E[dl/dp | p]")
    axes[0][0].legend(fontsize=7)
    save(fig, args.out)


if __name__ == "__main__":
    main()
