"""Theory checks against constants computed independently here, the C1 closed forms against an
exact enumeration, and caught wrong derivations (the ledger and verify CLI: test_verify.py).

Run: `.venv/bin/python -m pytest -q tests/test_theory.py`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import sympy as sp

from theory import registry
from theory.certify import interval_sign, sign_on_side
from theory.drift import (
    continuity_proved,
    derive_drift_coefficient,
    parity,
    predict_drift_coefficient,
)
from theory.effective import EffectiveConfig, derive_gate_moments, expected_norm, predict_c1
from theory.first_step import predict_bias_drift, predict_weight_drift
from theory.gradient import (
    K,
    check_mse_formula,
    derive_mse_expected_gradient,
    mse_closed_form,
    predict_gradient_sign,
    predict_hessian_factor,
    s,
)
from theory.registry import x
from theory.signs import Prediction, sign_product

SQRT2PI = math.sqrt(2 * math.pi)


def _phi(v: float, std: float = 1.0) -> float:
    return math.exp(-(v**2) / (2 * std**2)) / (std * SQRT2PI)


def _gelu(v: float) -> float:
    return v * 0.5 * (1 + math.erf(v / math.sqrt(2)))


def _gelu_prime(v: float) -> float:
    return 0.5 * (1 + math.erf(v / math.sqrt(2))) + v * _phi(v)


def _silu(v: float) -> float:
    return v * scipy.special.expit(v)


def _silu_prime(v: float) -> float:
    sg = scipy.special.expit(v)
    return sg * (1 + v * (1 - sg))


def _quad_drift(f, fp, std: float = 1.0) -> float:
    val, _ = scipy.integrate.quad(lambda v: f(v) * fp(v) * _phi(v, std), -np.inf, np.inf)
    return val


@pytest.fixture
def user_act():
    names: list[str] = []

    def make(name: str, text: str) -> str:
        registry.register_activation(name, text)
        names.append(name)
        return name

    yield make
    for n in names:
        registry.unregister_activation(n)


# --------------------------------------------------------------------------- known constants


@pytest.mark.parametrize("std", [0.5, 1.0, 2.0])
def test_relu_drift_is_s_over_sqrt_2pi(std):
    exact = derive_drift_coefficient("relu")
    assert float(exact.subs(s, std)) == pytest.approx(std / SQRT2PI, rel=1e-14)
    pred = predict_drift_coefficient("relu", std)
    assert (pred.sign, pred.method) == ("positive", "sympy")


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.5])
def test_leaky_relu_drift(slope):
    spec = f"leaky_relu:slope={slope}"
    exact = derive_drift_coefficient(spec)
    assert float(exact.subs(s, 1.3)) == pytest.approx((1 - slope**2) * 1.3 / SQRT2PI, rel=1e-12)
    assert predict_drift_coefficient(spec).sign == "positive"


def test_relu2_drift():
    # E[2 p^3; p > 0] = 2 * 2 s^3 / sqrt(2 pi).
    exact = derive_drift_coefficient("relu2")
    assert float(exact.subs(s, 0.7)) == pytest.approx(4 * 0.7**3 / SQRT2PI, rel=1e-12)


def test_clipped_relu2_drift_against_quadrature():
    c = 15.0
    ref, _ = scipy.integrate.quad(lambda v: 2 * v**3 * _phi(v), 0, math.sqrt(c))
    assert float(predict_drift_coefficient("relu2_clip").value) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize(
    ("name", "f", "fp"), [("gelu", _gelu, _gelu_prime), ("silu", _silu, _silu_prime)]
)
def test_smooth_drift_against_independent_quadrature(name, f, fp):
    pred = predict_drift_coefficient(name)
    assert float(pred.value) == pytest.approx(_quad_drift(f, fp), rel=1e-9)
    # error: 0 for a closed form (GELU), a rigorous interval-quadrature bound otherwise (SiLU).
    assert pred.error < 1e-9 < abs(float(pred.value))
    # GELU: the closed form's sign (sympy). SiLU: Stein's form (Lemma St, an argument) with
    # sigma(x)^2 - sigma(-x)^2 > 0 on x > 0 decided by sympy.
    want = {"gelu": "sympy", "silu": "argument"}[name]
    assert (pred.sign, pred.method) == ("positive", want)
    # Stein: D = E[p sigma(p)^2] / 2 at s = 1.
    stein, _ = scipy.integrate.quad(lambda v: v * f(v) ** 2 * _phi(v), -np.inf, np.inf)
    assert float(pred.value) == pytest.approx(stein / 2, rel=1e-9)


def test_tanh_and_identity_are_exactly_symmetric():
    for name in ("tanh", "identity"):
        pred = predict_drift_coefficient(name)
        # Parity lemma (docs/proofs.md): a sympy identity plus a symmetry argument.
        assert pred.value == 0 and (pred.sign, pred.method) == ("zero", "argument")
    assert parity("tanh") == "odd"
    assert abs(_quad_drift(math.tanh, lambda v: 1 - math.tanh(v) ** 2)) < 1e-12


def test_parity_implies_zero_drift(user_act):
    odd = user_act("odd_cubic", "x**3 - 2*x")
    even = user_act("even_quartic", "x**4 + x**2")
    neither = user_act("skew_square", "x**2 + x")
    assert parity(odd) == "odd" and parity(even) == "even" and parity(neither) is None
    for name in (odd, even):
        assert predict_drift_coefficient(name).sign == "zero"
    # (x^2 + x)(2x + 1) = 2x^3 + 3x^2 + x has Gaussian mean 3 s^2.
    assert sp.simplify(derive_drift_coefficient(neither) - 3 * s**2) == 0
    assert parity("relu") is None and parity("gelu") is None


def test_negatively_biased_activation(user_act):
    name = user_act("neg_relu", "Min(x, 0)")
    pred = predict_drift_coefficient(name)
    assert pred.sign == "negative"
    assert float(pred.value) == pytest.approx(-1 / SQRT2PI, rel=1e-12)


def test_continuity_check():
    assert continuity_proved("relu2_clip") and continuity_proved("gelu2_clip")
    name = "step_test"
    registry.register_activation(name, "Piecewise((1, x > 0), (0, True))")
    try:
        assert not continuity_proved(name)
    finally:
        registry.unregister_activation(name)


# ------------------------------------------------------------------- expected gradient (C2/C3)


def test_mse_moment_derivation():
    derived = derive_mse_expected_gradient(outputs=3, width=3)
    # Only E[V^2] = s^2 enters: no third or fourth moment, so any zero-mean law (uniform) works.
    assert not derived.has(sp.Symbol("m3", real=True), sp.Symbol("m4", real=True))
    assert check_mse_formula(mse_closed_form(), outputs=3, width=3)


def test_flipped_or_scaled_mse_formula_is_caught():
    assert not check_mse_formula(-mse_closed_form())
    assert not check_mse_formula(2 * mse_closed_form())
    assert not check_mse_formula(mse_closed_form().subs(K, 1))  # the K factor matters


def test_cross_entropy_factor():
    pred = predict_hessian_factor("cross_entropy", 3)
    assert (pred.sign, pred.method) == ("positive", "sympy")
    for k in (2, 3):
        trace = predict_hessian_factor("cross_entropy", k).value
        zs = sorted(trace.free_symbols, key=str)
        assert sp.simplify(trace.subs({z: 0 for z in zs})) == sp.Rational(k - 1, k)
        # Away from zero logits the trace is smaller (1 - 1/K is the maximum).
        at = {z: v for z, v in zip(zs, [1.5, -0.3, 0.2, 0.9], strict=False)}
        assert 0 < float(trace.subs(at)) < (k - 1) / k
    assert predict_hessian_factor("cross_entropy", 1).sign == "zero"


def test_user_loss_factor_decides_the_sign():
    try:
        registry.register_loss("quartic_theory", "(z - y)**4 / 4")
        registry.register_loss("concave_theory", "-(z - y)**2")
        assert predict_hessian_factor("quartic_theory").sign == "nonnegative"
        assert predict_gradient_sign("relu", "quartic_theory", "pos").sign == "nonnegative"
        assert predict_gradient_sign("relu", "concave_theory", "pos").sign == "negative"
    finally:
        registry.LOSSES.pop("quartic_theory", None)
        registry.LOSSES.pop("concave_theory", None)


@pytest.mark.parametrize(
    ("name", "pos", "neg"),
    [
        ("relu", "positive", "zero"),
        ("leaky_relu", "positive", "negative"),
        ("tanh", "positive", "negative"),
        ("relu2", "positive", "zero"),
        ("relu2_clip", "nonnegative", "zero"),
    ],
)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_gradient_signs(name, pos, neg, loss):
    assert predict_gradient_sign(name, loss, "pos").sign == pos
    assert predict_gradient_sign(name, loss, "neg").sign == neg


def test_clipped_square_is_zero_above_the_clip():
    pred = predict_gradient_sign("relu2_clip", "mse", "pos")
    witnesses = {p.sign for p in pred.pieces}
    assert {"positive", "zero"} <= witnesses


def test_gelu_sign_change_located():
    root = scipy.optimize.brentq(_gelu_prime, -2.0, -0.1)  # gelu' = 0 near -0.7518
    pred = predict_gradient_sign("gelu", "mse", "neg")
    assert pred.sign == "undetermined" and pred.mixed and pred.method == "certified"
    pos = [p for p in pred.pieces if p.sign == "positive"]
    neg = [p for p in pred.pieces if p.sign == "negative"]
    assert max(p.hi for p in pos) <= root <= min(p.lo for p in neg)
    assert min(p.lo for p in neg) - max(p.hi for p in pos) < 1e-5


def test_interval_certification_of_user_functions():
    # log(1 + e^x)^2 - log(1 + e^-x)^2 > 0 on x > 0 is beyond sympy's assumptions: certified.
    u = sp.log(1 + sp.exp(x)) ** 2 - sp.log(1 + sp.exp(-x)) ** 2
    pred = sign_on_side(u, "pos")
    assert (pred.sign, pred.method) == ("positive", "certified")
    assert sign_on_side(-u, "pos").sign == "negative"
    # A function with roots at 1 and 3 on x > 0 is certified mixed, never given one sign.
    mixed = sign_on_side((x - 1) * (x - 3) * sp.exp(-x), "pos")
    assert mixed.sign == "undetermined" and mixed.mixed
    assert interval_sign(sp.erf(x) - 1, 0.5, 2.0) == "negative"


def test_sympy_limit_failure_is_undetermined_not_a_crash(user_act):
    # Found by the property suite: sympy's limit raises TypeError (comparing zoo) inside this
    # Piecewise. The sign on p < 0 must come back as a Prediction (any honest sign), not a crash.
    name = user_act("limit_breaker", "-2*x - 2*Max(x, 0) + exp(-x**2/2)/2")
    pred = predict_gradient_sign(name, "mse", "neg")
    assert pred.sign in (
        "positive",
        "nonnegative",
        "zero",
        "nonpositive",
        "negative",
        "undetermined",
    )


def test_sign_algebra():
    assert sign_product("nonnegative", "positive") == "nonnegative"
    assert sign_product("negative", "negative") == "positive"
    assert sign_product("undetermined", "zero") == "zero"
    with pytest.raises(ValueError, match="sign must be one of"):
        Prediction(0, "maybe", "sympy")


# ------------------------------------------------------------------------------------ C1


def _enumerate_c1(symmetric_bias: bool = True) -> tuple[np.ndarray, float, float]:
    """Exact expectations over all 2^16 sign patterns of a 2-2-2-2 ReLU net with weights +-a_k
    and biases +-beta_k (a sign-symmetric, non-Gaussian init), at one generic input."""
    a, beta, x_in = (0.8, 0.9, 1.1), (0.3, 0.37), np.array([0.7, -1.3])
    bits = np.array(list(itertools.product((-1.0, 1.0), repeat=16)))
    w1, b1 = bits[:, 0:4].reshape(-1, 2, 2) * a[0], bits[:, 4:6] * beta[0]
    w2, b2 = bits[:, 6:10].reshape(-1, 2, 2) * a[1], bits[:, 10:12] * beta[1]
    if not symmetric_bias:
        b2 = np.abs(b2)
    w3 = bits[:, 12:16].reshape(-1, 2, 2) * a[2]
    h1 = np.maximum(w1 @ x_in + b1, 0)  # (N, 2)
    p2 = np.einsum("nij,nj->ni", w2, h1) + b2
    assert np.abs(p2).min() > 1e-3  # no ties: every gate is decided
    v = np.einsum("nki,ni,nij->nkj", w3, (p2 > 0).astype(float), w2)  # (N, K, n_1)
    return (
        v.mean(0),
        float((v[:, :, 0] * v[:, :, 1]).sum(1).mean()),
        float((v[:, :, 0] ** 2).sum(1).mean()),
    )


def test_c1_closed_forms_match_exact_enumeration():
    mean, off, diag = _enumerate_c1()
    cfg = EffectiveConfig(widths=(2, 2, 2), outputs=2, weight_var=(0.64, 0.81, 1.21), layer=1)
    assert np.abs(mean).max() < 1e-15
    assert abs(off) < 1e-14
    assert diag == pytest.approx(float(expected_norm(cfg)), rel=1e-13)
    preds = predict_c1(cfg)
    assert preds["offdiag"].sign == "zero" and preds["offdiag"].method == "argument"
    assert preds["norm"].sign == "positive"


def test_c1_enumeration_has_teeth():
    # Biases that are not sign-symmetric break the flip argument: the off-diagonal is not 0.
    _, off, diag = _enumerate_c1(symmetric_bias=False)
    assert abs(off) > 1e-3
    cfg = EffectiveConfig(widths=(2, 2, 2), outputs=2, weight_var=(0.64, 0.81, 1.21), layer=1)
    assert abs(diag - float(expected_norm(cfg))) > 1e-3


def test_gate_base_case():
    assert derive_gate_moments() == (0, sp.Rational(1, 2))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"widths": (4,), "outputs": 2, "weight_var": (1.0,), "layer": 1}, "widths"),
        ({"widths": (4, 0), "outputs": 2, "weight_var": (1.0, 1.0), "layer": 1}, "widths"),
        ({"widths": (4, 8), "outputs": 2, "weight_var": (1.0,), "layer": 1}, "weight_var"),
        ({"widths": (4, 8), "outputs": 2, "weight_var": (1.0, -1.0), "layer": 1}, "weight_var"),
        ({"widths": (4, 8), "outputs": 2, "weight_var": (1.0, 1.0), "layer": 2}, "layer"),
        ({"widths": (4, 8), "outputs": 0, "weight_var": (1.0, 1.0), "layer": 1}, "outputs"),
    ],
)
def test_effective_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EffectiveConfig(**kwargs)


# ------------------------------------------------------------------------------------ C5


def test_first_step_predictions():
    assert predict_weight_drift("gelu", "cross_entropy", "sign_symmetric").sign == "zero"
    assert predict_weight_drift("relu", "mse", "nonnegative").sign == "negative"
    # The unit flip with Gaussian init: the sign of D for every s (leaky: (1 - a^2) s / sqrt(2 pi)).
    assert predict_weight_drift("leaky_relu", "mse", "nonnegative").sign == "negative"
    assert predict_weight_drift("leaky_relu", "cross_entropy", "nonnegative").sign == "undetermined"
    assert predict_bias_drift("relu", "cross_entropy").sign == "negative"
    assert predict_bias_drift("gelu", "mse").sign == "negative"
    assert predict_bias_drift("tanh", "mse").sign == "zero"
    assert predict_bias_drift("tanh", "cross_entropy").sign == "zero"
    with pytest.raises(ValueError, match="inputs must be one of"):
        predict_weight_drift("relu", "mse", "positive")
