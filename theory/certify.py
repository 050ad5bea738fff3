"""Signs of a function of x on p > 0 or p < 0: sympy proof first, then interval certification.

`sign_on_side(expr, "pos"|"neg")` tries sympy's assumptions (sympy), then mpmath interval
arithmetic on [0, R] with bisection plus a tail argument on [R, oo) (certified), and otherwise
reports `undetermined`. Point enclosures also certify a sign change (mixed). Library module.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import mpmath
import sympy as sp

from theory.registry import x
from theory.signs import Piece, Prediction, sign_of_set, sign_set, sign_union, sympy_sign

iv = mpmath.iv
_PREC = 80  # bits for the interval context; far beyond double so roundoff never decides a sign
TAIL_R = 8.0
_WITNESS = tuple(
    [0.01, 0.02, 0.05]
    + [0.1 * k for k in range(1, 20)]
    + [2.0 + 0.25 * k for k in range(1, 25)]
    + [9.0, 10.0, 12.0, 16.0, 24.0]
)


class CertifyError(ValueError):
    """The interval evaluator met a function it has no enclosure for."""


def _widen(lo: mpmath.mpf, hi: mpmath.mpf) -> iv.mpf:
    """[lo, hi] widened by 2^-(PREC-8) relative: far beyond the few-ulp error of mpmath's special
    functions at PREC + 20 bits. The arithmetic runs at high precision too: at the default 53
    bits 1 - 3e-21 would round to 1 and the enclosure would be wrong."""
    with mpmath.workprec(_PREC + 40):
        eps = mpmath.mpf(2) ** (-(_PREC - 8))
        lo_w = lo - abs(lo) * eps - eps**4 if mpmath.isfinite(lo) else lo
        hi_w = hi + abs(hi) * eps + eps**4 if mpmath.isfinite(hi) else hi
        return iv.mpf([lo_w, hi_w])


def _monotone(fn: Callable[[mpmath.mpf], mpmath.mpf], increasing: bool) -> Callable:
    def apply(a: iv.mpf) -> iv.mpf:
        with mpmath.workprec(_PREC + 20):
            lo, hi = fn(a.a), fn(a.b)
        return _widen(lo, hi) if increasing else _widen(hi, lo)

    return apply


_UNARY: dict[type, Callable] = {
    sp.exp: iv.exp,
    sp.log: iv.log,
    sp.sin: iv.sin,
    sp.cos: iv.cos,
    sp.erf: _monotone(mpmath.erf, True),
    sp.erfc: _monotone(mpmath.erfc, False),
    sp.tanh: _monotone(mpmath.tanh, True),
    sp.atan: _monotone(mpmath.atan, True),
    sp.sinh: _monotone(mpmath.sinh, True),
    sp.asinh: _monotone(mpmath.asinh, True),
}


def _hull(values: list[iv.mpf]) -> iv.mpf:
    return iv.mpf([min(v.a for v in values), max(v.b for v in values)])


def _bad(v: iv.mpf) -> bool:
    return mpmath.isnan(v.a) or mpmath.isnan(v.b)


def _truth(cond: sp.Basic, var: iv.mpf) -> bool | None:
    """Three-valued truth of a condition for every x in the interval."""
    if cond is sp.true:
        return True
    if cond is sp.false:
        return False
    if isinstance(cond, sp.And):
        vals = [_truth(c, var) for c in cond.args]
        return False if False in vals else (True if all(v is True for v in vals) else None)
    if isinstance(cond, sp.Or):
        vals = [_truth(c, var) for c in cond.args]
        return True if True in vals else (False if all(v is False for v in vals) else None)
    if isinstance(cond, sp.Not):
        v = _truth(cond.args[0], var)
        return None if v is None else not v
    if isinstance(cond, sp.core.relational.Relational):
        d = enclose(cond.lhs - cond.rhs, var)
        if isinstance(cond, (sp.StrictGreaterThan, sp.GreaterThan)):
            strict = isinstance(cond, sp.StrictGreaterThan)
            if d.a > 0 or (not strict and d.a >= 0):
                return True
            if d.b < 0 or (strict and d.b <= 0):
                return False
            return None
        if isinstance(cond, (sp.StrictLessThan, sp.LessThan)):
            strict = isinstance(cond, sp.StrictLessThan)
            if d.b < 0 or (not strict and d.b <= 0):
                return True
            if d.a > 0 or (strict and d.a >= 0):
                return False
            return None
        if isinstance(cond, sp.Ne):
            return True if (d.a > 0 or d.b < 0) else None
        if isinstance(cond, sp.Eq):
            return False if (d.a > 0 or d.b < 0) else None
    raise CertifyError(f"no interval truth value for condition {cond}")


def enclose(expr: sp.Basic, var: iv.mpf) -> iv.mpf:
    """An interval containing expr(x) for every x in `var` (outward rounded)."""
    saved = iv.prec
    iv.prec = _PREC
    try:
        out = _enclose(expr, var)
    finally:
        iv.prec = saved
    if _bad(out):
        return iv.mpf([-mpmath.inf, mpmath.inf])
    return out


def _enclose(e: sp.Basic, var: iv.mpf) -> iv.mpf:
    if e == x:
        return var
    if e.is_Rational:
        return iv.mpf(e.p) / iv.mpf(e.q)
    if e.is_Number or isinstance(e, sp.NumberSymbol):
        with mpmath.workprec(_PREC + 40):
            val = mpmath.mpf(sp.Float(e, 50))
        return _widen(val, val)
    if isinstance(e, sp.Add):
        total = iv.mpf(0)
        for a in e.args:
            total = total + _enclose(a, var)
        return total
    if isinstance(e, sp.Mul):
        total = iv.mpf(1)
        for a in e.args:
            total = total * _enclose(a, var)
        return total
    if isinstance(e, sp.Pow):
        base, ex = e.args
        b = _enclose(base, var)
        if ex.is_Integer:
            n = int(ex)
            if n >= 0:
                return b**n
            if b.a <= 0 <= b.b:
                return iv.mpf([-mpmath.inf, mpmath.inf])
            return 1 / b ** (-n)
        if ex == sp.Rational(1, 2):
            if b.a < 0:
                raise CertifyError("square root of an interval reaching below 0")
            return iv.sqrt(b)
        return iv.exp(_enclose(ex, var) * iv.log(b))
    if isinstance(e, sp.Piecewise):
        chosen: list[iv.mpf] = []
        for branch, cond in e.args:
            t = _truth(cond, var)
            if t is False:
                continue
            chosen.append(_enclose(branch, var))
            if t is True:
                break
        if not chosen:
            raise CertifyError("Piecewise with no branch for the interval")
        return _hull(chosen)
    if isinstance(e, sp.Abs):
        a = _enclose(e.args[0], var)
        if a.a >= 0:
            return a
        if a.b <= 0:
            return -a
        return iv.mpf([0, max(-a.a, a.b)])
    if isinstance(e, (sp.Max, sp.Min)):
        vals = [_enclose(a, var) for a in e.args]
        pick = max if isinstance(e, sp.Max) else min
        return iv.mpf([pick(v.a for v in vals), pick(v.b for v in vals)])
    if isinstance(e, sp.cosh):
        a = _enclose(e.args[0], var)
        return (iv.exp(a) + iv.exp(-a)) / 2
    fn = _UNARY.get(type(e))
    if fn is not None:
        return fn(_enclose(e.args[0], var))
    raise CertifyError(f"no interval enclosure for {type(e).__name__}")


def interval_sign(expr: sp.Basic, lo: float, hi: float) -> str:
    """Sign of expr on [lo, hi] as far as one enclosure decides it (else undetermined)."""
    try:
        v = enclose(expr, iv.mpf([lo, hi]))
    except (CertifyError, ZeroDivisionError, ValueError):
        return "undetermined"
    if v.a == 0 and v.b == 0:
        return "zero"
    if v.a > 0:
        return "positive"
    if v.b < 0:
        return "negative"
    if v.a >= 0:
        return "nonnegative"
    if v.b <= 0:
        return "nonpositive"
    return "undetermined"


def _bisect(expr: sp.Basic, lo: float, hi: float, budget: list[int]) -> list[Piece]:
    """Pieces covering [lo, hi], each with the sign one enclosure decides; pieces narrower than
    1e-7 (around a root) or left when the budget runs out stay `undetermined`."""
    s = interval_sign(expr, lo, hi)
    if s != "undetermined" or hi - lo < 1e-7 or budget[0] <= 0:
        return [Piece(lo, hi, s)]
    budget[0] -= 1
    mid = 0.5 * (lo + hi)
    return _bisect(expr, lo, mid, budget) + _bisect(expr, mid, hi, budget)


def _merge(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if out and out[-1].sign == p.sign and out[-1].hi == p.lo:
            out[-1] = Piece(out[-1].lo, p.hi, p.sign)
        else:
            out.append(p)
    return out


def _tail_sign(expr: sp.Expr, side: int, depth: int = 1) -> str:
    """Sign of expr on side*[R, oo): enclosure, sympy with x = side*(R + t), factors, then
    monotonicity plus the limit (f' < 0 on [R, oo) and f -> L >= 0 gives f > 0, and so on)."""
    lo, hi = (TAIL_R, mpmath.inf) if side > 0 else (-mpmath.inf, -TAIL_R)
    s = interval_sign(expr, lo, hi)
    if s in ("positive", "negative", "zero"):
        return s
    t = sp.Symbol("t", positive=True)
    shifted = expr.subs(x, side * (sp.Float(TAIL_R) + t))
    s2 = sympy_sign(shifted)
    if s2 in ("positive", "negative", "zero"):
        return s2
    if isinstance(expr, sp.Mul):
        signs = [_tail_sign(f, side, depth) for f in expr.args]
        total = "positive"
        for f in signs:
            total = sign_of_set({u * v for u in sign_set(total) for v in sign_set(f)})
        if total != "undetermined":
            return total
    if depth > 0:
        slope = _tail_sign(sp.diff(expr, x), side, depth - 1)
        try:
            limit = sp.limit(expr, x, side * sp.oo)
        except (NotImplementedError, ValueError, TypeError):
            # sympy cannot take this limit (it raises TypeError on some nested Piecewise, e.g.
            # comparing zoo): the tail stays what the enclosure said, never a guess.
            return s
        if slope in ("positive", "negative") and limit.is_extended_real:
            # Moving outward along the tail the function moves monotonically towards its limit.
            outward_up = (slope == "positive") == (side > 0)
            if outward_up and limit.is_nonpositive:
                return "negative"
            if not outward_up and limit.is_nonnegative:
                return "positive"
    return s


NEAR = 0.125  # width of the interval next to 0 handled by Taylor's theorem


def _branch_near_zero(expr: sp.Expr, side: int) -> sp.Expr | None:
    """The single Piecewise branch that holds on side*(0, NEAR], or None if that is not decided."""
    e = sp.piecewise_fold(expr)
    lo, hi = sorted((side * 1e-30, side * NEAR))
    var = iv.mpf([lo, hi])
    while isinstance(e, sp.Piecewise):
        for branch, cond in e.args:
            try:
                t = _truth(cond, var)
            except CertifyError:
                return None
            if t is None:
                return None
            if t:
                e = branch
                break
        else:
            return None
    return None if e.has(sp.Piecewise) else e


def _zero_order(branch: sp.Expr, side: int) -> int | None:
    """Smallest m with the m-th derivative at 0 nonzero (all lower ones exactly 0), for a branch
    analytic at 0: exact zeros by sympy, the nonzero one certified by a point enclosure."""
    for m in range(0, 6):
        deriv = sp.diff(branch, x, m)
        at_zero = deriv.subs(x, 0)
        if at_zero.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            return None
        if at_zero.is_zero:
            continue
        return m if interval_sign(deriv, 0.0, 0.0) in ("positive", "negative") else None
    return None


def _near_zero_sign(expr: sp.Expr, side: int) -> tuple[str, int] | None:
    """Sign on side*(0, NEAR] by Taylor: u = u^(m)(xi) x^m / m! with u^(j)(0) = 0 for j < m."""
    branch = _branch_near_zero(expr, side)
    if branch is None:
        return None
    m = _zero_order(branch, side)
    if m is None:
        return None
    lo, hi = sorted((0.0, side * NEAR))
    pieces = _bisect(sp.diff(branch, x, m), lo, hi, [200])
    total = sign_union([p.sign for p in pieces])
    if total not in ("positive", "negative"):
        return None
    if side < 0 and m % 2 == 1:
        total = "negative" if total == "positive" else "positive"
    return total, m


def _locate_changes(pieces: list[Piece]) -> str:
    changes = []
    strict = [p for p in pieces if p.sign in ("positive", "negative")]
    for a, b in zip(strict, strict[1:], strict=False):
        if a.sign != b.sign:
            changes.append(f"({a.hi:.7g}, {b.lo:.7g})")
    return "sign changes inside " + ", ".join(changes) if changes else ""


def _proved(expr: sp.Expr, side: int) -> tuple[str, str]:
    t = sp.Symbol("t", positive=True)
    e = expr.subs(x, side * t)
    candidates = [("as written", lambda: e)]
    # simplify on an unresolved Piecewise costs tens of seconds and rarely helps: skip it there.
    if not e.has(sp.Piecewise) and sp.count_ops(e) <= 150:
        candidates += [
            ("after simplify", lambda: sp.simplify(e)),
            ("rewritten in exp", lambda: sp.simplify(e.rewrite(sp.exp))),
        ]
    for label, candidate in candidates:
        sg = sympy_sign(candidate())
        if sg != "undetermined":
            return sg, label
    return "undetermined", ""


@lru_cache(maxsize=512)
def sign_on_side(expr: sp.Expr, side: str, certify: bool = True) -> Prediction:
    """Sign of expr(x) for x > 0 (side 'pos') or x < 0 ('neg'), with how it was established.

    `certify=False` stops after the sympy attempt (for callers with a cheaper fallback). When
    sympy itself breaks on an expression (it raises TypeError/NotImplementedError on some
    nested Piecewise), the answer is `undetermined` with the reason, never a guess."""
    if side not in ("pos", "neg"):
        raise ValueError(f"side must be 'pos' or 'neg', got {side!r}")
    try:
        return _sign_on_side(expr, side, certify)
    except (TypeError, NotImplementedError) as exc:
        region = "p > 0" if side == "pos" else "p < 0"
        return Prediction(
            None, "undetermined", "numeric", f"sympy raised {type(exc).__name__} on {region}: {exc}"
        )


def _sign_on_side(expr: sp.Expr, side: str, certify: bool) -> Prediction:
    sgn = 1 if side == "pos" else -1
    region = "p > 0" if sgn > 0 else "p < 0"
    s, how = _proved(expr, sgn)
    if s != "undetermined":
        # Point witnesses show where a weak sign is attained strictly and where it is exactly 0
        # (a clipped square: positive below the clip, 0 above), which the verdicts need.
        seen: dict[str, float] = {}
        for w in _WITNESS:
            ws = interval_sign(expr, sgn * w, sgn * w)
            if ws in ("positive", "negative", "zero"):
                seen.setdefault(ws, sgn * w)
        pieces = tuple(Piece(v, v, k) for k, v in seen.items())
        witness = "; ".join(f"{k} at p = {v:g}" for k, v in seen.items())
        detail = f"sympy assumptions on {region} ({how})" + (f"; {witness}" if witness else "")
        return Prediction(None, s, "sympy", detail, pieces)
    if not certify:
        return Prediction(None, "undetermined", "numeric", f"sympy did not decide {region}")

    # Point enclosures: certified witnesses of each sign (enough to show that the sign changes).
    witnesses: dict[str, list[float]] = {"positive": [], "negative": []}
    for w in _WITNESS:
        ws = interval_sign(expr, sgn * w, sgn * w)
        if ws in witnesses:
            witnesses[ws].append(sgn * w)
    lo, hi = sorted((sgn * NEAR, sgn * TAIL_R))
    middle = _bisect(expr, lo, hi, [4000])
    if witnesses["positive"] and witnesses["negative"]:
        pos, neg = witnesses["positive"], witnesses["negative"]
        detail = (
            f"mixed on {region}: interval-certified positive at p = {pos[0]:g}, "
            f"negative at p = {neg[0]:g}"
        )
        shown = _merge(middle)
        changes = _locate_changes(shown)
        if changes:
            detail += "; " + changes
        return Prediction(None, "undetermined", "certified", detail, tuple(shown))
    near = _near_zero_sign(expr, sgn)
    tail = _tail_sign(expr, sgn)
    if near is None or tail == "undetermined" or any(p.sign == "undetermined" for p in middle):
        return Prediction(None, "undetermined", "numeric", f"sign on {region} not decided")
    near_piece = Piece(*sorted((0.0, sgn * NEAR)), near[0])
    tail_piece = Piece(*sorted((sgn * TAIL_R, sgn * float("inf"))), tail)
    pieces = _merge(sorted([near_piece, *middle, tail_piece], key=lambda p: p.lo))
    total = sign_union([p.sign for p in pieces])
    detail = (
        f"certified on {region}: Taylor at 0 (order {near[1]}) with an interval enclosure of the "
        f"derivative, interval bisection up to |p| = {TAIL_R:g}, tail by enclosure/monotone limit;"
        " pieces: " + "; ".join(str(p) for p in pieces)
    )
    method = "certified" if total != "undetermined" else "numeric"
    return Prediction(None, total, method, detail, tuple(pieces))
