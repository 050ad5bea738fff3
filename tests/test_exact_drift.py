"""Closed forms of D(sigma, s) (Gaussian-Phi rules) and the rigorous interval quadrature."""

from __future__ import annotations

import math

import mpmath
import pytest
import sympy as sp

from theory.drift import _closed_form_gap, derive_drift_with_method, drift_enclosure
from theory.gauss_phi import gaussian_expectation, verify_rules
from theory.gradient import drift_product, s
from theory.interval_quad import gaussian_integral_enclosure
from theory.registry import x


def test_every_rule_is_a_sympy_identity():
    assert all(verify_rules().values()), verify_rules()


def test_gelu_closed_form():
    exact, how = derive_drift_with_method("gelu")
    known = s**2 * (2 * s**2 + 3) / (2 * sp.sqrt(2 * sp.pi) * (1 + s**2) ** sp.Rational(3, 2))
    assert sp.simplify(exact - known) == 0, how
    assert sp.simplify(exact.subs(s, 1) - 5 / (8 * sp.sqrt(sp.pi))) == 0
    # Independent check at a scale the derivation did not compare at.
    with mpmath.workdps(30):
        f = sp.lambdify(x, drift_product("gelu"), "mpmath")
        q = mpmath.quad(
            lambda v: f(v) * mpmath.npdf(v, 0, mpmath.mpf("0.8")), [-mpmath.inf, 0, mpmath.inf]
        )
    assert abs(float(q) - float(exact.subs(s, sp.Rational(4, 5)))) < 1e-15


def test_closed_form_check_has_teeth():
    # A form off by 0.1 % at s = 1 must be rejected by the comparison that guards it.
    exact, _ = derive_drift_with_method("gelu")
    assert _closed_form_gap(drift_product("gelu"), exact * (1 + s / 1000), "1") > 1e-5


def test_unsupported_forms_give_none():
    assert gaussian_expectation(drift_product("silu"), x, s) is None  # sigmoid: no rule
    assert gaussian_expectation(drift_product("relu"), x, s) is None  # Piecewise: sympy's job


def test_enclosure_is_rigorous_and_tight():
    box = gaussian_integral_enclosure(drift_product("relu"), 1.0)
    exact = 1 / math.sqrt(2 * math.pi)
    assert box.lo <= exact <= box.hi and box.hi - box.lo < 1e-9
    # Teeth: shifting the integrand by 1e-6 moves the interval off the exact value.
    shifted = gaussian_integral_enclosure(drift_product("relu") + sp.Rational(1, 10**6), 1.0)
    assert not shifted.lo <= exact <= shifted.hi


@pytest.mark.slow
def test_gelu2_closed_form_and_silu_enclosure():
    exact, _ = derive_drift_with_method("gelu2")
    assert exact is not None and exact.has(sp.atan)
    assert _closed_form_gap(drift_product("gelu2"), exact, "1.7") < 1e-25
    box = drift_enclosure("silu", 1.0)
    assert 0 < box.lo and box.hi - box.lo < 1e-9
