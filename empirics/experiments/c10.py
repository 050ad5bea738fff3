"""C10: performance against measured sparsity under controlled sparsity (no torch): relative
performance per run, the critical sparsity per architecture x control, and hinge fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from empirics.experiments.runs import Run, act_layers, max_or_none, mean_of
from empirics.stats.fits import C10_THRESHOLDS, c10_critical, cliff_analysis
from empirics.stats.seeds import mean_ci


def _performance(run: Run) -> tuple[str, float | None]:
    val = run.summary.get("val") or {}
    if run.arch == "gpt_nano":
        return "val_loss", val.get("val_loss")
    return "accuracy", val.get("accuracy")


def c10_points(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Each run's measured sparsity (mean and max over activation layers at the last step) and
    its performance relative to the uncontrolled run of the same arch, activation and seed
    (runs without a baseline or a value are left out)."""
    base: dict[tuple[str, str, int], float] = {}
    for r in runs:
        if r.sparsity == "none":
            _, v = _performance(r)
            if v is not None:
                base[(r.arch, r.activation, r.seed)] = v
    points = []
    for r in runs:
        metric, v = _performance(r)
        ref = base.get((r.arch, r.activation, r.seed))
        layers = act_layers(r)
        meas = mean_of(r.last(a, "sparsity") for a in layers)
        meas_max = max_or_none(v for v in (r.last(a, "sparsity") for a in layers) if v is not None)
        if v is None or ref is None or meas is None:
            continue
        rel = v / ref if metric == "accuracy" else math.exp(-(v - ref))
        kind, _, level = r.sparsity.partition(":")
        points.append(
            {
                "arch": r.arch,
                "activation": r.activation,
                "control": kind,
                "level": float(level) if level else 0.0,
                "seed": r.seed,
                "measured_sparsity": meas,
                "measured_sparsity_max_layer": meas_max,
                "metric": metric,
                "value": v,
                "baseline": ref,
                "relative": rel,
            }
        )
    return points


def aggregate_c10(
    runs: Sequence[Run], failed: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """C10: each controlled run's measured sparsity (mean over activation layers at the last
    step) and its performance relative to the uncontrolled run of the same arch, activation and
    seed (accuracy ratio; for GPT-nano exp(−Δ val_loss), the inverse perplexity ratio); the
    critical sparsity per architecture x control (`c10_critical`, what the verdict reads); hinge
    fits per architecture and pooled, with bootstrap CIs on the knee; `failed`: the runs that
    did not complete (`c10_failed`), listed as such."""
    points = c10_points(runs)

    def config(p: dict[str, Any]) -> tuple[Any, ...]:
        return (p["arch"], p["activation"], p["control"], p["level"])

    def fit(sel: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        return cliff_analysis(
            [p["measured_sparsity"] for p in sel], [p["relative"] for p in sel], **kw
        )

    configs = {config(p) for p in points}
    fits = {}
    for arch in sorted({p["arch"] for p in points}):
        sel = [p for p in points if p["arch"] == arch]
        fits[arch] = fit(sel, groups=[config(p) for p in sel])
    fits["pooled"] = fit(points, groups=[config(p) for p in points])
    # The knee fitted to each seed's grid on its own: its spread over seeds (a t interval) beside
    # the pooled fit's cluster bootstrap.
    by_seed = {}
    for s in sorted({p["seed"] for p in points}):
        f = fit([p for p in points if p["seed"] == s], n_boot=0).get("fit")
        if f is not None:
            by_seed[s] = f["knee"]
    fits["pooled"]["knee_by_seed"] = {"seeds": by_seed, **mean_ci(by_seed.values())}
    critical = c10_critical(points)
    # nominal vs measured: how far each control's measured sparsity sits from its label
    gaps: dict[str, Any] = {}
    for kind in sorted({p["control"] for p in points} - {"none"}):
        sel = [p for p in points if p["control"] == kind]
        gaps[kind] = mean_ci(p["measured_sparsity"] - p["level"] for p in sel)
    return {
        "configurations": len(configs),
        "runs": len(points),
        "relative_metric": "accuracy / baseline accuracy (vision); exp(-(val_loss - baseline)) "
        "(GPT-nano); baseline = same arch, activation and seed without a control",
        "points": points,
        "fits": fits,
        "critical": critical,
        "critical_thresholds": list(C10_THRESHOLDS),
        "diverged": list(failed or []),
        "measured_minus_nominal": gaps,
    }
