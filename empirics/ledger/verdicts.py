"""Every rule that turns evidence into a verdict, for every claim C1-C12: one home, no torch.

The ledger rows (`empirics.ledger.rows`), the claims table (`paper_figures/claims_table.py`) and the
figures only call these functions. `python -m empirics.ledger.verdicts [--results results]`
refreshes the
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
# Evidence behind an established sign: a sympy identity, a written argument (docs/proofs.md, each
# step checked), rigorous interval bounds, quadrature or other numerics, the Monte Carlo alone, or
# an experiment (theory.signs.METHODS, then the empirical kinds).
EVIDENCE: tuple[str, ...] = (
    "sympy",
    "argument",
    "certified",
    "numeric",
    "montecarlo",
    "experiment",
    "none",
)
# The activations the paper names for C2-C5 ("ReLU, GELU, SiLU"); others are our extension.
PAPER_ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "silu")
# Ids whose symbolic value is the very number the Monte Carlo estimates (same configuration), so
# a value outside the Monte Carlo CI is a `fail`; elsewhere only signs are compared.
VALUE_IDS = frozenset(
    {"C1.mean", "C1.offdiag", "C1.diag", "C4.D", "C1.depth_dead.diag"}
    | {"C5.covariance.init", "C5.covariance.ratio", "C5.covariance.init.symmetric"}
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
    """A row's symbolic value: the exact form when it is short and says more than the float."""
    sym = (e or {}).get("symbolic") or {}
    value = sym.get("value")
    if isinstance(value, (int, float)):
        exact = sym.get("exact")
        if exact is None or len(exact) > 24 or exact == f"{value:g}":
            return f"{value:.4g}"
        if _long_rational(exact):
            # e.g. (2^32 - 1)/2^34 = alpha_l P(h_l != 0): 10 digits show it is not 1/4.
            return f"{value:.10g} (exact rational)"
        return f"{exact} = {value:.4g}"
    return str(value)


def _law_text(e: dict) -> str:
    """An init law's exact value and/or Monte Carlo estimate, leaving out what it lacks (a law
    with no closed form shows only its estimate, not `None`)."""
    has_value = ((e.get("symbolic") or {}).get("value")) is not None
    texts = [_value_text(e) if has_value else "", _mc_text(e) if e.get("montecarlo") else ""]
    return "; ".join(t for t in texts if t) or "no value"


def _long_rational(exact: str) -> bool:
    """A bare fraction with more than 4 digits in its numerator or denominator."""
    num, sep, den = exact.lstrip("-").partition("/")
    return bool(sep) and num.isdigit() and den.isdigit() and max(len(num), len(den)) > 4


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
        refuted = [r for r in laws if r["verdict"] == "refuted"]
        # A counterexample refutes the claim under its hypothesis; it says nothing of other laws
        # (sign-symmetric ones give exactly 0), so the label names "some", never "any".
        scope = (
            "the paper's hypothesis (some i.i.d. zero-mean inits give E⟨v_i,v_j⟩ < 0)"
            if refuted
            else "the paper's hypothesis (i.i.d. zero-mean init)"
        )
        parts.append((scope, worst(r["verdict"] for r in laws)))
        if refuted:
            text += "; under the paper's hypothesis (i.i.d., zero mean) " + ", ".join(
                f"{r['id'].split('.')[1].removeprefix('init_')}: {_law_text(r)}" for r in refuted
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
    init = _find(entries, "C5.covariance.ratio", "relu", "mse")
    if init:
        net = init.get("network") or {}
        text += (
            f"; Remark A.2 at init (theorem, layer 1, ReLU, half-normal x, d = "
            f"{net.get('input_size', '?')}): covariance term = {_value_text(init)} of the mean "
            f"term, same sign ({init['verdict']}; {_mc_text(init)})"
        )
    for suffix, label in (("literal", "as stated"), ("role", "what C5 needs")):
        remark = _find(entries, f"C5.remark_a2.{suffix}")
        if remark and remark.get("detail"):
            parts.append((f"Remark A.2 {label}", remark["verdict"]))
            detail = remark["detail"] if suffix == "literal" else remark["detail"].split(": ")[-1]
            text += f"; Remark A.2 {label} ({remark['verdict']}): {detail}"
    return _combine_parts(parts), text


def _claim_experiment(entries: Sequence[dict], cid: str) -> tuple[str, str]:
    rows = [
        e
        for e in entries
        if (e.get("evidence") in ("experiment", "none") and e.get("experiment") is not None)
        or e["id"] in EXPERIMENT_CLAIMS
    ]
    rows = [
        e
        for e in rows
        if e["id"].split(".")[0] == cid and not e["id"].startswith(f"{cid}.first_step")
    ]
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
    verdict = _combine_parts([(r["id"].split(".")[-1], r["verdict"]) for r in rows])
    details = [r.get("detail") or r["claim"] for r in rows]
    if len(rows) > 1:  # per-part rows share one header: show it once
        head = details[0].split(": ", 1)[0] + ": " if ": " in details[0] else ""
        details = [d.removeprefix(head) for d in details]
        return verdict, head + " | ".join(details) + (f"; {step_text}" if step_text else "")
    text = "; ".join(details)
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


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _scale_note(block: dict[str, Any], seeds_key: str = "seeds") -> str:
    if "scale" not in block and "rows" in block:  # the early-training grid's own files
        seeds = sorted({s for r in block["rows"] for s in r.get("seeds") or []})
        return f"[early-training grid, seeds {seeds[0]}-{seeds[-1]}]" if seeds else "[grid]"
    scale = block.get("scale") or {}
    seeds = scale.get(seeds_key, scale.get("seeds"))
    return f"[{scale.get('name', '?')} scale, preset {scale.get('preset', '?')}, " + (
        f"{len(seeds)} seeds]" if isinstance(seeds, list) else "seeds ?]"
    )


def _ci(stat: dict[str, Any] | None) -> tuple[float, float] | None:
    if not stat or not isinstance(stat.get("ci"), list) or not all(map(_finite, stat["ci"])):
        return None
    return float(stat["ci"][0]), float(stat["ci"][1])


def _ci_text(stat: dict[str, Any], digits: int = 2) -> str:
    ci = _ci(stat)
    mean = stat.get("mean", stat.get("geo_mean"))
    if ci is None or not _finite(mean):
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
        cells = {
            (r.get("data", "?"), r["optimizer"], float(r["lr"]), r["layer"]): _horizon_cell(r, kind)
            for r in rows
        }
        reach = {k for k, c in cells.items() if c["seeds"] and len(c["reached"]) == c["seeds"]}
        never = {k for k, c in cells.items() if c["seeds"] and len(c["beyond"]) == c["seeds"]}
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
        evidence[kind] = {
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
        parts.append(
            f"{kind}: N and {sizes.get('kN', 'kN')}-network intervals overlap in "
            f"{evidence[kind]['seeds_agreeing']} of {evidence[kind]['seeds']} seed-settings; "
            f"reached in every seed by {len(reach)} of {len(cells)} settings, never by "
            f"{len(never)}" + (f" ({'; '.join(shown)})" if shown else "")
        )
    text = (
        f"ReLU/MSE horizons of E[∂ℓ/∂p | p>0] within {steps} steps, change point of the mean "
        f"curve [95% bootstrap over networks] at N = {sizes.get('N', '?')} | kN = "
        f"{sizes.get('kN', '?')} networks, per seed (inputs, optimizer, lr, layer) "
        + _scale_note(block or {})
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
        ci, diff = _ci(means.get(q)), _ci(paired.get(q))
        if ci is None:
            continue
        notes.append(f"{q} {_ci_text(means[q])}")
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
    head = "Δ over training, mean [95% CI] over seeds " + _scale_note(block or {}) + ": "
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
    if _ci(cell) is not None:
        return f"{cell['mean']:.2f} [{cell['ci'][0]:.2f}, {cell['ci'][1]:.2f}]"
    per = list((cell.get("per_seed") or {}).values())
    marks = {"above": "≥", "below": "<", None: ""}
    vals = [f"{marks[c.get('censored')]}{c['value']:.2f}" for c in per if _finite(c.get("value"))]
    return "/".join(vals) if vals else "n/a"


def _cliff_part(cell: dict[str, Any]) -> str:
    """confirmed / refuted / not-tested for one architecture x control from the critical
    sparsity at 95% of the dense baseline (see verdict_cliff)."""
    lo_band, hi_band = C10_CLIFF_BAND
    c95 = cell.get("0.95") or {}
    per = list((c95.get("per_seed") or {}).values())
    if len(per) < 2:  # a verdict needs a spread over seeds
        return "not-tested"
    ci = _ci(c95)
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
    head = "critical sparsity at 99% | 95% of the dense baseline " + _scale_note(
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
                ci = _ci(em)
                above = ci is not None and ci[0] > C10_CLIFF_BAND[1]
                verdict = "refuted" if above else "not-tested"
                shown = _ci_text(em) if ci else f"{em.get('mean') or math.nan:.2f} (one seed)"
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
        f"{A2_EARLY_STEPS} steps, bands family-wise {alpha:g} {_scale_note(block or {})}: "
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


# ------------------------------------------------ the scaling ladder
# (empirics.experiments.scale_fit)

# How narrow a prediction interval at the paper's point must be for the trend to decide a claim
# about a number there: sparsity within 0.2 (C9), a spike ratio within a factor of 10 (C11).
SCALE_DECIDABLE_WIDTH = {"c9": 0.2, "c11": 1.0}


def _ladder_note(agg: dict[str, Any]) -> str:
    lad = agg.get("ladder") or {}
    tokens = lad.get("tokens") or []
    sizes = lad.get("sizes") or {}
    span = f"{min(tokens):.0e}–{max(tokens):.0e} tokens" if tokens else "? tokens"
    params = ", ".join(f"{v.get('block_params', 0) / 1e6:.2g}M" for v in sizes.values())
    return (
        f"[GPT-nano ladder, paper recipe (Muon + Adam, wsd), {len(sizes)} sizes ({params} block "
        f"params), {span}, {len(lad.get('seeds') or [])} seeds]"
    )


def _fit_text(fit: dict[str, Any], unit: str = "") -> str:
    b = fit["coef"]
    ci = fit["coef_ci"]
    size = (
        f", per decade of size {b[2]:+.2g} [{ci[2][0]:+.2g}, {ci[2][1]:+.2g}]"
        if fit.get("size_extrapolated")
        else " (one size: no size trend)"
    )
    return (
        f"trend per decade of tokens {b[1]:+.2g} [{ci[1][0]:+.2g}, {ci[1][1]:+.2g}]{size}{unit}, "
        f"residual SD {fit['resid_sd']:.2g} over {fit['cells']} cells"
    )


def _misspecified(fit: dict[str, Any]) -> str:
    """Why the plane is no basis for an extrapolation (empty when it is): the trend bends in log
    tokens, or its token slope differs by size (each an F test at p < 0.05)."""
    curv, inter = fit.get("curvature_p"), fit.get("interaction_p")
    if curv is not None and curv < 0.05:
        return f"the trend bends (curvature p = {curv:.2g}): no straight-line extrapolation"
    if inter is not None and inter < 0.05:
        return (
            f"the token trend differs by size (interaction p = {inter:.2g}): no plane to "
            "extrapolate"
        )
    return ""


def _beyond_span(fit: dict[str, Any]) -> str:
    """Why the paper's point is too far to decide (empty when it is not): it lies more decades
    beyond the runs, in tokens or in size, than the runs span. The prediction interval is the
    fitted plane's; carried further than it was measured, the plane's shape is an assumption."""
    span, reach = fit.get("span_decades") or {}, fit.get("reach_decades") or {}
    keys = ["tokens"] + (["params"] if fit.get("size_extrapolated") else [])
    far = [
        f"{reach[k]:.1f} decades of {'size' if k == 'params' else k} beyond the runs, which span "
        f"{span[k]:.1f}"
        for k in keys
        if k in span and k in reach and reach[k] > span[k]
    ]
    return ("the paper's point lies " + " and ".join(far)) if far else ""


def _trend_verdict(
    fit: dict[str, Any], paper: float, lo: float, hi: float, width: float
) -> tuple[str, str]:
    """confirmed: the paper's number lies inside the prediction interval at its scale and the
    interval is narrow enough to say (width <= `width`); refuted: outside it, with a measured
    trend (the 95 % CI of the tokens or the size slope excludes 0); not-tested: the trend bends
    (curvature F-test p < 0.05, a straight line is no basis to extrapolate), no size trend was
    measured, the paper's point lies further beyond the runs than they span (`_beyond_span`), the
    interval is too wide, or the metric has not moved over the ladder (a flat line carried
    decades past the runs says where the runs stopped, not where training goes)."""
    bent = _misspecified(fit)
    if bent:
        return "not-tested", bent
    if not fit.get("size_extrapolated"):
        return "not-tested", "measured at one size: no size trend to extrapolate"
    too_far = _beyond_span(fit)
    if too_far:
        side = "inside" if lo <= paper <= hi else "outside"
        return "not-tested", f"the paper's {paper:g} lies {side}, but {too_far}"
    if not lo <= paper <= hi:
        slopes = fit["coef_ci"][1:]
        if not any(a > 0 or b < 0 for a, b in slopes):
            return (
                "not-tested",
                f"the paper's {paper:g} lies outside, but no trend was measured (every slope's "
                "95 % CI contains 0): nothing to extrapolate",
            )
        return "refuted", f"the paper's {paper:g} lies outside"
    if hi - lo > width:
        return "not-tested", f"interval too wide to say (width {hi - lo:.2g} > {width:g})"
    return "confirmed", f"the paper's {paper:g} lies inside"


def verdict_scale_sparsity(agg: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C9 from the ladder: ReLU's largest-layer sparsity, its logit fitted on log tokens and log
    size, extrapolated to the paper's 3.76e9 tokens and 85M block parameters (95 % prediction
    interval); judged by `_trend_verdict` against the paper's 0.90, decidable width 0.2."""
    block = (agg or {}).get("c9") or {}
    fit = block.get("fit") or {}
    series = (block.get("series") or {}).get("sparsity_max") or []
    if not series:
        return "not-tested", "", None
    top = max(r["tokens"] for r in series)
    at_top = ", ".join(
        f"{r['size']} {_ci_text(r)}" for r in series if r["tokens"] == top and r.get("n")
    )
    text = f"ReLU largest-layer sparsity {_ladder_note(agg)}: at {top:.0e} tokens {at_top}"
    if not fit.get("ok"):
        return "not-tested", text + f"; no trend fit ({fit.get('reason', '?')})", None
    lo, hi = fit["pi_metric"]
    verdict, why = _trend_verdict(fit, 0.9, lo, hi, SCALE_DECIDABLE_WIDTH["c9"])
    text += (
        f"; logit {_fit_text(fit)}; at the paper's scale {fit['prediction_metric']:.2f} "
        f"[{lo:.2f}, {hi:.2f}] (95 % PI): {why}"
    )
    return verdict, text, {"pi": [lo, hi], "curvature_p": fit.get("curvature_p")}


def verdict_scale_spikes(agg: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C11 from the ladder: ReLU²'s largest spike_max over ReLU's (paired by seed), log10 of the
    ratio fitted on log tokens and log size, extrapolated to the paper's scale; judged by
    `_trend_verdict` against the paper's 25x, decidable when the interval spans <= a factor 10."""
    block = (agg or {}).get("c11") or {}
    fit = block.get("fit") or {}
    series = block.get("series") or []
    if not series:
        return "not-tested", "", None
    top = max(r["tokens"] for r in series)
    at_top = ", ".join(
        f"{r['size']} ×{_ci_text(r, 3)}" for r in series if r["tokens"] == top and r.get("n")
    )
    text = f"spike_max ReLU²/ReLU (largest layer) {_ladder_note(agg)}: at {top:.0e} tokens {at_top}"
    if not fit.get("ok"):
        return "not-tested", text + f"; no trend fit ({fit.get('reason', '?')})", None
    lo, hi = fit["pi"]
    verdict, why = _trend_verdict(fit, math.log10(25.0), lo, hi, SCALE_DECIDABLE_WIDTH["c11"])
    why = why.replace(f"{math.log10(25.0):g}", "25×")
    text += (
        f"; log10 ratio {_fit_text(fit)}; at the paper's scale ×{fit['prediction_metric']:.3g} "
        f"[×{10**lo:.3g}, ×{10**hi:.3g}] (95 % PI): {why}"
    )
    return verdict, text, {"pi_ratio": [10**lo, 10**hi], "curvature_p": fit.get("curvature_p")}


def verdict_scale_pairs(agg: dict[str, Any] | None) -> Any:
    """C12 from the ladder, one row per paired comparison loss(a) - loss(b) (the paper says < 0):
    the cell means fitted on log tokens and log size and extrapolated to the paper's scale;
    confirmed when the 95 % prediction interval lies below 0, refuted when above, not-tested
    when it straddles 0, when the trend bends, or when the pair was measured at one size only.
    "GELU² best": confirmed when every GELU² comparison is confirmed, refuted when one is
    refuted, not-tested otherwise."""
    block = (agg or {}).get("c12") or {}
    pairs = block.get("pairs") or {}
    if not pairs:
        return []
    note = _ladder_note(agg)
    out = []
    for key, c in pairs.items():
        fit, series = c.get("fit") or {}, c.get("series") or []
        label = c["label"]
        if not series:
            out.append((key, "not-tested", f"{label} {note}: not measured", {}))
            continue
        top = max(r["tokens"] for r in series)
        at_top = ", ".join(
            f"{r['size']} {_ci_text(r, 2)}" for r in series if r["tokens"] == top and r.get("n")
        )
        text = f"{label}, val-loss difference (nats) {note}: at {top:.0e} tokens {at_top}"
        if not fit.get("ok"):
            out.append((key, "not-tested", text + f"; no fit ({fit.get('reason')})", {}))
            continue
        lo, hi = fit["pi"]
        values = [v for r in series for v in r.get("values") or []]
        if values and all(v == 0.0 for v in values):
            # the same seed, data and init: a clip that never engages trains the same network
            out.append(
                (
                    key,
                    "not-tested",
                    f"{label} {note}: identical val loss at every rung and seed ({len(values)} "
                    f"runs): {c['a']} never differed from {c['b']} at these scales (a clip that "
                    "never engages changes nothing)",
                    {"identical": True},
                )
            )
            continue
        if _misspecified(fit):
            verdict, why = "not-tested", _misspecified(fit)
        elif not fit.get("size_extrapolated"):
            verdict, why = "not-tested", "measured at one size: no size trend to extrapolate"
        elif _beyond_span(fit):
            verdict, why = "not-tested", _beyond_span(fit)
        elif hi < 0:
            verdict, why = "confirmed", "below 0"
        elif lo > 0:
            verdict, why = "refuted", "above 0"
        else:
            verdict, why = "not-tested", f"straddles 0 (width {hi - lo:.2g} nats)"
        text += (
            f"; {_fit_text(fit, ' nats')}; at the paper's scale {fit['prediction']:+.3g} "
            f"[{lo:+.3g}, {hi:+.3g}] (95 % PI): {why}"
        )
        out.append((key, verdict, text, {"pi": [lo, hi]}))
    g2 = [v for k, v, _, _ in out if k.startswith("gelu2_vs_")]
    rank = block.get("ranking") or {}
    best = (
        "confirmed"
        if g2 and all(v == "confirmed" for v in g2)
        else "refuted"
        if "refuted" in g2
        else "not-tested"
    )
    out.append(
        (
            "gelu2_best",
            best,
            f"GELU² best: its comparisons {', '.join(g2) or 'none'}; ranking by mean val loss at "
            f"size {rank.get('size')}, {rank.get('tokens', 0):.0e} tokens (lowest first): "
            + ", ".join(rank.get("order") or []),
            {},
        )
    )
    return out


def verdict_scale_topk(agg: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C10 for GPT-nano from the ladder's Top-K GELU runs: retention = dense val loss / Top-K val
    loss, paired by seed (t interval), per level (fraction zeroed) at each token budget. A cliff
    above ~70 %: retention at level 0.5 has its CI above 0.99 and at 0.9 below 0.95. confirmed
    when that holds at every budget; refuted when at every budget level 0.9 keeps its CI above
    0.99 (no cliff up to 90 %) or level 0.5 falls below 0.95 (loss well before 70 %); not-tested
    otherwise, including budgets that disagree (the cliff moves with training length)."""
    block = (agg or {}).get("c10_gpt") or {}
    if not block:
        return "not-tested", "", None
    by_tokens: dict[int, dict[float, dict]] = {}
    for cell in block.values():
        by_tokens.setdefault(int(cell["tokens"]), {})[float(cell["level"])] = cell
    parts, calls = [], []
    for tokens, levels in sorted(by_tokens.items()):
        cells = ", ".join(
            f"{lv:g}: {_ci_text(c['retention'], 3)}" for lv, c in sorted(levels.items())
        )
        parts.append(f"{tokens:.0e} tokens: {cells}")
        lo5, hi9 = (
            _ci((levels.get(0.5) or {}).get("retention")),
            _ci((levels.get(0.9) or {}).get("retention")),
        )
        if lo5 is None or hi9 is None:
            calls.append("not-tested")
        elif lo5[0] >= 0.99 and hi9[1] < 0.95:
            calls.append("confirmed")
        elif hi9[0] >= 0.99 or lo5[1] < 0.95:
            calls.append("refuted")
        else:
            calls.append("not-tested")
    verdict = calls[0] if calls and len(set(calls)) == 1 else "not-tested"
    sizes = sorted({c["size"] for c in block.values()})
    text = (
        f"Top-K GELU retention (dense loss / Top-K loss) by level zeroed, GPT-nano size "
        f"{', '.join(sizes)} {_ladder_note(agg)}: " + "; ".join(parts)
    )
    if len(set(calls)) > 1:
        text += f" (budgets disagree: {', '.join(calls)})"
    crit = (agg or {}).get("c10_gpt_critical") or {}
    shown = []
    for tokens, cell in sorted(crit.items(), key=lambda kv: int(kv[0])):
        parts_t = []
        for thr in ("0.99", "0.95"):
            c = cell.get(thr) or {}
            if c.get("mean") is not None and _ci(c):
                parts_t.append(f"{float(thr):.0%}: {_ci_text(c, 2)}")
            else:
                per = c.get("per_seed") or []
                vals = [p.get("value") for p in per if p.get("value") is not None]
                cens = {p.get("censored") for p in per}
                if vals and cens == {"above"}:
                    rng = f"≥ {min(vals):.2f} (kept at every level measured)"
                elif vals and cens == {"below"}:
                    rng = f"< {max(vals):.2f} (lost at the first level)"
                elif vals:
                    rng = f"{min(vals):.2f}–{max(vals):.2f} over seeds (some censored)"
                else:
                    rng = "n/a"
                parts_t.append(f"{float(thr):.0%}: {rng}")
        shown.append(f"{int(tokens):.0e} tokens " + ", ".join(parts_t))
    if shown:
        text += "; critical sparsity " + "; ".join(shown)
    return verdict, text, {"per_budget": calls}


def verdict_mp_senet_long(block: dict[str, Any] | None) -> Any:
    """C8 for MP-SENet by training stage from its long runs, one row per family of activation
    layers: the rule and the stage aggregation it reads live together in
    empirics.experiments.mp_senet_long
    (`verdict`)."""
    from empirics.experiments.mp_senet_long import verdict

    # the claim line names each part by its last id piece: say it is MP-SENet's
    return [(f"mp_senet_{key}", v, text, ev) for key, v, text, ev in verdict(block) or []]


EXPERIMENT_FILES = {
    "C5.remark_a2": ("remark_a2.json", verdict_remark_a2),
    "C6.optimizer_lr": ("c6_persistence.json", verdict_horizons),
    "C7.random_inputs": ("drift.json", lambda b: verdict_drift_shown(b, "synthetic")),
    "C8.architectures": ("drift.json", lambda b: verdict_drift_shown(b, "real")),
    "C8.mp_senet_long": ("mp_senet_long.json", verdict_mp_senet_long),
    "C9.relu_sparsity": ("aggregate.json", verdict_scale_sparsity),
    "C10.sparsity_accuracy": ("c10_cliff.json", verdict_cliff),
    "C10.gpt_topk": ("aggregate.json", verdict_scale_topk),
    "C11.relu2_spikes": ("aggregate.json", verdict_scale_spikes),
    "C12.clipping": ("aggregate.json", verdict_scale_pairs),
}


SCALE_CLAIMS = ("C9.relu_sparsity", "C10.gpt_topk", "C11.relu2_spikes", "C12.clipping")


def experiment_entries(results: Path) -> list[dict[str, Any]]:
    """C6-C12 rows from `results/experiments/<scale>/*.json`: the full scale where its file
    holds the data the rule needs, else the quick scale (the row's text names the scale), else
    not-tested. C7 and C8 give one row per architecture (`C8.architectures.vit`)."""
    rows = []
    for cid, text in EXPERIMENT_CLAIMS.items():
        name, rule = EXPERIMENT_FILES[cid]
        found: Any = None
        candidates = [results / "experiments" / scale / name for scale in ("full", "quick")]
        if cid == "C5.remark_a2":  # the early-training files: the module's own grid, else the
            # pipeline's early group (full, then quick)
            candidates = [
                results / "montecarlo" / "early_training" / name,
                *(results / "experiments" / s / "early_training" / name for s in ("full", "quick")),
            ]
        elif cid in SCALE_CLAIMS:  # the scaling ladder (`make scale`)
            candidates = [results / "scale" / name]
        elif cid == "C6.optimizer_lr":
            grid = results / "montecarlo" / "early_training" / "horizons.json"
            candidates.insert(0, grid)
        for path in candidates:
            block = _load(path) if path.is_file() else None
            if not block:
                continue
            out = rule(block)
            if out and (isinstance(out, list) or out[1]):
                found = (out, path)
                break
        if found is None:
            rows.append(experiment_row(cid, text, "not-tested", ""))
            continue
        out, path = found
        if isinstance(out, list):
            for suffix, verdict, detail, evidence in out:
                rows.append(
                    experiment_row(
                        f"{cid}.{suffix}",
                        f"{text} ({suffix})",
                        verdict,
                        detail,
                        evidence={**evidence, "source": str(path)},
                    )
                )
            continue
        verdict, detail, evidence = out
        rows.append(
            experiment_row(
                cid, text, verdict, detail, evidence={**(evidence or {}), "source": str(path)}
            )
        )
    return rows


def refresh(ledger_path: Path, results: Path) -> dict[str, Any]:
    """Replace the experiment rows and claim rows of a ledger JSON from `results/`."""
    from empirics.outputs import atomic_write_json  # torch-free module

    ledger = _load(ledger_path)
    if not isinstance(ledger, dict) or "entries" not in ledger:
        raise SystemExit(f"{ledger_path}: no ledger there; run `make verify` first")

    def from_experiments(entry_id: str) -> bool:  # C8.architectures and C8.architectures.vit
        return any(entry_id == c or entry_id.startswith(c + ".") for c in EXPERIMENT_CLAIMS)

    keep = [e for e in ledger["entries"] if not from_experiments(e["id"])]
    entries = keep + experiment_entries(results)
    ledger["entries"] = entries
    ledger["summary"] = {**ledger.get("summary", {}), **summarize(entries)}
    ledger["claims"] = claim_rows(entries)
    atomic_write_json(ledger_path, ledger)
    return ledger


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.ledger.verdicts", description=__doc__)
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
