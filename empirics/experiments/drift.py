"""The one drift aggregation, over the runs `empirics.experiments.runs` reads: the pipeline's C7/C8
rows (`aggregate_drift`, `resnet_mechanism`, in `python -m empirics.experiments aggregate`) and
the sweep's table (`drift_report`, `python -m empirics.experiments.sweep report DIR`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empirics.experiments.runs import Run, act_layers, brief, mean_of, thin
from empirics.experiments.sweep_state import RUNS, load_index, read_json
from empirics.models import consumer_layers
from empirics.stats.seeds import mean_ci, paired


# Per activation layer, per run: the drift quantities reported (name -> how to get it).
def _drift_quantities(run: Run, act: str) -> dict[str, float | None]:
    src = run.feeds.get(act)
    cons = consumer_layers(run.arch, act, list(run.layers))
    cons0 = cons[0] if cons else None
    q: dict[str, float | None] = {
        "d_preact_mean": run.delta(act, "preact_mean"),
        "d_sparsity": run.delta(act, "sparsity"),
        "d_negative_rate": run.delta(act, "negative_rate"),
        # the layer producing p: its bias (a BN shift in ResNet) and its weights along x̄
        "feed_d_bias_mean": run.delta(src, "bias_mean"),
        "feed_weight_meandir_delta": run.last(src, "weight_meandir_delta"),
        "feed_d_weight_part": run.delta(src, "preact_weight_part"),
        "feed_drift_score": run.last(src, "drift_score"),
        # the layer fed by the activation's output (C5's non-negative-input weights)
        "cons_d_weight_mean": run.delta(cons0, "weight_mean"),
        "cons_drift_score": run.last(cons0, "drift_score"),
        "cons_d_bias_mean": run.delta(cons0, "bias_mean"),
    }
    for g in ("grad_mean", "grad_pos", "grad_neg"):  # the gradient probe, where recorded
        if g in run.layers.get(act, {}):
            q[f"{g}_init"] = run.first(act, g)
    if "grad_mean" in run.layers.get(act, {}):
        # Σ over logged steps of mean ∂ℓ/∂p: what pushes the feeding bias (gradient descent
        # moves it against this sum; every step is logged during early training).
        q["grad_mean_sum"] = float(sum(run.series(act, "grad_mean").values()))
    return q


DRIFT_QUANTITIES = (
    "d_preact_mean",
    "d_sparsity",
    "d_negative_rate",
    "feed_d_bias_mean",
    "feed_weight_meandir_delta",
    "feed_d_weight_part",
    "feed_drift_score",
    "cons_d_weight_mean",
    "cons_drift_score",
    "cons_d_bias_mean",
    "grad_mean_init",
    "grad_pos_init",
    "grad_neg_init",
    "grad_mean_sum",
)


def _layer_mean_trajectory(
    runs: Sequence[Run], layers: Sequence[str], metric: str, max_points: int = 80
) -> list[dict[str, Any]]:
    """Per step logged by every run: the metric averaged over `layers`, mean and CI over runs."""
    per_run = []
    for r in runs:
        ser = [r.series(layer, metric) for layer in layers]
        steps = set.intersection(*(set(s) for s in ser)) if ser else set()
        per_run.append({st: float(np.mean([s[st] for s in ser])) for st in steps})
    common = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    return [
        {"step": st, **brief(mean_ci(d[st] for d in per_run))} for st in thin(common, max_points)
    ]


def aggregate_drift(runs: Sequence[Run]) -> dict[str, Any]:
    """C7/C8: per (arch, data, activation): every drift quantity per layer and averaged over
    layers, mean over seeds with 95 % CI; paired (same seed) difference against tanh."""
    by: dict[tuple[str, str, str], dict[int, Run]] = defaultdict(dict)
    for r in runs:
        by[(r.arch, r.data, r.activation)][r.seed] = r
    rows = []
    for (arch, data, act), seeds in sorted(by.items()):
        any_run = next(iter(seeds.values()))
        layers = act_layers(any_run)
        per_seed_q: dict[int, dict[str, dict[str, float | None]]] = {
            s: {a: _drift_quantities(r, a) for a in act_layers(r)} for s, r in seeds.items()
        }
        row: dict[str, Any] = {
            "arch": arch,
            "data": data,
            "activation": act,
            "seeds": sorted(seeds),
            "layers": {},
            "mean_over_layers": {},
            "consumers": {a: consumer_layers(arch, a, list(any_run.layers)) for a in layers},
            "feeds": any_run.feeds,
        }
        for a in layers:
            row["layers"][a] = {
                q: mean_ci(per_seed_q[s].get(a, {}).get(q) for s in seeds)
                for q in DRIFT_QUANTITIES
                if any(per_seed_q[s].get(a, {}).get(q) is not None for s in seeds)
            }
        layer_means: dict[str, dict[int, float | None]] = {}
        for q in DRIFT_QUANTITIES:
            layer_means[q] = {s: mean_of(v.get(q) for v in per_seed_q[s].values()) for s in seeds}
            if any(v is not None for v in layer_means[q].values()):
                entry = mean_ci(layer_means[q].values())
                lo, hi = entry["ci"]
                entry["sign_95"] = (
                    "negative" if hi is not None and hi < 0
                    else "positive" if lo is not None and lo > 0
                    else "not distinguishable from 0"
                )  # fmt: skip
                row["mean_over_layers"][q] = entry
        # Does the probe account for the bias motion? Per (seed, layer): sign(Δ feeding bias)
        # against −sign(Σ grad_mean), the direction gradient descent moves it.
        agree = total = 0
        for s in seeds:
            for v in per_seed_q[s].values():
                db, gs = v.get("feed_d_bias_mean"), v.get("grad_mean_sum")
                if db is not None and gs is not None and db != 0 and gs != 0:
                    total += 1
                    agree += (db < 0) == (gs > 0)
        row["bias_vs_grad_probe"] = {"agree": agree, "of": total}
        row["_per_seed"] = layer_means
        row["trajectory"] = {
            m: _layer_mean_trajectory(list(seeds.values()), layers, m)
            for m in ("preact_mean", "negative_rate", "sparsity")
        }
        rows.append(row)
    # paired against tanh (same arch, data and seed)
    index = {(r["arch"], r["data"], r["activation"]): r for r in rows}
    for r in rows:
        ref = index.get((r["arch"], r["data"], "tanh"))
        r["vs_tanh"] = {}
        if ref is None or r["activation"] == "tanh":
            continue
        for q in ("d_preact_mean", "feed_d_bias_mean", "cons_d_weight_mean", "cons_drift_score"):
            if q in r["_per_seed"] and q in ref["_per_seed"]:
                a = {s: v for s, v in r["_per_seed"][q].items() if v is not None}
                b = {s: v for s, v in ref["_per_seed"][q].items() if v is not None}
                r["vs_tanh"][q] = paired(a, b)
    for r in rows:
        r.pop("_per_seed")
    return {"rows": rows}


def resnet_mechanism(runs: Sequence[Run]) -> dict[str, Any]:
    """ResNet evidence: in train mode a BatchNorm's output mean is its shift β whatever the conv
    weights do, so Δpreact_mean of an activation fed by bn (act1 and the stem) equals Δβ of that
    BN exactly; the residual act2 adds the shortcut's mean. Returned per activation: the
    identity's residual (Δpreact − Δβ) and the conv-weight drift feeding the BN, over seeds."""
    out: dict[str, Any] = {}
    by: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.arch == "resnet" and r.data == "real":
            by[r.activation].append(r)
    for act, rs in sorted(by.items()):
        resid, dbeta, dpre, conv_ds, conv_part = [], [], [], [], []
        for r in rs:
            pairs = [
                (a, r.feeds[a])
                for a in act_layers(r)
                if a in r.feeds and not a.endswith("act2")  # bn-fed only
            ]
            dp = [r.delta(a, "preact_mean") for a, _ in pairs]
            db = [r.delta(b, "bias_mean") for _, b in pairs]
            conv = [b.replace(".bn1", ".conv1").replace("stem.1", "stem.0") for _, b in pairs]
            resid.append(
                mean_of((p - b) for p, b in zip(dp, db, strict=True) if None not in (p, b))
            )
            dbeta.append(mean_of(db))
            dpre.append(mean_of(dp))
            conv_ds.append(mean_of(r.last(c, "drift_score") for c in conv))
            conv_part.append(mean_of(r.delta(c, "weight_mean") for c in conv))
        out[act] = {
            "bn_fed_d_preact_mean": mean_ci(dpre),
            "bn_d_beta": mean_ci(dbeta),
            "identity_residual": mean_ci(resid),
            "conv_drift_score": mean_ci(conv_ds),
            "conv_d_weight_mean": mean_ci(conv_part),
        }
    return out


# ------------------------------------------------------------------ the sweep's drift table


REPORT_COLUMNS = (
    "arch",
    "activation",
    "runs",
    "step_k",
    "preact_0",
    "preact_k",
    "d_preact",
    "falling",
    "d_sparsity",
    "d_negative_rate",
    "d_weight_part",
    "d_mean_part",
    "d_bias",
    "d_weight_mean",
    "d_weight_meandir",
    "drift_score_k",
    "responsible",
)


def _report_row(run: Run, k: int | None) -> tuple[int, dict[str, float]] | None:
    """One run's drift-table quantities at step k (default: the last step the first activation
    layer logged), averaged over its activation layers (those with a preact_mean record)."""
    acts = sorted({layer for layer, metric in run.all_series() if metric == "preact_mean"})
    if not acts:
        return None
    step_k = max(run.series(acts[0], "preact_mean")) if k is None else k
    per_layer: dict[str, list[float]] = defaultdict(list)
    for act in acts:
        p = run.series(act, "preact_mean")
        per_layer["preact_0"].append(p[min(p)])
        per_layer["preact_k"].append(run.value_at(act, "preact_mean", step_k))
        per_layer["d_preact"].append(run.delta_at(act, "preact_mean", step_k))
        per_layer["d_sparsity"].append(run.delta_at(act, "sparsity", step_k))
        per_layer["d_negative_rate"].append(run.delta_at(act, "negative_rate", step_k))
        src = run.feeds.get(act)
        for col, metric in (
            ("d_weight_part", "preact_weight_part"),
            ("d_mean_part", "preact_weight_meanpart"),
            ("d_bias", "bias_mean"),
            ("d_weight_mean", "weight_mean"),
            ("d_weight_meandir", "weight_meandir"),
        ):
            per_layer[col].append(run.delta_at(src, metric, step_k))
        per_layer["drift_score_k"].append(run.value_at(src, "drift_score", step_k))
    out = {col: _nanmean(vals) for col, vals in per_layer.items()}
    out["falling"] = sum(1 for d in per_layer["d_preact"] if d < 0)
    out["layers"] = len(acts)
    return step_k, out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def _responsible(row: dict[str, Any]) -> str:
    """Which part of the pre-activation shift moved most: biases, the weights' plain mean, or
    the weights along the mean input direction x̄ (d_weight_part − d_mean_part)."""
    parts = {
        "biases": row["d_bias"],
        "weights: plain mean": row["d_mean_part"],
        "weights: along x̄": row["d_weight_part"] - row["d_mean_part"],
    }
    finite = {k: v for k, v in parts.items() if not math.isnan(v)}
    if not finite:
        return "n/a"
    return max(finite, key=lambda k: abs(finite[k]))


def drift_report(
    sweep_dir: str | Path,
    *,
    step_k: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Per arch × activation (seeds and activation layers averaged): preact_mean at step 0 vs
    step k (default the last logged step), the sparsity / negative_rate change, and the
    weight/bias metric deltas of the feeding layers with which part moved the pre-activation.

    `falling` counts activation layers (summed over seeds) whose preact_mean went down. A
    completed run whose files cannot be read is left out (with `warn`).
    """
    root = Path(sweep_dir)
    runs = load_index(root, warn)["runs"]
    groups: dict[tuple[str, str], list[tuple[int, dict[str, float]]]] = defaultdict(list)
    for entry in runs:
        if entry.get("status") != "completed":
            continue
        run_dir = root / RUNS / entry.get("dir", entry["run"])
        summary = read_json(run_dir / "summary.json")
        body = summary if isinstance(summary, dict) else {}
        run = Run(run_dir, body.get("arch"), body.get("activation"), body.get("seed"),
                  body.get("data"), "none", body)  # fmt: skip
        try:
            run.all_series()
            problem = None
        except (OSError, ValueError, KeyError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if not isinstance(summary, dict) or problem is not None:
            if warn is not None:
                warn(f"{run_dir}: unreadable ({problem or 'summary.json'})")
            continue
        got = _report_row(run, step_k)
        if got is not None:
            groups[(run.arch, run.activation)].append(got)
    rows_out = []
    for (arch, act), results in groups.items():
        row: dict[str, Any] = {"arch": arch, "activation": act, "runs": len(results)}
        row["step_k"] = min(k for k, _ in results)
        for col in REPORT_COLUMNS[4:-1]:
            if col == "falling":
                continue
            row[col] = _nanmean([r[col] for _, r in results])
        falling = sum(r["falling"] for _, r in results)
        row["falling"] = f"{falling}/{sum(r['layers'] for _, r in results)}"
        row["responsible"] = _responsible(row)
        rows_out.append(row)
    return rows_out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:+.4g}"
        return str(v)

    table = [list(REPORT_COLUMNS)] + [[cell(r[c]) for c in REPORT_COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(REPORT_COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in table
    )
