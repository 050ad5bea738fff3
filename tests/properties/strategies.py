"""Hypothesis strategies shared by the property suites: activations (registry entries and random
expressions from a small grammar), losses, network shapes, init and input laws."""

from __future__ import annotations

import hashlib

import sympy as sp
from hypothesis import strategies as st

from theory import registry

x = registry.x

# Registry activations whose Monte Carlo has finite variance at the sizes drawn here.
REGISTRY_ACTIVATIONS = (
    "relu",
    "gelu",
    "silu",
    "tanh",
    "identity",
    "leaky_relu",
    "relu2",
    "relu2_clip",
    "gelu2",
    "gelu2_clip",
)

# The grammar's building blocks: bounded growth (at most quadratic), so moments stay finite.
_TERMS: tuple[sp.Expr, ...] = (
    x,
    sp.Piecewise((x, x > 0), (0, True)),  # relu
    sp.Piecewise((0, x > 0), (x, True)),  # min(x, 0)
    sp.tanh(x),
    sp.exp(-(x**2) / 2),
    x * sp.tanh(x),
    sp.Abs(x),
    sp.sin(x),
    1 / (1 + sp.exp(-x)),
)
_COEFFS = (sp.Rational(-2), sp.Rational(-1), sp.Rational(-1, 2), sp.Rational(1, 2), sp.Integer(1))


@st.composite
def grammar_activations(draw: st.DrawFn) -> str:
    """A random activation c1*t1 + c2*t2 (+ c3*t3), registered under a name derived from it."""
    n_terms = draw(st.integers(1, 3))
    idx = draw(st.lists(st.integers(0, len(_TERMS) - 1), min_size=n_terms, max_size=n_terms))
    coeffs = draw(st.lists(st.sampled_from(_COEFFS), min_size=n_terms, max_size=n_terms))
    expr = sp.Add(*(c * _TERMS[i] for c, i in zip(coeffs, idx, strict=True)))
    if expr.is_constant():
        expr = expr + x  # keep the draw a function of x (a constant has no gradient story)
    name = "gen_" + hashlib.sha1(sp.srepr(expr).encode()).hexdigest()[:10]
    registry.register_activation(name, expr)
    return name


activations = st.one_of(st.sampled_from(REGISTRY_ACTIVATIONS), grammar_activations())
losses = st.sampled_from(("mse", "cross_entropy"))
inits = st.sampled_from(("gaussian", "uniform"))
inputs = st.sampled_from(("gaussian", "sphere", "uniform", "halfnormal"))
seeds = st.integers(0, 2**31 - 1)


@st.composite
def network_shapes(draw: st.DrawFn) -> dict:
    """Widths/depth/outputs/scales for a batch of random MLPs (small enough for the CPU)."""
    depth = draw(st.integers(1, 3))
    return {
        "d_in": draw(st.sampled_from((8, 16, 32))),
        "widths": tuple(draw(st.sampled_from((16, 32, 64))) for _ in range(depth)),
        "n_out": draw(st.sampled_from((2, 4, 10))),
        "inputs_per_net": draw(st.sampled_from((8, 16))),
        "w_gain": draw(st.sampled_from((0.5, 1.0, 2.0))),
        "bias_std": draw(st.sampled_from((0.0, 0.1))),
    }
