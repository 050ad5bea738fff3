"""Exact Gaussian expectations of polynomials in p, Phi(p) and phi(p): E_{p~N(0,s^2)}[p^m O(p)^j
exp(-g p^2/2)] with O = Phi - 1/2, by integration by parts and differentiation in the slope of O.
Gives closed forms of D(sigma, s) for GELU, GELU^2 and any activation built from x, erf(x/sqrt 2)
and exp(-x^2/2). Library module; `verify_rules()` checks every rule used as a sympy identity.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

t = sp.Symbol("t", real=True)  # the standard normal variable, p = s t
_A = sp.Symbol("A", positive=True)  # slope of O(A t)
_C = sp.Symbol("C", positive=True)  # precision of the Gaussian weight exp(-C t^2 / 2)
_B = sp.Symbol("B", positive=True)  # integration variable for the slope
_ROOT2PI = sp.sqrt(2 * sp.pi)


def odd_phi(u: sp.Expr) -> sp.Expr:
    """O(u) = Phi(u) - 1/2 = erf(u / sqrt 2) / 2, odd, with O' = phi."""
    return sp.erf(u / sp.sqrt(2)) / 2


class Unsupported(ValueError):
    """The expectation is outside what the rules reduce to closed form."""


def _moment(m: int, c: sp.Expr) -> sp.Expr:
    """int t^m exp(-c t^2/2) dt / sqrt(2 pi) = (m-1)!! c^(-(m+1)/2) for even m, 0 for odd m."""
    if m % 2:
        return sp.Integer(0)
    return sp.factorial2(m - 1) * c ** (-sp.Rational(m + 1, 2))


@lru_cache(maxsize=256)
def _generic(m: int, j: int) -> sp.Expr:
    """H(m, j, A, C) = int t^m O(A t)^j exp(-C t^2/2) dt / sqrt(2 pi) in the symbols A, C."""
    if m < 0 or j < 0:
        raise Unsupported(f"negative order m={m}, j={j}")
    if (m + j) % 2:
        return sp.Integer(0)  # odd integrand: O is odd, the weight even
    if j == 0:
        return _moment(m, _C)
    if m % 2:
        # Integration by parts against t exp(-C t^2/2) (rule `ibp` of verify_rules); the boundary
        # term vanishes because the weight decays as a Gaussian (C > 0).
        first = (m - 1) * _generic(m - 2, j) if m >= 2 else sp.Integer(0)
        second = j * _A / _ROOT2PI * _generic(m - 1, j - 1).subs(_C, _C + _A**2)
        return sp.simplify((first + second) / _C)
    # m and j even, j >= 2: H vanishes at A = 0 (O(0) = 0) and dH/dA = j/sqrt(2 pi) H(m+1, j-1,
    # A, C + A^2) (rule `slope`; differentiation under the integral by dominated convergence).
    integrand = j / _ROOT2PI * _generic(m + 1, j - 1).subs({_A: _B, _C: _C + _B**2})
    return _slope_integral(sp.simplify(integrand), m, j)


_U = sp.Symbol("U", positive=True)


def _slope_integral(f: sp.Expr, m: int, j: int) -> sp.Expr:
    """int_0^A f(B) dB for f = B R(B^2, sqrt(C + 2 B^2)): with U = sqrt(C + 2 B^2) (so B dB =
    U dU / 2) the integrand is rational in U, which sympy integrates exactly (partial fractions,
    arctan). sympy's integrate in B directly runs for many minutes on the same integrals."""
    g = sp.simplify((f / _B).subs(_B, sp.sqrt((_U**2 - _C) / 2)) * _U / 2)
    if not g.is_rational_function(_U):
        raise Unsupported(f"slope integral of H({m}, {j}) is not rational after U = sqrt(C+2B^2)")
    primitive = sp.integrate(sp.apart(sp.cancel(g), _U), _U)
    if primitive.has(sp.Integral):
        raise Unsupported(f"sympy left the slope integral of H({m}, {j}) unevaluated")
    upper = sp.sqrt(_C + 2 * _A**2)
    return sp.simplify(primitive.subs(_U, upper) - primitive.subs(_U, sp.sqrt(_C)))


def gaussian_phi_moment(m: int, j: int, g: int, s: sp.Expr) -> sp.Expr:
    """E_{p ~ N(0, s^2)}[p^m O(p)^j exp(-g p^2 / 2)] (g >= 0) in closed form."""
    if g < 0:
        raise Unsupported("exp(+p^2/2) factors: the expectation may diverge")
    return s**m * _generic(m, j).subs({_A: s, _C: 1 + g * s**2})


def _to_monomials(
    expr: sp.Expr, x: sp.Symbol
) -> tuple[sp.Poly, sp.Symbol, sp.Symbol, sp.Symbol] | None:
    """Write expr as a polynomial in (x, O, E) with O = O(x), E = exp(-x^2/2), or None."""
    o_sym, e_sym = sp.Dummy("O"), sp.Dummy("E")
    root2 = sp.sqrt(2)

    def is_erf(e: sp.Basic) -> bool:
        return isinstance(e, (sp.erf, sp.erfc)) and sp.simplify(e.args[0] - x / root2) == 0

    def is_gauss(e: sp.Basic) -> bool:
        if not isinstance(e, sp.exp):
            return False
        k = sp.simplify(e.args[0] / (-(x**2) / 2))
        return k.is_Integer is True and k >= 0

    def erf_sub(e: sp.Basic) -> sp.Expr:
        return 2 * o_sym if isinstance(e, sp.erf) else 1 - 2 * o_sym

    def gauss_sub(e: sp.Basic) -> sp.Expr:
        return e_sym ** int(sp.simplify(e.args[0] / (-(x**2) / 2)))

    out = sp.expand(expr)
    out = out.replace(is_erf, erf_sub)
    out = sp.expand(sp.powsimp(out, combine="exp"))
    out = out.replace(is_gauss, gauss_sub)
    out = sp.expand(out)
    try:
        poly = sp.Poly(out, x, o_sym, e_sym)
    except sp.PolynomialError:
        return None
    if any(c.has(x) for c in poly.coeffs()):
        return None
    return poly, x, o_sym, e_sym


def gaussian_expectation(expr: sp.Expr, x: sp.Symbol, s: sp.Expr) -> sp.Expr | None:
    """E_{p~N(0,s^2)}[expr(p)] in closed form for expr polynomial in x, erf(x/sqrt 2) and
    exp(-k x^2/2) (k >= 0 integer); None when expr is not of that form or a step is unsupported."""
    if expr.has(sp.Piecewise):
        return None
    converted = _to_monomials(expr, x)
    if converted is None:
        return None
    poly, *_ = converted
    total = sp.Integer(0)
    try:
        for (m, j, g), coeff in poly.terms():
            total += coeff * gaussian_phi_moment(m, j, g, s)
    except Unsupported:
        return None
    return sp.simplify(total)


def verify_rules() -> dict[str, bool]:
    """Every rule `_generic` uses, checked by sympy with symbolic orders m, j (True = identity):
    ibp: d/dt[t^(m-1) O^j w] = (m-1) t^(m-2) O^j w - C t^m O^j w + j A t^(m-1) O^(j-1) phi(At) w
         for w = exp(-C t^2/2); slope: d/dA O(A t)^j = j t O^(j-1) phi(A t); merge: phi(A t) w
         = exp(-(C + A^2) t^2/2) / sqrt(2 pi); odd: O(-u) = -O(u) and O(0) = 0; moments: the
         Gaussian moments for m = 0..8 against sympy's integrate."""
    m, j = sp.symbols("m j", positive=True, integer=True)
    u = sp.Symbol("u", real=True)
    w = sp.exp(-_C * t**2 / 2)
    phi_at = sp.exp(-((_A * t) ** 2) / 2) / _ROOT2PI
    o = odd_phi(_A * t)
    lhs = sp.diff(t ** (m - 1) * o**j * w, t)
    rhs = (
        (m - 1) * t ** (m - 2) * o**j * w
        - _C * t**m * o**j * w
        + j * _A * t ** (m - 1) * o ** (j - 1) * phi_at * w
    )
    checks = {
        "ibp": sp.simplify(sp.powsimp(sp.expand(lhs - rhs), force=True)) == 0,
        "slope": sp.simplify(sp.diff(o**j, _A) - j * t * o ** (j - 1) * phi_at) == 0,
        "merge": sp.simplify(phi_at * w - sp.exp(-(_C + _A**2) * t**2 / 2) / _ROOT2PI) == 0,
        "odd": sp.simplify(odd_phi(-u) + odd_phi(u)) == 0 and odd_phi(sp.Integer(0)) == 0,
        "moments": all(
            sp.simplify(
                sp.integrate(t**k * sp.exp(-_C * t**2 / 2), (t, -sp.oo, sp.oo)) / _ROOT2PI
                - _moment(k, _C)
            )
            == 0
            for k in range(9)
        ),
    }
    return checks
