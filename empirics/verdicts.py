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
    remark = _find(entries, "C5.remark_a2")
    if remark and remark.get("detail"):
        parts.append(("Remark A.2's covariance term", remark["verdict"]))
        text += f"; Remark A.2: {remark['detail']}"
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


def verdict_horizons(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C6 from the early-training horizons (`c6_persistence.json`): per activation x loss x
    optimizer x lr x layer, the reversal step of E[dl/dp | p > 0] (first step confidently
    negative, multiplicity over steps accounted for) and its decay step (first step confidently
    below 10% of its value at init), in every seed. Drift depends on the optimizer and lr when,
    for one of the two horizons, some settings reach it within the run in every seed while others
    never do in any seed: confirmed. Refuted when every setting reaches both horizons at
    overlapping steps. When no setting reaches either horizon the run is too short to tell:
    not-tested."""
    rows = ((block or {}).get("early_training") or block or {}).get("rows") or []
    # ReLU / MSE: the grid's fully seeded part; the k*N networks when measured (more power).
    rows = [
        r
        for r in rows
        if r.get("quantity") == "g_pos" and r.get("activation") == "relu" and r.get("loss") == "mse"
    ]
    if not rows:
        return "not-tested", "", None
    steps = max(int(r.get("steps") or 0) for r in rows)
    shown_parts, evidence = [], {}
    for kind in ("reversal", "decay"):
        cells = {
            (r.get("data", "?"), r["optimizer"], float(r["lr"]), r["layer"]): list(
                (r.get("kN") or r.get("N") or {}).get(kind) or []
            )
            for r in rows
        }
        cells = {k: hs for k, hs in cells.items() if hs}
        always = [k for k, hs in cells.items() if all(_finite(h) for h in hs)]
        never = [k for k, hs in cells.items() if not any(_finite(h) for h in hs)]
        evidence[kind] = {"always": len(always), "never": len(never), "settings": len(cells)}

        def span(hs: list[Any]) -> str:
            got = sorted(int(h) for h in hs if _finite(h))
            text = f"{got[0]}" if got[0] == got[-1] else f"{got[0]}–{got[-1]}"
            return text + ("" if len(got) == len(hs) else f" (+{len(hs) - len(got)} >{steps})")

        reached = ", ".join(
            f"{a} {o} {lr:g} {layer.removeprefix('layer')}: {span(hs)}"
            for (a, o, lr, layer), hs in sorted(cells.items())
            if any(_finite(h) for h in hs)
        )
        shown_parts.append(
            f"{kind} ({len(cells) - len(never)} of {len(cells)} settings reach it"
            + (f": {reached}" if reached else "")
            + ")"
        )
        if always and never:
            evidence[kind]["separates"] = True
        elif always and len(always) == len(cells):
            lows = [min(cells[k]) for k in always]
            highs = [max(cells[k]) for k in always]
            evidence[kind]["separates"] = max(lows) > min(highs)
    shifts = [s for r in rows for s in (r.get("reversal_shift") or []) if _finite(s)]
    text = (
        f"ReLU/MSE horizons of E[∂ℓ/∂p | p>0], range over seeds within {steps} steps (inputs, "
        "optimizer, lr, layer) " + _scale_note(block or {}) + ": " + "; ".join(shown_parts)
    )
    if shifts:
        text += f"; reversal at 4N minus at N: {', '.join(f'{s:+g}' for s in shifts)} steps"
    if any(e.get("separates") for e in evidence.values()):
        return "confirmed", text, evidence
    if all(e["always"] == e["settings"] for e in evidence.values()):
        return "refuted", text, evidence
    return "not-tested", text + " (too few horizons reached to tell)", evidence


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


def verdict_sparsity(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C9: confirmed when GPT-nano's ReLU sparsity reaches 0.9 in some layer (95% CI upper bound
    >= 0.9); refined when it rises clearly above its value at init (final CI above init CI) in
    every layer but stays below 0.9 at this scale (the paper's "up to"); refuted when it does
    not rise in any layer; not-tested when the rise is not distinguishable."""
    archs = (block or {}).get("archs") or {}
    layers = (archs.get("gpt_nano") or {}).get("layers") or {}
    if not layers:
        return "not-tested", "", None
    rises, falls, peak = [], [], 0.0
    parts = []
    for arch, a in sorted(archs.items()):
        cells = []
        for name, v in sorted((a.get("layers") or {}).items()):
            ci_i, ci_f = _ci(v.get("init")), _ci(v.get("final"))
            if ci_i is None or ci_f is None:
                continue
            if arch == "gpt_nano":
                cells.append(f"{v['init']['mean']:.2f}→{_ci_text(v['final'])}")
            if arch == "gpt_nano":
                peak = max(peak, ci_f[1])
                (rises if ci_f[0] > ci_i[1] else falls if ci_f[1] < ci_i[0] else []).append(name)
        top = a.get("max_final_layer")
        if arch != "gpt_nano" and top in (a.get("layers") or {}):
            cells.append(f"max {_ci_text(a['layers'][top]['final'])} ({top})")
        parts.append(f"{arch}: " + ", ".join(cells))
    text = "ReLU sparsity per layer, init → final " + _scale_note(block) + ": " + "; ".join(parts)
    if peak >= 0.9 and rises:
        return "confirmed", text, {"peak_ci_hi": peak}
    if rises and len(rises) == len(layers):
        return "refined", text + " (rises, below 90% at this scale)", {"peak_ci_hi": peak}
    if not rises:
        return ("refuted" if falls else "not-tested"), text, {"peak_ci_hi": peak}
    return "not-tested", text, {"peak_ci_hi": peak}


def verdict_cliff(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C10 from the pooled hinge fit of relative performance against measured sparsity:
    confirmed when the knee's bootstrap 95% CI lies in [0.6, 0.85] and the slope change's CI is
    below 0 (steeper after the knee); refuted when the knee CI lies outside that band or the
    slope change's CI is above 0; not-tested (not distinguishable) otherwise."""
    fit = ((block or {}).get("fits") or {}).get("pooled") or {}
    knee_ci, change_ci = fit.get("knee_ci"), fit.get("slope_change_ci")
    if not fit or not knee_ci or not change_ci:
        return "not-tested", "", None
    f = fit.get("fit") or {}
    lo, hi = float(knee_ci[0]), float(knee_ci[1])
    text = (
        f"{block.get('configurations')} configurations, {block.get('runs')} runs "
        + _scale_note(block, "c10_seeds")
        + f": hinge knee at measured sparsity {f.get('knee', math.nan):.2f} [{lo:.2f}, {hi:.2f}] "
        f"(bootstrap 95%), slope {f.get('slope_before', math.nan):.3g} → "
        f"{f.get('slope_after', math.nan):.3g}, change CI [{change_ci[0]:.3g}, {change_ci[1]:.3g}]"
    )
    by_seed = fit.get("knee_by_seed") or {}
    if by_seed.get("n", 0) >= 2 and by_seed.get("ci", [None])[0] is not None:
        text += (
            f"; knee fitted per seed {_ci_text(by_seed, 2)} (mean, 95% t CI over "
            f"{by_seed['n']} seeds)"
        )
    if 0.6 <= lo and hi <= 0.85 and change_ci[1] < 0:
        return "confirmed", text, {"knee_ci": [lo, hi]}
    if hi < 0.6 or lo > 0.85 or change_ci[0] > 0:
        return "refuted", text, {"knee_ci": [lo, hi]}
    return "not-tested", text + " (not distinguishable at this scale)", {"knee_ci": [lo, hi]}


def verdict_spikes(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """C11: spike_max amplification of ReLU^2 over ReLU per layer (geometric mean of paired
    ratios over seeds, 95% CI): confirmed when some layer's CI reaches 25; refined when some
    layer is amplified (CI above 1) but all stay below 25; refuted when no layer's CI is above 1
    and some is below 1; not-tested otherwise."""
    acts = (block or {}).get("activations") or {}
    layers = (acts.get("relu2") or {}).get("layers") or {}
    amps = {
        k: v.get("amp_spike_max_last") for k, v in layers.items() if v.get("amp_spike_max_last")
    }
    if not amps:
        return "not-tested", "", None
    cis = {k: _ci(v) for k, v in amps.items()}
    text = "GPT-nano spike_max ReLU²/ReLU per layer at the last step " + _scale_note(block) + ": "
    text += ", ".join(f"{k} ×{_ci_text(v, 3)}" for k, v in sorted(amps.items()))
    above = [k for k, c in cis.items() if c and c[0] > 1]
    if any(c and c[1] >= 25 for c in cis.values()) and above:
        return "confirmed", text, {"amplified": above}
    if above:
        return "refined", text + " (amplified, below 25× at this scale)", {"amplified": above}
    if any(c and c[1] < 1 for c in cis.values()):
        return "refuted", text, {"amplified": []}
    return "not-tested", text + " (not distinguishable at this scale)", {"amplified": []}


def verdict_remark_a2(block: dict[str, Any] | None) -> tuple[str, str, dict | None]:
    """Remark A.2 ("the covariance term Cov_x(dl/dp_i, x_k) oscillates around 0 in early
    iterations") from the early-training grid, where the inputs are non-negative: refuted when,
    in some setting, the covariance term's band (all steps at once, family-wise 1%) lies above 0
    at init; confirmed when no setting has a confidently signed covariance term in its first 20
    steps; not-tested otherwise."""
    rows = [r for r in (block or {}).get("rows") or [] if r.get("nonneg_inputs")]
    if not rows:
        return "not-tested", "", None
    positive = [
        r
        for r in rows
        if (r.get("summary") or {}).get("init_z", 0) > 0
        and ((r.get("cov_term") or {}).get("lo") or [0])[0] > 0
    ]
    z = [(r["summary"]["init_z"], r["summary"]["median_abs_ratio_to_mean_term"]) for r in positive]
    early_signed = [
        r
        for r in rows
        if any(
            lo > 0 or hi < 0
            for lo, hi in zip(
                (r.get("cov_term") or {}).get("lo", [])[:20],
                (r.get("cov_term") or {}).get("hi", [])[:20],
                strict=False,
            )
        )
    ]
    text = (
        f"covariance term of E[∂ℓ/∂W] with non-negative inputs {_scale_note(block or {})}: "
        f"confidently positive at init in {len(positive)} of {len(rows)} settings"
    )
    if z:
        zs = sorted(v for v, _ in z)
        ratios = sorted(r for _, r in z)
        text += (
            f" (z at init {zs[0]:.0f}–{zs[-1]:.0f}; median size {ratios[0]:.0%}–{ratios[-1]:.0%} "
            "of the mean term, same sign: it adds to the drift)"
        )
    if positive:
        return "refuted", text, {"positive_at_init": len(positive), "settings": len(rows)}
    if not early_signed:
        return "confirmed", text, {"positive_at_init": 0, "settings": len(rows)}
    return "not-tested", text, {"positive_at_init": 0, "settings": len(rows)}


C12_ORDERINGS = (
    ("clip_vs_relu2", "relu2_clip", "relu2", "clipped ReLU² < ReLU²"),
    ("gelu2_vs_relu", "gelu2", "relu", "GELU² < ReLU"),
    ("gelu2_vs_gelu", "gelu2", "gelu", "GELU² < GELU"),
    ("clip_vs_relu", "relu2_clip", "relu", "clipped ReLU² < ReLU"),
    ("clip_vs_gelu", "relu2_clip", "gelu", "clipped ReLU² < GELU"),
)


def verdict_ordering(block: dict[str, Any] | None) -> Any:
    """C12, one row per ordering of val loss, each a paired comparison across seeds (paired t,
    Holm over the family of comparisons): confirmed when the 95% CI of loss(a) - loss(b) is below
    0 and p_holm < 0.05, refuted when above 0 with p_holm < 0.05, not-tested (not
    distinguishable at this scale) otherwise; and "GELU² best": confirmed when GELU² is lowest in
    the ranking and every decided comparison against it goes its way."""
    comps = (block or {}).get("comparisons") or []
    if not comps:
        return []
    by_pair = {(c["a"], c["b"]): c for c in comps}
    head = "paired val-loss difference over seeds " + _scale_note(block) + ": "
    out = []
    for key, a, b, label in C12_ORDERINGS:
        c, sign = by_pair.get((a, b)), 1.0
        if c is None and (b, a) in by_pair:
            c, sign = by_pair[(b, a)], -1.0
        if c is None or _ci(c) is None:
            out.append((key, "not-tested", head + f"{label}: not compared", {}))
            continue
        lo, hi = sorted((sign * c["ci"][0], sign * c["ci"][1]))
        p = float(c.get("p_holm", c.get("p_t", 1.0)))
        verdict = (
            "confirmed"
            if hi < 0 and p < 0.05
            else "refuted"
            if lo > 0 and p < 0.05
            else "not-tested"
        )
        text = f"{label}: {sign * c['mean']:+.3g} [{lo:+.3g}, {hi:+.3g}] nats, p_holm {p:.2g}"
        out.append((key, verdict, head + text, {"p_holm": p}))
    ranking = block.get("ranking") or []
    if ranking:
        against = [
            by_pair.get(("gelu2", other)) or by_pair.get((other, "gelu2")) for other in ranking[1:]
        ]
        worse = [
            c
            for c in against
            if c is not None
            and c.get("p_holm", 1.0) < 0.05
            and ((c["a"] == "gelu2" and c["ci"][0] > 0) or (c["b"] == "gelu2" and c["ci"][1] < 0))
        ]
        best = ranking[0] == "gelu2"
        verdict = "confirmed" if best and not worse else "refuted" if worse else "not-tested"
        text = f"GELU² best: ranking (lowest first) {', '.join(ranking)}"
        out.append(("gelu2_best", verdict, head + text, {"ranking": ranking}))
    return out


EXPERIMENT_FILES = {
    "C5.remark_a2": ("remark_a2.json", verdict_remark_a2),
    "C6.optimizer_lr": ("c6_persistence.json", verdict_horizons),
    "C7.random_inputs": ("drift.json", lambda b: verdict_drift_shown(b, "synthetic")),
    "C8.architectures": ("drift.json", lambda b: verdict_drift_shown(b, "real")),
    "C9.relu_sparsity": ("c9_sparsity.json", verdict_sparsity),
    "C10.sparsity_accuracy": ("c10_cliff.json", verdict_cliff),
    "C11.relu2_spikes": ("c11_spikes.json", verdict_spikes),
    "C12.clipping": ("c12_val_loss.json", verdict_ordering),
}


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
