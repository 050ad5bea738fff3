"""The verdict of one theory or Monte Carlo row, and the counts over rows (torch-free).

`decide_verdict` is the row rule `empirics.ledger.rows` applies; `summarize` and `summary_line`
count verdicts per scope and evidence for `python -m empirics.ledger.verify` and the claims table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
