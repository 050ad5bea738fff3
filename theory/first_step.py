"""First-step drift (claim C5): E[db_i] = -eta E[g(p_i)], E[dW_ik] = -eta E[x_k g(p_i)].

The unit flip: replacing (row i of W_l, b_i) by its negative sends p_i -> -p_i and leaves the
layer's input x, every other unit and the layers above unchanged; with sign-symmetric init the
law is unchanged. It gives E[x_k g] = 0 exactly for odd or even sigma (any loss, any inputs)
and, under MSE, the sign of E[x_k g] for every non-negative input law. Library module.
"""

from __future__ import annotations

import sympy as sp

from theory.certify import interval_sign, sign_on_side
from theory.drift import drift_sign_all_scales, parity, predict_drift_coefficient
from theory.gradient import drift_product, predict_hessian_factor
from theory.registry import Activation, as_activation, x
from theory.signs import Prediction, sign_negate, sign_product, sign_union, weakest

# Classes of input laws the predictions distinguish (the Monte Carlo's laws are its INPUT_LAWS):
# sign-symmetric (x and -x have one law: what the flip (W, x) -> (-W, -x) needs; a zero mean
# alone is not enough) or non-negative (x_k >= 0).
INPUT_CLASSES: tuple[str, ...] = ("sign_symmetric", "nonnegative")
# Init laws of the analysed layer's (row, bias): Gaussian (p | x is then N(0, s^2|x|^2 + s_b^2)),
# or any sign-symmetric i.i.d. law (uniform, Rademacher, ...).
INIT_CLASSES: tuple[str, ...] = ("gaussian", "symmetric")

FLIP_ODD_EVEN = (
    "unit flip: for even sigma, (row i of W_l, b_i) -> -(row i, b_i) sends p_i -> -p_i, keeps "
    "sigma(p_i), every other unit and everything above, and flips sigma'(p_i), hence g = "
    "sigma'(p_i) <dl/dh_i>; for odd sigma flip column i of the layer above as well (then "
    "W_{l+1}[:, i] sigma(p_i) is unchanged and dl/dh_i flips). Sign-symmetric init leaves the law "
    "unchanged and x (the layer's input) does not move, so E[x_k g] = -E[x_k g] = 0 and E[g] = 0 "
    "exactly, for every loss, input law and label law"
)


def _global_sign(act: Activation) -> tuple[str, str]:
    """Sign of sigma*sigma' on the whole line (union of both sides) and the weakest method."""
    h = drift_product(act)
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


def predict_symmetric_mean(activation: Activation | str) -> Prediction:
    """Sign of E[sigma(p) sigma'(p)] for every symmetric law of p (Gaussian, or w.x + b with
    sign-symmetric w and b): E[h(p)] = E[(h(|p|) + h(-|p|)) / 2], so the sign of
    h(x) + h(-x) = (sigma(x)^2 - sigma(-x)^2)' / 2 on x > 0 decides it."""
    h = drift_product(as_activation(activation))
    v = sp.piecewise_fold(h + h.subs(x, -x))
    # The fold E[h(p)] = E[(h(|p|) + h(-|p|)) / 2] is Lemma S of docs/proofs.md: an argument.
    # sympy only: certifying v costs tens of seconds for clipped transcendental activations, and
    # the caller falls back on D's sign (Gaussian scale mixtures) which is already established.
    side = sign_on_side(v, "pos", certify=False)
    sign, method = _strengthen(v, side.sign, side.method)
    return Prediction(
        None,
        sign,
        weakest(method, "argument") if sign != "undetermined" else "numeric",
        f"h(x) + h(-x) on x > 0 with h = sigma sigma' (Lemma S): {side.detail}",
        side.pieces,
    )


def predict_bias_drift(activation: Activation | str, loss: str, std: float = 1.0) -> Prediction:
    """Sign of E[delta b_i] = -eta E[g(p_i)] for a symmetric law of p_i (p ~ N(0, std^2) for the
    value); for MSE the value is per eta K s^2, i.e. -D(sigma, std)."""
    act = as_activation(activation)
    factor = predict_hessian_factor(loss)
    if loss == "mse":
        sym = predict_symmetric_mean(act)
        d = predict_drift_coefficient(act, std)
        sign, method, how = sym.sign, sym.method, sym.detail
        if sign == "undetermined":
            # Stein's form has the sign of sigma(x)^2 - sigma(-x)^2 for every s, so the sign holds
            # for any Gaussian scale mixture of p (p | x ~ N(0, s^2 |x|^2 + s_b^2)); an integral
            # at one s says nothing beyond that s.
            every = drift_sign_all_scales(act)
            if every.sign != "undetermined":
                sign, method = every.sign, weakest(every.method, "argument")
                how = f"p ~ every Gaussian scale mixture: sign of D for every s: {every.detail}"
            else:
                sign, method, how = d.sign, d.method, f"p ~ N(0, {std:g}) only: {d.detail}"
        value = -d.value if d.value is not None else None
        return Prediction(
            value,
            sign_negate(sign),
            method,
            f"E[delta b_i] = -eta K s^2 E[sigma sigma'(p)] (= -eta K s^2 D(sigma, {std:g}) for "
            f"Gaussian p; value shown per eta K s^2); {how}",
            error=d.error,
        )
    if parity(act) is not None:
        return Prediction(
            sp.Integer(0), "zero", "argument", f"{parity(act)} sigma; {FLIP_ODD_EVEN}"
        )
    whole, method = _global_sign(act)
    if whole in ("nonnegative", "nonpositive") and factor.sign == "positive":
        sign, method = _strengthen(drift_product(act), whole, method)
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


def predict_weight_drift(
    activation: Activation | str, loss: str, inputs: str, init: str = "gaussian"
) -> Prediction:
    """Sign of E[delta W_ik] = -eta E[x_k g(p_i)] for sign-symmetric or non-negative inputs x.

    Non-negative inputs (x_k >= 0, x independent of layer l's weights): odd/even sigma give 0
    exactly (FLIP_ODD_EVEN). Under MSE, E[g | p, x] = alpha sigma(p_i) sigma'(p_i) with alpha > 0
    (the readout's K s^2, or theory.depth's alpha_l with ReLU layers above), so
    E[x_k g] = alpha E[x_k h(p_i)], h = sigma sigma'. Gaussian init of (row i, b_i): p_i | x ~
    N(0, s^2 |x|^2 + s_b^2), so E[x_k g] = alpha E[x_k D(sigma, s(x))] has the sign of D for
    every s. Sign-symmetric init: the unit flip gives E[x_k h(p_i)] = E[x_k (h(p_i) + h(-p_i))/2]
    and the sign of h(x) + h(-x) on x > 0 decides. Cross-entropy: sign only where sigma sigma' has
    one sign on the whole line (the loss factor T >= 0 then cannot change it)."""
    if inputs not in INPUT_CLASSES:
        raise ValueError(f"inputs must be one of {', '.join(INPUT_CLASSES)}, got {inputs!r}")
    if init not in INIT_CLASSES:
        raise ValueError(f"init must be one of {', '.join(INIT_CLASSES)}, got {init!r}")
    act = as_activation(activation)
    factor = predict_hessian_factor(loss)
    if inputs == "sign_symmetric":
        return Prediction(
            sp.Integer(0),
            "zero",
            "argument",
            "x and W sign-symmetric and independent: (W, x) -> (-W, -x) keeps every "
            "p_j = w_j.x + b_j and flips x_k, so E[x_k g(p)] = -E[x_k g(p)] = 0 for every "
            "activation; "
            + (
                "g does not involve the target y for this loss, so labels may depend on x"
                if loss in ("mse", "cross_entropy")
                else "this loss's Hessian may involve y: the argument needs y independent of x"
            ),
        )
    if parity(act) is not None:
        return Prediction(
            sp.Integer(0), "zero", "argument", f"{parity(act)} sigma; {FLIP_ODD_EVEN}"
        )
    if loss == "mse":
        flip = _mse_nonneg_weight_sign(act, init)
        if flip is not None:
            return flip
    whole, method = _global_sign(act)
    if whole in ("nonnegative", "nonpositive", "zero") and factor.sign in ("positive", "zero"):
        g_sign, method = _strengthen(drift_product(act), whole, method)
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


def _mse_nonneg_weight_sign(act: Activation, init: str) -> Prediction | None:
    """The MSE sign of E[delta W_ik] for non-negative inputs through the unit flip, or None."""
    if init == "gaussian":
        every = drift_sign_all_scales(act)
        if every.sign in ("positive", "negative"):
            return Prediction(
                None,
                sign_negate(every.sign),
                weakest(every.method, "argument"),
                "x_k >= 0; MSE: E[g | p, x] = alpha sigma sigma'(p_i); Gaussian (row i, b_i): "
                "p_i | x ~ N(0, s^2|x|^2 + s_b^2), so E[x_k g] = alpha E[x_k D(sigma, s(x))] with "
                f"D(sigma, s) {every.sign} for every s ({every.detail}); strict when "
                "P(x_k > 0) > 0",
            )
        return None
    sym = predict_symmetric_mean(act)
    if sym.sign in ("positive", "negative"):
        return Prediction(
            None,
            sign_negate(sym.sign),
            weakest(sym.method, "argument"),
            "x_k >= 0; MSE: E[g | p, x] = alpha sigma sigma'(p_i); unit flip (sign-symmetric "
            "row and bias): E[x_k h(p_i)] = E[x_k (h(|p_i|) + h(-|p_i|)) / 2] with "
            f"{sym.detail}; strict when P(x_k > 0) > 0",
        )
    return None
