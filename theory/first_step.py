"""First-step drift (claim C5): E[db_i] = -eta E[g(p_i)], E[dW_ik] = -eta E[x_k g(p_i)].

Bias: for p ~ N(0, s_p^2) and MSE, E[g] = K s^2 D(sigma, s_p). Weights: zero-mean sign-symmetric
x and w give exactly 0 (the flip (w, x) -> (-w, -x) keeps p); non-negative x with g >= 0 gives a
proved sign; anything else is left to the Monte Carlo. Library module.
"""

from __future__ import annotations

import sympy as sp

from theory.certify import interval_sign, sign_on_side
from theory.drift import parity, predict_drift_coefficient
from theory.gradient import K, drift_product, predict_hessian_factor, s
from theory.registry import x
from theory.signs import Prediction, sign_negate, sign_product, sign_union, weakest

INPUTS: tuple[str, ...] = ("zero_mean", "nonnegative")


def _global_sign(activation: str) -> tuple[str, str]:
    """Sign of sigma*sigma' on the whole line (union of both sides) and the weakest method."""
    h = drift_product(activation)
    pos, neg = sign_on_side(h, "pos"), sign_on_side(h, "neg")
    if pos.sign == "undetermined" or neg.sign == "undetermined":
        return "undetermined", "numeric"
    return sign_union([pos.sign, neg.sign]), weakest(pos.method, neg.method)


def _strict_somewhere(h: sp.Expr, weak: str) -> bool:
    """Whether h is certified strictly of the weak sign's direction on some interval (so on a set
    of positive Gaussian mass), by interval enclosures on short intervals."""
    want = {"nonnegative": "positive", "nonpositive": "negative"}.get(weak)
    if want is None:
        return False
    for lo in (0.25, 0.5, 1.0, 2.0, -2.0, -1.0, -0.5):
        if interval_sign(h, lo, lo + 0.125) == want:
            return True
    return False


def _strengthen(h: sp.Expr, sign: str, method: str) -> tuple[str, str]:
    if sign in ("nonnegative", "nonpositive") and _strict_somewhere(h, sign):
        return ("positive" if sign == "nonnegative" else "negative"), weakest(method, "certified")
    return sign, method


def predict_symmetric_mean(activation: str) -> Prediction:
    """Sign of E[sigma(p) sigma'(p)] for every symmetric law of p (Gaussian, or w.x + b with
    sign-symmetric w and b): E[h(p)] = E[(h(|p|) + h(-|p|)) / 2], so the sign of
    h(x) + h(-x) = (sigma(x)^2 - sigma(-x)^2)' / 2 on x > 0 decides it."""
    h = drift_product(activation)
    v = sp.piecewise_fold(h + h.subs(x, -x))
    # sympy only: certifying v costs tens of seconds for clipped transcendental activations, and
    # the caller falls back on D's sign (Gaussian scale mixtures) which is already established.
    side = sign_on_side(v, "pos", certify=False)
    sign, method = _strengthen(v, side.sign, side.method)
    return Prediction(
        None,
        sign,
        method if sign != "undetermined" else "numeric",
        f"h(x) + h(-x) on x > 0 with h = sigma sigma': {side.detail}",
        side.pieces,
    )


def predict_bias_drift(activation: str, loss: str, std: float = 1.0) -> Prediction:
    """Sign of E[delta b_i] = -eta E[g(p_i)] for a symmetric law of p_i (p ~ N(0, std^2) for the
    value); for MSE the value is per eta K s^2, i.e. -D(sigma, std)."""
    factor = predict_hessian_factor(loss)
    if loss == "mse":
        sym = predict_symmetric_mean(activation)
        d = predict_drift_coefficient(activation, std)
        sign, method, how = sym.sign, sym.method, sym.detail
        if sign == "undetermined":
            # Stein's form has the sign of sigma(x)^2 - sigma(-x)^2 for every s, so the sign holds
            # for any Gaussian scale mixture of p (p | x ~ N(0, s^2 |x|^2 + s_b^2)); an integral
            # at one s says nothing beyond that s.
            scope = "every Gaussian scale mixture" if "Stein form" in d.detail else f"N(0, {std:g})"
            sign, method, how = d.sign, d.method, f"p ~ {scope} only: {d.detail}"
        value = -d.value if d.value is not None else None
        return Prediction(
            value,
            sign_negate(sign),
            method,
            f"E[delta b_i] = -eta K s^2 E[sigma sigma'(p)] (= -eta K s^2 D(sigma, {std:g}) for "
            f"Gaussian p; value shown per eta K s^2); {how}",
            error=d.error,
        )
    if parity(activation) is not None:
        # g = s^2 sigma(p_i) sigma'(p_i) T(|sigma(p)|^2): odd in p_i while T sees only sigma^2.
        return Prediction(
            sp.Integer(0),
            "zero",
            "proved",
            f"{parity(activation)} sigma: p_i -> -p_i flips sigma sigma' and keeps sigma^2, so "
            "E[g] = 0 exactly for symmetric p (Gaussian V; other sign-symmetric V: the factor "
            "sees |sigma(p_i)| only)",
        )
    whole, method = _global_sign(activation)
    if whole in ("nonnegative", "nonpositive") and factor.sign == "positive":
        sign, method = _strengthen(drift_product(activation), whole, method)
        return Prediction(
            None,
            sign_negate(sign),
            weakest(method, factor.method),
            f"sigma*sigma' is {whole} on the whole line (strict on an interval: "
            f"{sign != whole}) and the Hessian factor is {factor.sign}, so E[g] has that sign; "
            "value left to the Monte Carlo",
        )
    return Prediction(
        None,
        "undetermined",
        "numeric",
        f"sigma*sigma' is {whole} on the line: the sign of E[sigma sigma' T] depends on how the "
        "loss factor T (which sees sigma(p_i)^2) weights the two signs; Monte Carlo only",
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
            "activation; "
            + (
                "g does not involve the target y for this loss, so labels may depend on x"
                if loss in ("mse", "cross_entropy")
                else "this loss's Hessian may involve y: the argument needs y independent of x"
            ),
        )
    whole, method = _global_sign(activation)
    if whole in ("nonnegative", "nonpositive", "zero") and factor.sign in ("positive", "zero"):
        g_sign, method = _strengthen(drift_product(activation), whole, method)
        g_sign = sign_product(g_sign, factor.sign)
        # x_k >= 0 and g of one sign; strict when P(x_k > 0, p_i > 0) > 0 (generic inputs).
        return Prediction(
            None,
            sign_negate(g_sign),
            weakest(method, factor.method),
            f"x_k >= 0 and g = (factor {factor.sign}) * sigma sigma' ({whole}) on the whole line: "
            "E[x_k g] has g's sign, strict when g is strict on an interval that p_i reaches "
            "with x_k > 0 (generic inputs)",
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
