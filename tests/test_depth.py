"""Theorems D1/D2 below several gating layers: exact enumeration, closed forms, Monte Carlo.

Monte Carlo checks use a two-sided interval at alpha = 1e-6 (the chance that a correct theory
fails one is below 1e-6); each alternative a test must catch is >= 15 standard errors away."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import sympy as sp
import torch

from empirics.montecarlo.depth import estimate_conditional_moments
from empirics.montecarlo.estimators import estimate_conditional_mean, estimate_effective_weights
from empirics.montecarlo.presets import c1_config
from empirics.montecarlo.sampler import NetConfig, draw
from empirics.stats.estimates import SignTest
from theory.depth import (
    RADEMACHER,
    SKEW_LEFT,
    SKEW_RIGHT,
    DepthNet,
    alive_probability,
    alpha,
    enumerate_second_moment,
    enumerate_unconditional,
    predict_second_moment,
    verify_identities,
)

TEST = SignTest(alpha=1e-6)


def _inside(est, value: float) -> bool:
    return est.ci[0] <= value <= est.ci[1]


def test_alpha_and_dead_layer_probability():
    net = DepthNet((16, 2, 16, 16), 4, (2 / 16, 1.0, 2 / 16, 2 / 16), (0, 0, 0, 0), 1)
    assert alpha(net) == 4  # K s_L^2 (n_2 s_2^2 / 2) = 4 * 1/8 * 8
    assert alive_probability(net) == sp.Rational(3, 4)
    assert predict_second_moment(net)["diag"].value == 3
    with_bias = DepthNet((16, 2, 16, 16), 4, (2 / 16, 1.0, 2 / 16, 2 / 16), (0, 0.1, 0, 0), 1)
    assert predict_second_moment(with_bias)["diag"].value == 4
    assert predict_second_moment(net, "zero_mean")["cond_offdiag"].sign == "undetermined"
    assert all(verify_identities().values())


def test_enumeration_two_gating_layers_sign_symmetric():
    # Tie-free h and bias scales: E[B^T B | h] = prod n_k s_k^2 / 2 * I = I exactly.
    m, ties = enumerate_second_moment((F(1), F(1, 3)), (2, 2), RADEMACHER, (F(1, 7), F(1, 11)))
    assert ties == 0 and m == [[1, 0], [0, 1]]


def test_enumeration_skewed_counterexample_and_ties():
    right, _ = enumerate_unconditional((F(1),), 2, (2,), SKEW_RIGHT, (F(0),))
    left, _ = enumerate_unconditional((F(1),), 2, (2,), SKEW_LEFT, (F(0),))
    assert right[0][1] == F(-8, 81) and left[0][1] == F(32, 81)
    # Rademacher with ties (relu'(0) = 0 at q = 0) breaks the flip: not 0, and counted.
    rad, ties = enumerate_unconditional((F(1),), 2, (2,), RADEMACHER, (F(0),))
    assert ties > 0 and rad[0][1] != 0


def test_conditional_moments_at_depth_four():
    cfg = c1_config(widths=(16, 16, 16), bias_std=0.3)
    est = estimate_conditional_moments(
        cfg,
        generator=torch.Generator().manual_seed(0),
        n_networks=512,
        test=TEST,
        targets=("diag", "offdiag"),
    )
    a = float(alpha(DepthNet((16, 16, 16, 16), 4, (2 / 16,) * 4, (0.09,) * 4, 1)))
    assert _inside(est["diag"], a) and est["offdiag"].sign == "undetermined"
    assert not _inside(est["diag"], 1.3 * a)  # teeth: a 30 % error is caught
    # The off-diagonal's value, not only its undecided sign: its interval (at alpha = 1e-6)
    # contains the theory's 0 and is narrow enough to exclude an off-diagonal of 5 % of the
    # diagonal of either sign, so a wrong nonzero value (or an interval too wide to decide
    # anything, which "undetermined" alone would pass) fails.
    off = est["offdiag"]
    assert _inside(off, 0.0)
    assert not _inside(off, 0.05 * a) and not _inside(off, -0.05 * a), off.ci


def test_dead_layer_factor_by_monte_carlo():
    est = estimate_effective_weights(
        c1_config(widths=(2, 16, 16)),
        generator=torch.Generator().manual_seed(1),
        n_networks=1024,
        test=TEST,
        targets=("diag",),
    )["diag"]
    assert _inside(est, 3.0) and not _inside(est, 4.0)  # 4 = the formula without the event


def test_hidden_gradient_at_depth_three():
    cfg = NetConfig(
        activation="relu",
        loss="mse",
        d_in=16,
        widths=(64, 64),
        n_out=10,
        inputs_per_net=16,
        inputs="sphere",
        w_gain=2.0,
    )
    est = estimate_conditional_mean(
        cfg, "pos", generator=torch.Generator().manual_seed(2), n_networks=256, test=TEST
    )
    predicted = 10 * 2 / 64 * 2 / (3.141592653589793**0.5)  # alpha_l E[p | p > 0], p ~ N(0, 2)
    assert _inside(est, predicted) and not _inside(est, 1.5 * predicted)


def _binned_d2_z(g, n_networks: int = 256, seed: int = 3) -> list[float]:
    """z of E[dl/dp - g(p) | p in bin] over six quantile bins of p > 0 (ReLU, MSE, layer 1 of
    a 3-layer MLP): per network the mean residual over its entries in the bin, then mean and
    standard error across the independent networks."""
    cfg = NetConfig(
        activation="relu",
        loss="mse",
        d_in=16,
        widths=(64, 64),
        n_out=10,
        inputs_per_net=16,
        inputs="sphere",
        w_gain=2.0,
        dtype="float64",
    ).validate()
    d = draw(cfg, n_networks, torch.Generator().manual_seed(seed))
    p = d.p.numpy().reshape(n_networks, -1)
    resid = d.delta.numpy().reshape(n_networks, -1) - g(p)
    edges = np.quantile(p[p > 0], np.linspace(0.0, 1.0, 7))
    edges[-1] = np.inf
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        w = ((p > lo) & (p <= hi)).astype(np.float64)
        count = w.sum(axis=1)
        r = (resid * w).sum(axis=1)[count > 0] / count[count > 0]
        out.append(float(r.mean() / (r.std(ddof=1) / np.sqrt(r.size))))
    return out


def test_theorem_d2_functional_form_over_bins_of_p():
    # Theorem D2 is a statement about g(p) = E[dl/dp | p], not about one average of it: below
    # two ReLU layers, g(p) = alpha_l sigma(p) sigma'(p) = alpha_l p on p > 0 with alpha_l =
    # K s_L^2 (n_2 s_2^2 / 2) = 10 * 2/64 * 1. Six bins, each two-sided at 5 SE (normal; per-bin
    # means over 256 networks): family-wise false alarm <= 6 * 5.7e-7. Power, measured on this
    # draw: the residual's SE per bin is ~0.01 while a factor 1.5 errs by 0.5 alpha E[p | bin],
    # 0.02-0.4 (z 2.7-27, so the top bins are caught far beyond 5 SE), and the scalar form
    # alpha E[p | p > 0] (right on average, wrong shape) errs by 0.45 and 0.3 at the end bins.
    a = 10 * 2 / 64
    assert max(abs(z) for z in _binned_d2_z(lambda p: a * np.maximum(p, 0.0))) <= 5.0
    # teeth: sigma sigma' with a wrong factor, and the right mean with the wrong form, fail
    assert max(abs(z) for z in _binned_d2_z(lambda p: 1.5 * a * np.maximum(p, 0.0))) > 5.0
    flat = a * 2 / np.sqrt(np.pi)  # alpha_l E[p | p > 0] for p ~ N(0, 2)
    assert max(abs(z) for z in _binned_d2_z(lambda p: np.where(p > 0, flat, 0.0))) > 5.0
