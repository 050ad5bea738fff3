"""Remark A.2 at init: the covariance term of E[dl/dW_ij] at layer 1 (ReLU, Gaussian W_1, MSE).

E[dl/dW_ij] = E[dl/dp_i] E[x_j] + Cov_x(dl/dp_i, x_j) (C5's split). With p_i = w_i.x, w_i ~
N(0, s^2 I), zero biases and E[dl/dp_i | x, W_1] = alpha relu(p_i) (MSE with sign-symmetric
layers above, `theory.depth.alpha`), both terms are exact at init: covariance term = alpha s
Cov(|x|, x_j)/sqrt(2 pi), mean term = alpha s E|x| E x_j/sqrt(2 pi), ratio Cov(|x|, x_j)/(E|x| E
x_j); half-normal inputs: d Gamma(d/2)^2/(2 Gamma((d+1)/2)^2) - 1 = Var(R)/E[R]^2, R ~ chi_d.
Library module (no CLI): `predict_covariance_init(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp

from theory.depth import DepthNet, alpha
from theory.signs import Prediction

# Input laws with an answer here: half-normal |N(0, 1)| coordinates (closed form), any
# sign-symmetric law (both terms exactly 0), uniform on [0, 1] (sign by the argument only).
INPUT_LAWS: tuple[str, ...] = ("halfnormal", "gaussian", "uniform")

d_sym = sp.Symbol("d", positive=True, integer=True)
r_sym = sp.Symbol("r", nonnegative=True)
s_sym = sp.Symbol("s", positive=True)
z_sym = sp.Symbol("z", real=True)

# Why E[dl/dp_i | x, W_1] = alpha relu(p_i): with zero biases, dl/dp_i = 1(p_i > 0) <v_i, yhat -
# y> and yhat = sum_k v_k h_k; conditional on h_1, the flip of one row of each layer above leaves
# the law unchanged, so E<v_i, v_k> = alpha delta_ik and E<v_i, y> = 0 (given h_1 != 0, which
# p_i > 0 ensures at the first gating layer; `theory.depth` derives alpha).
FACTORIZATION = (
    "E[dl/dp_i | x, W_1] = alpha relu(p_i): MSE, zero biases, sign-symmetric weights above "
    "(E<v_i, v_k> = alpha delta_ik given h_1, exact when at most one gating layer lies above)"
)
ASSOCIATION = (
    "independent coordinates, x_j >= 0 non-degenerate: |x| = sqrt(x_j^2 + rest) is strictly "
    "increasing in x_j, so Cov(|x|, x_j | rest) > 0 (Chebyshev's association inequality) and "
    "Cov(|x|, x_j) = E[Cov(|x|, x_j | rest)] > 0 (E[x_j | rest] is constant)"
)
POLAR = (
    "half-normal: x = |z|, |x| = R ~ chi_d independent of u = z / R uniform on the sphere, so "
    "E[|x| x_j] = E[R^2] E|u_j| = d E|z_j| / E[R]; Cov / (E|x| E x_j) = d / E[R]^2 - 1 = "
    "Var(R) / E[R]^2 > 0"
)


def relu_conditional_mean() -> sp.Expr:
    """E[relu(w.x) | x] with w ~ N(0, s^2 I) and |x| = r: w.x ~ N(0, s^2 r^2), so the integral of
    s r z phi(z) over z > 0; sympy's integral, s r / sqrt(2 pi)."""
    phi = sp.exp(-(z_sym**2) / 2) / sp.sqrt(2 * sp.pi)
    return sp.simplify(sp.integrate(s_sym * r_sym * z_sym * phi, (z_sym, 0, sp.oo)))


def chi_mean(d: int | sp.Expr = d_sym) -> sp.Expr:
    """E[R] for R ~ chi_d: sqrt(2) Gamma((d + 1)/2) / Gamma(d/2) (exact for an integer d)."""
    return sp.sqrt(2) * sp.gamma(sp.Rational(1, 2) * (d + 1)) / sp.gamma(sp.Rational(1, 2) * d)


def chi_moment(d: int, k: int) -> sp.Expr:
    """E[R^k] for R ~ chi_d by sympy's integral of the chi density (checks `chi_mean` and
    E[R^2] = d)."""
    r = sp.Symbol("r", positive=True)
    dens = r ** (d - 1) * sp.exp(-(r**2) / 2) / (2 ** sp.Rational(d - 2, 2) * sp.gamma(sp.S(d) / 2))
    return sp.simplify(sp.integrate(r**k * dens, (r, 0, sp.oo)))


def halfnormal_terms(d: int) -> dict[str, sp.Expr]:
    """Exact E|x|, E x_j, E[|x| x_j] and Cov(|x|, x_j) for x_j = |z_j| i.i.d., z ~ N(0, I_d)
    (the polar decomposition, `POLAR`), and the ratio Cov / (E|x| E x_j)."""
    er = chi_mean(d)
    ex = sp.sqrt(2 / sp.pi)  # E|z_j|
    cross = d * ex / er
    cov = sp.simplify(cross - er * ex)
    return {
        "E|x|": er,
        "E x_j": ex,
        "E[|x| x_j]": cross,
        "Cov(|x|, x_j)": cov,
        "ratio": sp.simplify(d / er**2 - 1),
    }


def halfnormal_cross_moment_quadrature(d: int, dps: int = 20) -> mpmath.mpf:
    """E[|x| x_1] for half-normal x in dimension d >= 2 by mpmath quadrature over (x_1, T), with
    x_1 = |z_1| and T = |(z_2, ..., z_d)| ~ chi_{d-1} independent of it: an independent check of
    the polar decomposition (it never uses the sphere)."""
    mpmath.mp.dps = dps
    k = d - 1
    chi = 1 / (mpmath.mpf(2) ** (mpmath.mpf(k) / 2 - 1) * mpmath.gamma(mpmath.mpf(k) / 2))

    def f(x1: mpmath.mpf, t: mpmath.mpf) -> mpmath.mpf:
        dens = mpmath.sqrt(2 / mpmath.pi) * mpmath.exp(-x1 * x1 / 2)
        dens *= chi * t ** (k - 1) * mpmath.exp(-t * t / 2)
        return mpmath.sqrt(x1 * x1 + t * t) * x1 * dens

    return mpmath.quad(f, [0, mpmath.inf], [0, mpmath.inf])


def verify_identities(d_values: tuple[int, ...] = (2, 3, 32)) -> dict[str, bool]:
    """Every step the predictions use, checked: the Gaussian integral, E[R] and E[R^2] = d
    against the chi density, the ratio as Var(R) / E[R]^2, and E[|x| x_1] by quadrature."""
    checks = {
        "E[relu(w.x) | x] = s |x| / sqrt(2 pi)": sp.simplify(
            relu_conditional_mean() - s_sym * r_sym / sp.sqrt(2 * sp.pi)
        )
        == 0
    }
    for d in d_values:
        er = chi_mean(d)
        checks[f"E[R] = chi_mean, d = {d}"] = sp.simplify(chi_moment(d, 1) - er) == 0
        checks[f"E[R^2] = d, d = {d}"] = sp.simplify(chi_moment(d, 2) - d) == 0
        ratio = halfnormal_terms(d)["ratio"]
        checks[f"ratio = Var(R)/E[R]^2, d = {d}"] = sp.simplify(ratio - (d - er**2) / er**2) == 0
    for d in (2, 5):
        exact = halfnormal_terms(d)["E[|x| x_j]"]
        got = halfnormal_cross_moment_quadrature(d)
        checks[f"E[|x| x_1] by quadrature, d = {d}"] = bool(
            abs(got - mpmath.mpf(str(sp.N(exact, 30)))) < mpmath.mpf(10) ** -15
        )
    return checks


@dataclass(frozen=True)
class CovarianceNet:
    """The network of a Remark A.2 row: input size d, hidden widths, K outputs, Var W_k =
    w_gain / fan_in, zero biases, inputs i.i.d. by `inputs`; the analysed layer is layer 1."""

    d_in: int = 32
    widths: tuple[int, ...] = (64, 64)
    outputs: int = 10
    w_gain: float = 1.0
    inputs: str = "halfnormal"

    def __post_init__(self) -> None:
        if self.inputs not in INPUT_LAWS:
            raise ValueError(f"inputs: {self.inputs!r}; valid: {', '.join(INPUT_LAWS)}")
        if not 1 <= len(self.widths) <= 2:
            # Two gating layers above layer 1 would bring the dead-layer event into alpha.
            raise ValueError(f"widths: one or two hidden layers, got {self.widths}")

    def depth_net(self) -> DepthNet:
        sizes = (self.d_in, *self.widths)
        return DepthNet(
            widths=sizes,
            outputs=self.outputs,
            weight_var=tuple(sp.Rational(self.w_gain).limit_denominator(10**9) / n for n in sizes),
            bias_var=(0,) * len(sizes),
            layer=1,
        )

    @property
    def s(self) -> sp.Expr:
        return sp.sqrt(sp.Rational(self.w_gain).limit_denominator(10**9) / self.d_in)


def derive_terms(net: CovarianceNet) -> dict[str, sp.Expr | None]:
    """The covariance and mean terms at init and their ratio, exact where they are known (None
    where only the sign is: uniform inputs)."""
    a = alpha(net.depth_net())
    scale = a * relu_conditional_mean().subs({s_sym: net.s, r_sym: 1})  # alpha s / sqrt(2 pi)
    if net.inputs == "gaussian":
        return {"alpha": a, "cov": sp.Integer(0), "mean": sp.Integer(0), "ratio": None}
    if net.inputs == "uniform":
        return {"alpha": a, "cov": None, "mean": None, "ratio": None}
    t = halfnormal_terms(net.d_in)
    return {
        "alpha": a,
        "cov": scale * t["Cov(|x|, x_j)"],
        "mean": scale * t["E|x|"] * t["E x_j"],
        "ratio": t["ratio"],
    }


def _sign(value: sp.Expr) -> str:
    if value == 0:
        return "zero"
    positive = value.is_positive
    return "positive" if positive else "negative" if positive is False else "undetermined"


def predict_covariance_init(net: CovarianceNet) -> Prediction:
    """E[Cov_x(dl/dp_i, x_j)] at init, layer 1 (`derive_terms`), with its sign and method."""
    terms = derive_terms(net)
    if net.inputs == "gaussian":
        return Prediction(
            sp.Integer(0),
            "zero",
            "argument",
            "sign-symmetric inputs: x -> -x keeps the law and |x|, so Cov(|x|, x_j) = 0; "
            + FACTORIZATION,
        )
    if net.inputs == "uniform":
        return Prediction(None, "positive", "argument", ASSOCIATION + "; " + FACTORIZATION)
    value = terms["cov"]
    return Prediction(
        value, _sign(value), "sympy", f"alpha s Cov(|x|, x_j)/sqrt(2 pi); {POLAR}; {FACTORIZATION}"
    )


def predict_covariance_ratio(net: CovarianceNet) -> Prediction:
    """Covariance term / mean term at init: Cov(|x|, x_j) / (E|x| E x_j), alpha and s cancel."""
    if net.inputs != "halfnormal":
        raise ValueError(f"the ratio has a closed form for halfnormal inputs, got {net.inputs!r}")
    value = derive_terms(net)["ratio"]
    return Prediction(value, _sign(value), "sympy", POLAR)
