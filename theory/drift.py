"""Net drift coefficient D(sigma, s) = E_{p~N(0,s^2)}[sigma(p) sigma'(p)] (claim C4).

Exact by sympy for odd/even activations (D = 0 by parity) and piecewise polynomials; otherwise
mpmath quadrature at two precisions and two rules. The sign of D also follows from Stein's form
D = E[p sigma(p)^2] / (2 s^2), i.e. from the sign of sigma(x)^2 - sigma(-x)^2 on x > 0.
"""

from __future__ import annotations

import mpmath
import sympy as sp

from theory.certify import interval_sign, sign_on_side
from theory.gradient import drift_product, s
from theory.registry import cached_by_expression, get_activation, x
from theory.signs import Prediction, sympy_sign, weakest

_PARITY_PROBES = (0.3, 0.9, 1.7, 2.6, 4.1)


@cached_by_expression
def parity(activation: str) -> str | None:
    """'odd' or 'even' when sympy proves sigma(-x) = -/+ sigma(x), else None."""
    e = get_activation(activation).expr
    for name, combo in (("even", e.subs(x, -x) - e), ("odd", e.subs(x, -x) + e)):
        # A cheap numeric screen first: simplify is only attempted when parity is plausible.
        if all(abs(sp.N(combo.subs(x, v), 30)) < 1e-25 for v in _PARITY_PROBES):
            if sp.simplify(sp.piecewise_fold(combo)) == 0:
                return name
    return None


def _piecewise_polynomial(e: sp.Expr) -> bool:
    if isinstance(e, sp.Piecewise):
        return all(_piecewise_polynomial(b) for b, _ in e.args)
    return e.is_polynomial(x)


def gaussian_density(var: sp.Expr = x, std: sp.Expr = s) -> sp.Expr:
    return sp.exp(-(var**2) / (2 * std**2)) / (std * sp.sqrt(2 * sp.pi))


@cached_by_expression
def derive_drift_coefficient(activation: str) -> sp.Expr | None:
    """D(sigma, s) as an exact sympy expression in s, or None when sympy is not asked/able to."""
    if parity(activation) is not None:
        return sp.Integer(0)
    act = get_activation(activation)
    if not _piecewise_polynomial(act.expr):
        return None  # erf/exp integrands: sympy's integrate runs for minutes without an answer
    integrand = sp.piecewise_fold(drift_product(activation) * gaussian_density())
    value = sp.integrate(integrand, (x, -sp.oo, sp.oo))
    return None if value.has(sp.Integral) else sp.simplify(value)


def _kinks(e: sp.Expr) -> list[float]:
    """Real points where a Piecewise condition of e changes truth value (|x| < 30)."""
    points: set[float] = set()
    for pw in e.atoms(sp.Piecewise):
        for _, cond in pw.args:
            for rel in cond.atoms(sp.core.relational.Relational):
                g = sp.lambdify(x, rel.lhs - rel.rhs, "mpmath")
                grid = [mpmath.mpf(-30) + k * mpmath.mpf(60) / 1200 for k in range(1201)]
                vals = [g(v) for v in grid]
                for a, b, fa, fb in zip(grid, grid[1:], vals, vals[1:], strict=False):
                    if fa == 0:
                        points.add(float(a))
                    elif fa * fb < 0:
                        points.add(float(mpmath.findroot(g, (a, b), solver="bisect")))
    return sorted(points)


@cached_by_expression
def drift_coefficient_numeric(activation: str, std: float = 1.0) -> tuple[float, float]:
    """(D, error estimate): tanh-sinh at 20 digits vs tanh-sinh at 30 digits on a finer split.

    The error is the two computations' disagreement plus the first one's own estimate: evidence,
    not a bound. (Gauss-Legendre nodes at 30+ digits cost tens of seconds: both use tanh-sinh.)
    """
    act = get_activation(activation)
    integrand = sp.piecewise_fold(drift_product(activation) * gaussian_density(x, sp.Float(std)))
    base = sorted(set(_kinks(act.expr) + [0.0]))
    finer = sorted(set(base + [-3.0 * std, -std, std, 3.0 * std]))
    results = []
    for dps, splits in ((20, base), (30, finer)):
        with mpmath.workdps(dps):
            f = sp.lambdify(x, integrand, "mpmath")
            val, err = mpmath.quad(f, [-mpmath.inf, *splits, mpmath.inf], error=True)
            results.append((val, err))
    (v1, e1), (v2, _) = results
    return float(v1), float(abs(v1 - v2) + abs(e1))


def stein_drift_numeric(activation: str, std: float = 1.0) -> float:
    """E[p sigma(p)^2] / (2 s^2) by quadrature: equal to D when sigma is absolutely continuous."""
    e = get_activation(activation).expr
    f = sp.lambdify(x, sp.piecewise_fold(x * e**2 * gaussian_density(x, sp.Float(std))), "mpmath")
    with mpmath.workdps(20):
        splits = [-mpmath.inf] + sorted(set(_kinks(e) + [0.0])) + [mpmath.inf]
        return float(mpmath.quad(f, splits) / (2 * std**2))


def continuity_proved(activation: str) -> bool:
    """Sympy proof that sigma is continuous: at each Piecewise boundary g = lhs - rhs = 0 the
    jump between neighbouring branches is a polynomial multiple of g (so it vanishes there)."""
    e = get_activation(activation).expr
    for pw in e.atoms(sp.Piecewise):
        args = pw.args
        for (b1, c1), (b2, _) in zip(args, args[1:], strict=False):
            if not isinstance(c1, sp.core.relational.Relational):
                return False
            g = c1.lhs - c1.rhs
            jump = b1 - b2
            ratio = sp.cancel(sp.simplify(jump / g))
            if ratio.is_polynomial(x) or ratio.free_symbols.isdisjoint({x}):
                continue
            # A polynomial boundary: the jump must vanish exactly at each of its real roots.
            if not g.is_polynomial(x):
                return False
            roots = sp.solveset(g, x, domain=sp.S.Reals)
            if not isinstance(roots, sp.FiniteSet):
                return False
            if any(sp.simplify(jump.subs(x, r)) != 0 for r in roots):
                return False
    return True


@cached_by_expression
def predict_drift_coefficient(activation: str, std: float = 1.0) -> Prediction:
    """D at s = std with its sign: positively biased (> 0), symmetric (= 0) or negatively biased."""
    par = parity(activation)
    if par is not None:
        return Prediction(
            sp.Integer(0),
            "zero",
            "proved",
            f"sigma is {par} (sympy: sigma(-x) {'-' if par == 'even' else '+'} sigma(x) = 0), so "
            "sigma*sigma' is odd and its Gaussian mean is exactly 0",
            error=0.0,
        )
    exact = derive_drift_coefficient(activation)
    if exact is not None:
        at = sp.nsimplify(std) if std == int(std) else sp.Float(std)
        value = sp.simplify(exact.subs(s, at))
        return Prediction(
            value,
            sympy_sign(value),
            "proved",
            f"sympy integral: D(sigma, s) = {exact}",
            error=0.0,
        )
    value, err = drift_coefficient_numeric(activation, std)
    stein_value = stein_drift_numeric(activation, std)
    detail = f"quadrature D = {value:.12g} (error estimate {err:.1e}, two rules/precisions)"
    # Sign through Stein: D = (1/(2 s^2)) int_0^oo x (sigma(x)^2 - sigma(-x)^2) phi_s(x) dx.
    act_expr = get_activation(activation).expr
    # Certifying u for a clipped transcendental activation takes tens of seconds (a 5th-order
    # Taylor step through nested Piecewise): its sign stays numeric rather than slow.
    affordable = not act_expr.has(sp.Piecewise)
    if (
        affordable
        and continuity_proved(activation)
        and abs(stein_value - value) <= 1e-12 + 100 * err
    ):
        e = get_activation(activation).expr
        u = sp.piecewise_fold(e**2 - e.subs(x, -x) ** 2)
        u_sign = sign_on_side(u, "pos")
        detail += (
            f"; Stein form, sigma(x)^2 - sigma(-x)^2 on x > 0: {u_sign.sign} ({u_sign.method})"
        )
        sign, method = u_sign.sign, u_sign.method
        if sign in ("nonnegative", "nonpositive"):
            # A continuous u with one certified strict point is strict on a neighbourhood.
            strict = "positive" if sign == "nonnegative" else "negative"
            for w in (0.5, 1.0, 2.0):
                if interval_sign(u, w, w) == strict:
                    sign, detail = strict, detail + f"; strict at x = {w} (interval)"
                    method = weakest(method, "certified")
                    break
        if sign in ("positive", "negative", "zero") and method in ("proved", "certified"):
            return Prediction(value, sign, method, detail, error=err)
    sign = "undetermined"
    if abs(value) > 10 * err:
        sign = "positive" if value > 0 else "negative"
    return Prediction(value, sign, "numeric", detail, error=err)


def classify_bias(activation: str) -> str:
    """'positively biased' (D > 0), 'symmetric' (D = 0), 'negatively biased' or 'undetermined'."""
    sign = predict_drift_coefficient(activation).sign
    return {
        "positive": "positively biased",
        "zero": "symmetric",
        "negative": "negatively biased",
    }.get(sign, "undetermined")
