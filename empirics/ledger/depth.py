"""Ledger rows for issue 9: theory at depth (Theorems D1, D2), under the paper's init hypotheses
(symmetric, heavy-tailed, skewed laws) and per optimizer (C6 first step under SGD, Adam, Muon).

`depth_entries()` gives the rows with their symbolic column and `network`; `depth_montecarlo(
entry, generator=..., alpha=...)` fills one row's Monte Carlo column (fixed sample size, one-look
sign test at the caller's alpha). `python -m empirics.ledger.verify` runs them with the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import sympy as sp

from empirics.ledger.rows import LedgerEntry, _entry, net_dict
from theory.depth import (
    SKEW_LEFT,
    SKEW_RIGHT,
    alpha,
    enumerate_unconditional,
    predict_hidden_gradient,
    predict_second_moment,
)
from theory.drift import parity
from theory.first_step import predict_bias_drift, predict_weight_drift
from theory.registry import Activation, get_activation
from theory.signs import Prediction

INIT_LAWS = ("rademacher", "student_t", "exponential")
SYMMETRIC = ("gaussian", "uniform", "rademacher", "student_t")

Estimator = Callable[[Any, float], dict | None]  # (generator, alpha) -> the Monte Carlo column


@dataclass(frozen=True)
class _Row:
    entry: LedgerEntry
    estimate: Estimator | None


def _run_estimate(
    estimator: Callable[..., Any],
    args: tuple[Any, ...],
    n_networks: int,
    target: str | None,
    generator: Any,
    alpha_: float,
) -> dict:
    """One row's Monte Carlo column: `estimator(*args)` on the row's fixed `n_networks`, one-look
    sign test at `alpha_`; `target` picks the statistic of an estimator that gives several."""
    from empirics.stats.estimates import SignTest

    targets = {} if target is None else {"targets": (target,)}
    est = estimator(
        *args, generator=generator, n_networks=n_networks, test=SignTest(alpha=alpha_), **targets
    )
    return (est if target is None else est[target]).ledger_dict()


def _estimate(
    estimator: Callable[..., Any], *args: Any, n_networks: int, target: str | None = None
) -> Estimator:
    """The row's (generator, alpha) -> Monte Carlo column, for `_run_estimate`."""
    return partial(_run_estimate, estimator, args, n_networks, target)


def _row(
    entry_id: str,
    claim: str,
    activation: str | None,
    loss: str | None,
    pred: Prediction,
    claimed: str | None,
    scope: str,
    network: dict[str, Any],
    estimate: Estimator | None,
) -> _Row:
    entry = _entry(entry_id, claim, activation, loss, pred, claimed, scope=scope, network=network)
    return _Row(entry, estimate)


# ------------------------------------------------------------------------- Theorem D1 (C1)


def _c1_depth_rows() -> list[_Row]:
    from empirics.montecarlo.depth import estimate_conditional_moments, fixed_preactivation_h
    from empirics.montecarlo.estimators import estimate_effective_weights
    from empirics.montecarlo.presets import c1_dead_layer, c1_gated, depth_net

    rows: list[_Row] = []
    for depth in (3, 4, 5):
        cfg = c1_gated(depth - 2)
        preds = predict_second_moment(depth_net(cfg), "gaussian")
        h = fixed_preactivation_h(cfg)
        network = net_dict(cfg, conditioned_on="h_1 = relu(p_1), p_1 ~ N(0, I) seed 12345")
        for quantity, claimed, text in (
            ("cond_offdiag", "nonnegative", "E<v_i, v_j> | p >= 0 (i != j)"),
            ("cond_diag", "positive", "E|v_i|^2 | p > 0"),
        ):
            stat = "offdiag" if quantity == "cond_offdiag" else "diag"
            run = _estimate(estimate_conditional_moments, cfg, h, n_networks=1024, target=stat)
            claim = f"{text}, {depth - 2} gating layer(s) above l (ReLU MLP, biases)"
            rows.append(
                _row(
                    f"C1.depth{depth}.{quantity}",
                    claim,
                    None,
                    None,
                    preds[quantity],
                    claimed,
                    "extension",
                    network,
                    run,
                )
            )
    # The dead-layer event: layer l of width 2, zero biases, P(h_l = 0) = 1/4.
    cfg = c1_dead_layer()
    rows.append(
        _row(
            "C1.depth_dead.diag",
            "E|v_i|^2 > 0 with the event that all of layer l is dead (width 2, no biases)",
            None,
            None,
            predict_second_moment(depth_net(cfg), "gaussian")["diag"],
            "positive",
            "extension",
            net_dict(cfg),
            _estimate(estimate_effective_weights, cfg, n_networks=2048, target="diag"),
        )
    )
    return rows


# ------------------------------------------------------------------------- Theorem D2 (C2)


def _c2_relu_rows() -> list[_Row]:
    from empirics.montecarlo.estimators import estimate_conditional_mean
    from empirics.montecarlo.presets import depth_net, gated_gradient_network

    rows: list[_Row] = []
    for depth in (3, 4, 5):
        cfg = gated_gradient_network("relu", "mse", depth, w_gain=2.0)
        net = depth_net(cfg)
        base = predict_hidden_gradient(net, "relu", "pos")
        # p ~ N(0, w_gain) exactly (sphere inputs): E[g | p > 0] = alpha E[p | p > 0].
        mean_pos = sp.sqrt(sp.Rational(2)) * sp.sqrt(2 / sp.pi)
        value = alpha(net) * mean_pos
        pred = Prediction(
            value, base.sign, base.method, f"alpha_l E[p | p > 0], p ~ N(0, 2); {base.detail}"
        )
        rows.append(
            _row(
                f"C2.depth{depth}.g_pos",
                f"MSE, hidden layer below {depth - 2} gating layer(s): E[dl/dp | p > 0] > 0",
                "relu",
                "mse",
                pred,
                "positive",
                "extension",
                net_dict(cfg),
                _estimate(estimate_conditional_mean, cfg, "pos", n_networks=256),
            )
        )
    return rows


def _c2_measured_rows() -> list[_Row]:
    """GELU and SiLU below gating layers of the same activation: measured (V_eff depends on p)."""
    from empirics.montecarlo.estimators import estimate_conditional_mean
    from empirics.montecarlo.presets import gated_gradient_network

    rows: list[_Row] = []
    for act in ("gelu", "silu"):
        for loss in ("mse", "cross_entropy"):
            for depth in (3, 4, 5):
                cfg = gated_gradient_network(act, loss, depth, w_gain=1.0)
                claim_id = "C2" if loss == "mse" else "C3"
                pred = Prediction(
                    None,
                    "undetermined",
                    "numeric",
                    f"{act} layers above: V depends on p and E<v_i, v_j> | p != 0, so eq. (5) "
                    "does not apply as is; exact: g = K s_L^2 phi'(|h|^2) sigma sigma'(p_i) "
                    "(Gaussian init, MSE), phi'(r) has no closed form: Monte Carlo",
                )
                for side, claimed, text in (
                    ("pos", "positive", "E[dl/dp | p > 0] > 0"),
                    ("neg", "nonnegative", "E[dl/dp | p < 0] >= 0"),
                    ("all", "positive", "net drift E[dl/dp] > 0"),
                ):
                    rows.append(
                        _row(
                            f"{claim_id}.depth{depth}.g_{side}",
                            f"{text}, {depth - 2} {act} layer(s) above l",
                            act,
                            loss,
                            pred,
                            claimed,
                            "extension" if side == "all" else "paper",
                            net_dict(cfg),
                            _estimate(estimate_conditional_mean, cfg, side, n_networks=256),
                        )
                    )
    return rows


# ------------------------------------------------------------- init laws (the paper's words)


def _skewed_init_rows() -> list[_Row]:
    """Exact counterexample: zero-mean two-point laws, x = 1, layer l of width 2, one gating
    layer of width 2, no biases (all combinations enumerated in rationals)."""
    rows: list[_Row] = []
    for name, law in (("skew_right", SKEW_RIGHT), ("skew_left", SKEW_LEFT)):
        moment, _ = enumerate_unconditional((Fraction(1),), 2, (2,), law, (Fraction(0),))
        off = sp.Rational(moment[0][1].numerator, moment[0][1].denominator)
        values = ", ".join(f"{v} w.p. {p}" for v, p in law)
        pred = Prediction(
            off,
            "negative" if off < 0 else "positive" if off > 0 else "zero",
            "argument",
            f"exact enumeration (rationals) over W_1, W_2 i.i.d. from {{{values}}} (zero mean, "
            f"variance {sum(p * v * v for v, p in law)}): E<v_1, v_2> = K s_L^2 * {off}",
        )
        network = {
            "input_size": 1,
            "widths": [2, 2],
            "layer": 1,
            "outputs": "any (factor K s_L^2)",
            "init": f"two-point {{{values}}}",
            "bias_std": 0,
            "inputs": "x = 1",
        }
        rows.append(
            _row(
                f"C1.init_{name}.offdiag",
                "E<v_i, v_j> >= 0 under i.i.d. zero-mean init (no symmetry)",
                None,
                None,
                pred,
                "nonnegative",
                "paper",
                network,
                None,
            )
        )
    return rows


def _init_law_rows() -> list[_Row]:
    """The statement that holds: sign-symmetric init gives exactly 0 (Theorem D1), stricter than
    the paper's >= 0."""
    from empirics.montecarlo.depth import estimate_conditional_moments, fixed_preactivation_h
    from empirics.montecarlo.presets import c1_gated, depth_net

    rows: list[_Row] = []
    for init in INIT_LAWS:
        cfg = c1_gated(1, init)
        h = fixed_preactivation_h(cfg)
        pred = predict_second_moment(
            depth_net(cfg), "symmetric" if init in SYMMETRIC else "zero_mean"
        )["cond_offdiag"]
        rows.append(
            _row(
                f"C1.init_{init}.cond_offdiag",
                f"E<v_i, v_j> | p >= 0 (h-weighted), {init} init",
                None,
                None,
                pred,
                "nonnegative",
                "paper",
                net_dict(cfg, statistic="sum_{i!=j} S_ij h_i h_j / sum_{i!=j} h_i h_j"),
                _estimate(
                    estimate_conditional_moments, cfg, h, n_networks=2048, target="offdiag_h"
                ),
            )
        )
    return rows


def _zero_mean_input_prediction(activation: Activation, init: str) -> Prediction:
    if init in SYMMETRIC:
        return predict_weight_drift(activation.name, "mse", "sign_symmetric")
    if activation.name == "relu":
        return Prediction(
            sp.Integer(0),
            "zero",
            "argument",
            "any zero-mean w, Gaussian x, no bias, MSE: E[x_k (w.x)^+ | w] = w_k / 2 "
            "(x_k = w_k (w.x)/|w|^2 + a part independent of w.x), so E[x_k g] = K s^2 "
            "E[w_k] / 2 = 0: ReLU's positive homogeneity replaces the symmetry",
        )
    return Prediction(
        None,
        "undetermined",
        "numeric",
        "skewed w: E[x_k h(w.x) | w] = w_k c(|w|) with c(r) = E[Z h(r Z)] / r, and "
        "E[w_k c(|w|)] != 0 when |w| correlates with w_k; Monte Carlo",
    )


def _c5_init_rows() -> list[_Row]:
    """C5 with zero-mean inputs: exactly 0 needs sign-symmetric init (or ReLU: homogeneity)."""
    from empirics.montecarlo.estimators import estimate_first_step
    from empirics.montecarlo.presets import two_input_network

    rows: list[_Row] = []
    for init in INIT_LAWS:
        for act in ("relu", "silu"):
            cfg = two_input_network(act, init)
            rows.append(
                _row(
                    f"C5.init_{init}.first_step.W",
                    f"zero-mean inputs: E[delta W_ik] = 0, {init} init",
                    act,
                    "mse",
                    _zero_mean_input_prediction(get_activation(act), init),
                    "zero",
                    "extension",
                    net_dict(cfg),
                    _estimate(estimate_first_step, cfg, 1.0, n_networks=4096, target="W"),
                )
            )
    return rows


# ---------------------------------------------------------------------- optimizers (C6)


def _optimizer_prediction(
    activation: Activation, loss: str, quantity: str, optimizer: str
) -> Prediction:
    act = activation.name
    if parity(act) is not None:
        return Prediction(
            sp.Integer(0),
            "zero",
            "argument",
            f"{parity(act)} sigma: the unit flip (theory.first_step.FLIP_ODD_EVEN) negates row i "
            "of the gradient and leaves its law unchanged; SGD is linear, Adam's first step "
            "-eta g/(|g| + eps) is odd in g, Muon's polar factor satisfies polar(D G) = D polar(G) "
            "for D = diag(+-1): each update's row i is odd, so its mean is 0",
        )
    if optimizer == "sgd":
        if quantity == "b":
            return predict_bias_drift(act, loss)
        return predict_weight_drift(act, loss, "nonnegative")
    how = (
        "Adam's first step is -eta g / (|g| + eps): E[delta b_i] = -eta (2 P(G_i > 0) - 1), the "
        "sign of the median of the batch gradient G_i, not of its mean"
        if optimizer == "adam" or quantity == "b"
        else "Muon's first step is -eta polar(G) (Newton-Schulz): no closed form for its mean"
    )
    return Prediction(None, "undetermined", "numeric", f"{how}; Monte Carlo")


def _optimizer_rows() -> list[_Row]:
    from empirics.montecarlo.depth import OPTIMIZERS, estimate_optimizer_first_step
    from empirics.montecarlo.presets import first_step_network

    rows: list[_Row] = []
    for act in ("relu", "gelu", "silu", "tanh"):
        for loss in ("mse", "cross_entropy"):
            cfg = first_step_network(act, loss, "halfnormal")
            for optimizer in OPTIMIZERS:
                for quantity in ("b", "W"):
                    if optimizer == "muon" and quantity == "b":
                        continue  # Muon takes matrices only: b gets Adam, the adam row
                    claimed = "zero" if parity(act) is not None else "negative"
                    what = "biases" if quantity == "b" else "weights"
                    moves = "nowhere (symmetric control)" if claimed == "zero" else "negative"
                    rows.append(
                        _row(
                            f"C6.first_step.{quantity}.{optimizer}",
                            f"first {optimizer} step moves {what} {moves} (inputs >= 0)",
                            act,
                            loss,
                            _optimizer_prediction(get_activation(act), loss, quantity, optimizer),
                            claimed,
                            "control" if claimed == "zero" else "extension",
                            net_dict(cfg, optimizer=optimizer, lr=1e-3),
                            _estimate(
                                estimate_optimizer_first_step,
                                cfg,
                                optimizer,
                                n_networks=512,
                                target=quantity,
                            ),
                        )
                    )
    return rows


# ------------------------------------------------------------------------------ public API


def _remark_a2_rows() -> list[_Row]:
    from empirics.ledger.rows import remark_a2_rows  # Remark A.2 at init (theory.remark_a2)

    return [_Row(entry, run) for entry, run in remark_a2_rows()]


_BUILDERS = (
    _c1_depth_rows,
    _c2_relu_rows,
    _c2_measured_rows,
    _skewed_init_rows,
    _init_law_rows,
    _c5_init_rows,
    _optimizer_rows,
    _remark_a2_rows,
)
_CACHE: dict[tuple[str, str | None, str | None], _Row] = {}


def _fill() -> None:
    if not _CACHE:
        for build in _BUILDERS:
            for row in build():
                e = row.entry
                _CACHE[(e.id, e.activation, e.loss)] = row


def _rows() -> list[_Row]:
    _fill()
    return list(_CACHE.values())


def depth_entries() -> list[LedgerEntry]:
    """Every issue-9 row with its symbolic column, verdict from theory alone, and `network`."""
    return [r.entry for r in _rows()]


def is_depth_entry(entry: LedgerEntry) -> bool:
    return _row_of(entry) is not None


def _row_of(entry: LedgerEntry) -> _Row | None:
    _fill()
    return _CACHE.get((entry.id, entry.activation, entry.loss))


def depth_montecarlo(entry: LedgerEntry, *, generator: Any, alpha: float) -> dict | None:
    """The Monte Carlo column of one issue-9 row (None for exact rows), at false-sign rate
    `alpha` (the caller's Bonferroni share) with the row's fixed sample size."""
    row = _row_of(entry)
    if row is None or row.estimate is None:
        return None
    return row.estimate(generator, alpha)


def runs_montecarlo(entry: LedgerEntry) -> bool:
    row = _row_of(entry)
    return row is not None and row.estimate is not None
