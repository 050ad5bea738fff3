"""Rigorous enclosure of a Gaussian integral E_{p~N(0,s^2)}[h(p)] by interval arithmetic.

Composite Simpson on cells where h is one smooth branch, with the remainder enclosed through an
interval enclosure of the 4th derivative; cells that straddle a kink are bisected and enclosed
crudely; the tails |p| > R are enclosed cell by cell up to 4R. Library module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import sympy as sp

from theory.certify import _UNARY, CertifyError, _truth, enclose
from theory.registry import x

iv = mpmath.iv


@dataclass(frozen=True)
class Enclosure:
    """A rigorous interval [lo, hi] for the integral, and what the bound assumes."""

    lo: float
    hi: float
    cells: int
    assumption: str

    @property
    def mid(self) -> float:
        return 0.5 * (self.lo + self.hi)

    @property
    def radius(self) -> float:
        return 0.5 * (self.hi - self.lo)


def _resolve(expr: sp.Expr, cell: iv.mpf) -> sp.Expr | None:
    """expr with every Piecewise replaced by the branch that holds on the whole cell, or None
    when some condition changes truth value inside the cell (a kink)."""
    pieces = list(expr.atoms(sp.Piecewise))
    if not pieces:
        return expr
    # Innermost first, so that outer conditions see resolved sub-expressions.
    pieces.sort(key=sp.count_ops)
    mapping: dict[sp.Basic, sp.Basic] = {}
    for pw in pieces:
        pw_now = pw.xreplace(mapping)
        for branch, cond in pw_now.args:
            try:
                truth = _truth(cond, cell)
            except CertifyError:
                return None
            if truth is None:
                return None
            if truth:
                mapping[pw] = branch
                break
        else:
            return None
    out = expr.xreplace(mapping)
    return None if out.has(sp.Piecewise) else out


IvFn = Callable[[dict], "iv.mpf"]


def _node(e: sp.Basic) -> IvFn:
    """A closure enclosing e over env[x] (an interval); the same outward-rounded operations as
    `certify.enclose`, with constants enclosed once instead of at every call."""
    if e.is_Symbol:
        return lambda env: env[e]
    if e.is_number:
        const = enclose(e, iv.mpf([0, 0]))
        return lambda env: const
    kids = [_node(a) for a in e.args]
    if isinstance(e, sp.Add):

        def add(env: dict) -> iv.mpf:
            total = kids[0](env)
            for k in kids[1:]:
                total = total + k(env)
            return total

        return add
    if isinstance(e, sp.Mul):

        def mul(env: dict) -> iv.mpf:
            total = kids[0](env)
            for k in kids[1:]:
                total = total * k(env)
            return total

        return mul
    if isinstance(e, sp.Pow):
        base, ex = e.args
        if ex.is_Integer:
            n = int(ex)

            def power(env: dict) -> iv.mpf:
                b = kids[0](env)
                if n >= 0:
                    return b**n
                if b.a <= 0 <= b.b:
                    return iv.mpf([-mpmath.inf, mpmath.inf])
                return 1 / b ** (-n)

            return power
        if ex == sp.Rational(1, 2):
            return lambda env: iv.sqrt(kids[0](env))
        return lambda env: iv.exp(kids[1](env) * iv.log(kids[0](env)))
    fn = _UNARY.get(type(e))
    if fn is not None and len(kids) == 1:
        return lambda env: fn(kids[0](env))
    raise CertifyError(f"no compiled enclosure for {type(e).__name__}")


@lru_cache(maxsize=256)
def _compiled(expr: sp.Expr) -> Callable[[iv.mpf], iv.mpf]:
    """expr (no Piecewise) compiled once, common subexpressions shared (sympy's cse)."""
    reps, (reduced,) = sp.cse(expr)
    steps = [(sym, _node(rhs)) for sym, rhs in reps]
    final = _node(reduced)

    def run(var: iv.mpf) -> iv.mpf:
        env = {x: var}
        for sym, fn in steps:
            env[sym] = fn(env)
        out = final(env)
        return iv.mpf([-mpmath.inf, mpmath.inf]) if _nan(out) else out

    return run


def _nan(v: iv.mpf) -> bool:
    return mpmath.isnan(v.a) or mpmath.isnan(v.b)


@lru_cache(maxsize=256)
def _fourth(branch: sp.Expr) -> Callable[[iv.mpf], iv.mpf]:
    return _compiled(sp.diff(branch, x, 4))


def _simpson(branch: sp.Expr, a: mpmath.mpf, b: mpmath.mpf) -> iv.mpf:
    """Interval for int_a^b branch: Simpson's rule (point values enclosed) minus
    (b-a)^5/2880 f''''(xi) with f'''' enclosed on [a, b]."""
    w = b - a
    mid = (a + b) / 2
    f = _compiled(branch)
    fa, fm, fb = f(iv.mpf([a, a])), f(iv.mpf([mid, mid])), f(iv.mpf([b, b]))
    d4 = _fourth(branch)(iv.mpf([a, b]))
    wi = iv.mpf([w, w])
    return wi / 6 * (fa + 4 * fm + fb) - wi**5 / 2880 * d4


def _crude(expr: sp.Expr, a: mpmath.mpf, b: mpmath.mpf) -> iv.mpf:
    return iv.mpf([b - a, b - a]) * enclose(expr, iv.mpf([a, b]))


def _vanishes(h: sp.Expr, std: sp.Expr, side: int, far: float) -> bool:
    """sympy's limit of h(p) exp(-p^2/(4 std^2)) as p -> side*oo is 0 (on the branch of h that
    holds beyond |p| = far; False when that is not decided or sympy cannot take the limit)."""
    cell = iv.mpf([far, mpmath.inf]) if side > 0 else iv.mpf([-mpmath.inf, -far])
    folded = sp.piecewise_fold(h)
    branch = _resolve(folded, cell)
    # Undecided (an interval product inf * 0 at the far end): every branch must satisfy it.
    branches = [branch] if branch is not None else []
    if branch is None and isinstance(folded, sp.Piecewise):
        branches = [b for b, _ in folded.args]
    if not branches or any(b.has(sp.Piecewise) for b in branches):
        return False
    try:
        weight = sp.exp(-(x**2) / (4 * std**2))
        return all(sp.limit(b * weight, x, side * sp.oo) == 0 for b in branches)
    except (NotImplementedError, TypeError, ValueError):
        return False


def gaussian_integral_enclosure(
    h: sp.Expr, std: float = 1.0, *, tol: float = 1e-9, radius: float = 10.0
) -> Enclosure:
    """[lo, hi] containing E_{p~N(0,std^2)}[h(p)] (h in the registry's x).

    Cells of [-R, R] (R = radius * std) are split until each Simpson remainder is below
    tol / (number of cells); a cell on which a Piecewise condition is undecided is bisected down
    to width 1e-12 and enclosed crudely. Tails: [R, 4R] and [-4R, -R] enclosed on 64 cells each;
    beyond 4R the bound assumes |h(p)| <= exp(p^2 / (4 std^2)) (checked: sympy's limit of
    h(p) exp(-p^2/(4 std^2)) is 0 at both ends), which adds at most 2 sqrt(2) Q(4R/(std sqrt 2)).
    """
    s_std = sp.nsimplify(std) if float(std) == int(std) else sp.Float(std, 30)
    density = sp.exp(-(x**2) / (2 * s_std**2)) / (s_std * sp.sqrt(2 * sp.pi))
    f = sp.piecewise_fold(h * density)
    big_r = mpmath.mpf(radius) * mpmath.mpf(std)
    total = iv.mpf([0, 0])
    cells = 0
    saved = iv.prec
    iv.prec = 80
    try:
        n0 = 64
        stack = [
            (-big_r + 2 * big_r * k / n0, -big_r + 2 * big_r * (k + 1) / n0) for k in range(n0)
        ]
        per_width = mpmath.mpf(tol) / (2 * big_r)
        while stack:
            a, b = stack.pop()
            branch = _resolve(f, iv.mpf([a, b]))
            if branch is None:
                if b - a < 1e-12:
                    total += _crude(f, a, b)
                    cells += 1
                else:
                    mid = (a + b) / 2
                    stack += [(a, mid), (mid, b)]
                continue
            piece = _simpson(branch, a, b)
            if piece.delta > per_width * (b - a) and b - a > big_r / 2**14:
                mid = (a + b) / 2
                stack += [(a, mid), (mid, b)]
                continue
            total += piece
            cells += 1
        for sign in (1, -1):
            edges = [big_r + 3 * big_r * k / 64 for k in range(65)]
            for a, b in zip(edges, edges[1:], strict=False):
                lo, hi = (a, b) if sign > 0 else (-b, -a)
                total += _crude(f, lo, hi)
                cells += 1
        far = 4 * big_r
        if not all(_vanishes(h, s_std, side, float(far)) for side in (1, -1)):
            raise CertifyError("growth assumption |h| <= exp(p^2/(4 s^2)) not supported by limits")
        tail = 2 * mpmath.sqrt(2) * mpmath.ncdf(-far / (mpmath.mpf(std) * mpmath.sqrt(2)))
        total += iv.mpf([-tail, tail])
    finally:
        iv.prec = saved
    return Enclosure(
        float(mpmath.mpf(total.a)),
        float(mpmath.mpf(total.b)),
        cells,
        f"|h(p)| <= exp(p^2/(4 s^2)) beyond |p| = {float(4 * big_r):g} (sympy limit checked)",
    )
