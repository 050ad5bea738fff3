"""Sparsity controls (C10): sparsity measured at level q is q, gradients flow, all models take one.

Run: `.venv/bin/python -m pytest tests/test_sparsity.py -q` (a few seconds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from empirics.activations import ActivationLayer
from empirics.sparsity import (
    SparseActivation,
    SparsitySpec,
    kth_smallest,
    make_sparse_activation,
    parse_sparsity,
    quantile_rank,
    topk_keep,
    topk_mask,
)
from empirics.train import cli as TC
from empirics.train import loop as T
from empirics.train.config import TrainConfig
from empirics.train.tensor_stats import sparsity

LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
F = 256  # features per token


def _gauss(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_parse_accepts_specs_and_rejects_bad_ones_naming_the_field() -> None:
    assert parse_sparsity("topk:0.75") == SparsitySpec("topk", 0.75)
    assert parse_sparsity(" Quantile:0.9 ") == SparsitySpec("quantile", 0.9)
    assert (
        parse_sparsity("none") == SparsitySpec() and str(parse_sparsity("shift:0.5")) == "shift:0.5"
    )
    for bad in ("topk", "topk:1.0", "topk:0", "topk:-0.2", "keep:0.5", "topk:abc", 3):
        with pytest.raises(ValueError, match="sparsity"):
            parse_sparsity(bad)  # type: ignore[arg-type]


def test_none_is_the_plain_activation_layer() -> None:
    layer = make_sparse_activation("relu", "none")
    assert type(layer) is ActivationLayer


@pytest.mark.parametrize("level", LEVELS)
def test_topk_zeroes_exactly_the_level_per_token(level: float) -> None:
    # GELU is non-zero almost everywhere, so every zero is the control's: the measured fraction
    # is exactly 1 - k/F, and k = round((1 - level) F) puts that within 1/(2F) of the level.
    p = _gauss(8, 16, F)
    a = make_sparse_activation("gelu", f"topk:{level}")(p)
    k = topk_keep(level, F)
    assert sparsity(a) == pytest.approx(1 - k / F, abs=1e-12)
    assert abs(sparsity(a) - level) <= 0.5 / F
    zeros_per_token = (a == 0).sum(-1)
    assert torch.all(zeros_per_token == F - k)
    # The kept entries are each token's k largest pre-activations, unchanged by the control.
    kth = p.topk(k, dim=-1).values[..., -1:]
    assert torch.equal(a != 0, p >= kth)
    torch.testing.assert_close(a[a != 0], torch.nn.functional.gelu(p)[a != 0])


@pytest.mark.parametrize("level", (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95))
@pytest.mark.parametrize("dim", (-1, 1))
def test_topk_mask_by_threshold_equals_the_mask_by_sort(level: float, dim: int) -> None:
    # The threshold mask against a scatter of torch.topk's indices, on untied continuous values
    # and on conv-shaped maps (features on dim 1), for k above and below half the features.
    p = torch.randn(4, 37, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    k = topk_keep(level, p.shape[dim])
    by_sort = torch.zeros_like(p).scatter_(dim, p.topk(k, dim=dim).indices, 1.0)
    assert torch.equal(topk_mask(p, level, dim), by_sort)


@pytest.mark.parametrize("dim", (0, 1, -1))
@pytest.mark.parametrize("n", (1, 2, 7, 64))
def test_kth_smallest_is_kthvalue_in_value_and_gradient(n: int, dim: int) -> None:
    # Every rank, both sides of the selection: the same values as kthvalue, and the gradient
    # of their sum lands on the entries kthvalue picks (the values are untied).
    shape = [3, 5, 4]
    shape[dim] = n
    g = torch.Generator().manual_seed(n)
    for rank in range(1, n + 1):
        p = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        ours = kth_smallest(p, rank, dim % 3)
        ref = p.kthvalue(rank, dim=dim, keepdim=True).values
        assert torch.equal(ours, ref)
        (g_ours,) = torch.autograd.grad(ours.sum(), p)
        (g_ref,) = torch.autograd.grad(ref.sum(), p)
        assert torch.equal(g_ours, g_ref)


@pytest.mark.parametrize("requires_grad", (False, True))
def test_kth_smallest_with_ties_selects_the_value_and_the_first_tied_entry(
    requires_grad: bool,
) -> None:
    # Small integers as floats: most ranks fall on tied values. The value is kthvalue's; the
    # gradient reaches exactly one entry per row, the first along the axis holding that value
    # (a rule of ours; kthvalue picks among ties as its selection happens to go).
    g = torch.Generator().manual_seed(5)
    p = torch.randint(0, 4, (6, 9, 11), generator=g).to(torch.float32)
    for dim in (0, 1, 2):
        for rank in range(1, p.shape[dim] + 1):
            x = p.clone().requires_grad_(requires_grad)
            ours = kth_smallest(x, rank, dim)
            assert torch.equal(ours, p.kthvalue(rank, dim=dim, keepdim=True).values)
            if not requires_grad:
                continue
            (grad,) = torch.autograd.grad(ours.sum(), x)
            first = (p == ours.detach()).to(torch.uint8).argmax(dim, keepdim=True)
            expected = torch.zeros_like(p).scatter_(dim, first, 1.0)
            assert torch.equal(grad, expected)


def test_kth_smallest_falls_back_to_kthvalue_off_float32_and_on_nan() -> None:
    # bfloat16 has no numpy dtype, and a nan at the selected rank has no entry equal to it.
    p = torch.randn(4, 16, generator=torch.Generator().manual_seed(6))
    half = p.to(torch.bfloat16)
    assert torch.equal(kth_smallest(half, 5, 1), half.kthvalue(5, dim=1, keepdim=True).values)
    p[0, 3] = math.nan
    x = p.clone().requires_grad_(True)
    ours = kth_smallest(x, 16, 1)  # row 0's largest is its nan
    ref = p.kthvalue(16, dim=1, keepdim=True).values
    assert torch.equal(ours.isnan(), ref.isnan())
    assert torch.equal(ours[1:], ref[1:])


@pytest.mark.parametrize("level", LEVELS)
def test_quantile_shift_puts_the_level_below_zero_per_token(level: float) -> None:
    # ReLU after subtracting the ceil(level F)-th smallest entry: exactly ceil(level F) zeros per
    # token (continuous inputs have no ties), so |measured - level| < 1/F.
    p = _gauss(4, 32, F, seed=1)
    a = make_sparse_activation("relu", f"quantile:{level}")(p)
    assert torch.all((a == 0).sum(-1) == quantile_rank(level, F))
    assert abs(sparsity(a) - level) < 1 / F


@pytest.mark.parametrize("level", LEVELS)
def test_fixed_shift_matches_the_level_on_unit_gaussian_inputs(level: float) -> None:
    # On N(0,1) inputs each entry is zeroed with probability exactly `level`; n = 2^17 entries,
    # so the binomial SE is <= 0.0014 and 5 SE (two-sided false-alarm rate 5.7e-7) is < 0.007.
    n = 1 << 17
    a = make_sparse_activation("relu", f"shift:{level}")(_gauss(n // F, F, seed=2))
    se = math.sqrt(level * (1 - level) / n)
    assert abs(sparsity(a) - level) < 5 * se


@pytest.mark.parametrize("kind", ["topk", "quantile"])
@pytest.mark.parametrize("level", [0.25, 0.9])
def test_conv_maps_channels_per_position_and_quantile_batchnorm(kind: str, level: float) -> None:
    c = 32
    layer = make_sparse_activation("relu", f"{kind}:{level}", feature_dim=1)
    x = _gauss(16, c, 7, 7, seed=3)
    a = layer(x)
    if kind == "topk":
        # ReLU zeroes the kept negatives too, so the measured level is at least the nominal one.
        assert torch.all((a == 0).sum(1) >= c - topk_keep(level, c))
        assert sparsity(a) >= 1 - topk_keep(level, c) / c
    else:
        per_channel = (a == 0).transpose(0, 1).reshape(c, -1).float().mean(1)
        n = 16 * 7 * 7
        assert torch.all(per_channel == quantile_rank(level, n) / n)
        # eval mode uses the running quantile: after many batches of the same law it sits near
        # the population quantile, so a fresh batch is zeroed at about `level` (binomial, n =
        # 25088 entries, 5 SE < 0.016; the running estimate's own error is far smaller).
        for seed in range(4, 40):
            layer(_gauss(16, c, 7, 7, seed=seed))
        layer.eval()
        b = layer(_gauss(16, c, 7, 7, seed=99))
        assert abs(sparsity(b) - level) < 5 * math.sqrt(level * (1 - level) / b.numel()) + 0.01


@pytest.mark.parametrize("spec", ["topk:0.75", "quantile:0.75", "shift:0.75"])
def test_gradients_flow_through_every_control(spec: str) -> None:
    p = _gauss(4, 8, 64, seed=5).requires_grad_(True)
    layer = make_sparse_activation("gelu", spec)
    (g,) = torch.autograd.grad(layer(p).pow(2).sum(), p)
    assert torch.isfinite(g).all()
    assert (g != 0).float().mean() > 0.2  # the kept quarter at least
    if spec.startswith("topk"):
        kept = layer(p.detach()) != 0
        assert torch.all(g[~kept] == 0) and torch.all(g[kept] != 0)


def test_sparse_activation_refuses_none() -> None:
    with pytest.raises(ValueError):
        SparseActivation("relu", "none")


@pytest.mark.parametrize("arch", ["mlp", "vit", "gpt_nano", "resnet"])
def test_every_model_takes_a_control_and_the_trainer_measures_it(arch: str, tmp_path: Path) -> None:
    cfg = TrainConfig(
        arch=arch,
        activation="gelu",
        data="synthetic",
        preset="smoke",
        steps=2,
        progress=False,
        out=str(tmp_path),
        model={"sparsity": "topk:0.75"},
    )
    out = T.train(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    layers = [m["sparsity"]["first"] for k, m in summary["layers"].items() if "sparsity" in m]
    assert layers
    # GELU zeroes nothing itself: each layer's measured sparsity is the control's 1 - k/F,
    # within one feature of 0.75 for the smallest smoke width (4 channels of ResNet's stem).
    for value in layers:
        assert abs(value - 0.75) <= 0.25 / 2 + 1e-9


def test_cli_rejects_a_bad_level_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        TC.main(["--arch", "mlp", "--preset", "smoke", "--set", "sparsity=topk:1.5"])
    assert exc.value.code == 2
    assert "sparsity" in capsys.readouterr().err
