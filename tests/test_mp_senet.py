"""Tests of the mp_senet enhancer and its task's losses: `pytest tests/test_mp_senet.py`.

Training, STFT round trip, phase losses, configuration errors and PESQ/STOI scoring; the speech
data: tests/test_data_speech.py. Real-data tests are marked `data` and skip without the Debian
packages.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from empirics.activations import ActivationLayer
from empirics.data import speech
from empirics.models import get_arch
from empirics.models import mp_senet as ms
from empirics.tasks import speech as speech_task
from theory.registry import RegistryError

TRAIN_KEYS = ("steps", "batch_size", "lr", "optimizer", "warmup")
# A tiny enhancer: 64-point STFT, 4 channels, one dense layer and one attention block.
TINY = dict(
    channels=4,
    dense_depth=1,
    ts_blocks=1,
    heads=1,
    ffn_mult=2,
    n_fft=64,
    hop=16,
    segment_seconds=0.05,
    val_mixtures=2,
    val_max_seconds=0.5,
)
USER_ACTIVATION = "mpse_softplus_shift=log(1 + exp(x)) - log(2)"


def tiny_cfg(**kw: object) -> ms.MpSenetConfig:
    return ms.MpSenetConfig(**{**TINY, **kw})


needs_real = pytest.mark.skipif(
    not speech.real_speech_available(), reason="Debian speech packages missing"
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


def test_registered_as_arch() -> None:
    assert get_arch("mp_senet") is ms
    assert ms.Config is ms.MpSenetConfig
    assert set(ms.PRESETS) == {"smoke", "small", "paper"}
    for name, preset in ms.PRESETS.items():
        assert set(TRAIN_KEYS) <= set(preset), name
        ms.Config(**{k: v for k, v in preset.items() if k not in TRAIN_KEYS})


@pytest.mark.parametrize("activation", ["relu", "gelu2_clip", USER_ACTIVATION])
def test_forward_backward_and_loss_decreases(activation: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(activation=activation)
    model = ms.Model(cfg)
    acts = [m for m in model.modules() if isinstance(m, ActivationLayer)]
    # 2 in the encoder + dense layers x 3 blocks + 2 per TS block + 1 magnitude + 1 phase.
    assert len(acts) == 2 + 3 * cfg.dense_depth + 2 * cfg.ts_blocks + 2
    gen = torch.Generator().manual_seed(0)
    batch = next(
        speech_task.make_data("synthetic", cfg, split="train", batch_size=2, generator=gen)
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss, metrics = speech_task.loss_and_metrics(model, batch)
        assert math.isfinite(loss.item()), metrics
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
        losses.append(loss.item())
    assert set(metrics) >= {"loss", "loss_mag", "loss_complex", "loss_phase", "loss_time"}
    assert losses[-1] < losses[0], losses


def test_feeds_from_names_the_module_whose_output_is_the_preactivation() -> None:
    model = ms.Model(tiny_cfg())
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        if isinstance(m, ActivationLayer):
            src = m.feeds_from
            assert src in modules, (name, src)
            modules[src].register_forward_hook(lambda _m, _i, o, s=src: outputs.__setitem__(s, o))
            m.register_forward_hook(lambda _m, i, _o, n=name: inputs.__setitem__(n, i[0]))
    model(torch.randn(2, 800))
    for name, m in modules.items():
        if isinstance(m, ActivationLayer):
            assert inputs[name] is outputs[m.feeds_from], name


def test_stft_round_trip_identity_mask_true_phase() -> None:
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(3, 4000, generator=g, dtype=torch.float64)
    mag_c, pha, com_c = ms.analyse(wave, 400, 100, 0.3)
    assert mag_c.shape == pha.shape == (3, 201, 41) and com_c.shape == (3, 201, 41, 2)
    back = ms.synthesize(mag_c * torch.ones_like(mag_c), pha, 4000, 400, 100, 0.3)
    assert torch.allclose(back, wave, atol=1e-6)
    # The same path through the model's own (float32) window and methods.
    model = ms.Model(ms.MpSenetConfig())
    w32 = wave.float()
    m_c, p, _ = model.analyse(w32)
    assert torch.allclose(model.synthesize(m_c, p, 4000), w32, atol=1e-4)
    # Negative control: a wrong phase must not reconstruct.
    assert (ms.synthesize(mag_c, pha + 0.5, 4000, 400, 100, 0.3) - wave).abs().max() > 0.1


@given(seed=st.integers(0, 2**16), offset=st.floats(-3.0, 3.0))
def test_phase_losses_zero_wrap_invariant_and_positive(seed: int, offset: float) -> None:
    g = torch.Generator().manual_seed(seed)
    ref = (torch.rand(2, 9, 7, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    zero = speech_task.phase_losses(ref, ref.clone())
    assert all(float(z) == 0.0 for z in zero)
    # Adding any integer multiple of 2π anywhere changes nothing.
    turns = torch.randint(-3, 4, ref.shape, generator=g).double()
    wrapped = speech_task.phase_losses(ref, ref + 2 * math.pi * turns)
    assert all(abs(float(w)) < 1e-9 for w in wrapped)
    # A constant offset: IP = |offset| (wrapped), GD = IAF = 0 - a known answer.
    ip, gd, iaf = speech_task.phase_losses(ref, ref + offset)
    assert abs(float(ip) - abs(offset)) < 1e-9 and float(gd) < 1e-9 and float(iaf) < 1e-9
    # A different random phase gives strictly positive losses.
    other = (torch.rand(2, 9, 7, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    base = speech_task.phase_losses(ref, other)
    assert all(float(b) > 0 for b in base)
    moved = speech_task.phase_losses(ref + 2 * math.pi * turns, other)
    assert all(abs(float(a) - float(b)) < 1e-9 for a, b in zip(base, moved, strict=True))


@pytest.mark.parametrize(
    ("override", "error", "pattern"),
    [
        ({"activation": "no_such_act"}, RegistryError, "relu"),
        ({"channels": 6, "heads": 4}, ValueError, "heads"),
        ({"hop": 50, "n_fft": 64}, ValueError, "hop"),
        ({"noise_kinds": ("white", "rain")}, ValueError, "noise_kinds"),
        ({"snrs": ()}, ValueError, "snrs"),
        ({"compress": 0.0}, ValueError, "compress"),
        ({"segment_seconds": 0.001}, ValueError, "segment_seconds"),
        (dict(w_mag=0, w_complex=0, w_phase=0, w_time=0, w_consistency=0), ValueError, "w_"),
        ({"w_time": -1.0}, ValueError, "w_time"),
        ({"dense_depth": 0}, ValueError, "dense_depth"),
    ],
)
def test_bad_config_is_rejected(override: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        tiny_cfg(**override)


def test_evaluate_reports_scores_and_skips_silent_references() -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = ms.Model(cfg)
    val = list(speech_task.make_data("synthetic", cfg, split="val", batch_size=1, generator=None))
    res = speech_task.evaluate(model, val)
    assert model.training  # evaluate restores the mode
    for key in ("val_loss", "val_loss_mag", "pesq", "stoi", "pesq_noisy", "stoi_noisy"):
        assert key in res
    assert math.isfinite(res["val_loss"]) and res["val_loss"] > 0
    # A silent reference: PESQ finds no utterance and must skip (enhanced and noisy alike).
    silent = (torch.randn(1, 8000) * 0.1, torch.zeros(1, 8000))
    with pytest.warns(UserWarning, match="PESQ skipped 2"):
        res = speech_task.evaluate(model, [silent])
    assert res["pesq_skipped"] == 2 and math.isnan(res["pesq"])
    # Too short for PESQ (under 0.25 s), next to a scorable one: only the short pair is skipped.
    short = (val[0][0][:, :1600], val[0][1][:, :1600])
    with pytest.warns(UserWarning, match="PESQ skipped 2"):
        res = speech_task.evaluate(model, [short, val[0]])
    assert res["pesq_skipped"] == 2 and math.isfinite(res["pesq"])


@pytest.mark.data
@needs_real
def test_evaluate_on_real_heldout_speech_is_in_range() -> None:
    cfg = tiny_cfg(val_mixtures=2, val_max_seconds=2.0)
    model = ms.Model(cfg)
    val = list(speech_task.make_data("real", cfg, split="val", batch_size=1, generator=None))
    res = speech_task.evaluate(model, val)
    # Wide-band PESQ (P.862.2) maps to MOS-LQO in [1.04, 4.64]; STOI lies in [0, 1].
    assert res["pesq_skipped"] == 0
    assert 1.0 <= res["pesq_noisy"] <= 4.65 and 0.0 <= res["stoi_noisy"] <= 1.0
    assert 1.0 <= res["pesq"] <= 4.65 and 0.0 <= res["stoi"] <= 1.0
