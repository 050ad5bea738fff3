"""Conditional expected gradient g(p) = E_V[dl/dp_i | p] for z = V sigma(p) (claims C2, C3).

MSE: moment expansion over V (exact for any zero-mean i.i.d. law, only the variance enters).
Cross-entropy and other losses: Stein (Gaussian V) or the zero-bias transform (any zero-mean V),
giving g = s^2 sigma sigma' * (a Hessian factor >= 0 when the diagonal of d^2 l / dz^2 is >= 0).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from theory.certify import sign_on_side
from theory.registry import Activation, as_activation, get_loss, register_cache
from theory.signs import Prediction, sign_product, sympy_sign, weakest

s = sp.Symbol("s", positive=True)  # standard deviation of each entry of V
K = sp.Symbol("K", positive=True, integer=True)  # number of outputs
T = sp.Symbol("T", nonnegative=True)  # E[tr Hessian] factor of a non-MSE loss
sigma = sp.Function("sigma")
# Higher moments of V's law; they would appear in a result only if it depends on more than s^2.
m3, m4 = sp.symbols("m3 m4", real=True)


def drift_product(activation: Activation | str) -> sp.Expr:
    """sigma(x) sigma'(x), whose sign is the sign of g (times a positive factor)."""
    act = as_activation(activation)
    return sp.piecewise_fold(act.expr * act.derivative)


def expect_over_weights(expr: sp.Expr, weights: list[sp.Symbol]) -> sp.Expr:
    """E over i.i.d. zero-mean weights of a polynomial in them: E[w]=0, E[w^2]=s^2, E[w^3]=m3,
    E[w^4]=m4 (higher moments are refused: they never arise in the derivations here)."""
    moments = {0: sp.Integer(1), 1: sp.Integer(0), 2: s**2, 3: m3, 4: m4}
    poly = sp.Poly(sp.expand(expr), *weights)
    total = sp.Integer(0)
    for exps, coeff in poly.terms():
        term = coeff
        for e in exps:
            if e not in moments:
                raise ValueError(f"moment of order {e} needed; only orders <= 4 are supported")
            term *= moments[e]
        total += term
    return sp.expand(total)


@lru_cache(maxsize=16)
def derive_mse_expected_gradient(outputs: int = 2, width: int = 3) -> sp.Expr:
    """E_V[dl/dp_0 | p, y] for MSE with a generic sigma, V of shape (outputs, width), derived by
    expanding the loss in V and taking moments. Returns an expression in sigma(p0), sigma'(p0)."""
    p = sp.symbols(f"p0:{width}", real=True)
    v = [[sp.Symbol(f"V{k}_{j}", real=True) for j in range(width)] for k in range(outputs)]
    loss, zs, ys = get_loss("mse").expr(outputs)
    z_of_v = {zs[k]: sum(v[k][j] * sigma(p[j]) for j in range(width)) for k in range(outputs)}
    grad = sp.diff(loss.subs(z_of_v), p[0])
    return sp.simplify(expect_over_weights(grad, [w for row in v for w in row]))


def mse_closed_form() -> sp.Expr:
    """The claimed closed form K s^2 sigma(p) sigma'(p) in the generic sigma of p0."""
    p0 = sp.Symbol("p0", real=True)
    return K * s**2 * sigma(p0) * sp.Derivative(sigma(p0), p0)


def check_mse_formula(candidate: sp.Expr, outputs: int = 2, width: int = 3) -> bool:
    """Whether a candidate closed form (in K, s, sigma(p0)) equals the moment derivation."""
    derived = derive_mse_expected_gradient(outputs, width)
    diff = sp.simplify(derived - candidate.subs(K, outputs).doit())
    return diff == 0


def hessian_diagonal(loss: str, outputs: int) -> list[sp.Expr]:
    """d^2 l / dz_k^2 for k < outputs; a one-hot target is taken as class 0 (the diagonal of
    softmax cross-entropy does not depend on which class, the test checks that)."""
    spec = get_loss(loss)
    expr, zs, ys = spec.expr(outputs)
    if spec.target == "onehot":
        expr = expr.subs({y: (1 if i == 0 else 0) for i, y in enumerate(ys)})
    return [sp.diff(expr, z, 2) for z in zs]


def _positive_exp_form(e: sp.Expr, zs: tuple[sp.Symbol, ...]) -> sp.Expr:
    # Sympy decides signs of rational functions of exp(z_k) once exp(z_k) is a positive symbol.
    us = {sp.exp(z): sp.Symbol(f"u{i}", positive=True) for i, z in enumerate(zs)}
    return sp.factor(sp.together(e.subs(us)))


@lru_cache(maxsize=32)
def predict_hessian_factor(loss: str, outputs: int = 3) -> Prediction:
    """Sign of every diagonal entry of the loss Hessian in z (what Stein / zero-bias needs)."""
    if loss == "mse":
        return Prediction(
            K * s**2, "positive", "sympy", "MSE: d^2 l/dz_k^2 = 1, factor K s^2 exactly"
        )
    _, zs, _ = get_loss(loss).expr(outputs)
    signs = []
    for d in hessian_diagonal(loss, outputs):
        sg = sympy_sign(d)
        if sg == "undetermined":
            sg = sympy_sign(sp.simplify(d))
        if sg == "undetermined":
            sg = sympy_sign(_positive_exp_form(d, zs))
        signs.append(sg)
    total = signs[0]
    for sg in signs[1:]:
        total = (
            total
            if total == sg
            else (
                "nonnegative"
                if {total, sg} <= {"positive", "nonnegative", "zero"}
                else "undetermined"
            )
        )
    trace = sp.simplify(sum(hessian_diagonal(loss, outputs)))
    detail = f"diagonal of the z-Hessian (K = {outputs}) has sign {total}; tr = {trace}"
    if loss == "cross_entropy":
        at_zero = sp.simplify(trace.subs({z: 0 for z in zs}))
        detail += (
            f"; tr = 1 - sum(pi_k^2) lies in (0, 1 - 1/K] (Cauchy-Schwarz), equal to {at_zero} "
            "at zero logits"
        )
    return Prediction(trace, total, "sympy" if total != "undetermined" else "numeric", detail)


register_cache(predict_hessian_factor.cache_clear)  # keyed by loss name: cleared on registration


def derive_expected_gradient(activation: Activation | str, loss: str = "mse") -> sp.Expr:
    """g(p) in x (= p_i) with symbols K, s (and T, the Hessian factor, for non-MSE losses)."""
    h = drift_product(as_activation(activation))
    if loss == "mse":
        return K * s**2 * h
    get_loss(loss)  # unknown names fail here with the list of valid ones
    return s**2 * T * h


_INIT_NOTE = {
    "mse": (
        "exact for any i.i.d. zero-mean V with variance s^2 (moment expansion: only E[V^2] "
        "enters, so PyTorch's uniform init is covered)"
    ),
    "other": (
        "Gaussian V: Stein gives g = s^2 sigma sigma' E[tr H(z)], z ~ N(0, s^2|sigma(p)|^2 I); any "
        "zero-mean V of finite variance (uniform included): the zero-bias transform gives "
        "g = s^2 sigma sigma' sum_k E[H_kk(z'_k)], each term at its own perturbed point z'_k, so "
        "the sign statement holds and, for softmax cross-entropy, 0 < factor <= K/4 is proved "
        "(H_kk = pi_k (1 - pi_k) <= 1/4); the sharper Gaussian bound 1 - 1/K is not proved for "
        "non-Gaussian V (it equals K/4 only at K = 2), and the factor's value is left to the "
        "Monte Carlo"
    ),
}


def predict_gradient_sign(
    activation: Activation | str, loss: str, side: str, outputs: int = 3
) -> Prediction:
    """Sign of g on p > 0 (side 'pos') or p < 0 ('neg'): sign(sigma sigma') x sign(factor)."""
    act = as_activation(activation)
    h = drift_product(act)
    local = sign_on_side(h, side)
    factor = predict_hessian_factor(loss, outputs)
    total = sign_product(local.sign, factor.sign)
    pieces = local.pieces
    if factor.sign != "positive":
        # A factor that may vanish turns strict pieces into weak ones.
        pieces = tuple(type(p)(p.lo, p.hi, sign_product(p.sign, factor.sign)) for p in pieces)
    method = weakest(local.method, factor.method)
    note = _INIT_NOTE["mse" if loss == "mse" else "other"]
    detail = f"sigma*sigma': {local.detail}; factor: {factor.detail}; {note}"
    value = derive_expected_gradient(act, loss)
    return Prediction(value, total, method, detail, pieces)
