"""Tests for the gpt_nano model and its task's loss: `pytest tests/test_gpt_nano.py`.

Shape (tied, bias-free, causal, rotary = relative positions), training on a fixed batch for several
activations, evaluation, and the errors for a bad config; the text data: tests/test_data_text.py.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from empirics.activations import ActivationLayer
from empirics.models import get_arch
from empirics.models.gpt_nano import GPTNanoConfig, Model, Rotary
from empirics.tasks import text as text_task
from empirics.tasks.text import evaluate, loss_and_metrics
from theory.registry import RegistryError, unregister_activation

gpt_nano = get_arch("gpt_nano")
USER_ACTIVATION = "gpt_nano_test_act=x*tanh(x) + x/4"
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}


@pytest.fixture(autouse=True)
def _forget_user_activation():
    # The registry is process-wide: leave no test activation behind for other test modules.
    yield
    unregister_activation(USER_ACTIVATION.split("=", 1)[0])


def tiny(activation: str = "relu", **overrides: object) -> GPTNanoConfig:
    return GPTNanoConfig(activation=activation, **{**TINY, **overrides})


# ------------------------------------------------------------------------------------ model


@pytest.mark.parametrize("activation", ["relu", "gelu2_clip", USER_ACTIVATION])
def test_fits_a_fixed_batch(activation: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(activation)
    model = Model(cfg)
    gen = torch.Generator().manual_seed(0)
    batch = next(text_task.make_data("synthetic", cfg, split="train", batch_size=4, generator=gen))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss, metrics = loss_and_metrics(model, batch)
        assert metrics["loss"] == pytest.approx(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    # Memorising 64 random tokens: 12 AdamW steps take the loss well below its start (~ln 64).
    assert losses[-1] < 0.8 * losses[0], losses


def test_embedding_and_head_are_one_parameter() -> None:
    model = Model(tiny())
    assert model.wte.weight is model.lm_head.weight
    shared = [n for n, p in model.named_parameters() if p is model.lm_head.weight]
    assert shared == ["wte.weight"]  # counted once
    # A gradient reaches the shared matrix from both uses (input lookup and output head).
    idx = torch.randint(0, 64, (2, 8))
    model(idx).sum().backward()
    grad_both = model.lm_head.weight.grad.clone()
    model.zero_grad()
    with torch.no_grad():
        h = model.norm_f(
            model.blocks[1](model.blocks[0](model.wte(idx), model.rotary), model.rotary)
        )
    (h @ model.lm_head.weight.T).sum().backward()  # the head's use alone
    assert not torch.allclose(grad_both, model.lm_head.weight.grad)


def test_optimizer_groups_split_block_matrices_from_the_rest() -> None:
    model = Model(tiny())
    groups = model.optimizer_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    muon = {id(p) for p in groups["muon"]}
    assert id(model.lm_head.weight) not in muon
    assert all(p.ndim == 2 for p in groups["muon"]) and len(groups["muon"]) == 2 * 4
    assert all(id(m.weight) not in muon for m in model.modules() if isinstance(m, nn.RMSNorm))


def test_no_bias_anywhere() -> None:
    model = Model(tiny())
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 * 4 + 1  # qkv, proj, up, down per block, plus the head
    assert all(m.bias is None for m in linears)


def test_activation_layers_name_the_linear_that_feeds_them() -> None:
    model = Model(tiny(USER_ACTIVATION))
    modules = dict(model.named_modules())
    acts = [(n, m) for n, m in model.named_modules() if isinstance(m, ActivationLayer)]
    assert len(acts) == 2
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name, act in acts:
        feeder = modules[act.feeds_from]
        assert isinstance(feeder, nn.Linear)
        hooks.append(feeder.register_forward_hook(lambda m, i, o, k=name: seen.update({k: o})))
        hooks.append(
            act.register_forward_hook(lambda m, i, o, k=name: seen.update({k + "<": i[0]}))
        )
    model(torch.randint(0, 64, (2, 8)))
    for h in hooks:
        h.remove()
    for name, _ in acts:
        assert seen[name + "<"] is seen[name]  # the activation's input is that module's output


def test_causal_future_tokens_do_not_change_past_logits() -> None:
    torch.manual_seed(1)
    model = Model(tiny("gelu"))
    idx = torch.randint(0, 64, (1, 16))
    changed = idx.clone()
    j = 9
    changed[0, j] = (idx[0, j] + 7) % 64
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
    assert (a[:, j:] - b[:, j:]).abs().amax(dim=-1).min() > 1e-4  # every later position sees it


def test_cpu_rmsnorm_matches_torch_in_value_and_gradient() -> None:
    from empirics.models.gpt_nano import RMSNorm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    norm = RMSNorm(8, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8, generator=g, dtype=torch.float64))
    out = norm(x)  # the hand-written CPU path
    ref = nn.functional.rms_norm(x, (8,), norm.weight, 1e-6)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn(3, 5, 8, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(out, (x, norm.weight), upstream)
    want = torch.autograd.grad(ref, (x, norm.weight), upstream)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(norm, (x[:1, :2],))


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bthd,bshd->bhts", q, k)  # (B, H, T, T)


@given(shift=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_rotary_scores_depend_only_on_relative_position(shift: int, seed: int) -> None:
    rot = Rotary(head_dim=16, max_len=96).double()
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 12, 3, 16, generator=g, dtype=torch.float64)  # (B, T, H, D)
    k = torch.randn(2, 12, 3, 16, generator=g, dtype=torch.float64)
    base = _scores(rot(q), rot(k))
    both = _scores(rot(q, start=shift), rot(k, start=shift))
    # The tables are float32 (angles good to ~1e-7), scores are O(10): 1e-5 is the float32 floor.
    torch.testing.assert_close(both, base, rtol=1e-5, atol=1e-5)
    # Teeth: moving q alone changes the scores, so the check above is not vacuous.
    only_q = _scores(rot(q, start=shift), rot(k))
    assert (only_q - base).abs().max() > 0.1
    # A rotation: norms of every head vector are kept.
    torch.testing.assert_close(rot(q, start=shift).norm(dim=-1), q.norm(dim=-1))


def test_rotary_rejects_positions_beyond_the_table() -> None:
    rot = Rotary(head_dim=8, max_len=10)
    with pytest.raises(ValueError, match="exceed the table"):
        rot(torch.zeros(1, 6, 1, 8), start=5)
    with pytest.raises(ValueError, match="block_size=16"):
        Model(tiny())(torch.zeros(1, 17, dtype=torch.long))


def test_same_seed_same_model_and_logits() -> None:
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(3))
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        outs.append(Model(tiny("silu"))(idx))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.manual_seed(6)
    assert not torch.equal(Model(tiny("silu"))(idx), outs[0])


def test_evaluate_on_uniform_logits_is_log_vocab() -> None:
    model = Model(tiny())
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied: zero embeddings and zero logits, softmax uniform
    model.train()
    batches = list(
        text_task.make_data("synthetic", model.cfg, split="val", batch_size=4, generator=None)
    )
    out = evaluate(model, batches)
    assert out["val_loss"] == pytest.approx(math.log(64), rel=1e-6)
    assert out["val_bpc"] == pytest.approx(6.0, rel=1e-6)  # log2(64) bits per character
    assert model.training  # evaluate restores the mode it found


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd=30 must be divisible by n_head=4"),
        ({"n_embd": 6, "n_head": 2}, "must be even"),
        ({"n_layer": 0}, "n_layer must be a positive integer"),
        ({"block_size": 2.5}, "block_size must be a positive integer"),
        ({"rope_base": 1.0}, "rope_base"),
        ({"norm_eps": -1.0}, "norm_eps"),
    ],
)
def test_bad_config_says_which_field(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny(**overrides)


def test_unknown_activation_lists_valid_names() -> None:
    with pytest.raises(RegistryError, match="relu2_clip"):
        tiny("no_such_activation")
