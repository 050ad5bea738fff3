"""The pipeline's aggregators other than drift and C10 (no torch): C9 sparsity, C11 spikes,
C12 validation loss, the trainer's first step, C6 persistence, the MP-SENet loss-term probe.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from empirics.experiments.runs import Run, act_layers, brief, max_or_none, thin
from empirics.stats.seeds import holm, mean_ci, paired


def aggregate_c9(runs: Sequence[Run], max_points: int = 80) -> dict[str, Any]:
    """C9: ReLU sparsity per activation layer over training (real data), mean and 95 % CI over
    seeds at every step all seeds logged (thinned to at most `max_points`), with init and end."""
    by: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.activation == "relu" and r.data == "real" and r.sparsity == "none":
            by[r.arch].append(r)
    archs = {}
    for arch, rs in sorted(by.items()):
        layers = act_layers(rs[0])
        out_layers = {}
        for layer in layers:
            ser = [r.series(layer, "sparsity") for r in rs]
            common = thin(sorted(set.intersection(*(set(s) for s in ser))), max_points)
            traj = [{"step": st, **brief(mean_ci(s[st] for s in ser))} for st in common]
            out_layers[layer] = {
                "init": mean_ci(r.first(layer, "sparsity") for r in rs),
                "final": mean_ci(r.last(layer, "sparsity") for r in rs),
                "trajectory": traj,
            }
        finals = [v["final"]["mean"] for v in out_layers.values() if v["final"]["mean"] is not None]
        archs[arch] = {
            "seeds": sorted(r.seed for r in rs),
            "steps": rs[0].summary.get("steps"),
            "layers": out_layers,
            "max_final": max(finals) if finals else None,
            "max_final_layer": max(out_layers, key=lambda k: out_layers[k]["final"]["mean"] or -1)
            if out_layers
            else None,
        }
    return {"archs": archs}


def _log_ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (a > 0 and b > 0):
        return None
    return math.log(a / b)


def aggregate_spikes(runs: Sequence[Run]) -> dict[str, Any]:
    """C11: per GPT-nano activation and layer, spike_max and spike_ratio at the last step and the
    max over training, over seeds; amplification relative to ReLU per layer as a geometric-mean
    ratio with a paired (same seed) t interval on log ratios."""
    by: dict[str, dict[int, Run]] = defaultdict(dict)
    for r in runs:
        if r.arch == "gpt_nano" and r.data == "real" and r.sparsity == "none":
            by[r.activation][r.seed] = r
    if "relu" not in by:
        return {"activations": {}, "note": "no ReLU runs: amplification undefined"}
    layers = act_layers(next(iter(by["relu"].values())))
    acts = {}
    for act, seeds in sorted(by.items()):
        per_layer = {}
        for layer in layers:
            entry: dict[str, Any] = {}
            for metric in ("spike_max", "spike_ratio"):
                last = {s: r.last(layer, metric) for s, r in seeds.items()}
                peak = {s: max_or_none(r.series(layer, metric).values()) for s, r in seeds.items()}
                entry[metric] = mean_ci(last.values())
                entry[f"{metric}_peak"] = mean_ci(peak.values())
                for which, vals in (("last", last), ("peak", peak)):
                    relu_vals = {
                        s: (
                            by["relu"][s].last(layer, metric)
                            if which == "last"
                            else max_or_none(by["relu"][s].series(layer, metric).values())
                        )
                        for s in by["relu"]
                    }
                    logs = {
                        s: _log_ratio(vals[s], relu_vals.get(s)) for s in vals if s in relu_vals
                    }
                    logs = {s: v for s, v in logs.items() if v is not None}
                    ci = paired(logs, {s: 0.0 for s in logs})
                    entry[f"amp_{metric}_{which}"] = {
                        "geo_mean": math.exp(ci["mean"]) if ci["mean"] is not None else None,
                        "ci": [math.exp(c) if c is not None else None for c in ci["ci"]],
                        "p_t": ci["p_t"],
                        "n": ci["n"],
                        "test": "paired t on log ratios (two-sided)",
                    }
            per_layer[layer] = entry
        amplified = [
            layer for layer, e in per_layer.items() if (e["amp_spike_max_last"]["ci"][0] or 0) > 1.0
        ]
        acts[act] = {
            "seeds": sorted(seeds),
            "layers": per_layer,
            # layers whose spike_max ratio to ReLU has its 95 % CI above 1 (per-layer, unadjusted)
            "amplified_layers": amplified,
        }
    return {"layers": layers, "activations": acts}


C12_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("relu2_clip", "relu2"),
    ("relu2_clip50", "relu2"),
    ("gelu2_clip", "gelu2"),
    ("relu2_clip", "relu"),
    ("relu2_clip", "gelu"),
    ("gelu2", "relu"),
    ("gelu2", "gelu"),
    ("relu2", "relu"),
    ("gelu2", "relu2"),
    ("gelu2", "relu2_clip"),
    ("gelu2", "relu2_clip50"),
    ("gelu2", "gelu2_clip"),
)


def aggregate_c12(runs: Sequence[Run]) -> dict[str, Any]:
    """C12: GPT-nano val loss per activation (mean, 95 % CI over seeds) and paired differences
    (a − b < 0 means a is better), Holm-adjusted over the listed comparisons."""
    by: dict[str, dict[int, float]] = defaultdict(dict)
    for r in runs:
        if r.arch == "gpt_nano" and r.data == "real" and r.sparsity == "none":
            v = (r.summary.get("val") or {}).get("val_loss")
            if v is not None:
                by[r.activation][r.seed] = float(v)
    per_act = {a: mean_ci(v.values()) | {"by_seed": v} for a, v in sorted(by.items())}
    comps = []
    for a, b in C12_COMPARISONS:
        if a in by and b in by:
            comps.append({"a": a, "b": b, **paired(by[a], by[b])})
    adj = holm([c["p_t"] for c in comps])
    for c, p in zip(comps, adj, strict=True):
        c["p_holm"] = p
    ranked = sorted(
        (a for a in per_act if per_act[a]["mean"] is not None), key=lambda a: per_act[a]["mean"]
    )
    return {
        "metric": "val_loss (nats/char)",
        "activations": per_act,
        "ranking": ranked,
        "comparisons": comps,
        "family": "Holm over the comparisons listed, two-sided paired t",
    }


def aggregate_first_step(runs: Sequence[Run]) -> dict[str, Any]:
    """The full trainer's first update: per run, the change of the bias mean of every layer that
    feeds an activation between step 0 and step 1 (records are logged every step early on), then
    per architecture x activation x layer and averaged over layers, the mean over seeds with a
    95 % t interval. Theory predicts < 0 wherever D(σ) > 0 (tanh: 0)."""
    by: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in runs:
        if r.data != "real":
            continue
        per_run = []
        for act in act_layers(r):
            src = r.feeds.get(act)
            b = r.series(src, "bias_mean") if src else {}
            if 0 in b and 1 in b:
                by[(r.arch, r.activation, act)].append(b[1] - b[0])
                per_run.append(b[1] - b[0])
        if per_run:
            by[(r.arch, r.activation, "mean over layers")].append(float(np.mean(per_run)))
    rows = []
    for (arch, act, layer), vals in sorted(by.items()):
        e = mean_ci(vals)
        rows.append({"arch": arch, "activation": act, "layer": layer, **e})
    return {"quantity": "bias_mean(step 1) − bias_mean(step 0) of the layer feeding each "
            "activation (the trainer's own optimizer and lr)", "rows": rows}  # fmt: skip


def aggregate_c6(early_dir: Path) -> dict[str, Any]:
    """C6: the early-training horizons as `python -m empirics.montecarlo.early_training` wrote them
    (horizons.json; its intervals are over the networks trained side by side and its own seeds),
    passed through so that the verdict reads one directory."""
    for name in ("horizons.json", "summary.json"):
        path = early_dir / name
        if path.exists():
            return {"source": str(path), "early_training": json.loads(path.read_text())}
    return {"source": None, "early_training": None}


def aggregate_mp_probe(path: Path) -> dict[str, Any]:
    """Per activation, layer and loss term: the mean gradient on the feeding norm's shift over
    seeds (95 % CI) and its sign at 95 %; per layer, the term with the largest |mean| push."""
    if not path.exists():
        return {"rows": []}
    raw = json.loads(path.read_text())["rows"]
    by: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in raw:
        by[(r["activation"], r["layer"], r["term"])].append(r["grad_bias_mean"])
    rows = []
    for (act, layer, term), vals in sorted(by.items()):
        e = mean_ci(vals)
        lo, hi = e["ci"]
        sign = (
            "pushes shift down" if lo is not None and lo > 0
            else "pushes shift up" if hi is not None and hi < 0
            else "not distinguishable from 0"
        )  # fmt: skip
        rows.append({"activation": act, "layer": layer, "term": term, "sign_95": sign, **e})
    dominant: dict[str, dict[str, str]] = defaultdict(dict)
    for act, layer in sorted({(r["activation"], r["layer"]) for r in rows}):
        mine = [r for r in rows if r["activation"] == act and r["layer"] == layer]
        dominant[act][layer] = max(mine, key=lambda r: abs(r["mean"] or 0.0))["term"]
    return {
        "quantity": "d(weighted loss term)/d(norm shift), channel mean, at init (> 0: GD lowers "
        "the shift)",
        "rows": rows,
        "dominant_term": dominant,
    }
