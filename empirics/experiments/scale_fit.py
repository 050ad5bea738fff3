"""The scaling ladder's runs -> cells over seeds -> trend fits extrapolated to the paper's scale.

Reads `results/scale/<piece>/runs/*/summary.json`, writes `results/scale/aggregate.json`
(`python -m empirics.experiments.scale aggregate`); no training. The verdicts on it live in
`empirics.ledger.verdicts`.

Trend model, one per claim: y = a + b log10(tokens) + c log10(block parameters), fitted by least
squares to the cell means (a cell: one size, activation and token budget, over seeds); y is the
logit of sparsity (C9), log10 of the spike ratio (C11), or a paired val-loss difference in nats
(C12). The prediction interval at the paper's point (3.76e9 tokens, 85M block parameters) is for
a new cell: t_{n-3} s sqrt(1 + x0'(X'X)^-1 x0), so the residual scatter about the plane (lack of
fit included) widens it. A curvature check adds log10(tokens)^2: where it improves the fit at
F-test p < 0.05 the plane is misspecified and the extrapolation is flagged as unsupported, and
likewise where a log10(tokens) x log10(params) term does (the token trend differs by size). The
fit records how many decades the runs span and how many the paper's point lies beyond them: the
interval is the plane's, and a plane measured over fewer decades than it is carried says little
about where the curve goes (the verdicts refuse to decide then).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from empirics.experiments.ladder import (
    PAPER_BLOCK_PARAMS,
    PAPER_TOKENS,
    PIECES,
    SIZES,
    Ladder,
    Rung,
    block_params,
    rungs,
)
from empirics.outputs import atomic_write_json
from empirics.stats.fits import nested_f_p
from empirics.stats.seeds import mean_ci as stats_mean_ci

LEVEL = 0.95
ACT_LAYER = ".mlp.act"
# C12's paired comparisons: (key, a, b, label); the paper says loss(a) < loss(b).
C12_PAIRS = (
    ("clip_vs_relu2", "relu2_clip", "relu2", "clipped ReLU² < ReLU²"),
    ("clip50_vs_relu2", "relu2_clip50", "relu2", "ReLU² clipped at 50 < ReLU²"),
    ("gelu2_vs_relu", "gelu2", "relu", "GELU² < ReLU"),
    ("gelu2_vs_gelu", "gelu2", "gelu", "GELU² < GELU"),
    ("gelu2_vs_relu2", "gelu2", "relu2", "GELU² < ReLU²"),
    ("clip_vs_relu", "relu2_clip", "relu", "clipped ReLU² < ReLU"),
    ("clip_vs_gelu", "relu2_clip", "gelu", "clipped ReLU² < GELU"),
)


def run_metrics(summary: dict[str, Any]) -> dict[str, float] | None:
    """One completed run's end state: sparsity (max and mean over the MLP activation layers, at
    init and at the last step), the largest spike_max over those layers, and val_loss."""
    if summary.get("status") != "completed":
        return None
    layers = {k: v for k, v in (summary.get("layers") or {}).items() if k.endswith(ACT_LAYER)}
    if not layers:
        return None
    sp_last = [v["sparsity"]["last"] for v in layers.values() if "sparsity" in v]
    sp_first = [v["sparsity"]["first"] for v in layers.values() if "sparsity" in v]
    spikes = [v["spike_max"]["last"] for v in layers.values() if "spike_max" in v]
    val = (summary.get("val") or {}).get("val_loss")
    out = {
        "sparsity_max": max(sp_last),
        "sparsity_mean": float(np.mean(sp_last)),
        "sparsity_init": float(np.mean(sp_first)),
        "spike_max": max(spikes),
        "val_loss": float(val) if val is not None else math.nan,
        "wall_time_s": float(summary.get("wall_time_s", math.nan)),
    }
    return out if all(math.isfinite(v) for v in out.values()) else None


def read_runs(root: Path, ladder: Ladder) -> tuple[dict[Rung, dict[str, float]], dict[str, str]]:
    """Metrics of every completed rung, and the status of every rung that did not complete."""
    done: dict[Rung, dict[str, float]] = {}
    missing: dict[str, str] = {}
    for r in rungs(ladder):
        path = root / r.piece / "runs" / r.name / "summary.json"
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            missing[r.name] = "not run"
            continue
        m = run_metrics(summary)
        if m is None:
            missing[r.name] = str(summary.get("status", "unreadable"))
        else:
            done[r] = m
    return done, missing


def mean_ci(values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """`empirics.stats.mean_ci` as the ladder's JSON reports it: mean, ci, n, values."""
    full = stats_mean_ci(values, level)
    return {k: full[k] for k in ("mean", "ci", "n", "values")}


def fit_trend(points: Sequence[tuple[float, float, float]], level: float = LEVEL) -> dict[str, Any]:
    """Least squares y = a + b log10 T + c log10 N over cells (T tokens, N block parameters,
    y a cell mean); the prediction interval for a new cell at the paper's point; residuals; the
    curvature F-test. Only the sizes present enter (one size: y = a + b log10 T, and the
    interval is at the paper's tokens for that size, flagged `size_extrapolated: False`)."""
    arr = np.asarray(points, dtype=float)
    t, n, y = np.log10(arr[:, 0]), np.log10(arr[:, 1]), arr[:, 2]
    sizes = np.unique(n)
    with_size = sizes.size >= 2
    cols = [np.ones_like(t), t] + ([n] if with_size else [])
    X = np.column_stack(cols)
    p = X.shape[1]
    dof = len(y) - p
    if dof < 1:
        return {"ok": False, "reason": f"{len(y)} cells for {p} coefficients"}
    if np.linalg.matrix_rank(X) < p:
        return {"ok": False, "reason": "the cells do not vary in tokens (or in size)"}
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    s2 = float(resid @ resid / dof)
    xtx_inv = np.linalg.inv(X.T @ X)
    x0 = np.array(
        [1.0, math.log10(PAPER_TOKENS)] + ([math.log10(PAPER_BLOCK_PARAMS)] if with_size else [])
    )
    pred = float(x0 @ beta)
    tq = float(stats.t.ppf(0.5 + level / 2, dof))
    half = tq * math.sqrt(s2 * (1.0 + float(x0 @ xtx_inv @ x0)))
    cov = s2 * xtx_inv
    coef_ci = [
        [float(beta[i] - tq * math.sqrt(cov[i, i])), float(beta[i] + tq * math.sqrt(cov[i, i]))]
        for i in range(p)
    ]
    # Curvature in log tokens: does adding (log10 T)^2 explain the residuals (F test)?
    curv_p = nested_f_p(y, X, np.column_stack([X, t**2]))
    # Interaction: does the token slope differ by size (a log T x log N term, F test)? The
    # plane carries the smallest sizes' long runs to the largest size; it may only if not.
    inter_p = nested_f_p(y, X, np.column_stack([X, t * n])) if with_size else None
    # How far the paper's point lies beyond the runs, against how far the runs span (decades).
    span = {"tokens": float(t.max() - t.min()), "params": float(n.max() - n.min())}
    reach = {
        "tokens": math.log10(PAPER_TOKENS) - float(t.max()),
        "params": math.log10(PAPER_BLOCK_PARAMS) - float(n.max()),
    }
    return {
        "ok": True,
        "span_decades": span,
        "reach_decades": reach,
        "model": "y = a + b log10(tokens)" + (" + c log10(block params)" if with_size else ""),
        "coef": beta.tolist(),
        "coef_ci": coef_ci,
        "cells": len(y),
        "dof": dof,
        "resid_sd": math.sqrt(s2),
        "residuals": [
            {"tokens": float(a), "params": float(b), "y": float(c), "resid": float(r)}
            for (a, b, c), r in zip(arr, resid, strict=True)
        ],
        "prediction": pred,
        "pi": [pred - half, pred + half],
        "size_extrapolated": bool(with_size),
        "curvature_p": curv_p,
        "interaction_p": inter_p,
        "paper_point": {"tokens": PAPER_TOKENS, "block_params": PAPER_BLOCK_PARAMS},
    }


def _logit(p: float, eps: float = 1e-4) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def _expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _cells(
    done: dict[Rung, dict[str, float]], act: str, sparsity: str = "none"
) -> dict[tuple[str, int], dict[int, dict[str, float]]]:
    """(size, tokens) -> seed -> metrics, for one activation (and sparsity control)."""
    out: dict[tuple[str, int], dict[int, dict[str, float]]] = defaultdict(dict)
    for r, m in done.items():
        if r.activation == act and r.sparsity == sparsity:
            out[(r.size, r.tokens)][r.seed] = m
    return out


def _series(cells: dict, fn) -> list[dict[str, Any]]:
    rows = []
    for (size, tokens), by_seed in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        vals = [fn(m) for m in by_seed.values()]
        rows.append({"size": size, "tokens": tokens, **mean_ci(vals)})
    return rows


def sparsity_block(done: dict[Rung, dict[str, float]], ladder: Ladder) -> dict[str, Any]:
    """C9: ReLU's largest-layer sparsity at the end of each rung; trend of its logit."""
    cells = _cells(done, "relu")
    series = {
        key: _series(cells, lambda m, k=key: m[k])
        for key in ("sparsity_max", "sparsity_mean", "sparsity_init")
    }
    pts = [
        (row["tokens"], block_params(SIZES[row["size"]]), _logit(row["mean"]))
        for row in series["sparsity_max"]
        if row["n"] == len(ladder.seeds)
    ]
    fit = fit_trend(pts) if len(pts) >= 4 else {"ok": False, "reason": f"{len(pts)} cells"}
    if fit.get("ok"):
        fit["pi_metric"] = [_expit(fit["pi"][0]), _expit(fit["pi"][1])]
        fit["prediction_metric"] = _expit(fit["prediction"])
    return {"metric": "sparsity_max", "paper": 0.9, "series": series, "fit": fit}


def spikes_block(done: dict[Rung, dict[str, float]], ladder: Ladder) -> dict[str, Any]:
    """C11: ReLU²'s largest spike_max over its MLP layers divided by ReLU's, paired by seed."""
    relu, relu2 = _cells(done, "relu"), _cells(done, "relu2")
    ratio_cells = {
        key: {
            s: {"ratio": relu2[key][s]["spike_max"] / relu[key][s]["spike_max"]}
            for s in set(relu[key]) & set(relu2.get(key, {}))
        }
        for key in relu
    }
    series = _series(ratio_cells, lambda m: m["ratio"])
    log_series = _series(ratio_cells, lambda m: math.log10(m["ratio"]))
    pts = [
        (row["tokens"], block_params(SIZES[row["size"]]), row["mean"])
        for row in log_series
        if row["n"] == len(ladder.seeds)
    ]
    fit = fit_trend(pts) if len(pts) >= 4 else {"ok": False, "reason": f"{len(pts)} cells"}
    if fit.get("ok"):
        fit["pi_metric"] = [10 ** fit["pi"][0], 10 ** fit["pi"][1]]
        fit["prediction_metric"] = 10 ** fit["prediction"]
    return {
        "metric": "spike_max ratio ReLU²/ReLU (largest layer each)",
        "paper": 25.0,
        "series": series,
        "log10_series": log_series,
        "fit": fit,
    }


def pairs_block(done: dict[Rung, dict[str, float]], ladder: Ladder) -> dict[str, Any]:
    """C12: paired val-loss differences loss(a) - loss(b) per (size, tokens) over seeds."""
    out: dict[str, Any] = {}
    for key, a, b, label in C12_PAIRS:
        ca, cb = _cells(done, a), _cells(done, b)
        diff_cells = {
            k: {
                s: {"d": ca[k][s]["val_loss"] - cb[k][s]["val_loss"]}
                for s in set(ca[k]) & set(cb.get(k, {}))
            }
            for k in ca
            if k in cb
        }
        series = _series(diff_cells, lambda m: m["d"])
        pts = [
            (row["tokens"], block_params(SIZES[row["size"]]), row["mean"])
            for row in series
            if row["n"] == len(ladder.seeds)
        ]
        fit = fit_trend(pts) if len(pts) >= 4 else {"ok": False, "reason": f"{len(pts)} cells"}
        out[key] = {"a": a, "b": b, "label": label, "series": series, "fit": fit}
    # Ranking of activations by mean val loss at the middle size and the largest budget every
    # activation reached there.
    top = max(t for t in ladder.tokens if t <= ladder.pair_max_tokens)
    means = {
        act: mean_ci([m["val_loss"] for m in _cells(done, act).get((ladder.mid, top), {}).values()])
        for act in (*ladder.size_acts, *ladder.pair_acts, *ladder.mid_acts)
    }
    ranking = sorted((k for k, v in means.items() if v["n"]), key=lambda k: means[k]["mean"])
    return {
        "pairs": out,
        "ranking": {"size": ladder.mid, "tokens": top, "order": ranking, "means": means},
    }


def topk_block(done: dict[Rung, dict[str, float]], ladder: Ladder) -> dict[str, Any]:
    """C10 at GPT scale: Top-K GELU's val loss against dense GELU, paired by seed, per level and
    token budget; retention = dense loss / Top-K loss (1 = no cost)."""
    dense = _cells(done, ladder.topk_act)
    out: dict[str, Any] = {}
    for level in ladder.topk_levels:
        spec = f"topk:{level:g}"
        sparse = _cells(done, ladder.topk_act, spec)
        for (size, tokens), by_seed in sorted(sparse.items()):
            base = dense.get((size, tokens), {})
            seeds = sorted(set(by_seed) & set(base))
            ret = [base[s]["val_loss"] / by_seed[s]["val_loss"] for s in seeds]
            sp = [by_seed[s]["sparsity_mean"] for s in seeds]
            out[f"{tokens}:{level:g}"] = {
                "size": size,
                "tokens": tokens,
                "level": level,
                "retention": mean_ci(ret),
                "measured_sparsity": mean_ci(sp),
            }
    return out


def topk_critical(done: dict[Rung, dict[str, float]], ladder: Ladder) -> dict[str, Any]:
    """Per token budget: the critical sparsity (the largest measured sparsity keeping >= 99 % and
    >= 95 % of the dense GELU run's val-loss retention), per seed from its own curve (dense point
    at its emergent sparsity, retention 1; the Top-K levels at their measured sparsity), then a t
    interval over seeds when every seed's value is bracketed by the grid, else the censored
    values as they are."""
    from empirics.stats.fits import critical_sparsity

    dense = _cells(done, ladder.topk_act)
    out: dict[str, Any] = {}
    for tokens in ladder.topk_tokens:
        base = dense.get((ladder.mid, tokens), {})
        per_level = {
            lv: _cells(done, ladder.topk_act, f"topk:{lv:g}").get((ladder.mid, tokens), {})
            for lv in ladder.topk_levels
        }
        seeds = sorted(set(base).intersection(*(set(v) for v in per_level.values())))
        cell: dict[str, Any] = {}
        for threshold in (0.99, 0.95):
            per_seed = []
            for sd in seeds:
                xs = [base[sd]["sparsity_mean"]] + [
                    v[sd]["sparsity_mean"] for v in per_level.values()
                ]
                ys = [1.0] + [base[sd]["val_loss"] / v[sd]["val_loss"] for v in per_level.values()]
                per_seed.append(critical_sparsity(xs, ys, threshold))
            bracketed = [c["value"] for c in per_seed if c["censored"] is None]
            cell[f"{threshold:g}"] = {
                "per_seed": per_seed,
                **(mean_ci(bracketed) if len(bracketed) == len(per_seed) else {"mean": None}),
                "censored": sorted({c["censored"] for c in per_seed if c["censored"]}),
            }
        out[str(tokens)] = cell
    return out


def aggregate(root: Path, ladder: Ladder) -> dict[str, Any]:
    done, missing = read_runs(root, ladder)
    wall = sum(m["wall_time_s"] for m in done.values())
    return {
        "schema": 1,
        "ladder": {
            "tokens": list(ladder.tokens),
            "seeds": list(ladder.seeds),
            "sizes": {
                k: {**SIZES[k].model(), "block_params": block_params(SIZES[k])}
                for k in ladder.sizes
            },
            "tokens_per_step": ladder.tokens_per_step,
            "vocab_size": ladder.vocab_size,
            "corpus": ladder.corpus,
        },
        "runs": {"completed": len(done), "missing": missing, "train_seconds": wall},
        "c9": sparsity_block(done, ladder),
        "c11": spikes_block(done, ladder),
        "c12": pairs_block(done, ladder),
        "c10_gpt": topk_block(done, ladder),
        "c10_gpt_critical": topk_critical(done, ladder),
    }


def aggregate_main(root: Path, ladder: Ladder) -> int:
    if not any((root / piece / "runs").is_dir() for piece in PIECES):
        print(
            f"python -m empirics.experiments.scale: error: --out {root}: no runs/ there; run "
            f"the ladder "
            "first (make scale)"
        )
        return 2
    block = aggregate(root, ladder)
    path = atomic_write_json(root / "aggregate.json", block)
    r = block["runs"]
    print(f"scale: {r['completed']} runs read, {len(r['missing'])} missing; wrote {path}")
    return 0
