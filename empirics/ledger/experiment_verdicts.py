"""Verdicts of the training experiments (C5's Remark A.2, C6-C8, C10's cliff) from their
result files, and the ledger row they fill (torch-free). Each `verdict_*` rule states its decision
table; `empirics.ledger.verdicts.experiment_entries` reads the files and applies them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from empirics.ledger.row_verdicts import VERDICTS

# --------------------------------------------------------------------------- experiment rows


def experiment_row(
    entry_id: str,
    claim: str,
    verdict: str,
    detail: str,
    *,
    evidence: dict[str, Any] | None = None,
    network: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A C6-C12 row in the ledger's entry format (verdict from one of the rules below)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {
        "id": entry_id,
        "claim": claim,
        "activation": None,
        "loss": None,
        "symbolic": None,
        "montecarlo": None,
        "experiment": evidence,
        "network": network,
        "verdict": verdict,
        "claimed": None,
        "detail": detail,
        "pieces": [],
        "notes": [],
        "scope": "paper",
        "evidence": "experiment" if verdict != "not-tested" else "none",
        "prediction": entry_id,
    }


EXPERIMENT_CLAIMS: dict[str, str] = {
    "C5.remark_a2": "Remark A.2: the covariance term Cov_x(dl/dp_i, x_k) oscillates around 0 early",
    "C6.optimizer_lr": "drift depends on the optimizer and the learning rate",
    "C7.random_inputs": "drift is intrinsic to optimization: it appears on random inputs too",
    "C8.architectures": "drift appears in MLP, ResNet, ViT, GPT-nano and MP-SENet",
    "C8.mp_senet_long": "MP-SENet's pre-activations drift down, by training stage (long runs)",
    "C9.relu_sparsity": "with ReLU, drift yields activation sparsity up to 90% in GPT-nano",
    "C10.sparsity_accuracy": "accuracy falls off a cliff above ~70% controlled sparsity",
    "C10.gpt_topk": "GPT-nano: val loss falls off a cliff above ~70% Top-K sparsity",
    "C11.relu2_spikes": "ReLU^2 amplifies activation spikes ~25x relative to ReLU",
    "C12.clipping": "clipped ReLU^2 beats ReLU^2; GELU^2 reaches the lowest GPT-nano loss",
}


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def scale_note(block: dict[str, Any], seeds_key: str = "seeds") -> str:
    if "scale" not in block and "rows" in block:  # the early-training grid's own files
        seeds = sorted({s for r in block["rows"] for s in r.get("seeds") or []})
        return f"[early-training grid, seeds {seeds[0]}-{seeds[-1]}]" if seeds else "[grid]"
    scale = block.get("scale") or {}
    seeds = scale.get(seeds_key, scale.get("seeds"))
    return f"[{scale.get('name', '?')} scale, preset {scale.get('preset', '?')}, " + (
        f"{len(seeds)} seeds]" if isinstance(seeds, list) else "seeds ?]"
    )


def ci_bounds(stat: dict[str, Any] | None) -> tuple[float, float] | None:
    if not stat or not isinstance(stat.get("ci"), list) or not all(map(finite, stat["ci"])):
        return None
    return float(stat["ci"][0]), float(stat["ci"][1])


def ci_text(stat: dict[str, Any], digits: int = 2) -> str:
    ci = ci_bounds(stat)
    mean = stat.get("mean", stat.get("geo_mean"))
    if ci is None or not finite(mean):
        return "n/a"
    return f"{mean:+.{digits}g} [{ci[0]:+.{digits}g}, {ci[1]:+.{digits}g}]"


def _est_text(est: dict[str, Any] | None, steps: int) -> str:
    if not est:
        return "n/a"

    def fmt(v: Any) -> str:
        return f">{steps}" if v is None else str(v)

    return f"{fmt(est.get('point'))} [{fmt(est.get('lo'))}, {fmt(est.get('hi'))}]"


def _horizon_cell(row: dict[str, Any], kind: str) -> dict[str, Any]:
    """One setting's horizon of one kind over its seeds: per seed the change-point estimate at N
    and k N (95% bootstrap intervals over networks) and whether they overlap. Only seeds whose two
    intervals overlap give a horizon (the k N one); `reached` / `beyond` count those that cross
    within the run / never do."""
    n_est = (row.get("N") or {}).get(f"{kind}_est") or []
    k_est = (row.get("kN") or {}).get(f"{kind}_est") or []
    agree = row.get(f"{kind}_agree") or [False] * len(k_est)
    used = [k for k, ok in zip(k_est, agree, strict=False) if ok and k]
    return {
        "seeds": len(k_est),
        "agree": sum(bool(a) for a in agree),
        # reached: the whole interval inside the run; beyond: the whole interval past its end
        "reached": [e for e in used if e.get("hi") is not None],
        "beyond": [e for e in used if e.get("lo") is None],
        "N": n_est,
        "kN": k_est,
    }


def _horizon_kind(
    rows: list[dict[str, Any]], kind: str, steps: int, sizes: dict[str, Any]
) -> tuple[str, dict[str, int], bool]:
    """One horizon kind over the settings (inputs, optimizer, lr, layer): its text, its counts,
    and whether it separates two settings of one input law and layer (see verdict_horizons)."""
    cells = {
        (r.get("data", "?"), r["optimizer"], float(r["lr"]), r["layer"]): _horizon_cell(r, kind)
        for r in rows
    }
    reach = {k for k, c in cells.items() if c["seeds"] and len(c["reached"]) == c["seeds"]}
    never = {k for k, c in cells.items() if c["seeds"] and len(c["beyond"]) == c["seeds"]}
    separates = False
    for data, layer in {(k[0], k[3]) for k in cells}:
        mine = [k for k in cells if k[0] == data and k[3] == layer]
        if any(k in reach for k in mine) and any(k in never for k in mine):
            separates = True
        hits = [k for k in mine if k in reach]
        for a in hits:
            for b in hits:
                if a < b and all(
                    not intervals_overlap_steps(x, y)
                    for x in cells[a]["reached"]
                    for y in cells[b]["reached"]
                ):
                    separates = True
    evidence = {
        "settings": len(cells),
        "reach": len(reach),
        "never": len(never),
        "seeds_agreeing": sum(c["agree"] for c in cells.values()),
        "seeds": sum(c["seeds"] for c in cells.values()),
    }
    shown = []
    for (data, opt, lr, layer), c in sorted(cells.items()):
        if not c["reached"]:
            continue
        n_txt = "; ".join(_est_text(e, steps) for e in c["N"])
        k_txt = "; ".join(_est_text(e, steps) for e in c["kN"])
        shown.append(
            f"{data} {opt} {lr:g} {layer.removeprefix('layer')}: N {n_txt} | kN "
            f"{k_txt} ({c['agree']}/{c['seeds']} agree)"
        )
    part = (
        f"{kind}: N and {sizes.get('kN', 'kN')}-network intervals overlap in "
        f"{evidence['seeds_agreeing']} of {evidence['seeds']} seed-settings; "
        f"reached in every seed by {len(reach)} of {len(cells)} settings, never by "
        f"{len(never)}" + (f" ({'; '.join(shown)})" if shown else "")
    )
    return part, evidence, separates


def verdict_horizons(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C6 from the early-training horizons of E[dl/dp | p > 0] (ReLU, MSE), per inputs x
    optimizer x lr x layer, for two horizons: reversal (the mean curve crosses 0) and decay (it
    falls below 10% of its value at init), each the change point of the mean curve with a 95%
    bootstrap interval over networks, measured at N and at k N networks. A horizon enters the
    verdict only in seeds where the two intervals overlap (an estimate that moves with N measures
    power, not the drift). A setting "reaches" a horizon when every seed agrees and crosses within
    the run, "never" when every seed agrees that it does not. Drift depends on the optimizer and
    lr (confirmed) when, for one horizon, within one input law and layer, some setting reaches it
    and another never does, or two settings that reach it have disjoint intervals in every seed
    pair; refuted when every setting reaches both horizons with overlapping intervals;
    not-tested otherwise (too few agreeing horizons)."""
    rows = ((block or {}).get("early_training") or block or {}).get("rows") or []
    rows = [
        r
        for r in rows
        if r.get("quantity") == "g_pos" and r.get("activation") == "relu" and r.get("loss") == "mse"
    ]
    if not rows or not any((r.get("kN") or {}).get("reversal_est") for r in rows):
        return "not-tested", "", None
    steps = max(int(r.get("steps") or 0) for r in rows)
    sizes = rows[0].get("n_networks") or {}
    parts, evidence = [], {}
    separates = False
    for kind in ("reversal", "decay"):
        part, evidence[kind], split = _horizon_kind(rows, kind, steps, sizes)
        parts.append(part)
        separates = separates or split
    text = (
        f"ReLU/MSE horizons of E[∂ℓ/∂p | p>0] within {steps} steps, change point of the mean "
        f"curve [95% bootstrap over networks] at N = {sizes.get('N', '?')} | kN = "
        f"{sizes.get('kN', '?')} networks, per seed (inputs, optimizer, lr, layer) "
        + scale_note(block or {})
        + ": "
        + "; ".join(parts)
    )
    alarm = ((block or {}).get("early_training") or block or {}).get("band_false_alarm") or []
    if alarm:
        text += "; bands' family-wise false alarm on skewed AR(1) nulls: " + ", ".join(
            f"{a['rate']:.3g} [{a['rate_ci95'][0]:.2g}, {a['rate_ci95'][1]:.2g}] at n = "
            f"{a['n']} (nominal {a['nominal']:g})"
            for a in alarm
        )
    if separates:
        return "confirmed", text, evidence
    if all(e["reach"] == e["settings"] for e in evidence.values()):
        return "refuted", text, evidence
    return "not-tested", text + " (too few N-stable horizons to tell)", evidence


def intervals_overlap_steps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two horizon intervals (steps; None = beyond the run) share a step."""
    big = 1 << 30

    def lim(v: Any) -> int:
        return big if v is None else int(v)

    return max(lim(a.get("lo")), lim(b.get("lo"))) <= min(lim(a.get("hi")), lim(b.get("hi")))


POSITIVE = ("relu", "gelu", "silu")
DRIFT_QUANTITIES = ("d_preact_mean", "cons_drift_score")


def _drift_status(row: dict[str, Any]) -> tuple[str, str]:
    """shown / opposite / not distinguishable for one arch x data x activation row: some drift
    quantity (mean pre-activation, or drift score of the weights the activation feeds) has a 95%
    CI over seeds below 0 and its paired difference to tanh (same seeds) below 0 too."""
    means, paired = row.get("mean_over_layers") or {}, row.get("vs_tanh") or {}
    notes, status = [], "not distinguishable"
    for q in DRIFT_QUANTITIES:
        ci, diff = ci_bounds(means.get(q)), ci_bounds(paired.get(q))
        if ci is None:
            continue
        notes.append(f"{q} {ci_text(means[q])}")
        if ci[1] < 0 and (diff is None or diff[1] < 0):
            status = "shown"
        elif ci[0] > 0 and status != "shown":
            status = "opposite"
    return status, ", ".join(notes)


ARCHS_C8 = ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")
ARCHS_C7 = ("mlp", "vit", "gpt_nano")  # the synthetic-input grid (random images, random tokens)


def verdict_drift_shown(block: dict[str, Any] | None, data: str) -> Any:
    """C7 (data='synthetic') and C8 (data='real'): per architecture, drift is shown when every
    positively biased activation run shows it (`_drift_status`), refuted there when one drifts
    the other way, not distinguishable otherwise; an architecture of the claim with no runs is
    not-tested; the claim combines architectures."""
    rows = [r for r in (block or {}).get("rows") or [] if r.get("data") == data]
    if not rows:
        return []
    expected = ARCHS_C7 if data == "synthetic" else ARCHS_C8
    parts, texts = [], []
    for arch in [*expected, *sorted({r["arch"] for r in rows} - set(expected))]:
        mine = [r for r in rows if r["arch"] == arch and r["activation"] in POSITIVE]
        if not mine:
            parts.append((arch, "not-tested"))
            texts.append(f"{arch}: not run at this scale")
            continue
        statuses = {r["activation"]: _drift_status(r) for r in mine}
        kinds = {st for st, _ in statuses.values()}
        verdict = (
            "confirmed"
            if kinds == {"shown"}
            else "refuted"
            if "opposite" in kinds
            else "not-tested"
        )
        parts.append((arch, verdict))
        texts.append(
            f"{arch}: " + "; ".join(f"{a} {st} ({t})" for a, (st, t) in sorted(statuses.items()))
        )
    head = "Δ over training, mean [95% CI] over seeds " + scale_note(block or {}) + ": "
    return [
        (arch, verdict, head + text, {"arch": arch})
        for (arch, verdict), text in zip(parts, texts, strict=True)
    ]


# C10's "cliff above ~70%": where performance falls below 95% of the dense baseline, read as
# inside [0.6, 0.85] (confirmed), wholly above 0.85 or below 0.6 (refuted).
C10_CLIFF_BAND = (0.6, 0.85)
C10_CONTROL_NAMES = {
    "topk": "Top-K",
    "quantile": "quantile shift",
    "shift": "fixed shift",
    "none": "emergent (baseline)",
}


def _crit_text(cell: dict[str, Any]) -> str:
    """One threshold's critical sparsity: mean [95% t CI over seeds] when every seed is
    bracketed by grid points, else the per-seed values with their censoring."""
    if ci_bounds(cell) is not None:
        return f"{cell['mean']:.2f} [{cell['ci'][0]:.2f}, {cell['ci'][1]:.2f}]"
    per = list((cell.get("per_seed") or {}).values())
    marks = {"above": "≥", "below": "<", None: ""}
    vals = [f"{marks[c.get('censored')]}{c['value']:.2f}" for c in per if finite(c.get("value"))]
    return "/".join(vals) if vals else "n/a"


def _cliff_part(cell: dict[str, Any]) -> str:
    """confirmed / refuted / not-tested for one architecture x control from the critical
    sparsity at 95% of the dense baseline (see verdict_cliff)."""
    lo_band, hi_band = C10_CLIFF_BAND
    c95 = cell.get("0.95") or {}
    per = list((c95.get("per_seed") or {}).values())
    if len(per) < 2:  # a verdict needs a spread over seeds
        return "not-tested"
    ci = ci_bounds(c95)
    if ci is not None and c95.get("bracketed") == len(per):
        if lo_band <= ci[0] and ci[1] <= hi_band:
            return "confirmed"
        if ci[0] > hi_band or ci[1] < lo_band:
            return "refuted"
        return "not-tested"
    # censored in every seed: keeps >= 95% beyond the band's top, or loses it below its bottom
    if all(c.get("censored") == "above" and c["value"] > hi_band for c in per):
        return "refuted"
    if all(c.get("censored") == "below" and c["value"] < lo_band for c in per):
        return "refuted"
    return "not-tested"


def verdict_cliff(block: dict[str, Any] | None) -> list[tuple[str, str, str, dict]]:
    """C10 per architecture x control, from the critical sparsity (the largest measured sparsity
    keeping >= 99% / >= 95% of the same seed's dense baseline; `critical_sparsity`, a value only
    where grid points bracket it, censored otherwise), with a t interval over >= 2 seeds. A control
    shows the cliff (confirmed) when the 95% critical sparsity's CI lies inside [0.6, 0.85];
    refuted when it lies wholly above 0.85 (or every seed keeps 95% at a measured sparsity above
    0.85) or wholly below 0.6 (or every seed loses it below 0.6); not-tested otherwise. The
    baseline's emergent sparsity (performance 1 by definition) refutes the cliff for the
    sparsity training produces when its CI lies above 0.85, and is not-tested otherwise. Runs that
    did not complete are listed as such. The claim's verdict says which parts hold."""
    crit = (block or {}).get("critical") or {}
    if not crit:
        return []
    failed = (block or {}).get("diverged") or []
    head = "critical sparsity at 99% | 95% of the dense baseline " + scale_note(
        block or {}, "c10_seeds"
    )
    out = []
    for arch in sorted(crit):
        for control, cell in sorted(crit[arch].items()):
            name = C10_CONTROL_NAMES.get(control, control)
            lost = [
                f"{f.get('sparsity')} s{f.get('seed')} {f.get('status')}"
                for f in failed
                if f.get("arch") == arch and str(f.get("sparsity", "")).split(":")[0] == control
            ]
            if control == "none":
                em = cell.get("emergent") or {}
                ci = ci_bounds(em)
                above = ci is not None and ci[0] > C10_CLIFF_BAND[1]
                verdict = "refuted" if above else "not-tested"
                shown = ci_text(em) if ci else f"{em.get('mean') or math.nan:.2f} (one seed)"
                text = f"{arch} {name}: sparsity {shown} at 100% by definition"
            else:
                verdict = _cliff_part(cell)
                text = (
                    f"{arch} {name}: {_crit_text(cell.get('0.99') or {})} | "
                    f"{_crit_text(cell.get('0.95') or {})}"
                )
            if lost:
                text += f" (not completed: {', '.join(lost)})"
            out.append((f"{arch}_{control}", verdict, f"{head}: {text}", {"arch": arch}))
    return out


# Remark A.2's early window (steps 0..19) and what "around 0" means beside the mean term: a
# covariance term within +-10 % of the mean term cannot change what C5 needs of E[dl/dW].
A2_EARLY_STEPS = 20
A2_SMALL = 0.1


def _a2_steps(row: dict[str, Any]) -> list[tuple[float, float, float, float]]:
    """(cov_lo, cov_hi, mean_lo, mean_hi) per early step, from the row's simultaneous bands."""
    cov, mean = row.get("cov_term") or {}, row.get("mean_term") or {}
    cols = [cov.get("lo") or [], cov.get("hi") or [], mean.get("lo") or [], mean.get("hi") or []]
    n = min(A2_EARLY_STEPS, *(len(c) for c in cols))
    return [tuple(float(c[t]) for c in cols) for t in range(n)]  # type: ignore[misc]


def _a2_setting(row: dict[str, Any]) -> dict[str, Any]:
    """What one setting's bands decide over the early window: covariance sign decided (steps
    positive / negative), small (|cov| <= A2_SMALL |mean| at every step where the mean term's
    sign is decided, bounds from both bands), large (some step where the covariance band lies
    outside +-A2_SMALL times the mean term's upper bound), and E[dl/dW] = mean + covariance: kept
    (same sign as the decided mean term at every such step, lower bounds added) or reversed (some
    step where the covariance confidently outweighs and opposes it)."""
    steps = _a2_steps(row)
    pos = sum(c_lo > 0 for c_lo, _, _, _ in steps)
    neg = sum(c_hi < 0 for _, c_hi, _, _ in steps)
    decided = [(c_lo, c_hi, m_lo, m_hi) for c_lo, c_hi, m_lo, m_hi in steps if m_lo > 0 or m_hi < 0]
    small = bool(decided) and all(
        max(abs(c_lo), abs(c_hi)) <= A2_SMALL * min(abs(m_lo), abs(m_hi))
        for c_lo, c_hi, m_lo, m_hi in decided
    )
    large = any(
        c_lo > A2_SMALL * max(abs(m_lo), abs(m_hi)) or c_hi < -A2_SMALL * max(abs(m_lo), abs(m_hi))
        for c_lo, c_hi, m_lo, m_hi in steps
    )
    kept = bool(decided) and all(
        (c_lo + m_lo > 0) if m_lo > 0 else (c_hi + m_hi < 0) for c_lo, c_hi, m_lo, m_hi in decided
    )
    reversed_ = any(
        (c_hi + m_hi < 0) if m_lo > 0 else (c_lo + m_lo > 0) for c_lo, c_hi, m_lo, m_hi in decided
    )
    return {
        "steps": len(steps),
        "positive": pos,
        "negative": neg,
        "mean_decided": len(decided),
        "small": small,
        "large": large,
        "kept": kept,
        "reversed": reversed_,
    }


def verdict_remark_a2(block: dict[str, Any] | None) -> list[tuple[str, str, str, dict]]:
    """Remark A.2 from the early-training bands (settings whose layer input is non-negative),
    two rows, each with its own rule, over the first A2_EARLY_STEPS steps:

    `literal` ("the covariance term oscillates around 0 early"): confirmed when no setting's
    covariance band decides a sign at any early step; refined when the term is around 0 on the
    mean term's scale (|cov| <= 10 % of |mean| wherever the mean term is decided, in every
    setting) but some step decides a sign: a small term of constant sign, not an oscillation
    around 0 (at init the sign is a theorem, `theory.remark_a2`); refuted when some setting has a
    step where the covariance term confidently exceeds 10 % of the mean term; not-tested
    otherwise.
    `role` (what C5 needs: E[dl/dW] keeps the mean term's sign): confirmed when, in every
    setting, at every early step where the mean term's sign is decided, the lower bounds of the
    two terms add up on that side; refuted when at some such step the covariance confidently
    outweighs and opposes it; not-tested otherwise.
    Error rates: every band covers all its steps together with probability ~ 1 - alpha (family-
    wise, alpha = 0.01 in the grid); a conclusion from two bands holds with probability >= 1 -
    2 alpha per setting (union bound)."""
    rows = [r for r in (block or {}).get("rows") or [] if r.get("nonneg_inputs")]
    if not rows:
        return []
    alpha = rows[0].get("alpha")
    got = [(r, _a2_setting(r)) for r in rows]
    n = len(got)
    signed = [r for r, g in got if g["positive"] or g["negative"]]
    negative = [r for r, g in got if g["negative"]]
    small = [r for r, g in got if g["small"]]
    large = [r for r, g in got if g["large"]]
    kept = [r for r, g in got if g["kept"]]
    reversed_ = [r for r, g in got if g["reversed"]]
    ratios = sorted(
        float((r.get("summary") or {}).get("median_abs_ratio_to_mean_term") or math.nan)
        for r in rows
    )
    ratios = [v for v in ratios if math.isfinite(v)]
    layers = sorted({r.get("layer", "?") for r in rows})
    head = (
        f"covariance term of E[∂ℓ/∂W], non-negative layer inputs ({', '.join(layers)}), first "
        f"{A2_EARLY_STEPS} steps, bands family-wise {alpha:g} {scale_note(block or {})}: "
    )
    literal = (
        f"sign decided at some early step in {len(signed)} of {n} settings "
        f"({len(negative)} negative); within ±{A2_SMALL:.0%} of the mean term wherever that is "
        f"decided in {len(small)} of {n}; confidently above {A2_SMALL:.0%} in {len(large)}"
    )
    if ratios:
        literal += f"; median |cov|/|mean| {ratios[0]:.1%}–{ratios[-1]:.1%}"
    if large:
        v_lit = "refuted"
    elif not signed:
        v_lit = "confirmed"
    elif len(small) == n:
        v_lit = "refined"
        literal += " (a small term of constant sign, not an oscillation around 0)"
    else:
        v_lit = "not-tested"
    role = (
        f"E[∂ℓ/∂W] keeps the mean term's sign at every step where that is decided in "
        f"{len(kept)} of {n} settings, reversed by the covariance term in {len(reversed_)}"
    )
    v_role = "refuted" if reversed_ else "confirmed" if len(kept) == n else "not-tested"
    counts = {"settings": n, "signed": len(signed), "small": len(small), "large": len(large)}
    return [
        ("literal", v_lit, head + literal, counts),
        ("role", v_role, head + role, {"settings": n, "kept": len(kept)}),
    ]


def verdict_mp_senet_long(block: dict[str, Any] | None) -> Any:
    """C8 for MP-SENet by training stage from its long runs, one row per family of activation
    layers: the rule and the stage aggregation it reads live together in
    empirics.experiments.mp_senet_long
    (`verdict`)."""
    from empirics.experiments.mp_senet_long import verdict

    # the claim line names each part by its last id piece: say it is MP-SENet's
    return [(f"mp_senet_{key}", v, text, ev) for key, v, text, ev in verdict(block) or []]
