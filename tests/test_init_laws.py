"""Init laws of the Monte Carlo sampler, the unit-flip predictions and the optimizer first step.

Moment checks use >= 6 standard errors (false alarm < 1e-8 each); sign checks use the one-look
sign test at alpha = 1e-6."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from empirics.montecarlo.depth import estimate_optimizer_first_step
from empirics.montecarlo.estimators import estimate_first_step
from empirics.montecarlo.sampler import INIT_LAWS, NetConfig, standard_draw
from empirics.stats.estimates import SignTest
from theory.drift import predict_drift_coefficient
from theory.first_step import predict_weight_drift

TEST = SignTest(alpha=1e-6)


@pytest.mark.parametrize("law", INIT_LAWS)
def test_zero_mean_unit_variance(law):
    n = 200_000
    v = standard_draw(law, (n,), torch.Generator().manual_seed(0), torch.float64, "cpu")
    assert abs(float(v.mean())) < 6 / math.sqrt(n)
    assert abs(float(v.var()) - 1) < 0.05
    skew = float(((v - v.mean()) ** 3).mean() / v.var() ** 1.5)
    assert (skew > 1.5) if law == "exponential" else abs(skew) < 0.2
    if law == "rademacher":
        assert set(v.unique().tolist()) == {-1.0, 1.0}


def test_antithetic_only_for_symmetric_laws():
    assert not NetConfig(init="exponential").validate().antithetic
    assert NetConfig(init="student_t").validate().antithetic
    with pytest.raises(ValueError, match="init="):
        NetConfig(init="cauchy").validate()


def _first_step_w(activation: str, seed: int = 0) -> tuple[float, float, tuple[float, float]]:
    """Monte Carlo E[Delta W] (mean entry, lr 1) and E[Delta b] of layer 1 of a one-hidden-layer
    MLP on non-negative (uniform) inputs, MSE; intervals at alpha = 1e-6."""
    cfg = NetConfig(
        activation=activation,
        loss="mse",
        d_in=16,
        widths=(64,),
        n_out=10,
        inputs_per_net=16,
        inputs="uniform",
        w_gain=2.0,
        bias_std=0.0,
        dtype="float64",
    )
    est = estimate_first_step(
        cfg, 1.0, generator=torch.Generator().manual_seed(seed), n_networks=1024, test=TEST
    )
    return est["W"].mean, est["W"].stderr, est["W"].ci


def _relu_weight_value() -> float:
    """The unit-flip route's value for ReLU, MSE, x ~ U[0, 1]^16, Gaussian row with s^2 = 2/16:
    E[Delta W_ik] = -alpha E[x_k D(relu, s|x|)] with alpha = K s_L^2 = 10 * 2/64 and D(relu, s)
    = s D(relu, 1) (relu relu' is 1-homogeneous); E over x by 2e6 draws (relative SE ~2e-4,
    negligible beside the Monte Carlo's 0.8 %)."""
    x = np.random.default_rng(0).random((2_000_000, 16))
    s = np.sqrt(2 / 16 * (x * x).sum(axis=1))
    d1 = float(predict_drift_coefficient("relu").value)
    return -(10 * 2 / 64) * float(np.mean(x[:, 0] * s)) * d1


def test_unit_flip_predictions():
    for loss in ("mse", "cross_entropy"):
        p = predict_weight_drift("tanh", loss, "nonnegative")
        assert (p.sign, p.method) == ("zero", "argument")
        assert p.value == 0
    assert predict_weight_drift("gelu", "mse", "nonnegative").sign == "negative"
    assert predict_weight_drift("relu", "mse", "nonnegative", init="symmetric").sign == "negative"
    # The values, not only the labels: the Monte Carlo first step's interval (alpha = 1e-6)
    # contains tanh's predicted 0 and ReLU's predicted value.
    tanh_w, tanh_se, tanh_ci = _first_step_w("tanh")
    relu_w, relu_se, relu_ci = _first_step_w("relu")
    value = _relu_weight_value()
    assert tanh_ci[0] <= 0.0 <= tanh_ci[1]
    assert relu_ci[0] <= value <= relu_ci[1]
    # Teeth: a wrong unit-flip value is caught. ReLU's value with the flip's factor 1/2 dropped
    # (2x) or halved, and a tanh value of even 2 % of ReLU's, each lie outside the interval
    # (the intervals' half-widths are ~0.0021 and ~0.0008 against differences >= 0.026 and
    # 0.001).
    for wrong in (2 * value, value / 2):
        assert not relu_ci[0] <= wrong <= relu_ci[1], (wrong, relu_ci)
    assert not tanh_ci[0] <= 0.02 * value <= tanh_ci[1], tanh_ci


def test_adam_first_step_direction():
    cfg = NetConfig(
        activation="relu",
        loss="cross_entropy",
        d_in=16,
        widths=(64,),
        n_out=10,
        inputs_per_net=16,
        inputs="halfnormal",
    )
    test = SignTest(alpha=1e-6)
    relu = estimate_optimizer_first_step(
        cfg, "adam", generator=torch.Generator().manual_seed(0), n_networks=256, test=test
    )
    assert relu["b"].sign == "negative" and relu["W"].sign == "negative"
    tanh = estimate_optimizer_first_step(
        NetConfig(**{**cfg.to_dict(), "activation": "tanh", "widths": (64,)}),
        "muon",
        generator=torch.Generator().manual_seed(0),
        n_networks=256,
        test=test,
        targets=("W",),
    )
    assert tanh["W"].sign == "undetermined"  # exactly 0 by the unit flip
