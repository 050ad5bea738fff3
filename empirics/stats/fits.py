"""Fits to experiment curves: the critical sparsity (where a retention curve crosses a threshold,
bracketed or censored), the hinge fit and the cliff analysis of C10, and the nested-model F test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from empirics.stats.seeds import mean_ci


def critical_sparsity(
    sparsity: Sequence[float], relative: Sequence[float], threshold: float
) -> dict[str, Any]:
    """The largest sparsity that keeps relative performance >= `threshold` (e.g. 0.99 of the
    dense baseline), read off one measured curve (points sorted by sparsity).

    Walking up the sparsity axis, the curve keeps the threshold until the first point below it;
    the critical sparsity is where the straight line between that point and the one before
    crosses the threshold (`bracketed`: grid points on both sides). When every point keeps it the
    answer is censored above (`>=` the largest sparsity measured); when the first point already
    falls below, censored below (`<` the smallest). No point is extrapolated past the grid."""
    pts = sorted(
        (float(s), float(r))
        for s, r in zip(sparsity, relative, strict=True)
        if math.isfinite(s) and math.isfinite(r)
    )
    if not pts:
        return {"value": None, "censored": None, "bracket": None, "threshold": threshold}
    below = next((k for k, (_, r) in enumerate(pts) if r < threshold), None)
    if below is None:
        return {
            "value": pts[-1][0],
            "censored": "above",
            "bracket": [pts[-1][0], None],
            "threshold": threshold,
        }
    if below == 0:
        return {
            "value": pts[0][0],
            "censored": "below",
            "bracket": [None, pts[0][0]],
            "threshold": threshold,
        }
    (s0, r0), (s1, r1) = pts[below - 1], pts[below]
    # r0 >= threshold > r1: the crossing lies in [s0, s1); equal sparsities keep s0
    value = s0 if s1 == s0 else s0 + (r0 - threshold) / (r0 - r1) * (s1 - s0)
    return {"value": value, "censored": None, "bracket": [s0, s1], "threshold": threshold}


def hinge_fit(x: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None) -> dict[str, float]:
    """Segmented regression y = a + b·x + c·max(0, x − k) (continuous, one knee k) by least
    squares over a grid of knees (all knees solved at once); also the straight line (c = 0)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if grid is None:
        grid = np.linspace(np.quantile(x, 0.05), np.quantile(x, 0.95), 181)
    grid = np.asarray(grid, float)
    hinge = np.maximum(0.0, x[None, :] - grid[:, None])  # (K, n)
    design = np.stack([np.ones_like(hinge), np.broadcast_to(x, hinge.shape), hinge], axis=-1)
    coef = np.linalg.pinv(design) @ y  # (K, 3): least squares per knee (pinv: a knee past
    sse = np.sum((y - np.einsum("knp,kp->kn", design, coef)) ** 2, axis=1)  # every x is fine)
    best_k = int(np.argmin(sse))
    a, b, c = (float(v) for v in coef[best_k])
    line = np.column_stack([np.ones_like(x), x])
    lcoef, *_ = np.linalg.lstsq(line, y, rcond=None)
    return {
        "knee": float(grid[best_k]),
        "a": a,
        "b": b,
        "c": c,
        "sse": float(sse[best_k]),
        "sse_line": float(np.sum((y - line @ lcoef) ** 2)),
        "slope_before": b,
        "slope_after": b + c,
    }


def cliff_analysis(
    x: Sequence[float],
    y: Sequence[float],
    *,
    groups: Sequence[Any] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Hinge fit of relative performance against measured sparsity, a percentile-bootstrap CI on
    the knee, an F-test of the knee against a straight line, and the fitted performance at
    50/70/90 % sparsity. With `groups` (the configuration of each point) the bootstrap resamples
    whole configurations, all seeds of one together (a cluster bootstrap: seeds of one
    configuration share its sparsity level and are not independent draws of it); without, it
    resamples points."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    n = xa.size
    if n < 6:
        return {"n": n, "fit": None}
    grid = np.linspace(max(0.0, xa.min()), min(1.0, xa.max()), 121)
    fit = hinge_fit(xa, ya, grid)
    rng = np.random.default_rng(seed)
    if groups is None:
        clusters = [np.array([k]) for k in range(n)]
    else:
        index: dict[Any, list[int]] = defaultdict(list)
        for k, g in enumerate(groups):
            index[g].append(k)
        clusters = [np.array(v) for _, v in sorted(index.items(), key=lambda kv: str(kv[0]))]
    knees, drops = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(clusters), len(clusters))
        i = np.concatenate([clusters[c] for c in pick])
        if np.unique(xa[i]).size < 4:
            continue
        f = hinge_fit(xa[i], ya[i], grid)
        knees.append(f["knee"])
        drops.append(f["slope_after"] - f["slope_before"])
    # F-test: 4 parameters (with the knee) against 2; the knee's grid search makes this test
    # anti-conservative (Davies), so its p-value is a screen, the bootstrap CI the evidence.
    df2 = n - 4
    f_stat = ((fit["sse_line"] - fit["sse"]) / 2) / (fit["sse"] / df2) if fit["sse"] > 0 else None
    p_f = float(stats.f.sf(f_stat, 2, df2)) if f_stat is not None and df2 > 0 else None

    def at(s: float) -> float:
        return fit["a"] + fit["b"] * s + fit["c"] * max(0.0, s - fit["knee"])

    return {
        "n": n,
        "fit": fit,
        "knee_ci": [float(np.quantile(knees, 0.025)), float(np.quantile(knees, 0.975))]
        if knees
        else [None, None],
        "slope_change_ci": [float(np.quantile(drops, 0.025)), float(np.quantile(drops, 0.975))]
        if drops
        else [None, None],
        "bootstrap": {
            "replicates": len(knees),
            "seed": seed,
            "method": "percentile",
            "resampled": "points" if groups is None else f"{len(clusters)} configurations",
        },
        "f_test_vs_line": {"F": f_stat, "p": p_f, "df": [2, df2]},
        "fitted": {f"{s:.2f}": at(s) for s in (0.0, 0.5, 0.7, 0.9, 0.95)},
    }


# Shares of the dense baseline's performance whose critical sparsity C10 reports (the
# literature's 99 %, and 95 %).
C10_THRESHOLDS = (0.99, 0.95)


def c10_critical(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per architecture x control, per seed: the critical sparsity at each of C10_THRESHOLDS
    (`critical_sparsity` on that seed's curve of relative performance against measured
    sparsity), with a t interval over seeds when every seed's value is bracketed by grid points;
    for the uncontrolled baseline ("none"), its emergent sparsity (performance 1 by definition)."""

    out: dict[str, Any] = {}
    for arch in sorted({p["arch"] for p in points}):
        mine = [p for p in points if p["arch"] == arch and p["activation"] == "relu"]
        out[arch] = {}
        for control in sorted({p["control"] for p in mine}):
            sel = [p for p in mine if p["control"] == control]
            seeds = sorted({p["seed"] for p in sel})
            if control == "none":
                out[arch][control] = {"emergent": mean_ci(p["measured_sparsity"] for p in sel)}
                continue
            cell: dict[str, Any] = {}
            for q in C10_THRESHOLDS:
                per_seed = {}
                for seed in seeds:
                    curve = [p for p in sel if p["seed"] == seed]
                    per_seed[seed] = critical_sparsity(
                        [p["measured_sparsity"] for p in curve], [p["relative"] for p in curve], q
                    )
                values = [c["value"] for c in per_seed.values() if c["censored"] is None]
                censored = [c["censored"] for c in per_seed.values() if c["censored"]]
                cell[f"{q:g}"] = {
                    "per_seed": per_seed,
                    "bracketed": len(values),
                    "censored_above": censored.count("above"),
                    "censored_below": censored.count("below"),
                    **(mean_ci(values) if not censored else {"n": len(per_seed)}),
                }
            out[arch][control] = cell
    return out


def nested_f_p(y: np.ndarray, small: np.ndarray, big: np.ndarray) -> float | None:
    """p-value of the F-test of the least-squares fit on design `big` against `small` (its
    first columns): do the extra columns explain the residuals? None without a residual degree
    of freedom; a perfect larger fit gives 0 (1 when the smaller fit is perfect too)."""
    dof = len(y) - big.shape[1]
    if dof < 1:
        return None
    b1, *_ = np.linalg.lstsq(small, y, rcond=None)
    b2, *_ = np.linalg.lstsq(big, y, rcond=None)
    r1, r2 = y - small @ b1, y - big @ b2
    rss1, rss2 = float(r1 @ r1), float(r2 @ r2)
    if rss2 <= 0:
        return 0.0 if rss1 > 0 else 1.0
    extra = big.shape[1] - small.shape[1]
    return float(stats.f.sf(((rss1 - rss2) / extra) / (rss2 / dof), extra, dof))
