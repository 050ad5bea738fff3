"""The claims ledger: one entry per claim id x activation x loss, joining theory and Monte Carlo.

Entries follow DESIGN.md (`id, claim, activation, loss, symbolic, montecarlo, verdict`, plus
`claimed` and `detail`); `python -m empirics.verify` builds, prints and writes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import sympy as sp

from theory import (
    C1_REFERENCE,
    EffectiveConfig,
    Prediction,
    parity,
    predict_bias_drift,
    predict_c1,
    predict_drift_coefficient,
    predict_gradient_sign,
    predict_weight_drift,
)
from theory.registry import x as registry_x
from theory.signs import SIGNS, compatible, implies

VERDICTS: tuple[str, ...] = ("confirmed", "refined", "refuted", "not-tested", "fail")
MC_SIGNS: tuple[str, ...] = (*SIGNS, "undecided")
# Ids whose symbolic value is the very number the Monte Carlo estimates (same configuration), so
# a value outside the Monte Carlo CI is a `fail`; elsewhere only signs are compared.
VALUE_IDS = frozenset({"C1.mean", "C1.offdiag", "C1.diag", "C4.D"})

EXPERIMENT_CLAIMS: dict[str, str] = {
    "C6.optimizer_lr": "drift depends on the optimizer and the learning rate",
    "C7.random_inputs": "drift is intrinsic to optimization: it appears on random inputs too",
    "C8.architectures": "drift appears in MLP, ResNet, ViT, GPT-nano and MP-SENet",
    "C9.relu_sparsity": "with ReLU, drift yields activation sparsity up to 90% in GPT-nano",
    "C10.sparsity_accuracy": "accuracy falls off a cliff above ~70% controlled sparsity",
    "C11.relu2_spikes": "ReLU^2 amplifies activation spikes ~25x relative to ReLU",
    "C12.clipping": "clipped ReLU^2 beats ReLU^2; GELU^2 reaches the lowest GPT-nano loss",
}


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger; `to_json` gives the DESIGN.md entry format."""

    id: str
    claim: str
    activation: str | None
    loss: str | None
    symbolic: dict[str, Any] | None
    claimed: str | None
    detail: str = ""
    pieces: tuple[tuple[float, float, str], ...] = ()
    montecarlo: dict[str, Any] | None = None
    verdict: str = "not-tested"
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "claim": self.claim,
            "activation": self.activation,
            "loss": self.loss,
            "symbolic": self.symbolic,
            "montecarlo": self.montecarlo,
            "verdict": self.verdict,
            "claimed": self.claimed,
            "detail": self.detail,
            "pieces": [list(p) for p in self.pieces],
            "notes": list(self.notes),
        }


def _value_json(value: Any) -> Any:
    """Numbers as floats (exact ones keep their sympy text in `exact`), formulas as text."""
    if value is None:
        return None
    if isinstance(value, sp.Basic):
        if value.is_number:
            return float(value)
        # Formulas are functions of the pre-activation: print them in p, as the paper does.
        return str(value.subs(registry_x, sp.Symbol("p", real=True)))
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


def _symbolic(pred: Prediction) -> dict[str, Any]:
    out = {"sign": pred.sign, "method": pred.method, "value": _value_json(pred.value)}
    if isinstance(pred.value, sp.Basic) and pred.value.is_number and not pred.value.is_Float:
        out["exact"] = str(pred.value)
    if pred.error is not None:
        out["error"] = pred.error
    return out


def decide_verdict(
    entry_id: str,
    claimed: str | None,
    symbolic: dict[str, Any] | None,
    pieces: Iterable[tuple[float, float, str]],
    montecarlo: dict[str, Any] | None,
) -> tuple[str, list[str]]:
    """The verdict rule, with the reasons.

    fail: our own prediction and estimate disagree (both signs decided with disjoint sign sets,
    or, for VALUE_IDS, the symbolic value outside the Monte Carlo CI). Otherwise the established
    sign (theory first, else a decided Monte Carlo sign) against the claimed one: refuted if
    incompatible or if a certified piece of the function contradicts it; confirmed if equal;
    refined if strictly sharper; not-tested when nothing is established or there is no claim.
    """
    notes: list[str] = []
    sym_sign = (symbolic or {}).get("sign") or "undetermined"
    mc_sign = (montecarlo or {}).get("sign")
    mc_decided = mc_sign in SIGNS and mc_sign != "undetermined"
    if sym_sign != "undetermined" and mc_decided and not compatible(sym_sign, mc_sign):
        return "fail", [f"theory says {sym_sign}, Monte Carlo says {mc_sign}"]
    value = (symbolic or {}).get("value")
    ci = (montecarlo or {}).get("ci")
    if entry_id in VALUE_IDS and isinstance(value, float) and ci is not None:
        lo, hi = float(ci[0]), float(ci[1])
        if not (lo <= value <= hi):
            return "fail", [
                f"theory value {value:.6g} outside the Monte Carlo CI [{lo:.6g}, {hi:.6g}]"
            ]
        notes.append(f"theory value inside the Monte Carlo CI [{lo:.4g}, {hi:.4g}]")
    if claimed is None:
        return "not-tested", notes + ["no claim of the paper for this case"]
    against = [p for p in pieces if p[2] != "undetermined" and not compatible(p[2], claimed)]
    if against:
        lo, hi, sign = against[0]
        where = f"p = {lo:g}" if lo == hi else f"({lo:g}, {hi:g})"
        notes.append(f"certified {sign} at {where}, the claim says {claimed}")
        return "refuted", notes
    established = sym_sign if sym_sign != "undetermined" else (mc_sign if mc_decided else None)
    if sym_sign == "undetermined" and established is not None:
        notes.append("sign established by the Monte Carlo alone")
    if established is None:
        return "not-tested", notes
    if not compatible(established, claimed):
        return "refuted", notes + [f"established {established}, claimed {claimed}"]
    if implies(established, claimed):
        return ("confirmed" if established == claimed else "refined"), notes
    return "not-tested", notes + [f"established {established} is weaker than claimed {claimed}"]


def _entry(
    entry_id: str,
    claim: str,
    activation: str | None,
    loss: str | None,
    pred: Prediction,
    claimed: str | None,
) -> LedgerEntry:
    pieces = tuple((p.lo, p.hi, p.sign) for p in pred.pieces)
    symbolic = _symbolic(pred)
    verdict, notes = decide_verdict(entry_id, claimed, symbolic, pieces, None)
    return LedgerEntry(
        entry_id,
        claim,
        activation,
        loss,
        symbolic,
        claimed,
        pred.detail,
        pieces,
        None,
        verdict,
        notes,
    )


def _asymmetric_claim(activation: str, asymmetric: str) -> str:
    # C4 (our reading of the paper): odd/even activations do not drift, asymmetric ones do.
    return "zero" if parity(activation) is not None else asymmetric


def c1_entries(cfg: EffectiveConfig = C1_REFERENCE) -> list[LedgerEntry]:
    preds = predict_c1(cfg)
    return [
        _entry("C1.mean", "E[v_i] = 0 at init (ReLU MLP)", None, None, preds["mean"], "zero"),
        _entry(
            "C1.offdiag",
            "E<v_i, v_j> >= 0 for i != j (ReLU MLP)",
            None,
            None,
            preds["offdiag"],
            "nonnegative",
        ),
        _entry("C1.diag", "E|v_i|^2 > 0 (ReLU MLP)", None, None, preds["norm"], "positive"),
    ]


def _is_clipped(activation: str) -> bool:
    """A clipped square: g is exactly 0 above the clip, so only >= 0 can hold on p > 0."""
    return activation.partition(":")[0] in ("relu2_clip", "relu2_clip50", "gelu2_clip")


def gradient_entries(activation: str, loss: str) -> list[LedgerEntry]:
    """C2/C3 as the paper states them for asymmetric activations. Odd/even activations are our
    controls, for which the paper claims nothing: their rows check theory against Monte Carlo."""
    claim_id = {"mse": "C2", "cross_entropy": "C3"}.get(loss, "C3.general")
    name = {"mse": "MSE", "cross_entropy": "cross-entropy"}.get(loss, f"loss {loss}")
    control = parity(activation) is not None
    pos_claim = "nonnegative" if _is_clipped(activation) else "positive"
    pos_text = (
        f"E_V[dl/dp_i | p] >= 0 for p_i > 0, 0 above the clip ({name})"
        if _is_clipped(activation)
        else f"E_V[dl/dp_i | p] > 0 for p_i > 0 ({name})"
    )
    neg_text = f"E_V[dl/dp_i | p] >= 0 for p_i < 0 ({name})"
    if control:
        pos_text = neg_text = f"control ({parity(activation)} sigma, no paper claim): sign of g"
    return [
        _entry(
            f"{claim_id}.g_pos",
            pos_text + (" on p_i > 0" if control else ""),
            activation,
            loss,
            predict_gradient_sign(activation, loss, "pos"),
            None if control else pos_claim,
        ),
        _entry(
            f"{claim_id}.g_neg",
            neg_text + (" on p_i < 0" if control else ""),
            activation,
            loss,
            predict_gradient_sign(activation, loss, "neg"),
            None if control else "nonnegative",
        ),
    ]


def drift_entry(activation: str) -> LedgerEntry:
    text = (
        f"symmetric control ({parity(activation)} sigma): net drift D(sigma, 1) = 0"
        if parity(activation) is not None
        else "net drift D(sigma, 1) = E[sigma sigma'] > 0 (positively biased)"
    )
    return _entry(
        "C4.D",
        text,
        activation,
        None,
        predict_drift_coefficient(activation, 1.0),
        _asymmetric_claim(activation, "positive"),
    )


def first_step_entries(activation: str, loss: str) -> list[LedgerEntry]:
    bias = predict_bias_drift(activation, loss)
    moves = (
        "biases do not drift: E[delta b_i] = 0"
        if parity(activation) is not None
        else "first SGD step moves biases negative: E[delta b_i] < 0"
    )
    return [
        _entry(
            "C5.first_step.b",
            f"{moves} (zero-mean inputs)",
            activation,
            loss,
            bias,
            _asymmetric_claim(activation, "negative"),
        ),
        _entry(
            "C5.first_step.b.nonneg",
            f"{moves} (non-negative inputs)",
            activation,
            loss,
            bias,
            _asymmetric_claim(activation, "negative"),
        ),
        _entry(
            "C5.first_step.W",
            "zero-mean symmetric inputs: E[delta W_ik] = 0 (companion's extension)",
            activation,
            loss,
            predict_weight_drift(activation, loss, "zero_mean"),
            "zero",
        ),
        _entry(
            "C5.first_step.W.nonneg",
            "non-negative inputs: first SGD step moves weights negative, E[delta W_ik] < 0"
            if parity(activation) is None
            else "non-negative inputs: weight drift of a symmetric control (no paper claim)",
            activation,
            loss,
            predict_weight_drift(activation, loss, "nonnegative"),
            None if parity(activation) is not None else "negative",
        ),
    ]


def experiment_entries() -> list[LedgerEntry]:
    return [
        LedgerEntry(cid, text, None, None, None, None, "experiment-backed: filled by the runs")
        for cid, text in EXPERIMENT_CLAIMS.items()
    ]


def theory_entries(
    activations: Iterable[str],
    losses: Iterable[str],
    *,
    c1_config: EffectiveConfig = C1_REFERENCE,
    progress: Callable[[str], None] | None = None,
) -> list[LedgerEntry]:
    """Every theory entry for the activations x losses, then C6-C12 as not-tested."""
    losses = list(losses)
    entries = c1_entries(c1_config)
    for act in activations:
        if progress:
            progress(act)
        entries.append(drift_entry(act))
        for loss in losses:
            entries += gradient_entries(act, loss)
        for loss in losses:
            entries += first_step_entries(act, loss)
    return entries + experiment_entries()


def attach_montecarlo(entry: LedgerEntry, mc: dict[str, Any] | None) -> LedgerEntry:
    """The entry with its Monte Carlo column filled (checked) and its verdict recomputed."""
    if mc is not None:
        missing = {"mean", "stderr", "n", "ci", "sign"} - set(mc)
        if missing:
            raise ValueError(f"{entry.id}: Monte Carlo result lacks {sorted(missing)}")
        if mc["sign"] not in MC_SIGNS:
            raise ValueError(f"{entry.id}: Monte Carlo sign {mc['sign']!r} not in {MC_SIGNS}")
        mc = {**mc, "ci": [float(mc["ci"][0]), float(mc["ci"][1])]}
    verdict, notes = decide_verdict(entry.id, entry.claimed, entry.symbolic, entry.pieces, mc)
    return replace(entry, montecarlo=mc, verdict=verdict, notes=notes)


def _short(value: Any, width: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "~"


def _mc_text(mc: dict[str, Any] | None) -> str:
    if not mc:
        return "-"
    mean, se = mc.get("mean"), mc.get("stderr")
    if isinstance(mean, (int, float)) and isinstance(se, (int, float)) and math.isfinite(mean):
        return f"{mean:.4g}+-{se:.2g} {mc.get('sign')}"
    return str(mc.get("sign"))


def format_table(entries: Iterable[LedgerEntry]) -> str:
    """Plain-text table: id, activation, loss, claim, symbolic status, value, MC, verdict."""
    header = ("id", "activation", "loss", "claim", "symbolic", "value", "monte carlo", "verdict")
    widths = (24, 13, 13, 44, 26, 14, 26, 10)
    rows = [header]
    for e in entries:
        sym = e.symbolic or {}
        status = f"{sym.get('sign')} ({sym.get('method')})" if sym else "-"
        rows.append(
            (
                e.id,
                e.activation or "-",
                e.loss or "-",
                e.claim,
                status,
                sym.get("value"),
                _mc_text(e.montecarlo),
                e.verdict,
            )
        )
    lines = []
    for row in rows:
        cells = [_short(c, w).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append(" ".join(cells).rstrip())
        if row is header:
            lines.append("-" * (sum(widths) + len(widths) - 1))
    return "\n".join(lines)


def summarize(entries: Iterable[LedgerEntry]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for e in entries:
        counts[e.verdict] += 1
    return counts
