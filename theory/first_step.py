"""First-step drift (claim C5): E[db_i] = -eta E[g(p_i)], E[dW_ik] = -eta E[x_k g(p_i)].

Bias: for p ~ N(0, s_p^2) and MSE, E[g] = K s^2 D(sigma, s_p). Weights: zero-mean sign-symmetric
x and w give exactly 0 (the flip (w, x) -> (-w, -x) keeps p); non-negative x with g >= 0 gives a
proved sign; anything else is left to the Monte Carlo. Library module.
"""

from __future__ import annotations

import sympy as sp

from theory.certify import sign_on_side
from theory.drift import parity, predict_drift_coefficient
from theory.gradient import K, drift_product, predict_hessian_factor, s
from theory.signs import Prediction, sign_negate, sign_product, sign_union, weakest

INPUTS: tuple[str, ...] = ("zero_mean", "nonnegative")


def _global_sign(activation: str) -> tuple[str, str]:
    """Sign of sigma*sigma' on the whole line (union of both sides) and the weakest method."""
    h = drift_product(activation)
    pos, neg = sign_on_side(h, "pos"), sign_on_side(h, "neg")
    if pos.sign == "undetermined" or neg.sign == "undetermined":
        return "undetermined", "numeric"
    return sign_union([pos.sign, neg.sign]), weakest(pos.method, neg.method)


def predict_bias_drift(activation: str, loss: str, std: float = 1.0) -> Prediction:
    """Sign of E[delta b_i] = -eta E[g(p_i)] for p ~ N(0, std^2); for MSE also its value
    per eta K s^2 (that is, -D(sigma, std))."""
    factor = predict_hessian_factor(loss)
    if loss == "mse":
        d = predict_drift_coefficient(activation, std)
        value = -d.value if d.value is not None else None
        return Prediction(
            value,
            sign_negate(d.sign),
            d.method,
            f"E[delta b_i] = -eta K s^2 D(sigma, {std:g}); value shown per eta K s^2; "
            f"D: {d.detail}",
            error=d.error,
        )
    if parity(activation) is not None:
        # g = s^2 sigma(p_i) sigma'(p_i) T(|sigma(p)|^2): odd in p_i while T sees only sigma^2.
        return Prediction(
            sp.Integer(0),
            "zero",
            "proved",
            f"{parity(activation)} sigma: p_i -> -p_i flips sigma sigma' and keeps sigma^2, so "
            "E[g] = 0 exactly (Gaussian V; for other laws the factor sees |sigma(p_i)| only when "
            "V is sign-symmetric)",
        )
    whole, method = _global_sign(activation)
    if whole in ("nonnegative", "nonpositive") and factor.sign == "positive":
        # sigma sigma' >= 0 everywhere and > 0 on a set of positive Gaussian mass (p > 0 side).
        pos = sign_on_side(drift_product(activation), "pos")
        strict = pos.sign in ("positive", "negative")
        sign = pos.sign if strict else whole
        return Prediction(
            None,
            sign_negate(sign),
            weakest(method, factor.method),
            f"sigma*sigma' is {whole} on the whole line ({pos.sign} on p > 0) and the Hessian "
            f"factor is {factor.sign}, so E[g] has that sign; value left to the Monte Carlo",
        )
    return Prediction(
        None,
        "undetermined",
        "numeric",
        f"sigma*sigma' is {whole} on the line: the sign of E[sigma sigma' T] depends on how the "
        "loss factor T weights the two signs; Monte Carlo only",
    )


def predict_weight_drift(activation: str, loss: str, inputs: str) -> Prediction:
    """Sign of E[delta W_ik] = -eta E[x_k g(p_i)] for zero-mean or non-negative inputs x."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    factor = predict_hessian_factor(loss)
    if inputs == "zero_mean":
        return Prediction(
            sp.Integer(0),
            "zero",
            "proved",
            "x and W sign-symmetric and independent: (W, x) -> (-W, -x) keeps every "
            "p_j = w_j.x + b_j and flips x_k, so E[x_k g(p)] = -E[x_k g(p)] = 0 for every "
            "activation and loss",
        )
    whole, method = _global_sign(activation)
    if whole in ("nonnegative", "nonpositive", "zero") and factor.sign in ("positive", "zero"):
        pos = sign_on_side(drift_product(activation), "pos")
        g_sign = sign_product(pos.sign if pos.sign != "undetermined" else whole, factor.sign)
        # x_k >= 0 and g of one sign; strict when P(x_k > 0, p_i > 0) > 0 (generic inputs).
        sign = sign_negate(g_sign if whole != "zero" else "zero")
        return Prediction(
            None,
            sign,
            weakest(method, factor.method),
            f"x_k >= 0 and g = (factor {factor.sign}) * sigma sigma' ({whole}) on the whole line: "
            "E[x_k g] has g's sign, strict when x_k > 0 and p_i > 0 together have positive "
            "probability",
        )
    return Prediction(
        None,
        "undetermined",
        "numeric",
        f"sigma*sigma' is {whole}: E[x_k g] = E[g] E[x_k] + Cov(x_k, g) has no sign from theory "
        "alone; Monte Carlo only",
    )


def bias_drift_formula() -> sp.Expr:
    """E[delta b_i] / eta for MSE as a formula in K, s and D."""
    return -K * s**2 * sp.Symbol("D")
