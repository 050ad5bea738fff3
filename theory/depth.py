"""Theorems 1.1 and 1.2 below several gating layers: a ReLU MLP above the analysed layer l.

Network h_0 = x, p_k = W_k h_{k-1} + b_k, h_k = sigma_k(p_k), output W_L h_{L-1} + b_L; layers
l+1..L-1 are ReLU (the gating layers), sigma at layer l is any activation. V = d out / d h_l.
Exact enumeration over discrete init laws (`enumerate_second_moment`) checks both. Library module.

Theorem D1 (second moment of V given p_l). Any i.i.d. zero-mean init whose (row, bias) law is
sign-symmetric (Gaussian, uniform, Rademacher, ...) with no ties (P(q = 0) = 0 where the input
of a layer is nonzero), W_L zero-mean i.i.d.: E[V^T V | p_l] = alpha_l I with alpha_l =
K s_L^2 prod_{k=l+1}^{L-1} n_k s_k^2 / 2 whenever h_l != 0 or b_{l+1} is random, and 0 when
h_l = 0 and b_{l+1} = 0. Proof, top down: E over W_L (independent of everything below) gives
<v_i, v_j> -> K s_L^2 <u_i, u_j>, u = D_{L-1} W_{L-1} ... D_{l+1} W_{l+1}; u_i = sum_t d_t
W_t. u'_i with W_t the t-th row of the top gating layer and u' the part below it. Given the layers
below, flipping (W_t, b_t) -> -(W_t, b_t) maps d_t to 1 - d_t and keeps (W_t.u'_i)(W_t.u'_j), and
nothing else depends on that row, so E[d_t (W_t.u'_i)(W_t.u'_j)] = s^2 <u'_i, u'_j> / 2; summing
over t gives the factor n_{L-1} s_{L-1}^2 / 2; repeat down to layer l+1, where E[d_m W_mi W_mj | h]
= s^2 delta_ij / 2. If some layer's input is 0 with zero bias, its gates and everything below in
u vanish together, so both sides are 0. Unconditionally E|v_i|^2 = alpha_l P(h_l != 0 or b_{l+1}
random) (`alive_probability`). Without sign symmetry the flip is gone: a zero-mean two-point law
gives E<v_i, v_j> | h < 0 (`enumerate_second_moment`, exact in rationals).

Theorem D2 (g at a hidden layer, MSE). With y, x independent of the weights: E[dl/dp_i | p_l] =
sigma'(p_i) (K s_L^2 / 2) d/dh_i Phi(h_l), Phi(h) = E[|h_{L-1}|^2 | h_l = h] (E over W_L, b_L
first: E<W_L u, W_L h_{L-1} + b_L - y> = K s_L^2 <u, h_{L-1}>, and <u_i, h_{L-1}> = d/dh_i
|h_{L-1}|^2 / 2). For ReLU above with sign-symmetric continuous rows and biases, E[relu(q)^2] =
E[q^2] / 2, so Phi(h) = a_l |h|^2 + const with a_l = prod n_k s_k^2 / 2, and
g(p) = alpha_l sigma(p_i) sigma'(p_i): the one-layer formula with K s^2 replaced by alpha_l.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

from theory.certify import sign_on_side
from theory.gradient import drift_product
from theory.registry import Activation
from theory.signs import Prediction, weakest

INIT_LAWS: tuple[str, ...] = ("gaussian", "symmetric", "zero_mean")


@dataclass(frozen=True)
class DepthNet:
    """widths = (n_0, ..., n_{L-1}) with n_0 the input; `outputs` = K; weight_var[k-1] = s_k^2
    and bias_var[k-1] = s_{b,k}^2 for k = 1..L; `layer` = l (1 <= l < L)."""

    widths: tuple[int, ...]
    outputs: int
    weight_var: tuple[float, ...]
    bias_var: tuple[float, ...]
    layer: int

    def __post_init__(self) -> None:
        depth = len(self.widths)
        if depth < 2 or any(int(n) != n or n < 1 for n in self.widths):
            raise ValueError(f"widths: need >= 2 positive integers, got {self.widths}")
        if int(self.outputs) != self.outputs or self.outputs < 1:
            raise ValueError(f"outputs: must be a positive integer, got {self.outputs}")
        for name, var in (("weight_var", self.weight_var), ("bias_var", self.bias_var)):
            if len(var) != depth:
                raise ValueError(f"{name}: need {depth} entries (one per layer), got {len(var)}")
        if any(not v > 0 for v in self.weight_var):
            raise ValueError(f"weight_var: every entry must be > 0, got {self.weight_var}")
        if any(not v >= 0 for v in self.bias_var):
            raise ValueError(f"bias_var: every entry must be >= 0, got {self.bias_var}")
        if not 1 <= self.layer < depth:
            raise ValueError(f"layer: must satisfy 1 <= layer < L = {depth}, got {self.layer}")

    @property
    def depth(self) -> int:
        return len(self.widths)

    @property
    def gating_layers(self) -> int:
        """Number of ReLU layers between layer l and the readout."""
        return self.depth - 1 - self.layer

    def to_dict(self) -> dict:
        return {
            "input_size": self.widths[0],
            "widths": list(self.widths[1:]),
            "layer": self.layer,
            "outputs": self.outputs,
            "weight_var": list(self.weight_var),
            "bias_var": list(self.bias_var),
        }


def _q(v: float) -> sp.Expr:
    return sp.nsimplify(v, rational=True)


def alpha(net: DepthNet) -> sp.Expr:
    """alpha_l = K s_L^2 prod_{k=l+1}^{L-1} n_k s_k^2 / 2 (exact rational for rational inputs)."""
    value = sp.Integer(net.outputs) * _q(net.weight_var[-1])
    for k in range(net.layer + 1, net.depth):
        value *= sp.Integer(net.widths[k]) * _q(net.weight_var[k - 1]) / 2
    return value


def alive_probability(net: DepthNet, input_nonzero: bool = True) -> sp.Expr:
    """P(h_l != 0) for ReLU layers 1..l with continuous sign-symmetric init and inputs != 0 a.s.:
    a layer is all dead with probability 2^-n_k when its input is nonzero or its bias random,
    and surely when its input is 0 and its bias 0."""
    alive = sp.Integer(1 if input_nonzero else 0)
    for k in range(1, net.layer + 1):
        fire = 1 - sp.Rational(1, 2 ** net.widths[k])
        from_dead = fire if net.bias_var[k - 1] > 0 else sp.Integer(0)
        alive = alive * fire + (1 - alive) * from_dead
    return alive


def verify_identities() -> dict[str, bool]:
    """The Gaussian facts Theorem D2 uses, by sympy's integrate: E[q^2 1(q > 0)] = v / 2 and
    P(q > 0) = 1/2 for q ~ N(0, v) (any sign-symmetric law gives the same by q -> -q)."""
    q = sp.Symbol("q", real=True)
    vv = sp.Symbol("v", positive=True)
    dens = sp.exp(-(q**2) / (2 * vv)) / sp.sqrt(2 * sp.pi * vv)
    return {
        "E relu(q)^2 = v/2": sp.simplify(sp.integrate(q**2 * dens, (q, 0, sp.oo)) - vv / 2) == 0,
        "P(q > 0) = 1/2": sp.simplify(sp.integrate(dens, (q, 0, sp.oo)) - sp.Rational(1, 2)) == 0,
    }


def predict_second_moment(net: DepthNet, init: str = "gaussian") -> dict[str, Prediction]:
    """Theorem D1's quantities for `net`: cond_offdiag (E<v_i, v_j> | p_l, i != j), cond_diag
    (E|v_i|^2 | p_l with h_l != 0), offdiag and diag (unconditional), mean (E v_i).

    `init`: gaussian or symmetric (any sign-symmetric i.i.d. law: Theorem D1), zero_mean (no
    symmetry: only E v_i = 0 and positivity of the diagonal are proved)."""
    if init not in INIT_LAWS:
        raise ValueError(f"init must be one of {', '.join(INIT_LAWS)}, got {init!r}")
    al = alpha(net)
    alive = alive_probability(net)
    bias_next = net.bias_var[net.layer] > 0
    uncond_diag = al if bias_next else al * alive
    why_uncond = (
        "(b_{l+1} random: alpha_l also on the event h_l = 0)"
        if bias_next
        else f"times P(h_l != 0) = {alive} (zero b_{{l+1}}: a dead layer l gives V = 0)"
    )
    out = {
        "mean": Prediction(
            sp.Integer(0), "zero", "argument", "Lemma M: W_L zero-mean, independent of all below"
        )
    }
    if init in ("gaussian", "symmetric"):
        how = f"Theorem D1 (top-down row flips through {net.gating_layers} gating layers)"
        out["cond_offdiag"] = Prediction(sp.Integer(0), "zero", "argument", f"{how}; exact")
        out["offdiag"] = Prediction(sp.Integer(0), "zero", "argument", f"{how}; averaged over p_l")
        out["cond_diag"] = Prediction(
            al, "positive", "argument", f"E|v_i|^2 | p_l = alpha_l = {al} (h_l != 0); {how}"
        )
        out["diag"] = Prediction(
            uncond_diag, "positive", "argument", f"E|v_i|^2 = alpha_l {why_uncond} = {uncond_diag}"
        )
        return out
    why = (
        "no sign symmetry: E[d_m W_mi W_mj | h] need not vanish; exact enumeration with a "
        "zero-mean two-point law gives it either sign"
    )
    out["cond_offdiag"] = Prediction(None, "undetermined", "numeric", why)
    out["offdiag"] = Prediction(None, "undetermined", "numeric", why)
    positive = (
        "Lemma M: zero-mean W_L independent of B: E|v_i|^2 = K s_L^2 E|B e_i|^2 > 0 when B != 0"
    )
    out["cond_diag"] = Prediction(None, "positive", "argument", positive)
    out["diag"] = Prediction(None, "positive", "argument", positive)
    return out


def predict_hidden_gradient(net: DepthNet, activation: Activation | str, side: str) -> Prediction:
    """Theorem D2 (MSE): g(p) = alpha_l sigma(p_i) sigma'(p_i) at layer l with ReLU layers above
    and sign-symmetric continuous init; the sign on p > 0 ('pos') or p < 0 ('neg')."""
    h = drift_product(activation)
    local = sign_on_side(h, side)
    al = alpha(net)
    return Prediction(
        al * h,
        local.sign,
        weakest(local.method, "argument"),
        f"Theorem D2: g = alpha_l sigma sigma'(p_i), alpha_l = {al}; sigma*sigma': {local.detail}",
        local.pieces,
    )


# ------------------------------------------------------------ exact enumeration (discrete laws)

Law = tuple[tuple[Fraction, Fraction], ...]  # (value, probability) pairs


def two_point_law(low: Fraction, high: Fraction) -> Law:
    """The zero-mean law on {low < 0 < high}: P(high) = -low / (high - low)."""
    if not low < 0 < high:
        raise ValueError(f"need low < 0 < high, got {low}, {high}")
    p_high = -low / (high - low)
    return ((low, 1 - p_high), (high, p_high))


RADEMACHER: Law = ((Fraction(-1), Fraction(1, 2)), (Fraction(1), Fraction(1, 2)))
# Zero mean, variance 2, skewed: -1 w.p. 2/3, +2 w.p. 1/3 (and its mirror image).
SKEW_RIGHT: Law = two_point_law(Fraction(-1), Fraction(2))
SKEW_LEFT: Law = two_point_law(Fraction(-2), Fraction(1))


def _relu_layer(w, b, h):
    q = [
        sum((wi * hi for wi, hi in zip(row, h, strict=True)), Fraction(0)) + bi
        for row, bi in zip(w, b, strict=True)
    ]
    return q


def enumerate_second_moment(
    h: tuple[Fraction, ...],
    widths_above: tuple[int, ...],
    weight_law: Law,
    bias_scales: tuple[Fraction, ...],
    bias_law: Law | None = None,
) -> tuple[list[list[Fraction]], int]:
    """E[B^T B | h_l = h] exactly, B = D_{L-1} W_{L-1} ... D_{l+1} W_{l+1} (so that E[V^T V |
    h] = K s_L^2 E[B^T B | h] for any zero-mean readout of variance s_L^2, independent of B).

    Every weight of the gating layers is drawn from `weight_law`, every bias of layer k from
    bias_scales[k] * (a draw of `bias_law`, default = weight_law); all combinations are
    enumerated with their probabilities. Returns (matrix, ties) where ties counts combinations
    with a pre-activation exactly 0 (relu'(0) = 0 there; choose h and scales to make it 0)."""
    bias_law = bias_law or weight_law
    n_l = len(h)
    shapes = []
    fan_in = n_l
    for k, n in enumerate(widths_above):
        shapes.append(("W", k, n, fan_in))
        shapes.append(("b", k, n, 1))
        fan_in = n
    slots = []
    for kind, _k, rows, cols in shapes:
        law = weight_law if kind == "W" else bias_law
        slots += [law] * (rows * cols)
    moment = [[Fraction(0)] * n_l for _ in range(n_l)]
    ties = 0
    for combo in itertools.product(*slots):
        prob = Fraction(1)
        vals = []
        for value, p in combo:
            prob *= p
            vals.append(value)
        pos = 0
        act = list(h)
        jac = [[Fraction(int(i == j)) for j in range(n_l)] for i in range(n_l)]  # d h_k / d h_l
        tie = False
        for k, n in enumerate(widths_above):
            cols = len(act)
            w = [vals[pos + r * cols : pos + (r + 1) * cols] for r in range(n)]
            pos += n * cols
            b = [bias_scales[k] * v for v in vals[pos : pos + n]]
            pos += n
            q = _relu_layer(w, b, act)
            tie = tie or any(qi == 0 for qi in q)
            gates = [qi > 0 for qi in q]
            jac = [
                [
                    sum((w[r][c] * jac[c][j] for c in range(cols)), Fraction(0))
                    if gates[r]
                    else Fraction(0)
                    for j in range(n_l)
                ]
                for r in range(n)
            ]
            act = [qi if g else Fraction(0) for qi, g in zip(q, gates, strict=True)]
        ties += tie
        for i in range(n_l):
            for j in range(n_l):
                moment[i][j] += prob * sum((row[i] * row[j] for row in jac), Fraction(0))
    return moment, ties


def enumerate_unconditional(
    x: tuple[Fraction, ...],
    n_l: int,
    widths_above: tuple[int, ...],
    weight_law: Law,
    bias_scales: tuple[Fraction, ...],
) -> tuple[list[list[Fraction]], int]:
    """E[B^T B] with the analysed layer l = 1 drawn too: h_l = relu(W_1 x), W_1 of shape
    (n_l, len(x)) from `weight_law`, no bias at layer 1 (so h_l = 0 has positive probability)."""
    moment = [[Fraction(0)] * n_l for _ in range(n_l)]
    ties = 0
    for combo in itertools.product(*([weight_law] * (n_l * len(x)))):
        prob = Fraction(1)
        for _, p in combo:
            prob *= p
        w = [[combo[r * len(x) + c][0] for c in range(len(x))] for r in range(n_l)]
        h = tuple(
            max(sum((wi * xi for wi, xi in zip(row, x, strict=True)), Fraction(0)), 0) for row in w
        )
        m, t = enumerate_second_moment(h, widths_above, weight_law, bias_scales)
        ties += t
        for i in range(n_l):
            for j in range(n_l):
                moment[i][j] += prob * m[i][j]
    return moment, ties
