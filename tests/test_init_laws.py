"""Init laws of the Monte Carlo sampler, the unit-flip predictions and the optimizer first step.

Moment checks use >= 6 standard errors (false alarm < 1e-8 each); sign checks use the one-look
sign test at alpha = 1e-6."""

from __future__ import annotations

import math

import pytest
import torch

from empirics.montecarlo.depth import estimate_optimizer_first_step
from empirics.montecarlo.sampler import INIT_LAWS, NetConfig, standard_draw
from empirics.montecarlo.stats import SignTest
from theory.first_step import predict_weight_drift


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


def test_unit_flip_predictions():
    for loss in ("mse", "cross_entropy"):
        p = predict_weight_drift("tanh", loss, "nonnegative")
        assert (p.sign, p.method) == ("zero", "argument")
    assert predict_weight_drift("gelu", "mse", "nonnegative").sign == "negative"
    assert predict_weight_drift("relu", "mse", "nonnegative", init="symmetric").sign == "negative"


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
