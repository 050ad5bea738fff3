"""Theorem 1.1 (claim C1): moments of the effective downstream matrix of a ReLU MLP at init.

Network: h_0 = x, p_k = W_k h_{k-1} + b_k, h_k = relu(p_k) (k < L), output W_L h_{L-1} + b_L;
V_eff = W_L D_{L-1} W_{L-1} ... D_{l+1} W_{l+1}. With independent rows whose (row, bias) law is
sign-symmetric: E[v_i] = 0, E<v_i, v_j> = 0 (i != j) and E|v_i|^2 = K s_L^2 prod (n_k s_k^2 / 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from theory.signs import Prediction


@dataclass(frozen=True)
class EffectiveConfig:
    """A depth-L ReLU MLP: widths = (n_0, ..., n_{L-1}) (n_0 the input), `outputs` = K,
    weight_var[k-1] = s_k^2 the variance of W_k's entries (k = 1..L), `layer` = l (1 <= l < L),
    `biases`: random sign-symmetric biases everywhere (True) or zero biases (False)."""

    widths: tuple[int, ...]
    outputs: int
    weight_var: tuple[float, ...]
    layer: int
    biases: bool = False  # random (sign-symmetric) biases in every layer, or none at all

    def __post_init__(self) -> None:
        depth = len(self.widths)
        if depth < 2:
            raise ValueError("widths: need the input width and at least one hidden width")
        if any(int(n) != n or n < 1 for n in self.widths):
            raise ValueError(f"widths: every width must be a positive integer, got {self.widths}")
        if int(self.outputs) != self.outputs or self.outputs < 1:
            raise ValueError(f"outputs: must be a positive integer, got {self.outputs}")
        if len(self.weight_var) != depth:
            raise ValueError(
                f"weight_var: need one variance per weight matrix ({depth}), "
                f"got {len(self.weight_var)}"
            )
        if any(not v > 0 for v in self.weight_var):
            raise ValueError(f"weight_var: variances must be > 0, got {self.weight_var}")
        if not 1 <= self.layer < depth:
            raise ValueError(f"layer: must satisfy 1 <= layer < L = {depth}, got {self.layer}")

    @property
    def depth(self) -> int:
        return len(self.widths)


# The network the Monte Carlo estimates of C1 use (d_in 16, two hidden layers of 32, K = 4,
# variance 2 / fan_in, layer 1); `empirics.ledger.verify` rebuilds it from the estimator's own
# config.
C1_REFERENCE = EffectiveConfig(
    widths=(16, 32, 32), outputs=4, weight_var=(2 / 16, 2 / 32, 2 / 32), layer=1
)


def expected_norm(cfg: EffectiveConfig) -> sp.Expr:
    """alpha_l = K s_L^2 prod_{k=l+1}^{L-1} n_k s_k^2 / 2: E|v_i|^2 given p_l whenever h_l != 0
    or b_{l+1} is random (theory.depth, Theorem D1); `unconditional_norm` adds the dead layer."""
    value = sp.Integer(cfg.outputs) * sp.nsimplify(cfg.weight_var[-1])
    for k in range(cfg.layer + 1, cfg.depth):
        value *= sp.Integer(cfg.widths[k]) * sp.nsimplify(cfg.weight_var[k - 1]) / 2
    return value


def unconditional_norm(cfg: EffectiveConfig) -> sp.Expr:
    """E|v_i|^2 over everything: alpha_l, times P(h_l != 0) when there are no biases (a dead
    layer l then gives V = 0; inputs nonzero a.s., continuous sign-symmetric init)."""
    from theory.depth import DepthNet, alive_probability

    if cfg.biases:
        return expected_norm(cfg)
    net = DepthNet(cfg.widths, cfg.outputs, cfg.weight_var, (0.0,) * cfg.depth, cfg.layer)
    return expected_norm(cfg) * alive_probability(net)


def derive_gate_moments() -> tuple[sp.Expr, sp.Expr]:
    """Base case by sympy: for (W_1, W_2) i.i.d. N(0, 1) and a gate 1(a W_1 + b W_2 > 0) through
    the origin (zero bias: sign flip invariant), return (E[W_1 W_2 gate], E[W_1^2 gate]).

    In polar coordinates the gate is the half-plane theta in (t0 - pi/2, t0 + pi/2) for every
    direction t0, and r^3 e^{-r^2/2} integrates separately."""
    r = sp.Symbol("r", positive=True)
    theta, t0 = sp.symbols("theta t0", real=True)
    radial = sp.integrate(r**3 * sp.exp(-(r**2) / 2), (r, 0, sp.oo)) / (2 * sp.pi)
    half = (theta, t0 - sp.pi / 2, t0 + sp.pi / 2)
    off = sp.simplify(radial * sp.integrate(sp.cos(theta) * sp.sin(theta), half))
    diag = sp.simplify(radial * sp.integrate(sp.cos(theta) ** 2, half))
    return off, diag


def _product_text(cfg: EffectiveConfig, norm: sp.Expr) -> str:
    """alpha_l * (1 - dead) = value: the exact rational (2^32 - 1)/2^34 printed whole says less
    than its two factors do."""
    alpha_l = expected_norm(cfg)
    if norm == alpha_l:
        return f"{norm}"
    dead = sp.nsimplify(1 - norm / alpha_l)
    return f"alpha_l (1 - P(dead)) = {alpha_l} * (1 - {dead}) = {float(norm):.10g}"


def predict_c1(cfg: EffectiveConfig = C1_REFERENCE) -> dict[str, Prediction]:
    """The three C1 quantities: mean (E[v_i]), offdiag (E<v_i, v_j>), norm (E|v_i|^2)."""
    off, diag = derive_gate_moments()
    base = f"sympy base case: E[W1 W2 1(gate)] = {off}, E[W1^2 1(gate)] = {diag}"
    flip = (
        "top down: average W_L out, then for the top gating layer flip (row m of W_k, b_k,m): "
        "the gate d_m -> 1 - d_m a.s. (pre-activation a.s. nonzero) and W_mr W_mr' is kept, "
        "and nothing left depends on that row, so E[d_m W_mr W_mr' | below] = s_k^2 "
        "delta_rr' / 2; repeat down to layer l+1 (theory.depth, Theorem D1)"
    )
    edge = (
        "edge case: if h_{k-1} = 0 and b_k = 0 the gates are deterministic (relu'(0) = 0), the "
        "half factor fails and E|v_i|^2 is smaller, while E<v_i, v_j> stays 0"
    )
    norm = unconditional_norm(cfg)
    return {
        "mean": Prediction(
            sp.Integer(0),
            "zero",
            "argument",
            "Lemma M: W_L is zero-mean and independent of everything below",
        ),
        "offdiag": Prediction(
            sp.Integer(0),
            "zero",
            "argument" if off == 0 and diag == sp.Rational(1, 2) else "numeric",
            f"exactly 0 for i != j under sign-symmetric init (the paper says >= 0): {flip}; "
            f"{base}; {edge}",
        ),
        "norm": Prediction(
            norm,
            "positive",
            "argument",
            f"E|v_i|^2 = K s_L^2 prod_(k=l+1..L-1) n_k s_k^2/2 = {expected_norm(cfg)} given "
            f"h_l != 0; unconditionally {_product_text(cfg, norm)} for {cfg} (zero biases: times "
            f"P(h_l != 0), the event that all of layer l is dead); {edge}",
        ),
    }
