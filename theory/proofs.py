"""The checked steps of the written arguments in docs/proofs.md (ledger method `argument`).

Each step of a proof there cites an id of STEPS; `check_all()` runs every check (sympy identities
and exact enumerations in rationals, a few seconds). tests/test_proofs.py runs them, checks that
the document cites exactly these ids, and that false variants of the enumerations are caught.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from theory.depth import (
    RADEMACHER,
    SKEW_RIGHT,
    DepthNet,
    Law,
    alive_probability,
    alpha,
    enumerate_second_moment,
    enumerate_unconditional,
    verify_identities,
)
from theory.effective import derive_gate_moments

_x = sp.Symbol("x", real=True)
_s = sp.Symbol("s", positive=True)
_f = sp.Function("f")


def _gauss(v: sp.Expr, s: sp.Expr) -> sp.Expr:
    return sp.exp(-(v**2) / (2 * s**2)) / (sp.sqrt(2 * sp.pi) * s)


# ------------------------------------------------------------------ symbolic steps (sympy)


def parity_makes_h_odd() -> bool:
    """P1: for every odd sigma (f(x) - f(-x)) and every even sigma (f(x) + f(-x)), with f an
    arbitrary differentiable function, h = sigma sigma' satisfies h(x) + h(-x) = 0."""
    ok = True
    for sigma in (_f(_x) - _f(-_x), _f(_x) + _f(-_x)):
        h = sigma * sp.diff(sigma, _x)
        ok &= sp.simplify(h + h.subs(_x, -_x)) == 0
    return ok


def fold_identity() -> bool:
    """S1: h(x) + h(-x) = (sigma(x)^2 - sigma(-x)^2)' / 2 for h = sigma sigma', sigma arbitrary."""
    sigma = _f(_x)
    h = sigma * sp.diff(sigma, _x)
    rhs = sp.diff(sigma**2 - sigma.subs(_x, -_x) ** 2, _x) / 2
    return sp.simplify(h + h.subs(_x, -_x) - rhs) == 0


def fold_of_symmetric_law() -> bool:
    """S2: int_R h phi_s = int_0^oo (h(x) + h(-x)) phi_s(x) dx, checked with sympy's integrate
    for h(x) = x^2 exp(a x) + x (a symbolic), a function with neither parity."""
    a = sp.Symbol("a", real=True)
    h = _x**2 * sp.exp(a * _x) + _x
    whole = sp.integrate(h * _gauss(_x, _s), (_x, -sp.oo, sp.oo))
    folded = sp.integrate((h + h.subs(_x, -_x)) * _gauss(_x, _s), (_x, 0, sp.oo))
    return sp.simplify(whole - folded) == 0


def gaussian_score() -> bool:
    """St1: phi_s'(x) = -x phi_s(x) / s^2 (the identity Stein's lemma integrates by parts)."""
    return sp.simplify(sp.diff(_gauss(_x, _s), _x) + _x * _gauss(_x, _s) / _s**2) == 0


def stein_form_examples() -> bool:
    """St2: E[sigma sigma'(p)] = E[p sigma(p)^2] / (2 s^2) for p ~ N(0, s^2), both sides by
    sympy's integrate, for relu (a kink) and x + x^2 (no parity)."""
    ok = True
    for sigma in (sp.Piecewise((_x, _x > 0), (0, True)), _x + _x**2):
        left = sp.integrate(sigma * sp.diff(sigma, _x) * _gauss(_x, _s), (_x, -sp.oo, sp.oo))
        right = sp.integrate(_x * sigma**2 * _gauss(_x, _s), (_x, -sp.oo, sp.oo)) / (2 * _s**2)
        ok &= sp.simplify(left - right) == 0
    return ok


def scale_mixture_sign() -> bool:
    """G1: D(relu, s) = s / sqrt(2 pi) is positive for every symbolic s > 0, so any mixture over
    s (p | x ~ N(0, s(x)^2)) weighted by x_k >= 0 keeps the sign; the identity E[E[.|x]] = E[.]
    is the tower rule."""
    relu = sp.Piecewise((_x, _x > 0), (0, True))
    d = sp.integrate(relu * sp.diff(relu, _x) * _gauss(_x, _s), (_x, -sp.oo, sp.oo))
    return sp.simplify(d - _s / sp.sqrt(2 * sp.pi)) == 0 and d.is_positive is True


def flip_derivatives() -> bool:
    """U1: even sigma has an odd derivative; odd sigma an even one (f arbitrary)."""
    odd, even = _f(_x) - _f(-_x), _f(_x) + _f(-_x)
    d_odd, d_even = sp.diff(odd, _x), sp.diff(even, _x)
    return (
        sp.simplify(d_even + d_even.subs(_x, -_x)) == 0
        and sp.simplify(d_odd - d_odd.subs(_x, -_x)) == 0
    )


def optimizer_equivariance() -> bool:
    """O1: Adam's first step -g / (|g| + eps) is odd in g; for every sign diagonal D (2 x 2,
    enumerated) and symbolic G, (D G)^T (D G) = G^T G, so polar(D G) = D G (G^T G)^(-1/2) =
    D polar(G): Muon's first step commutes with the unit flip."""
    g, eps = sp.Symbol("g", real=True), sp.Symbol("epsilon", positive=True)
    adam = -g / (sp.Abs(g) + eps)
    ok = sp.simplify(adam.subs(g, -g) + adam) == 0
    mat = sp.Matrix(2, 2, sp.symbols("g0:4", real=True))
    for signs in itertools.product((-1, 1), repeat=2):
        d = sp.diag(*signs)
        ok &= (d * d - sp.eye(2)).is_zero_matrix
        ok &= sp.simplify((d * mat).T * (d * mat) - mat.T * mat).is_zero_matrix
    return bool(ok)


def readout_average() -> bool:
    """D2b / M1: E over W_L (i.i.d. zero mean, variance s^2, independent of u, h, b_L, y) of
    <W_L u_i, W_L h + b_L - y> is K s^2 <u_i, h>; checked for K = 2 outputs and width 2 by
    expanding and replacing each monomial in W_L by its moment (E w = 0, E w^2 = s^2, independent
    entries)."""
    k, n = 2, 2
    w = sp.Matrix(k, n, sp.symbols(f"w0:{k * n}", real=True))
    u, h = sp.Matrix(sp.symbols("u0:2", real=True)), sp.Matrix(sp.symbols("h0:2", real=True))
    b, y = sp.Matrix(sp.symbols("b0:2", real=True)), sp.Matrix(sp.symbols("y0:2", real=True))
    inner = sp.expand(((w * u).T * (w * h + b - y))[0])
    poly = sp.Poly(inner, *w)
    expect = sp.Integer(0)
    for powers, coeff in poly.terms():
        moment = sp.Integer(1)
        for p in powers:
            moment *= {0: 1, 1: 0, 2: _s**2}[p]
        expect += coeff * moment
    return sp.simplify(expect - k * _s**2 * (u.T * h)[0]) == 0


def gradient_of_squared_norm() -> bool:
    """D2c: for every gate pattern D of a ReLU layer (enumerated, 2 units), with h' = D W h:
    d/dh (|h'|^2 / 2) = (D W)^T h' (= <u_i, h'> with u = D W), W and h symbolic."""
    w = sp.Matrix(2, 2, sp.symbols("w0:4", real=True))
    h = sp.Matrix(sp.symbols("h0:2", real=True))
    ok = True
    for gates in itertools.product((0, 1), repeat=2):
        d = sp.diag(*gates)
        top = d * w * h
        grad = sp.Matrix([sp.diff((top.T * top)[0] / 2, hi) for hi in h])
        ok &= sp.simplify(grad - (d * w).T * top).is_zero_matrix
    return bool(ok)


def homogeneity_decomposition() -> bool:
    """H1: x_k - w_k (w.x) / |w|^2 is uncorrelated with w.x for x ~ N(0, I) (so independent of
    it), and E[z relu(z)] = v / 2 for z ~ N(0, v): E[x_k relu(w.x) | w] = w_k / 2."""
    w = sp.symbols("w0:3", real=True)
    z_cov = [sp.Integer(int(i == 0)) for i in range(3)]  # Cov(x_0, x_j)
    cov_wx = sum(wi * ci for wi, ci in zip(w, z_cov, strict=True))  # Cov(x_0, w.x) = w_0
    norm2 = sum(wi**2 for wi in w)
    residual = sp.simplify(cov_wx - w[0] * norm2 / norm2)
    v = sp.Symbol("v", positive=True)
    relu_moment = sp.integrate(_x**2 * _gauss(_x, sp.sqrt(v)), (_x, 0, sp.oo))
    return residual == 0 and sp.simplify(relu_moment - v / 2) == 0


# ------------------------------------------------------------ exact enumerations (rationals)


def flip_enumeration(sigma: Callable[[Fraction], Fraction], sigma_prime, x, law: Law) -> Fraction:
    """E[x_0 g] for one hidden layer (2 units, input x), MSE with target 1/2 and one output:
    W_1, b_1, W_2 each entry from `law`, every combination enumerated (g = dl/dp_0)."""
    total = Fraction(0)
    for combo in itertools.product(law, repeat=4 + 2 + 2):
        prob = Fraction(1)
        for _, p in combo:
            prob *= p
        v = [c[0] for c in combo]
        w1, b1, w2 = (v[0:2], v[2:4]), v[4:6], v[6:8]
        pre = [sum((a * xi for a, xi in zip(w1[r], x, strict=True)), b1[r]) for r in range(2)]
        out = sum(w2[r] * sigma(pre[r]) for r in range(2))
        g = (out - Fraction(1, 2)) * w2[0] * sigma_prime(pre[0])
        total += prob * x[0] * g
    return total


def unit_flip_enumeration() -> bool:
    """U2: Rademacher init (sign-symmetric), non-negative input x = (1, 2): E[x_0 g] = 0 exactly
    for even sigma = x^2 and odd sigma = x^3 + x (the unit flip), but not for sigma = x^2 + x
    (neither odd nor even), which shows the enumeration can see a nonzero drift."""
    x = (Fraction(1), Fraction(2))
    even = flip_enumeration(lambda p: p * p, lambda p: 2 * p, x, RADEMACHER)
    odd = flip_enumeration(lambda p: p**3 + p, lambda p: 3 * p * p + 1, x, RADEMACHER)
    neither = flip_enumeration(lambda p: p * p + p, lambda p: 2 * p + 1, x, RADEMACHER)
    return even == 0 and odd == 0 and neither != 0


def symmetric_inputs_enumeration() -> bool:
    """U3: (W, x) -> (-W, -x): with x_k drawn too from a sign-symmetric law (Rademacher) and
    sigma = x^2 + x (no parity), E[x_0 g] = 0 exactly; with the skewed zero-mean inputs
    {-1 w.p. 2/3, 2 w.p. 1/3} it is not 0 (a zero mean alone does not suffice)."""

    def over_inputs(law: Law) -> Fraction:
        total = Fraction(0)
        for (x0, p0), (x1, p1) in itertools.product(law, repeat=2):
            total += (
                p0
                * p1
                * flip_enumeration(lambda p: p * p + p, lambda p: 2 * p + 1, (x0, x1), RADEMACHER)
            )
        return total

    return over_inputs(RADEMACHER) == 0 and over_inputs(SKEW_RIGHT) != 0


def gate_base_case() -> bool:
    """D1a: E[W_1 W_2 1(gate)] = 0 and E[W_1^2 1(gate)] = 1/2 by sympy in polar coordinates."""
    off, diag = derive_gate_moments()
    return off == 0 and diag == sp.Rational(1, 2)


def d1_enumeration() -> bool:
    """D1b: exact E[B^T B | h] over Rademacher gating layers with random biases (scales chosen
    so that no pre-activation is 0) equals alpha_l / (K s_L^2) times the identity, for one and
    for two gating layers: the row flips' factor n s^2 / 2 per layer."""
    h = (Fraction(1), Fraction(1, 3))
    ok = True
    for widths, scales in (((3,), (Fraction(1, 7),)), ((2, 3), (Fraction(1, 7), Fraction(1, 11)))):
        moment, ties = enumerate_second_moment(h, widths, RADEMACHER, scales)
        if ties:
            return False
        depth = len(widths) + 2  # the input, layer l = 1, then the gating layers
        net = DepthNet((2, 2, *widths), 1, (1.0,) * depth, (1.0,) * depth, 1)
        want = alpha(net)  # K = 1, s_L^2 = 1: alpha_l is the factor itself
        ok &= all(
            sp.Rational(moment[i][j].numerator, moment[i][j].denominator) == (want if i == j else 0)
            for i in range(2)
            for j in range(2)
        )
    return bool(ok)


def dead_layer_probability() -> bool:
    """D1c: P(h_l != 0) without biases = prod_k (1 - 2^-n_k) over layers 1..l: the recursion in
    theory.depth.alive_probability against an enumeration of the 2^n equally likely gate
    patterns of each layer (a sign-symmetric continuous row fires w.p. 1/2 given a nonzero
    input, independently across rows)."""
    for widths in ((3, 2), (3, 2, 3)):
        net = DepthNet(widths, 1, (1.0,) * len(widths), (0.0,) * len(widths), len(widths) - 1)
        direct = Fraction(1)
        for n in widths[1:]:
            patterns = list(itertools.product((0, 1), repeat=n))
            direct *= Fraction(sum(any(p) for p in patterns), len(patterns))
        if alive_probability(net) != sp.Rational(direct.numerator, direct.denominator):
            return False
    return True


def counterexample_enumeration() -> bool:
    """X2: the skewed zero-mean law {-1 w.p. 2/3, +2 w.p. 1/3}, x = 1, layer 1 of width 2, one
    gating layer of width 2, no biases: theory.depth's enumeration and an independent brute
    force written here agree and are negative (E<v_1, v_2> = K s_L^2 times this)."""
    moment, _ = enumerate_unconditional((Fraction(1),), 2, (2,), SKEW_RIGHT, (Fraction(0),))
    brute = Fraction(0)
    for combo in itertools.product(SKEW_RIGHT, repeat=2 + 4):
        prob = Fraction(1)
        for _, p in combo:
            prob *= p
        a = [c[0] for c in combo]
        hl = [max(a[0], 0), max(a[1], 0)]  # layer 1: relu(W_1 * 1)
        w = ((a[2], a[3]), (a[4], a[5]))
        gates = [int(w[t][0] * hl[0] + w[t][1] * hl[1] > 0) for t in range(2)]
        brute += prob * sum(gates[t] * w[t][0] * w[t][1] for t in range(2))
    return moment[0][1] == brute < 0


@dataclass(frozen=True)
class Step:
    """One checked step: the argument it belongs to, what it states, and its check."""

    argument: str
    statement: str
    check: Callable[[], bool]


def _gaussian_facts() -> bool:
    return all(verify_identities().values())


STEPS: dict[str, Step] = {
    "M1": Step("Lemma M", "averaging W_L first", readout_average),
    "P1": Step("Parity", "odd or even sigma gives an odd h", parity_makes_h_odd),
    "S1": Step("Lemma S", "h(x) + h(-x) = (sigma^2(x) - sigma^2(-x))'/2", fold_identity),
    "S2": Step("Lemma S", "the fold of a symmetric law", fold_of_symmetric_law),
    "St1": Step("Lemma St", "the Gaussian score", gaussian_score),
    "St2": Step("Lemma St", "Stein's form on two activations", stein_form_examples),
    "G1": Step("Lemma G", "a sign for every s survives mixing", scale_mixture_sign),
    "U1": Step("Unit flip", "derivatives of odd and even sigma", flip_derivatives),
    "U2": Step("Unit flip", "E[x_k g] = 0 by enumeration", unit_flip_enumeration),
    "U3": Step("Unit flip", "sign-symmetric inputs by enumeration", symmetric_inputs_enumeration),
    "O1": Step("Unit flip", "Adam and Muon commute with the flip", optimizer_equivariance),
    "D1a": Step("Theorem D1", "the one-gate base case", gate_base_case),
    "D1b": Step("Theorem D1", "alpha_l by enumeration", d1_enumeration),
    "D1c": Step("Theorem D1", "the dead-layer probability", dead_layer_probability),
    "D2a": Step("Theorem D2", "E relu(q)^2 = v/2, P(q > 0) = 1/2", _gaussian_facts),
    "D2b": Step("Theorem D2", "averaging W_L in the MSE gradient", readout_average),
    "D2c": Step("Theorem D2", "<u_i, h'> is a gradient", gradient_of_squared_norm),
    "H1": Step("Lemma H", "ReLU homogeneity with Gaussian inputs", homogeneity_decomposition),
    "X2": Step("Counterexample X", "the skewed law by enumeration", counterexample_enumeration),
}


def check_all() -> dict[str, bool]:
    """Every step's check, by id."""
    return {sid: bool(step.check()) for sid, step in STEPS.items()}
