"""The early-training grid's aggregates: horizons per cell (C6), the tanh null, Remark A.2.

`write_aggregates(out, results)` writes out/horizons.json and out/remark_a2.json from the
finished runs' result.json bodies (and, for Remark A.2, their stored per-network values).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from empirics.montecarlo.early_config import HORIZON_QUANTITIES, SCHEMA_VERSION, default
from empirics.outputs import atomic_write_json, provenance
from empirics.stats.bands import (
    SIGN_NAMES,
    band,
    band_false_alarm,
    band_sign,
    intervals_overlap,
    mean_series,
    resample_weights,
)


def _spread(values: Sequence[int | None], init_signs: Sequence[str], steps: int) -> dict[str, Any]:
    """Median, min and max over the seeds whose initial sign was decided (a horizon beyond the
    run counts as steps + 1); `undefined` counts the seeds without a decided initial sign."""
    xs = [
        steps + 1 if v is None else v
        for v, s in zip(values, init_signs, strict=True)
        if s != "undetermined"
    ]
    return {
        "median": float(np.median(xs)) if xs else None,
        "min": int(min(xs)) if xs else None,
        "max": int(max(xs)) if xs else None,
        "beyond": sum(x == steps + 1 for x in xs),
        "undefined": len(values) - len(xs),
    }


def _cell_key(cfg: dict[str, Any]) -> tuple:
    return (cfg["activation"], cfg["loss"], cfg["optimizer"], cfg["lr"], cfg["data"])


def aggregate_horizons(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per activation x loss x optimizer x lr x layer x quantity, seeds as lists."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("status") == "completed":
            cells.setdefault(_cell_key(r["config"]), []).append(r)
    rows = []
    for key, runs in sorted(cells.items()):
        runs = sorted(runs, key=lambda r: r["config"]["seed"])
        c0 = runs[0]["config"]
        steps = c0["steps"]
        for layer in runs[0]["layers"]:
            for quantity in HORIZON_QUANTITIES:
                row: dict[str, Any] = {
                    "activation": key[0],
                    "loss": key[1],
                    "optimizer": key[2],
                    "lr": key[3],
                    "layer": layer,
                    "quantity": quantity,
                    "nonneg_inputs": all(r["layers"][layer]["nonneg_inputs"] for r in runs),
                    "data": c0["data"],
                    "steps": steps,
                    "n_networks": {
                        "N": c0["n_networks"],
                        "kN": c0["n_networks"] * c0["check_factor"],
                    },
                    "alpha": c0["alpha"],
                    "decay_fraction": c0["decay_fraction"],
                    "seeds": [r["config"]["seed"] for r in runs],
                }
                for subset in ("N", "kN"):
                    hs = [r["layers"][layer]["horizons"][quantity][subset] for r in runs]
                    signs = [h["init_sign"] for h in hs]
                    row[subset] = {
                        "init_sign": [h["init_sign"] for h in hs],
                        "init_mean": [h["init"]["mean"] for h in hs],
                        "final_mean": [h["final"]["mean"] for h in hs],
                        "reversal": [h["reversal"] for h in hs],
                        "decay": [h["decay"] for h in hs],
                        "crossing": [h["crossing"] for h in hs],
                        "decay_point": [h["decay_point"] for h in hs],
                        "decided_steps": [h["positive_steps"] + h["negative_steps"] for h in hs],
                        "reversal_spread": _spread([h["reversal"] for h in hs], signs, steps),
                        "decay_spread": _spread([h["decay"] for h in hs], signs, steps),
                        "reversal_est": [h.get("reversal_est") for h in hs],
                        "decay_est": [h.get("decay_est") for h in hs],
                    }
                for kind in ("reversal", "decay"):
                    # the N-check of the change-point horizons: do N and k N agree, per seed?
                    row[f"{kind}_agree"] = [
                        intervals_overlap(a, b)
                        for a, b in zip(
                            row["N"][f"{kind}_est"], row["kN"][f"{kind}_est"], strict=True
                        )
                    ]
                row["reversal_shift"] = [
                    None if a is None or b is None else b - a
                    for a, b in zip(row["N"]["reversal"], row["kN"]["reversal"], strict=True)
                ]
                rows.append(row)
    return rows


def null_check(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Exact nulls replayed by the grid: for an odd activation (tanh) the sign flip of
    (W_k, b_k, W_{k+1}) maps training trajectories onto trajectories of equal probability and
    flips dl/dp_k, so E[dl/dp], E[db] and E[dW] of every layer are exactly 0 at every step, for
    every optimizer here (SGD and AdamW are elementwise, Muon's iteration is odd). A band that
    decides a sign at any step is a false alarm; each band's nominal rate is alpha."""
    bands = alarms = 0
    alpha = None
    for row in rows:
        if row["activation"] != "tanh" or row["quantity"] not in ("g_all", "delta_b", "delta_w"):
            continue
        alpha = row["alpha"]
        # With check_factor 1 the kN band is the N band: count it once.
        subsets = ("N", "kN") if row["n_networks"]["kN"] > row["n_networks"]["N"] else ("N",)
        for subset in subsets:
            for decided in row[subset]["decided_steps"]:
                bands += 1
                alarms += decided > 0
    if bands == 0:
        return {"bands": 0}
    ci = stats.binomtest(alarms, bands).proportion_ci(0.95, method="exact")
    return {
        "what": "tanh g_all/delta_b/delta_w of every layer, seed and subset: exact-zero means; "
        "a band deciding a sign at any step is a false alarm",
        "bands": bands,
        "alarms": alarms,
        "rate": alarms / bands,
        "rate_ci95": [ci.low, ci.high],
        "nominal": alpha,
    }


def remark_a2(
    out: Path, results: Sequence[dict[str, Any]], alpha: float, resamples: int
) -> list[dict[str, Any]]:
    """Remark A.2 per activation x loss x optimizer x lr x layer: per step, the covariance term
    Cov_x(dl/dp_i, x_j) and the mean term E[dl/dp_i] E[x_j] (mean entries, per network, then
    over networks pooled across seeds) with simultaneous bands, and counts for a verdict."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("status") == "completed":
            cells.setdefault(_cell_key(r["config"]), []).append(r)
    rows = []
    for key, runs in sorted(cells.items()):
        arrays = [np.load(out / "runs" / r["run"] / "per_network.npz") for r in runs]
        for layer in runs[0]["layers"]:
            pooled = {
                q: mean_series(
                    np.concatenate([a[f"{layer}.{q}"].astype(np.float64) for a in arrays], axis=1)
                )
                for q in ("cov_term", "mean_term")
            }
            n = pooled["cov_term"].influence.shape[1]
            weights = resample_weights(n, resamples, 7_000_003)
            cb = band(pooled["cov_term"], weights, alpha)
            mb = band(pooled["mean_term"], weights, alpha)
            cov_m, cov_se = pooled["cov_term"].mean, pooled["cov_term"].stderr
            mt_m = pooled["mean_term"].mean
            signs = [band_sign(lo, hi) for lo, hi in zip(cb["lo"], cb["hi"], strict=True)]
            point = np.sign(cov_m)
            ratio = np.abs(cov_m) / np.maximum(np.abs(mt_m), 1e-300)
            z = cov_m / np.maximum(cov_se, 1e-300)
            inside = [t for t, s in enumerate(signs) if s == 0]
            rows.append(
                {
                    "activation": key[0],
                    "loss": key[1],
                    "optimizer": key[2],
                    "lr": key[3],
                    "data": key[4],
                    "layer": layer,
                    "nonneg_inputs": all(r["layers"][layer]["nonneg_inputs"] for r in runs),
                    "networks": n,
                    "seeds": sorted(r["config"]["seed"] for r in runs),
                    "alpha": alpha,
                    "cov_term": cb,
                    "mean_term": mb,
                    "z": z.tolist(),
                    "summary": {
                        "steps": len(signs),
                        "cov_positive_steps": signs.count(1),
                        "cov_negative_steps": signs.count(-1),
                        "cov_undetermined_steps": signs.count(0),
                        "point_sign_changes": int((point[1:] * point[:-1] < 0).sum()),
                        "first_undetermined_step": inside[0] if inside else None,
                        "init_z": float(z[0]),
                        "max_abs_z": float(np.abs(z).max()),
                        "median_abs_ratio_to_mean_term": float(np.median(ratio)),
                        "mean_term_init_sign": SIGN_NAMES[band_sign(mb["lo"][0], mb["hi"][0])],
                    },
                }
            )
    return rows


def write_aggregates(out: Path, results: Sequence[dict[str, Any]]) -> None:
    """out/horizons.json (C6 and the persistence figure) and out/remark_a2.json."""
    rows = aggregate_horizons(results)
    alpha = rows[0]["alpha"] if rows else default("alpha")
    resamples = results[0]["config"]["bootstrap"] if results else default("bootstrap")
    diverged = [r["run"] for r in results if r.get("status") == "diverged"]
    # The bands' family-wise false-alarm rate at the sizes and length actually used.
    sizes = sorted({n for r in rows for n in r["n_networks"].values()})
    calibration = [
        band_false_alarm(n, rows[0]["steps"] + 1, alpha, resamples=resamples) for n in sizes
    ]
    atomic_write_json(
        out / "horizons.json",
        {
            "schema": SCHEMA_VERSION,
            "rows": rows,
            "diverged": diverged,
            "band_false_alarm": calibration,
            "null_check": null_check(rows),
            "provenance": provenance(),
        },
    )
    atomic_write_json(
        out / "remark_a2.json",
        {
            "schema": SCHEMA_VERSION,
            "rows": remark_a2(out, results, alpha, resamples),
            "provenance": provenance(),
        },
    )
