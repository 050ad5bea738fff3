"""Ledger rows for issue 9: theory at depth (Theorems D1, D2), under the paper's init hypotheses
(symmetric, heavy-tailed, skewed laws) and per optimizer (C6 first step under SGD, Adam, Muon).

`depth_entries()` gives the rows with their symbolic column and `network`; `depth_montecarlo(
entry, generator=..., alpha=...)` fills one row's Monte Carlo column (fixed sample size, one-look
sign test at the caller's alpha). `python -m empirics.ledger.depth` prints them all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import sympy as sp

from empirics.ledger.rows import LedgerEntry, _entry, attach_montecarlo, format_table
from theory.depth import (
    SKEW_LEFT,
    SKEW_RIGHT,
    DepthNet,
    alpha,
    enumerate_unconditional,
    predict_hidden_gradient,
    predict_second_moment,
)
from theory.drift import parity
from theory.first_step import predict_bias_drift, predict_weight_drift
from theory.signs import Prediction

# Ids whose symbolic value is the number the Monte Carlo estimates (the verdict module should
# treat them as VALUE_IDS: a value outside the CI is a fail).
DEPTH_VALUE_IDS: frozenset[str] = frozenset(
    {f"C1.depth{L}.cond_diag" for L in (3, 4, 5)}
    | {"C1.depth_dead.diag"}
    | {f"C2.depth{L}.g_pos" for L in (3, 4, 5)}
)
INIT_LAWS = ("rademacher", "student_t", "exponential")
SYMMETRIC = ("gaussian", "uniform", "rademacher", "student_t")


@dataclass(frozen=True)
class _Row:
    entry: LedgerEntry
    estimate: Callable[[Any, float], dict | None] | None  # (generator, alpha) -> ledger dict


def _net_dict(cfg: Any, **extra: Any) -> dict[str, Any]:
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


def depth_net(cfg: Any) -> DepthNet:
    """The theory's description (`theory.depth.DepthNet`) of a Monte Carlo NetConfig."""
    sizes = (cfg.d_in, *cfg.widths)
    return DepthNet(
        widths=sizes,
        outputs=cfg.n_out,
        weight_var=tuple(cfg.w_gain / n for n in sizes),
        bias_var=(cfg.bias_std**2,) * len(sizes),
        layer=cfg.layer,
    )


def _make(
    entry_id: str,
    claim: str,
    activation: str | None,
    loss: str | None,
    pred: Prediction,
    claimed: str | None,
    scope: str,
    network: dict[str, Any],
) -> LedgerEntry:
    return _entry(entry_id, claim, activation, loss, pred, claimed, scope=scope, network=network)


def _ledger_dict(est: Any, scale: float = 1.0) -> dict:
    out = est.ledger_dict()
    if scale != 1.0:
        out["mean"] *= scale
        out["stderr"] *= abs(scale)
        out["ci"] = sorted(c * scale for c in out["ci"])
    return out


# ------------------------------------------------------------------------- Theorem D1 (C1)


def _c1_depth_rows() -> list[_Row]:
    from empirics.montecarlo.depth import estimate_conditional_moments, fixed_preactivation_h
    from empirics.montecarlo.estimators import c1_config, estimate_effective_weights
    from empirics.stats import SignTest

    rows: list[_Row] = []
    for depth in (3, 4, 5):
        cfg = c1_config(widths=(32,) * (depth - 1), bias_std=0.3)
        net = depth_net(cfg)
        preds = predict_second_moment(net, "gaussian")
        h = fixed_preactivation_h(cfg)
        network = _net_dict(cfg, conditioned_on="h_1 = relu(p_1), p_1 ~ N(0, I) seed 12345")
        for quantity, claimed, text in (
            ("cond_offdiag", "nonnegative", "E<v_i, v_j> | p >= 0 (i != j)"),
            ("cond_diag", "positive", "E|v_i|^2 | p > 0"),
        ):

            def run(gen, alpha, cfg=cfg, h=h, q=quantity):
                stat = "offdiag" if q == "cond_offdiag" else "diag"
                est = estimate_conditional_moments(
                    cfg,
                    h,
                    generator=gen,
                    n_networks=1024,
                    test=SignTest(alpha=alpha),
                    targets=(stat,),
                )
                return _ledger_dict(est[stat])

            rows.append(
                _Row(
                    _make(
                        f"C1.depth{depth}.{quantity}",
                        f"{text}, {depth - 2} gating layer(s) above l (ReLU MLP, biases)",
                        None,
                        None,
                        preds[quantity],
                        claimed,
                        "extension",
                        network,
                    ),
                    run,
                )
            )
    # The dead-layer event: layer l of width 2, zero biases, P(h_l = 0) = 1/4.
    cfg = c1_config(widths=(2, 16, 16))
    pred = predict_second_moment(depth_net(cfg), "gaussian")["diag"]

    def dead(gen, alpha, cfg=cfg):
        est = estimate_effective_weights(
            cfg, generator=gen, n_networks=2048, test=SignTest(alpha=alpha), targets=("diag",)
        )
        return _ledger_dict(est["diag"])

    rows.append(
        _Row(
            _make(
                "C1.depth_dead.diag",
                "E|v_i|^2 > 0 with the event that all of layer l is dead (width 2, no biases)",
                None,
                None,
                pred,
                "positive",
                "extension",
                _net_dict(cfg),
            ),
            dead,
        )
    )
    return rows


# ------------------------------------------------------------------------- Theorem D2 (C2)


def _c2_depth_rows() -> list[_Row]:
    from empirics.montecarlo.estimators import estimate_conditional_mean
    from empirics.montecarlo.sampler import NetConfig
    from empirics.stats import SignTest

    rows: list[_Row] = []
    for depth in (3, 4, 5):
        cfg = NetConfig(
            activation="relu",
            loss="mse",
            d_in=16,
            widths=(64,) * (depth - 1),
            n_out=10,
            inputs_per_net=16,
            inputs="sphere",
            w_gain=2.0,
        )
        net = depth_net(cfg)
        base = predict_hidden_gradient(net, "relu", "pos")
        # p ~ N(0, w_gain) exactly (sphere inputs): E[g | p > 0] = alpha E[p | p > 0].
        mean_pos = sp.sqrt(sp.Rational(2)) * sp.sqrt(2 / sp.pi)
        value = alpha(net) * mean_pos
        pred = Prediction(
            value, base.sign, base.method, f"alpha_l E[p | p > 0], p ~ N(0, 2); {base.detail}"
        )

        def run(gen, alpha_, cfg=cfg):
            est = estimate_conditional_mean(
                cfg, "pos", generator=gen, n_networks=256, test=SignTest(alpha=alpha_)
            )
            return _ledger_dict(est)

        rows.append(
            _Row(
                _make(
                    f"C2.depth{depth}.g_pos",
                    f"MSE, hidden layer below {depth - 2} gating layer(s): E[dl/dp | p > 0] > 0",
                    "relu",
                    "mse",
                    pred,
                    "positive",
                    "extension",
                    _net_dict(cfg),
                ),
                run,
            )
        )
    # GELU and SiLU below gating layers of the same activation: measured (V_eff depends on p).
    for act in ("gelu", "silu"):
        for loss in ("mse", "cross_entropy"):
            for depth in (3, 4, 5):
                cfg = NetConfig(
                    activation=act,
                    loss=loss,
                    d_in=16,
                    widths=(64,) * (depth - 1),
                    n_out=10,
                    inputs_per_net=16,
                    inputs="sphere",
                    w_gain=1.0,
                )
                claim_id = "C2" if loss == "mse" else "C3"
                for side, claimed, text in (
                    ("pos", "positive", "E[dl/dp | p > 0] > 0"),
                    ("neg", "nonnegative", "E[dl/dp | p < 0] >= 0"),
                    ("all", "positive", "net drift E[dl/dp] > 0"),
                ):
                    pred = Prediction(
                        None,
                        "undetermined",
                        "numeric",
                        f"{act} layers above: V depends on p and E<v_i, v_j> | p != 0, so eq. (5) "
                        "does not apply as is; exact: g = K s_L^2 phi'(|h|^2) sigma sigma'(p_i) "
                        "(Gaussian init, MSE), phi'(r) has no closed form: Monte Carlo",
                    )

                    def run(gen, alpha_, cfg=cfg, side=side):
                        est = estimate_conditional_mean(
                            cfg, side, generator=gen, n_networks=256, test=SignTest(alpha=alpha_)
                        )
                        return _ledger_dict(est)

                    rows.append(
                        _Row(
                            _make(
                                f"{claim_id}.depth{depth}.g_{side}",
                                f"{text}, {depth - 2} {act} layer(s) above l",
                                act,
                                loss,
                                pred,
                                claimed,
                                "extension" if side == "all" else "paper",
                                _net_dict(cfg),
                            ),
                            run,
                        )
                    )
    return rows


# ------------------------------------------------------------- init laws (the paper's words)


def _init_rows() -> list[_Row]:
    from empirics.montecarlo.depth import estimate_conditional_moments, fixed_preactivation_h
    from empirics.montecarlo.estimators import c1_config, estimate_first_step
    from empirics.montecarlo.sampler import NetConfig
    from empirics.stats import SignTest

    rows: list[_Row] = []
    # Exact counterexample: zero-mean two-point laws, x = 1, layer l of width 2, one gating
    # layer of width 2, no biases (all combinations enumerated in rationals).
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
            _Row(
                _make(
                    f"C1.init_{name}.offdiag",
                    "E<v_i, v_j> >= 0 under i.i.d. zero-mean init (no symmetry)",
                    None,
                    None,
                    pred,
                    "nonnegative",
                    "paper",
                    network,
                ),
                None,
            )
        )
    # The statement that holds: sign-symmetric init gives exactly 0 (Theorem D1), stricter than
    # the paper's >= 0.
    for init in ("rademacher", "student_t", "exponential"):
        cfg = c1_config(init=init, bias_std=0.3)
        h = fixed_preactivation_h(cfg)
        pred = predict_second_moment(
            depth_net(cfg), "symmetric" if init in SYMMETRIC else "zero_mean"
        )["cond_offdiag"]

        def run(gen, alpha_, cfg=cfg, h=h):
            est = estimate_conditional_moments(
                cfg,
                h,
                generator=gen,
                n_networks=2048,
                test=SignTest(alpha=alpha_),
                targets=("offdiag_h",),
            )
            return _ledger_dict(est["offdiag_h"])

        rows.append(
            _Row(
                _make(
                    f"C1.init_{init}.cond_offdiag",
                    f"E<v_i, v_j> | p >= 0 (h-weighted), {init} init",
                    None,
                    None,
                    pred,
                    "nonnegative",
                    "paper",
                    _net_dict(cfg, statistic="sum_{i!=j} S_ij h_i h_j / sum_{i!=j} h_i h_j"),
                ),
                run,
            )
        )
    # C5 with zero-mean inputs: exactly 0 needs sign-symmetric init (or ReLU: homogeneity).
    for init in INIT_LAWS:
        for act in ("relu", "silu"):
            cfg = NetConfig(
                activation=act,
                loss="mse",
                d_in=2,
                widths=(64,),
                n_out=10,
                inputs_per_net=16,
                inputs="gaussian",
                init=init,
            )
            if init in SYMMETRIC:
                pred = predict_weight_drift(act, "mse", "sign_symmetric")
            elif act == "relu":
                pred = Prediction(
                    sp.Integer(0),
                    "zero",
                    "argument",
                    "any zero-mean w, Gaussian x, no bias, MSE: E[x_k (w.x)^+ | w] = w_k / 2 "
                    "(x_k = w_k (w.x)/|w|^2 + a part independent of w.x), so E[x_k g] = K s^2 "
                    "E[w_k] / 2 = 0: ReLU's positive homogeneity replaces the symmetry",
                )
            else:
                pred = Prediction(
                    None,
                    "undetermined",
                    "numeric",
                    "skewed w: E[x_k h(w.x) | w] = w_k c(|w|) with c(r) = E[Z h(r Z)] / r, and "
                    "E[w_k c(|w|)] != 0 when |w| correlates with w_k; Monte Carlo",
                )

            def run_w(gen, alpha_, cfg=cfg):
                est = estimate_first_step(
                    cfg,
                    1.0,
                    generator=gen,
                    n_networks=4096,
                    test=SignTest(alpha=alpha_),
                    targets=("W",),
                )
                return _ledger_dict(est["W"])

            rows.append(
                _Row(
                    _make(
                        f"C5.init_{init}.first_step.W",
                        f"zero-mean inputs: E[delta W_ik] = 0, {init} init",
                        act,
                        "mse",
                        pred,
                        "zero",
                        "extension",
                        _net_dict(cfg),
                    ),
                    run_w,
                )
            )
    return rows


# ---------------------------------------------------------------------- optimizers (C6)


def _optimizer_prediction(act: str, loss: str, quantity: str, optimizer: str) -> Prediction:
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
    from empirics.montecarlo.sampler import NetConfig
    from empirics.stats import SignTest

    rows: list[_Row] = []
    for act in ("relu", "gelu", "silu", "tanh"):
        for loss in ("mse", "cross_entropy"):
            cfg = NetConfig(
                activation=act,
                loss=loss,
                d_in=16,
                widths=(64,),
                n_out=10,
                inputs_per_net=16,
                inputs="halfnormal",
            )
            for optimizer in OPTIMIZERS:
                for quantity in ("b", "W"):
                    if optimizer == "muon" and quantity == "b":
                        continue  # Muon takes matrices only: b gets Adam, the adam row
                    pred = _optimizer_prediction(act, loss, quantity, optimizer)
                    claimed = "zero" if parity(act) is not None else "negative"

                    def run(gen, alpha_, cfg=cfg, opt=optimizer, q=quantity):
                        est = estimate_optimizer_first_step(
                            cfg,
                            opt,
                            generator=gen,
                            n_networks=512,
                            test=SignTest(alpha=alpha_),
                            targets=(q,),
                        )
                        return _ledger_dict(est[q])

                    what = "biases" if quantity == "b" else "weights"
                    rows.append(
                        _Row(
                            _make(
                                f"C6.first_step.{quantity}.{optimizer}",
                                f"first {optimizer} step moves {what} "
                                + (
                                    "nowhere (symmetric control)"
                                    if claimed == "zero"
                                    else "negative"
                                )
                                + " (inputs >= 0)",
                                act,
                                loss,
                                pred,
                                claimed,
                                "control" if claimed == "zero" else "extension",
                                _net_dict(cfg, optimizer=optimizer, lr=1e-3),
                            ),
                            run,
                        )
                    )
    return rows


# ------------------------------------------------------------------------------ public API


def _remark_a2_rows() -> list[_Row]:
    from empirics.ledger.rows import remark_a2_rows  # Remark A.2 at init (theory.remark_a2)

    return [_Row(entry, run) for entry, run in remark_a2_rows()]


_BUILDERS = (_c1_depth_rows, _c2_depth_rows, _init_rows, _optimizer_rows, _remark_a2_rows)
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


def build(seed: int = 0, alpha: float = 1e-3) -> list[LedgerEntry]:
    """All rows with Monte Carlo columns (Bonferroni over these rows at total `alpha`)."""
    import torch

    from empirics.ledger.verify import row_seed  # the ledger's own per-row streams

    entries = depth_entries()
    runnable = [e for e in entries if runs_montecarlo(e)]
    alpha_row = alpha / max(len(runnable), 1)
    out = []
    for e in entries:
        mc = None
        if runs_montecarlo(e):
            gen = torch.Generator().manual_seed(row_seed(seed, e))
            mc = depth_montecarlo(e, generator=gen, alpha=alpha_row)
        out.append(replace(attach_montecarlo(e, mc), network=e.network))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.ledger.depth", description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=1e-3, help="total false-sign rate")
    ap.add_argument("--no-montecarlo", action="store_true")
    args = ap.parse_args(argv)
    if not 0 < args.alpha < 1:
        print(f"error: --alpha must be in (0, 1), got {args.alpha}", file=sys.stderr)
        return 2
    entries = depth_entries() if args.no_montecarlo else build(args.seed, args.alpha)
    print(format_table(entries))
    return 1 if any(e.verdict == "fail" for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
