"""Every rule that turns evidence into a verdict, for every claim C1-C12: one home, no torch.

The ledger rows (`empirics.ledger`), the claims table (`paper_figures/claims_table.py`) and the
figures only call these functions. `python -m empirics.verdicts [--results results]` refreshes the
experiment rows (C6-C12) and the per-claim verdicts of `results/verify/ledger.json` from the
experiment results, keeping the theory and Monte Carlo rows `make verify` wrote.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from theory.signs import SIGNS, compatible, implies

VERDICTS: tuple[str, ...] = ("confirmed", "refined", "refuted", "not-tested", "fail")
# A row is about one of the paper's claims as stated, about our own extension of it (other
# activations, other inputs, sharper statements), or about a control the paper says nothing of.
SCOPES: tuple[str, ...] = ("paper", "extension", "control")
# Evidence behind an established sign: sympy, rigorous interval bounds, quadrature or other
# numerics, the Monte Carlo alone, or an experiment.
EVIDENCE: tuple[str, ...] = ("proved", "certified", "numeric", "montecarlo", "experiment", "none")
# The activations the paper names for C2-C5 ("ReLU, GELU, SiLU"); others are our extension.
PAPER_ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "silu")
# Ids whose symbolic value is the very number the Monte Carlo estimates (same configuration), so
# a value outside the Monte Carlo CI is a `fail`; elsewhere only signs are compared.
VALUE_IDS = frozenset(
    {"C1.mean", "C1.offdiag", "C1.diag", "C4.D", "C1.depth_dead.diag"}
    | {f"C1.depth{depth}.cond_diag" for depth in (3, 4, 5)}
    | {f"C2.depth{depth}.g_pos" for depth in (3, 4, 5)}
)

PAPER_SAYS: dict[str, str] = {
    "C1": "E[v_i]=0, E⟨v_i,v_j⟩ ≥ 0, E‖v_i‖² > 0 at init",
    "C2": "MSE: E[∂ℓ/∂p_i] ≥ 0, > 0 for p_i > 0",
    "C3": "cross-entropy: same sign",
    "C4": "drift for asymmetric σ (ReLU, GELU, SiLU)",
    "C5": "weights/biases pushed negative early",
    "C6": "drift depends on optimizer and lr",
    "C7": "drift also on random inputs",
    "C8": "drift in MLP, ResNet, ViT, GPT-nano, MP-SENet",
    "C9": "ReLU sparsity up to 90% (GPT-nano)",
    "C10": "accuracy cliff above ~70% sparsity",
    "C11": "ReLU² spikes ~25× ReLU",
    "C12": "clipped ReLU² > ReLU²; GELU² best",
}
CLAIM_IDS: tuple[str, ...] = tuple(PAPER_SAYS)
REPRODUCE = {cid: "`make verify`" for cid in ("C1", "C2", "C3", "C4", "C5")} | {
    cid: "`make experiments`" for cid in ("C6", "C7", "C8", "C9", "C10", "C11", "C12")
}


# ------------------------------------------------------------------------------ row verdicts


def evidence_of(symbolic: dict[str, Any] | None, montecarlo: dict[str, Any] | None) -> str:
    """What establishes the row's sign: the symbolic method when its sign is decided, else the
    Monte Carlo when it decided one, else nothing."""
    sym = symbolic or {}
    if sym.get("sign") not in (None, "undetermined"):
        return sym.get("method") or "numeric"
    mc_sign = (montecarlo or {}).get("sign")
    return "montecarlo" if mc_sign in SIGNS and mc_sign != "undetermined" else "none"


def decide_verdict(
    entry_id: str,
    claimed: str | None,
    symbolic: dict[str, Any] | None,
    pieces: Iterable[Sequence[Any]],
    montecarlo: dict[str, Any] | None,
) -> tuple[str, list[str]]:
    """The verdict of one theory/Monte Carlo row, with the reasons.

    fail: our own prediction and estimate disagree (both signs decided with disjoint sign sets,
    or, for VALUE_IDS, the symbolic value outside the Monte Carlo CI). Otherwise the established
    sign (theory first, else a decided Monte Carlo sign) against the claimed one: refuted if
    incompatible or if a certified piece of the function contradicts the claim (e.g. a clipped
    square's g is exactly 0 above the clip, where the paper claims > 0); confirmed if equal;
    refined if strictly sharper; not-tested when nothing is established or there is no claim.
    A sign found by quadrature only keeps its verdict but is labelled numeric evidence
    (`evidence_of`), and the summary counts it apart from proved ones.
    """
    notes: list[str] = []
    sym_sign = (symbolic or {}).get("sign") or "undetermined"
    mc_sign = (montecarlo or {}).get("sign")
    mc_decided = mc_sign in SIGNS and mc_sign != "undetermined"
    if sym_sign != "undetermined" and mc_decided and not compatible(sym_sign, mc_sign):
        return "fail", [f"theory says {sym_sign}, Monte Carlo says {mc_sign}"]
    value = (symbolic or {}).get("value")
    ci = (montecarlo or {}).get("ci")
    if entry_id in VALUE_IDS and isinstance(value, (int, float)) and ci is not None:
        lo, hi = float(ci[0]), float(ci[1])
        err = float((symbolic or {}).get("error") or 0.0)
        if not (lo - err <= value <= hi + err):
            return "fail", [
                f"theory value {value:.6g} outside the Monte Carlo CI [{lo:.6g}, {hi:.6g}]"
            ]
        notes.append(f"theory value inside the Monte Carlo CI [{lo:.4g}, {hi:.4g}]")
    if claimed is None:
        return "not-tested", notes + ["no claim of the paper for this case"]
    against = [p for p in pieces if p[2] != "undetermined" and not compatible(p[2], claimed)]
    if against:
        lo, hi, sign = against[0][:3]
        where = f"p = {lo:g}" if lo == hi else f"({lo:g}, {hi:g})"
        notes.append(f"certified {sign} on {where}, the claim says {claimed}")
        return "refuted", notes
    established = sym_sign if sym_sign != "undetermined" else (mc_sign if mc_decided else None)
    if sym_sign == "undetermined" and established is not None:
        notes.append("sign established by the Monte Carlo alone")
    elif (symbolic or {}).get("method") == "numeric" and established is not None:
        notes.append("sign from quadrature: numeric evidence, not a proof")
    if established is None:
        return "not-tested", notes
    if not compatible(established, claimed):
        return "refuted", notes + [f"established {established}, claimed {claimed}"]
    if implies(established, claimed):
        return ("confirmed" if established == claimed else "refined"), notes
    return "not-tested", notes + [f"established {established} is weaker than claimed {claimed}"]


def scope_of(entry_id: str, activation: str | None, control: bool) -> str:
    """paper / extension / control for a theory row (see SCOPES)."""
    if control:
        return "control"
    if entry_id.startswith("C1."):
        return "paper"
    if entry_id == "C5.first_step.W":  # zero-mean inputs: our statement, not the paper's
        return "extension"
    if activation is None or activation in PAPER_ACTIVATIONS:
        return "paper"
    return "extension"


def worst(verdicts: Iterable[str]) -> str:
    """One verdict for rows that must all hold: a fail or refutation wins, then untested."""
    seen = set(verdicts)
    for v in ("fail", "refuted", "not-tested"):
        if v in seen:
            return v
    if not seen:
        return "not-tested"
    return "refined" if "refined" in seen else "confirmed"


def summarize(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts per scope and verdict, one per prediction (rows that share one prediction, such as
    C5's bias step with and without non-negative inputs, count once, with their worst verdict),
    the evidence behind established verdicts, and the number of fails."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in entries:
        key = e.get("prediction") or f"{e['id']}|{e.get('activation')}|{e.get('loss')}"
        groups.setdefault((e.get("scope") or "paper", key), []).append(e)
    by_scope = {s: dict.fromkeys(VERDICTS, 0) for s in SCOPES}
    evidence = {s: dict.fromkeys(EVIDENCE, 0) for s in SCOPES}
    for (scope, _), rows in groups.items():
        verdict = worst(r["verdict"] for r in rows)
        by_scope[scope][verdict] += 1
        if verdict in ("confirmed", "refined", "refuted"):
            kinds = {r.get("evidence") or "none" for r in rows}
            weakest = next(k for k in reversed(EVIDENCE) if k in kinds)
            evidence[scope][weakest] += 1
    return {
        "rows": len(entries),
        "predictions": len(groups),
        "by_scope": by_scope,
        "evidence": evidence,
        "fail": sum(e["verdict"] == "fail" for e in entries),
    }


def summary_line(summary: dict[str, Any]) -> str:
    parts = []
    for scope in SCOPES:
        counts = {k: v for k, v in summary["by_scope"][scope].items() if v}
        ev = {k: v for k, v in summary["evidence"][scope].items() if v}
        text = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        parts.append(f"{scope}: {text} (evidence: {', '.join(f'{k} {v}' for k, v in ev.items())})")
    return (
        f"{summary['rows']} rows, {summary['predictions']} distinct predictions; "
        + "; ".join(parts)
        + f"; fail {summary['fail']}"
    )


# ---------------------------------------------------------------------------- claim verdicts


def _find(entries: Sequence[dict], eid: str, act: str | None = None, loss: str | None = None):
    for e in entries:
        if e["id"] == eid and e.get("activation") == act and e.get("loss") == loss:
            return e
    return None


def _mc_text(e: dict | None) -> str:
    m = (e or {}).get("montecarlo") or {}
    if not isinstance(m.get("mean"), (int, float)):
        return "MC not run"
    return f"MC {m['mean']:.4g} ± {m['stderr']:.2g}"


def _value_text(e: dict | None) -> str:
    sym = (e or {}).get("symbolic") or {}
    value = sym.get("value")
    if isinstance(value, (int, float)):
        return f"{value:.4g}" if sym.get("exact") is None else f"{sym['exact']} = {value:.4g}"
    return str(value)


def _combine_parts(parts: list[tuple[str, str]]) -> str:
    """One claim-level verdict from (label, verdict) parts: equal parts give that verdict; a
    mix says which verdict holds where ("refined on A; refuted on B")."""
    verdicts = {v for _, v in parts}
    if len(verdicts) == 1:
        return verdicts.pop()
    if "fail" in verdicts:
        return "fail"
    return "; ".join(f"{v} on {label}" for label, v in parts)


def _rows_by(entries: Sequence[dict], prefix: str, scope: str | None = "paper") -> list[dict]:
    return [
        e
        for e in entries
        if e["id"].startswith(prefix) and (scope is None or e.get("scope") == scope)
    ]


def _claim_c1(entries: Sequence[dict]) -> tuple[str, str]:
    rows = [_find(entries, f"C1.{q}") for q in ("mean", "offdiag", "diag")]
    if not all(rows):
        return "not-tested", "the C1 rows are missing from the ledger"
    mean, off, diag = rows
    text = (
        f"sign-symmetric init: E⟨v_i,v_j⟩ = {_value_text(off)} for i≠j ({off['verdict']}; "
        f"{_mc_text(off)}); E‖v_i‖² = {_value_text(diag)} ({_mc_text(diag)}); E[v_i] = "
        f"{_value_text(mean)} ({_mc_text(mean)})"
    )
    parts = [("sign-symmetric init", worst(r["verdict"] for r in rows))]
    laws = [e for e in entries if e["id"].startswith("C1.init_") and e.get("scope") == "paper"]
    if laws:
        parts.append(("any i.i.d. zero-mean init", worst(r["verdict"] for r in laws)))
        refuted = [r for r in laws if r["verdict"] == "refuted"]
        if refuted:
            text += "; under the paper's hypothesis (i.i.d., zero mean) " + ", ".join(
                f"{r['id'].split('.')[1].removeprefix('init_')}: {_value_text(r)}"
                + (f" ({_mc_text(r)})" if r.get("montecarlo") else "")
                for r in refuted
            )
    return _combine_parts(parts), text


def _claim_gradient(entries: Sequence[dict], cid: str) -> tuple[str, str]:
    pos, neg = _rows_by(entries, f"{cid}.g_pos"), _rows_by(entries, f"{cid}.g_neg")
    if not pos and not neg:
        return "not-tested", f"the {cid} rows are missing from the ledger"
    parts = [("p>0", worst(r["verdict"] for r in pos)), ("p<0", worst(r["verdict"] for r in neg))]
    refuted = sorted({r["activation"] for r in neg if r["verdict"] == "refuted"})
    ext = _rows_by(entries, f"{cid}.g_pos", "extension")
    ext_refuted = sorted({r["activation"] for r in ext if r["verdict"] == "refuted"})
    relu = _find(entries, f"{cid}.g_pos", "relu", "mse" if cid == "C2" else "cross_entropy")
    text = (
        f"p>0 ({', '.join(r['activation'] for r in pos)}): "
        + ", ".join(f"{r['activation']} {r['verdict']} ({r.get('evidence')})" for r in pos)
        + f" ({_mc_text(relu)} for relu); p<0: "
        + (f"refuted for {', '.join(refuted)} (σσ' < 0 on part of p<0)" if refuted else parts[1][1])
    )
    if ext_refuted:
        text += f"; strict p>0 claim fails for {', '.join(ext_refuted)} (g = 0 above the clip)"
    return _combine_parts(parts), text


def _claim_c4(entries: Sequence[dict]) -> tuple[str, str]:
    rows = _rows_by(entries, "C4.D", None)
    paper = [r for r in rows if r.get("scope") == "paper"]
    controls = [r for r in rows if r.get("scope") == "control"]
    if not paper:
        return "not-tested", "the C4.D rows are missing from the ledger"
    verdict = worst(r["verdict"] for r in paper + controls)
    text = "D(σ,1) = " + ", ".join(
        f"{r['activation']} {_value_text(r)} ({r['verdict']}, {r.get('evidence')}; {_mc_text(r)})"
        for r in paper
    )
    if controls:
        text += "; controls " + ", ".join(
            f"{r['activation']} {_value_text(r)} ({r['verdict']})" for r in controls
        )
    return verdict, text


def _claim_c5(entries: Sequence[dict]) -> tuple[str, str]:
    b = [r for r in _rows_by(entries, "C5.first_step.b") if r["id"] == "C5.first_step.b"]
    w = _rows_by(entries, "C5.first_step.W.nonneg")
    if not b or not w:
        return "not-tested", "the C5 rows are missing from the ledger"
    parts = [
        ("E[Δb]", worst(r["verdict"] for r in b)),
        ("E[ΔW], x ≥ 0", worst(r["verdict"] for r in w)),
    ]
    mse_b = [r for r in b if r.get("loss") == "mse"]
    relu_w = _find(entries, "C5.first_step.W.nonneg", "relu", "mse")
    text = (
        "first SGD step E[Δb]: "
        + ", ".join(f"{r['activation']} {r['verdict']} ({_mc_text(r)})" for r in mse_b)
        + f" (MSE); E[ΔW] with non-negative inputs: relu {(relu_w or {}).get('verdict')} "
        f"({_mc_text(relu_w)})"
    )
    return _combine_parts(parts), text


def _claim_experiment(entries: Sequence[dict], cid: str) -> tuple[str, str]:
    rows = [e for e in entries if e["id"] in EXPERIMENT_CLAIMS and e["id"].split(".")[0] == cid]
    steps = [e for e in entries if e["id"].startswith(f"{cid}.first_step.")]
    step_text = ""
    if steps:
        counts: dict[str, int] = {}
        for e in steps:
            counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
        optimizers = sorted({e["id"].rsplit(".", 1)[-1] for e in steps})
        step_text = (
            f"first step under {', '.join(optimizers)} (theory + Monte Carlo, "
            f"{len(steps)} rows): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        )
    if not rows or all(r["verdict"] == "not-tested" and not r.get("detail") for r in rows):
        return "not-tested", step_text or "not run here yet"
    tested = [r for r in rows if r["verdict"] != "not-tested"]
    verdict = _combine_parts([(r["id"].split(".", 1)[-1], r["verdict"]) for r in rows])
    text = "; ".join(r.get("detail") or r["claim"] for r in (tested or rows))
    return verdict, text + (f"; {step_text}" if step_text else "")


def claim_rows(entries: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The twelve claim-level rows of the README table, every verdict computed from the rows."""
    out = []
    for cid in CLAIM_IDS:
        if cid == "C1":
            verdict, text = _claim_c1(entries)
        elif cid in ("C2", "C3"):
            verdict, text = _claim_gradient(entries, cid)
        elif cid == "C4":
            verdict, text = _claim_c4(entries)
        elif cid == "C5":
            verdict, text = _claim_c5(entries)
        else:
            verdict, text = _claim_experiment(entries, cid)
        out.append(
            {
                "id": cid,
                "paper_says": PAPER_SAYS[cid],
                "finding": text,
                "verdict": verdict,
                "reproduce": REPRODUCE[cid],
            }
        )
    return out


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
    "C6.optimizer_lr": "drift depends on the optimizer and the learning rate",
    "C7.random_inputs": "drift is intrinsic to optimization: it appears on random inputs too",
    "C8.architectures": "drift appears in MLP, ResNet, ViT, GPT-nano and MP-SENet",
    "C9.relu_sparsity": "with ReLU, drift yields activation sparsity up to 90% in GPT-nano",
    "C10.sparsity_accuracy": "accuracy falls off a cliff above ~70% controlled sparsity",
    "C11.relu2_spikes": "ReLU^2 amplifies activation spikes ~25x relative to ReLU",
    "C12.clipping": "clipped ReLU^2 beats ReLU^2; GELU^2 reaches the lowest GPT-nano loss",
}


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def verdict_horizons(summary: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C6 from the early-training horizons: drift depends on the optimizer and lr when the
    reversal (or decay) horizons differ across optimizer × lr settings of one activation and
    loss beyond their seed spread; refuted when every setting has the same horizon."""
    runs = (summary or {}).get("runs") or []
    if not runs:
        return "not-tested", "", None
    steps = summary.get("steps")
    cells: dict[tuple[str, float], list[Any]] = {}
    for r in runs:
        if r.get("activation") != "relu" or r.get("loss") != "mse":
            continue
        h = r.get("reversal", r.get("horizons"))
        if isinstance(h, dict):
            h = min((v for v in h.values() if _finite(v)), default=None)
        cells.setdefault((r["optimizer"], float(r["lr"])), []).append(h)
    if not cells:
        return "not-tested", "", None

    def shown(hs: list[Any]) -> str:
        vals = [h for h in hs if _finite(h)]
        if not vals:
            return f"beyond {steps}"
        return "/".join(str(int(v)) for v in vals) + ("" if len(vals) == len(hs) else f"/>{steps}")

    finite_cells = {k: v for k, v in cells.items() if any(_finite(h) for h in v)}
    never = [k for k, v in cells.items() if not any(_finite(h) for h in v)]
    verdict = "confirmed" if finite_cells and never else "refuted" if not finite_cells else None
    if verdict is None:
        lows = {k: min(h for h in v if _finite(h)) for k, v in finite_cells.items()}
        highs = {k: max(h if _finite(h) else math.inf for h in v) for k, v in finite_cells.items()}
        separated = max(lows.values()) > min(highs.values())
        verdict = "confirmed" if separated else "refuted"
    text = "first step with E[∂ℓ/∂p | p>0] confidently negative (ReLU, MSE): " + "; ".join(
        f"{opt} lr {lr:g}: {shown(hs)}" for (opt, lr), hs in sorted(cells.items())
    )
    return verdict, text, {"cells": {f"{o}:{lr:g}": hs for (o, lr), hs in cells.items()}}


def experiment_entries(results: Path) -> list[dict[str, Any]]:
    """C6-C12 rows from the experiment results under `results/` (not-tested where absent)."""
    rows = []
    found: dict[str, tuple[str, str, dict | None]] = {}
    early = _load(results / "montecarlo" / "early_training_sweep" / "summary.json")
    found["C6.optimizer_lr"] = verdict_horizons(early)
    experiments = _load(results / "experiments" / "summary.json") or {}
    for cid, rule in EXPERIMENT_RULES.items():
        found[cid] = rule(experiments.get(cid.split(".")[0]))
    for cid, text in EXPERIMENT_CLAIMS.items():
        verdict, detail, evidence = found.get(cid, ("not-tested", "", None))
        rows.append(experiment_row(cid, text, verdict, detail, evidence=evidence))
    return rows


def _ci_text(stat: dict[str, Any], digits: int = 3) -> str:
    lo, hi = stat.get("ci", [math.nan, math.nan])
    return f"{stat['mean']:+.{digits}g} [{lo:+.{digits}g}, {hi:+.{digits}g}]"


def verdict_drift_shown(block: dict[str, Any] | None, cid: str) -> tuple[str, str, dict | None]:
    """C7 / C8: an architecture shows drift when the mean pre-activation change of every
    positively biased activation has a 95% CI over seeds entirely below 0 and below the tanh
    control's CI. Verdict over architectures: all shown → confirmed, none → refuted, else partly."""
    archs = (block or {}).get("architectures") or {}
    if not archs:
        return "not-tested", "", None
    shown, not_shown, parts = [], [], []
    for arch, acts in sorted(archs.items()):
        control = acts.get("tanh", {}).get("preact_change")
        ok = True
        cells = []
        for act, stats in sorted(acts.items()):
            st = stats.get("preact_change")
            if not st:
                continue
            cells.append(f"{act} {_ci_text(st, 2)}")
            if act == "tanh":
                continue
            below_zero = st["ci"][1] < 0
            below_control = control is None or st["ci"][1] < control["ci"][0]
            ok = ok and below_zero and below_control
        (shown if ok else not_shown).append(arch)
        parts.append(f"{arch}: " + ", ".join(cells))
    n_seeds = (block or {}).get("seeds")
    text = f"Δ mean pre-activation, mean [95% CI] over {n_seeds} seeds: " + "; ".join(parts)
    if not not_shown:
        return "confirmed", text, block
    if not shown:
        return "refuted", text, block
    return (
        "refuted" if cid == "C7" and not shown else "refined",
        (text + f"; shown in {', '.join(shown)}, not in {', '.join(not_shown)}"),
        block,
    )


def verdict_sparsity(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C9: confirmed when GPT-nano's ReLU sparsity reaches 0.9 in some layer (CI upper bound ≥
    0.9), refined when it rises clearly above its value at init but stays below 0.9 at this
    scale (the paper's "up to"), refuted when it does not rise."""
    layers = (block or {}).get("gpt_nano") or {}
    if not layers:
        return "not-tested", "", None
    finals = {k: v["final"] for k, v in layers.items()}
    inits = {k: v["init"] for k, v in layers.items()}
    rises = all(finals[k]["ci"][0] > inits[k]["ci"][1] for k in finals)
    peak = max(f["ci"][1] for f in finals.values())
    text = "GPT-nano ReLU sparsity per layer, init → final, mean [95% CI] over seeds: " + ", ".join(
        f"{k} {inits[k]['mean']:.2f} → {_ci_text(finals[k], 2)}" for k in sorted(finals)
    )
    if not rises:
        return "refuted", text, block
    return ("confirmed" if peak >= 0.9 else "refined"), text, block


def verdict_cliff(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C10: confirmed when the fitted knee's bootstrap CI lies in [0.6, 0.85] and the accuracy
    slope past the knee is steeper than before it (both from the fit), refuted when the knee CI
    excludes that band or no cliff is fitted."""
    if not block or "knee" not in block:
        return "not-tested", "", None
    knee = block["knee"]
    lo, hi = knee["ci"]
    steeper = block.get("slope_after", 0.0) < block.get("slope_before", 0.0)
    text = (
        f"{block.get('configurations')} configurations; knee at measured sparsity "
        f"{knee['mean']:.2f} [{lo:.2f}, {hi:.2f}] (bootstrap 95%), slope before "
        f"{block.get('slope_before', math.nan):.3g}, after {block.get('slope_after', math.nan):.3g}"
    )
    if 0.6 <= lo and hi <= 0.85 and steeper:
        return "confirmed", text, block
    if hi < 0.6 or lo > 0.85 or not steeper:
        return "refuted", text, block
    return "not-tested", text + " (knee CI too wide to decide)", block


def verdict_spikes(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C11: amplification of spike_max, ReLU² over ReLU per layer with CIs over seeds: confirmed
    if some layer's CI contains or exceeds 25, refined if amplified (CI above 1) but below 25,
    refuted if no layer is amplified."""
    layers = (block or {}).get("relu2_over_relu") or {}
    if not layers:
        return "not-tested", "", None
    amplified = [k for k, v in layers.items() if v["ci"][0] > 1]
    reaches = [k for k, v in layers.items() if v["ci"][1] >= 25]
    text = "GPT-nano spike_max ReLU²/ReLU per layer, mean [95% CI] over seeds: " + ", ".join(
        f"{k} {_ci_text(v, 3)}" for k, v in sorted(layers.items())
    )
    if reaches:
        return "confirmed", text, block
    return ("refined" if amplified else "refuted"), text, block


def verdict_ordering(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C12: each ordering is a paired comparison across seeds; it holds when its 95% CI of the
    loss difference lies below 0, is refuted when above 0, and is not distinguishable otherwise.
    All hold → confirmed; any refuted → refuted; else not-tested ("not distinguishable")."""
    comps = (block or {}).get("comparisons") or {}
    if not comps:
        return "not-tested", "", None
    status = {}
    for name, c in comps.items():
        lo, hi = c["ci"]
        status[name] = "holds" if hi < 0 else "reversed" if lo > 0 else "not distinguishable"
    text = "paired val-loss differences over seeds (mean [95% CI], p): " + "; ".join(
        f"{name}: {_ci_text(c, 2)}, p={c.get('p', math.nan):.2g} → {status[name]}"
        for name, c in comps.items()
    )
    if all(s == "holds" for s in status.values()):
        return "confirmed", text, block
    if any(s == "reversed" for s in status.values()):
        return "refuted", text, block
    return "not-tested", text, block


EXPERIMENT_RULES = {
    "C7.random_inputs": lambda b: verdict_drift_shown(b, "C7"),
    "C8.architectures": lambda b: verdict_drift_shown(b, "C8"),
    "C9.relu_sparsity": verdict_sparsity,
    "C10.sparsity_accuracy": verdict_cliff,
    "C11.relu2_spikes": verdict_spikes,
    "C12.clipping": verdict_ordering,
}


def refresh(ledger_path: Path, results: Path) -> dict[str, Any]:
    """Replace the experiment rows and claim rows of a ledger JSON from `results/`."""
    from empirics.outputs import atomic_write_json  # torch-free module

    ledger = _load(ledger_path)
    if not isinstance(ledger, dict) or "entries" not in ledger:
        raise SystemExit(f"{ledger_path}: no ledger there; run `make verify` first")
    keep = [e for e in ledger["entries"] if e["id"] not in EXPERIMENT_CLAIMS]
    entries = keep + experiment_entries(results)
    ledger["entries"] = entries
    ledger["summary"] = {**ledger.get("summary", {}), **summarize(entries)}
    ledger["claims"] = claim_rows(entries)
    atomic_write_json(ledger_path, ledger)
    return ledger


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.verdicts", description=__doc__)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--ledger", type=Path, default=None, help="default RESULTS/verify/ledger.json")
    args = ap.parse_args(argv)
    path = args.ledger or args.results / "verify" / "ledger.json"
    ledger = refresh(path, args.results)
    for row in ledger["claims"]:
        print(f"{row['id']:4s} {row['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
