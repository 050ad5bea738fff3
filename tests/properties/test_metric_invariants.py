"""Metric invariants over drawn tensors and a drawn training run: ranges, the ReLU identity
sparsity = negative_rate + P(p = 0), spike ratio >= 1, drift score 0 at step 0."""

from __future__ import annotations

import math
import tempfile

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from empirics.activations import parse_activation, torch_fn
from empirics.outputs import read_records
from empirics.train import tensor_stats as S
from empirics.train.config import TrainConfig
from empirics.train.loop import train
from tests.properties.strategies import REGISTRY_ACTIVATIONS


@st.composite
def preacts(draw: st.DrawFn) -> torch.Tensor:
    """Pre-activations with a drawn shape, scale, shift, and a drawn share of exact zeros."""
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=3)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    p = torch.randn(shape, generator=gen, dtype=torch.float64) * draw(st.sampled_from((0.1, 1, 30)))
    p = p + draw(st.floats(-3, 3))
    zeros = torch.rand(shape, generator=gen) < draw(st.sampled_from((0.0, 0.2, 0.9)))
    return torch.where(zeros, torch.zeros_like(p), p)


@given(p=preacts(), activation=st.sampled_from(REGISTRY_ACTIVATIONS))
def test_rates_are_fractions(p, activation):
    a = torch_fn(parse_activation(activation))(p)
    for value in (S.sparsity(a), S.negative_rate(p)):
        assert 0.0 <= value <= 1.0


@given(p=preacts())
def test_relu_sparsity_is_negative_rate_plus_exact_zeros(p):
    a = torch.relu(p)
    exact_zeros = float((p == 0).double().mean())
    assert math.isclose(S.sparsity(a), S.negative_rate(p) + exact_zeros, abs_tol=1e-12)


@given(p=preacts(), activation=st.sampled_from(REGISTRY_ACTIVATIONS))
def test_spike_ratio_at_least_one(p, activation):
    a = torch_fn(parse_activation(activation))(p)
    ratio = S.spike_ratio(a)
    if bool((a != 0).any()):
        assert ratio >= 1.0
    else:
        assert math.isnan(ratio)  # no spike is defined on an all-zero layer


@given(w=preacts())
def test_drift_score_zero_without_change(w):
    assert S.drift_score(w, w.clone()) == 0.0


@settings(max_examples=max(2, settings.default.max_examples // 6))
@given(
    arch=st.sampled_from(("mlp", "vit", "gpt_nano")),
    activation=st.sampled_from(("relu", "gelu", "tanh", "relu2_clip")),
    seed=st.integers(0, 1000),
)
def test_training_records_obey_invariants(arch, activation, seed):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            arch=arch,
            activation=activation,
            data="synthetic",
            preset="smoke",
            steps=3,
            seed=seed,
            device="cpu",
            out=tmp,
            progress=False,
            eval_batches=1,
        )
        rows = read_records(train(cfg) / "records.csv")
    by_metric: dict[str, list[dict]] = {}
    for r in rows:
        by_metric.setdefault(r["metric"], []).append(r)
    assert by_metric["drift_score"], "the run logged no drift_score"
    for r in by_metric["drift_score"]:
        if r["step"] == 0:
            assert r["value"] == 0.0, r
    for name in ("sparsity", "negative_rate"):
        for r in by_metric[name]:
            assert 0.0 <= r["value"] <= 1.0, r
    for r in by_metric["spike_ratio"]:
        assert math.isnan(r["value"]) or r["value"] >= 1.0, r
