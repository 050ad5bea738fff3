"""Net drift coefficient D(sigma, s) = E_{p~N(0,s^2)}[sigma(p) sigma'(p)] (claim C4).

Exact: D = 0 for odd/even sigma (parity); sympy's integral for piecewise polynomials; the
Gaussian-Phi rules of `theory.gauss_phi` for polynomials in x, Phi(x), phi(x) (GELU, GELU^2).
Otherwise a rigorous interval-quadrature enclosure (`theory.interval_quad`). The sign for every s
follows from Stein's form D = E[p sigma(p)^2] / (2 s^2): the sign of sigma(x)^2 - sigma(-x)^2.
"""

from __future__ import annotations

import mpmath
import sympy as sp

from theory.certify import interval_sign, sign_on_side
from theory.gauss_phi import gaussian_expectation
from theory.gradient import drift_product, s
from theory.interval_quad import Enclosure, gaussian_integral_enclosure
from theory.registry import Activation, as_activation, cached_by_expression, x
from theory.signs import Prediction, sympy_sign, weakest

_PARITY_PROBES = (0.3, 0.9, 1.7, 2.6, 4.1)


@cached_by_expression
def parity(act: Activation) -> str | None:
    """'odd' or 'even' when sympy proves sigma(-x) = -/+ sigma(x), else None."""
    e = act.expr
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


def derive_drift_coefficient(activation: Activation | str) -> sp.Expr | None:
    """D(sigma, s) as an exact sympy expression in s, or None when no closed form is found."""
    return derive_drift_with_method(as_activation(activation))[0]


# Scales at which a closed form is compared with 40-digit quadrature before it is reported.
_CHECK_SCALES = ("0.5", "1", "2.3")


@cached_by_expression
def derive_drift_with_method(act: Activation) -> tuple[sp.Expr | None, str]:
    """(D(sigma, s) exact in s, or None; how it was obtained)."""
    if parity(act) is not None:
        return sp.Integer(0), f"sigma is {parity(act)}: sigma sigma' is odd"
    e = act.expr
    h = drift_product(act)
    if _piecewise_polynomial(e):
        value = sp.integrate(sp.piecewise_fold(h * gaussian_density()), (x, -sp.oo, sp.oo))
        if value.has(sp.Integral):
            return None, "sympy left the piecewise-polynomial integral unevaluated"
        return sp.simplify(value), "sympy integral of a piecewise polynomial"
    # erf/exp integrands: sympy's integrate runs for minutes without an answer; the Gaussian-Phi
    # rules reduce polynomials in x, Phi(x), phi(x) to Gaussian moments and rational integrals.
    value = gaussian_expectation(h, x, s)
    if value is None:
        return None, "no closed form: sigma sigma' is not a polynomial in x, Phi(x), phi(x)"
    # The rules are sympy identities (gauss_phi.verify_rules); the comparison with quadrature
    # guards the conversion of the expression into monomials.
    worst = max(_closed_form_gap(h, value, v) for v in _CHECK_SCALES)
    if worst > 1e-25:
        return None, f"closed form disagrees with quadrature by {worst:.1e}: not reported"
    return value, (
        "Gaussian-Phi rules (integration by parts, slope derivative of Phi: sympy-checked "
        f"identities); equals 40-digit quadrature to {max(worst, 1e-40):.0e} at s = "
        + ", ".join(_CHECK_SCALES)
    )


def _closed_form_gap(h: sp.Expr, value: sp.Expr, scale: str) -> float:
    with mpmath.workdps(40):
        sv = mpmath.mpf(scale)
        f = sp.lambdify(x, h, "mpmath")
        quad = mpmath.quad(lambda v: f(v) * mpmath.npdf(v, 0, sv), [-mpmath.inf, 0, mpmath.inf])
        exact = mpmath.mpf(str(sp.N(value.subs(s, sp.Rational(scale)), 45)))
        return float(abs(quad - exact))


@cached_by_expression
def drift_enclosure(act: Activation, std: float = 1.0) -> Enclosure:
    """A rigorous interval containing D(sigma, std): interval Simpson with enclosed remainders
    (`theory.interval_quad`), not a difference of two precisions."""
    return gaussian_integral_enclosure(drift_product(act), float(std))


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
def drift_coefficient_numeric(act: Activation, std: float = 1.0) -> tuple[float, float]:
    """(D, error estimate): tanh-sinh at 20 digits vs tanh-sinh at 30 digits on a finer split.

    The error is the two computations' disagreement plus the first one's own estimate: evidence,
    not a bound. (Gauss-Legendre nodes at 30+ digits cost tens of seconds: both use tanh-sinh.)
    """
    integrand = sp.piecewise_fold(drift_product(act) * gaussian_density(x, sp.Float(std)))
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


def stein_drift_numeric(activation: Activation | str, std: float = 1.0) -> float:
    """E[p sigma(p)^2] / (2 s^2) by quadrature: equal to D when sigma is absolutely continuous."""
    e = as_activation(activation).expr
    f = sp.lambdify(x, sp.piecewise_fold(x * e**2 * gaussian_density(x, sp.Float(std))), "mpmath")
    with mpmath.workdps(20):
        splits = [-mpmath.inf] + sorted(set(_kinks(e) + [0.0])) + [mpmath.inf]
        return float(mpmath.quad(f, splits) / (2 * std**2))


def continuity_proved(activation: Activation | str) -> bool:
    """Sympy proof that sigma is continuous: at each Piecewise boundary g = lhs - rhs = 0 the
    jump between neighbouring branches is a polynomial multiple of g (so it vanishes there)."""
    e = as_activation(activation).expr
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
def stein_sign(act: Activation) -> Prediction:
    """Sign of D(sigma, s) for every s > 0 from Stein's form D = E[p sigma(p)^2] / (2 s^2)
    = (1/(2 s^2)) int_0^oo x (sigma(x)^2 - sigma(-x)^2) phi_s(x) dx (sigma continuous and of
    polynomial growth): the sign of u(x) = sigma(x)^2 - sigma(-x)^2 on x > 0."""
    e = act.expr
    # Certifying u for a clipped transcendental activation takes tens of seconds (a 5th-order
    # Taylor step through nested Piecewise): its sign stays undetermined rather than slow.
    if e.has(sp.Piecewise) and not _piecewise_polynomial(e):
        return Prediction(None, "undetermined", "numeric", "Stein form not attempted (clipped)")
    if not continuity_proved(act):
        return Prediction(None, "undetermined", "numeric", "continuity not proved: no Stein form")
    value, err = drift_coefficient_numeric(act, 1.0)
    if abs(stein_drift_numeric(act, 1.0) - value) > 1e-12 + 100 * err:
        return Prediction(None, "undetermined", "numeric", "Stein form disagrees at s = 1")
    u = sp.piecewise_fold(e**2 - e.subs(x, -x) ** 2)
    u_sign = sign_on_side(u, "pos")
    detail = f"Stein form, sigma(x)^2 - sigma(-x)^2 on x > 0: {u_sign.sign} ({u_sign.method})"
    sign, method = u_sign.sign, u_sign.method
    if sign in ("nonnegative", "nonpositive"):
        # A continuous u with one certified strict point is strict on a neighbourhood.
        strict = "positive" if sign == "nonnegative" else "negative"
        for w in (0.5, 1.0, 2.0):
            if interval_sign(u, w, w) == strict:
                sign, detail = strict, detail + f"; strict at x = {w} (interval)"
                method = weakest(method, "certified")
                break
    if sign in ("positive", "negative", "zero") and method in ("sympy", "argument", "certified"):
        # Stein's form itself (integration by parts) is Lemma St of docs/proofs.md.
        return Prediction(None, sign, weakest(method, "argument"), detail)
    return Prediction(None, "undetermined", "numeric", detail)


@cached_by_expression
def drift_sign_all_scales(act: Activation) -> Prediction:
    """Sign of D(sigma, s) for every s > 0 (hence of E[sigma sigma'(p)] for every Gaussian scale
    mixture of p): parity, the closed form's sign in a symbolic s > 0, or Stein's form."""
    if parity(act) is not None:
        return Prediction(sp.Integer(0), "zero", "argument", f"sigma is {parity(act)}")
    exact, how = derive_drift_with_method(act)
    if exact is not None:
        sign = sympy_sign(exact)
        if sign != "undetermined":
            return Prediction(exact, sign, "sympy", f"closed form in s > 0 ({how}): {exact}")
    return stein_sign(act)


@cached_by_expression
def predict_drift_coefficient(act: Activation, std: float = 1.0) -> Prediction:
    """D at s = std with its sign: positively biased (> 0), symmetric (= 0) or negatively biased.

    Exact where a closed form exists (value and sign proved); otherwise the value comes with a
    rigorous interval-quadrature bound (`error`), and the sign from Stein's form (for every s)
    or from the enclosure (certified at this s)."""
    par = parity(act)
    if par is not None:
        return Prediction(
            sp.Integer(0),
            "zero",
            "argument",
            f"sigma is {par} (sympy: sigma(-x) {'-' if par == 'even' else '+'} sigma(x) = 0), so "
            "sigma*sigma' is odd and its Gaussian mean is exactly 0",
            error=0.0,
        )
    exact, how = derive_drift_with_method(act)
    if exact is not None:
        at = sp.nsimplify(std) if std == int(std) else sp.Float(std)
        value = sp.simplify(exact.subs(s, at))
        sign = sympy_sign(value)
        if sign == "undetermined":
            sign = sympy_sign(exact)  # the sign for every s > 0 covers this one
        return Prediction(
            value,
            sign,
            "sympy" if sign != "undetermined" else "numeric",
            f"{how}: D(sigma, s) = {exact}",
            error=0.0,
        )
    box = drift_enclosure(act, std)
    value, _ = drift_coefficient_numeric(act, std)
    if not box.lo <= value <= box.hi:
        value = box.mid  # the quadrature left the rigorous interval: trust the interval
    err = max(value - box.lo, box.hi - value)
    detail = (
        f"{how}; interval quadrature: D in [{box.lo:.12g}, {box.hi:.12g}] ({box.cells} cells, "
        f"interval Simpson with enclosed 4th-derivative remainder; {box.assumption}); value "
        "from 30-digit tanh-sinh quadrature"
    )
    box_sign = "positive" if box.lo > 0 else "negative" if box.hi < 0 else "undetermined"
    stein = stein_sign(act)
    detail += f"; {stein.detail}"
    if stein.sign != "undetermined":
        if box_sign != "undetermined" and box_sign != stein.sign:
            raise ArithmeticError(f"{act.name}: Stein sign {stein.sign} vs interval {box_sign}")
        return Prediction(value, stein.sign, stein.method, detail, error=err)
    if box_sign != "undetermined":
        return Prediction(value, box_sign, "certified", detail, error=err)
    return Prediction(value, "undetermined", "numeric", detail, error=err)
