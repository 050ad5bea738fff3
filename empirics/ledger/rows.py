"""The claims ledger: one entry per claim id x activation x loss, joining theory and Monte Carlo.

Entries follow DESIGN.md (`id, claim, activation, loss, symbolic, montecarlo, verdict`, plus
`claimed` and `detail`); `python -m empirics.ledger.verify` builds, prints and writes them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import sympy as sp

from empirics.ledger.row_verdicts import (
    decide_verdict,
    evidence_of,
    scope_of,
)
from theory.drift import parity, predict_drift_coefficient
from theory.effective import C1_REFERENCE, EffectiveConfig, predict_c1
from theory.first_step import predict_bias_drift, predict_weight_drift
from theory.gradient import predict_gradient_sign
from theory.registry import Activation
from theory.registry import x as registry_x
from theory.signs import SIGNS, Prediction

MC_SIGNS: tuple[str, ...] = SIGNS  # the Monte Carlo uses the theory's words
LEDGER_ALPHA = 1e-3  # P(any spurious fail in one run) <= this, by Bonferroni over the rows
MAX_SEED = 2**63 - 1


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
    scope: str = "paper"
    prediction: str = ""  # rows computed from one prediction share this key (counted once)
    network: dict[str, Any] | None = None

    @property
    def evidence(self) -> str:
        return evidence_of(self.symbolic, self.montecarlo)

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
            "scope": self.scope,
            "evidence": self.evidence,
            "prediction": self.prediction or f"{self.id}|{self.activation}|{self.loss}",
            "network": self.network,
        }


def row_seed(seed: int, entry: LedgerEntry) -> int:
    """Each row's own stream, derived from the seed and what the row is: a row's numbers do not
    depend on which other rows ran before it (so `--only relu` reproduces the full ledger's)."""
    key = f"{seed}|{entry.id}|{entry.activation}|{entry.loss}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & MAX_SEED


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


def _entry(
    entry_id: str,
    claim: str,
    activation: str | None,
    loss: str | None,
    pred: Prediction,
    claimed: str | None,
    *,
    prediction: str = "",
    scope: str | None = None,
    network: dict[str, Any] | None = None,
) -> LedgerEntry:
    """A theory row with its verdict from theory alone (the Monte Carlo column comes later)."""
    pieces = tuple((p.lo, p.hi, p.sign) for p in pred.pieces)
    symbolic = _symbolic(pred)
    verdict, notes = decide_verdict(entry_id, claimed, symbolic, pieces, None)
    if scope is None:
        control = activation is not None and parity(activation) is not None
        scope = scope_of(entry_id, activation, control)
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
        scope=scope,
        prediction=prediction,
        network=network,
    )


def _asymmetric_claim(name: str, asymmetric: str) -> str:
    # C4 (our reading of the paper): odd/even activations do not drift, asymmetric ones do.
    return "zero" if parity(name) is not None else asymmetric


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


def gradient_entries(activation: Activation, loss: str) -> list[LedgerEntry]:
    """C2/C3 as the paper states them for asymmetric activations. Odd/even activations are our
    controls, for which the paper claims nothing: their rows check theory against Monte Carlo."""
    act = activation.name
    claim_id = {"mse": "C2", "cross_entropy": "C3"}.get(loss, "C3.general")
    name = {"mse": "MSE", "cross_entropy": "cross-entropy"}.get(loss, f"loss {loss}")
    control = parity(act) is not None
    # The paper's claim is strict on p > 0 for every activation; where sigma is clipped the
    # certified pieces show g = 0 above the clip, and the row is refuted there.
    pos_claim = "positive"
    pos_text = f"E_V[dl/dp_i | p] > 0 for p_i > 0 ({name})"
    neg_text = f"E_V[dl/dp_i | p] >= 0 for p_i < 0 ({name})"
    if control:
        pos_text = neg_text = f"control ({parity(act)} sigma, no paper claim): sign of g"
    return [
        _entry(
            f"{claim_id}.g_pos",
            pos_text + (" on p_i > 0" if control else ""),
            act,
            loss,
            predict_gradient_sign(act, loss, "pos"),
            None if control else pos_claim,
        ),
        _entry(
            f"{claim_id}.g_neg",
            neg_text + (" on p_i < 0" if control else ""),
            act,
            loss,
            predict_gradient_sign(act, loss, "neg"),
            None if control else "nonnegative",
        ),
    ]


def drift_entry(activation: Activation) -> LedgerEntry:
    act = activation.name
    text = (
        f"symmetric control ({parity(act)} sigma): net drift D(sigma, 1) = 0"
        if parity(act) is not None
        else "net drift D(sigma, 1) = E[sigma sigma'] > 0 (positively biased)"
    )
    return _entry(
        "C4.D",
        text,
        act,
        None,
        predict_drift_coefficient(act, 1.0),
        _asymmetric_claim(act, "positive"),
    )


def first_step_entries(activation: Activation, loss: str) -> list[LedgerEntry]:
    act = activation.name
    bias = predict_bias_drift(act, loss)
    moves = (
        "biases do not drift: E[delta b_i] = 0"
        if parity(act) is not None
        else "first SGD step moves biases negative: E[delta b_i] < 0"
    )
    return [
        _entry(
            "C5.first_step.b",
            f"{moves} (zero-mean inputs)",
            act,
            loss,
            bias,
            _asymmetric_claim(act, "negative"),
            prediction=f"C5.bias_drift|{act}|{loss}",
        ),
        _entry(
            "C5.first_step.b.nonneg",
            f"{moves} (non-negative inputs)",
            act,
            loss,
            bias,
            _asymmetric_claim(act, "negative"),
            prediction=f"C5.bias_drift|{act}|{loss}",
        ),
        _entry(
            "C5.first_step.W",
            "zero-mean symmetric inputs: E[delta W_ik] = 0 (companion's extension)",
            act,
            loss,
            predict_weight_drift(act, loss, "sign_symmetric"),
            "zero",
        ),
        _entry(
            "C5.first_step.W.nonneg",
            "non-negative inputs: first SGD step moves weights negative, E[delta W_ik] < 0"
            if parity(act) is None
            else "non-negative inputs: weight drift of a symmetric control (no paper claim)",
            act,
            loss,
            predict_weight_drift(act, loss, "nonnegative"),
            None if parity(act) is not None else "negative",
        ),
    ]


def theory_entries(
    activations: Iterable[Activation],
    losses: Iterable[str],
    *,
    c1_config: EffectiveConfig = C1_REFERENCE,
    progress: Callable[[str], None] | None = None,
) -> list[LedgerEntry]:
    """Every theory entry for the activations x losses (C1-C5); `progress` gets each name."""
    losses = list(losses)
    entries = c1_entries(c1_config)
    for act in activations:
        if progress:
            progress(act.name)
        entries.append(drift_entry(act))
        for loss in losses:
            entries += gradient_entries(act, loss)
        for loss in losses:
            entries += first_step_entries(act, loss)
    return entries


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
    """Plain-text table: id, activation, loss, scope, claim, symbolic status (sign and method),
    value, Monte Carlo (mean +- SE and decided sign), verdict."""
    header = (
        "id",
        "activation",
        "loss",
        "scope",
        "claim",
        "symbolic",
        "value",
        "monte carlo",
        "verdict",
    )
    widths = (24, 13, 13, 9, 40, 26, 14, 26, 10)
    rows = [header]
    for e in entries:
        sym = e.symbolic or {}
        status = f"{sym.get('sign')} ({sym.get('method')})" if sym else "-"
        rows.append(
            (
                e.id,
                e.activation or "-",
                e.loss or "-",
                e.scope,
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


# ------------------------------------------------------------------- Remark A.2 at init (C5)

# Remark A.2's rows are measured on the early-training networks
# (`empirics.montecarlo.presets.remark_a2_network`) at step 0, on the experiment's own statistic.
REMARK_A2_NETWORKS = 4096


def net_dict(cfg: Any, **extra: Any) -> dict[str, Any]:
    """The network a row refers to, from a montecarlo NetConfig (input size, widths, layer,
    outputs, init law and scales, input law)."""
    return {
        "input_size": cfg.d_in,
        "widths": list(cfg.widths),
        "layer": cfg.layer,
        "outputs": cfg.n_out,
        "init": cfg.init,
        "weight_var": [cfg.w_gain / n for n in (cfg.d_in, *cfg.widths)],
        "bias_std": cfg.bias_std,
        "inputs": cfg.inputs,
        "activation": cfg.activation.name,
        "loss": cfg.loss,
        **extra,
    }


def _remark_a2_terms(inputs: str, n_networks: int, generator: Any) -> tuple[Any, Any]:
    """Per network (float64 tensors [n]): the covariance and mean terms of E[dl/dW_1] at init,
    computed by the early-training statistic (`per_network_stats`) on fresh networks."""
    import torch

    from empirics.activations import parse_activation, torch_fn
    from empirics.montecarlo.early_kernel import per_network_stats
    from empirics.montecarlo.presets import remark_a2_network
    from empirics.montecarlo.sampler import (
        draw_inputs,
        draw_labels,
        forward,
        init_network,
        network_loss,
    )

    cfg = remark_a2_network(inputs)
    covs, means = [], []
    fn = torch_fn(parse_activation("relu"))
    for start in range(0, n_networks, 512):  # chunks keep memory flat
        n = min(512, n_networks - start)
        shape = (n, cfg.inputs_per_net)
        x = draw_inputs(inputs, (*shape, cfg.d_in), generator, torch.float64, "cpu")
        y = draw_labels(cfg, shape, generator, torch.float64, "cpu")
        weights, biases = init_network(cfg, n, generator)
        weights = [w.requires_grad_(True) for w in weights]
        fwd = forward(x, weights, biases, fn)
        loss = network_loss("mse", fwd.out, y)
        grads = torch.autograd.grad(loss.sum(), fwd.preacts)
        stats_ = per_network_stats(fwd, grads)
        covs.append(stats_[("layer1", "cov_term")].detach())
        means.append(stats_[("layer1", "mean_term")].detach())
    return torch.cat(covs), torch.cat(means)


def remark_a2_rows() -> list[tuple[LedgerEntry, Callable[[Any, float], dict | None]]]:
    """Theory rows for Remark A.2 at init (`theory.remark_a2`) with their Monte Carlo: the
    covariance term's value (half-normal inputs), its ratio to the mean term, and the
    sign-symmetric control where it is exactly 0. Each pairs an entry with (generator, alpha) ->
    the Monte Carlo column (one-look Student-t sign test at the caller's alpha)."""
    from empirics.montecarlo.presets import remark_a2_network
    from theory.remark_a2 import CovarianceNet, predict_covariance_init, predict_covariance_ratio

    rows: list[tuple[LedgerEntry, Callable[[Any, float], dict | None]]] = []

    def network(inputs: str) -> dict[str, Any]:
        cfg = remark_a2_network(inputs)
        return net_dict(cfg, inputs_per_net=cfg.inputs_per_net)

    def estimate(inputs: str, ratio: bool) -> Callable[[Any, float], dict | None]:
        def run(gen: Any, alpha: float) -> dict | None:
            import torch

            from empirics.stats.estimates import RatioAccumulator, SignTest

            cov, mean = _remark_a2_terms(inputs, REMARK_A2_NETWORKS, gen)
            acc = RatioAccumulator()
            acc.add(cov, mean if ratio else torch.ones_like(mean))
            test = SignTest(alpha=alpha)
            return acc.estimate(test.quantile(acc.dof), test.confidence).ledger_dict()

        return run

    net = remark_a2_network("halfnormal")
    kwargs = dict(d_in=net.d_in, widths=net.widths, outputs=net.n_out)
    for inputs, ratio, eid, claim, pred in (
        (
            "halfnormal",
            False,
            "C5.covariance.init",
            "covariance term of E[dl/dW_ij] at init (layer 1, ReLU, half-normal x): "
            "alpha s Cov(|x|, x_j)/sqrt(2 pi) > 0",
            predict_covariance_init(CovarianceNet(inputs="halfnormal", **kwargs)),
        ),
        (
            "halfnormal",
            True,
            "C5.covariance.ratio",
            "covariance term / mean term at init: Cov(|x|, x_j)/(E|x| E x_j) = "
            "d Gamma(d/2)^2/(2 Gamma((d+1)/2)^2) - 1",
            predict_covariance_ratio(CovarianceNet(inputs="halfnormal", **kwargs)),
        ),
        (
            "gaussian",
            False,
            "C5.covariance.init.symmetric",
            "control: sign-symmetric inputs, covariance term at init = 0",
            predict_covariance_init(CovarianceNet(inputs="gaussian", **kwargs)),
        ),
    ):
        claimed = "zero" if inputs == "gaussian" else "positive"
        entry = _entry(
            eid, claim, "relu", "mse", pred, claimed, scope="extension", network=network(inputs)
        )
        rows.append((entry, estimate(inputs, ratio)))
    return rows
