"""Speech data (empirics/data/speech.py) and the speech task's batches (empirics/tasks/speech.py).

`.venv/bin/python -m pytest -q tests/test_data_speech.py`
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from empirics.data import DataUnavailable, speech
from empirics.models import mp_senet as ms
from empirics.tasks import speech as speech_task


def tiny_cfg(**kw: object) -> ms.MpSenetConfig:
    """A config with a 64-point STFT and short segments: only its data fields matter here."""
    base = dict(n_fft=64, hop=16, segment_seconds=0.05, val_mixtures=2, val_max_seconds=0.5)
    return ms.MpSenetConfig(**{**base, **kw})


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


needs_real = pytest.mark.skipif(
    not speech.real_speech_available(), reason="Debian speech packages missing"
)


@given(
    snr=st.floats(-10, 30),
    kind=st.sampled_from(speech.NOISE_KINDS),
    seed=st.integers(0, 2**16),
)
def test_mix_at_requested_snr(snr: float, kind: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    clean = speech.synthetic_speech(4, 3000, g)
    noise = speech.make_noise(kind, 3000, generator=g, pool=list(clean), exclude=0)
    assert noise.shape == (3000,) and torch.isfinite(noise).all()
    assert abs(float(noise.double().pow(2).mean()) - 1.0) < 1e-4  # unit RMS
    noisy = speech.mix_at_snr(clean[0].double(), noise.double(), snr)
    assert abs(float(speech.measure_snr(clean[0], noisy)) - snr) < 1e-6


def test_training_batches_have_the_configured_snrs() -> None:
    cfg = tiny_cfg(segment_seconds=0.25)
    g = torch.Generator().manual_seed(3)
    it = speech_task.make_data("synthetic", cfg, split="train", batch_size=8, generator=g)
    seen = set()
    for _ in range(3):
        noisy, clean = next(it)
        for measured in speech.measure_snr(clean, noisy).tolist():
            # float32 storage: a measured SNR within 1e-3 dB of the configured one.
            nearest = min(cfg.snrs, key=lambda s: abs(s - measured))
            assert abs(nearest - measured) < 1e-3, measured
            seen.add(nearest)
        # MP-SENet's normalisation: noisy input at unit RMS.
        assert torch.allclose(noisy.pow(2).mean(-1), torch.ones(8), atol=1e-4)
    assert len(seen) >= 3


def test_synthetic_loader_shapes_and_determinism() -> None:
    cfg = tiny_cfg(val_mixtures=3)

    def first(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return next(
            speech_task.make_data("synthetic", cfg, split="train", batch_size=3, generator=g)
        )

    noisy, clean = first(0)
    assert noisy.shape == clean.shape == (3, cfg.segment) and noisy.dtype == torch.float32
    again = first(0)
    assert torch.equal(noisy, again[0]) and torch.equal(clean, again[1])
    assert not torch.equal(noisy, first(1)[0])
    val = list(speech_task.make_data("synthetic", cfg, split="val", batch_size=4, generator=None))
    assert len(val) == 3
    for x, y in val:
        assert x.shape == y.shape and x.shape[0] == 1 and x.shape[1] <= 0.5 * speech.SAMPLE_RATE


@pytest.mark.data
@needs_real
def test_real_loader_shapes() -> None:
    cfg = tiny_cfg(segment_seconds=0.5, val_mixtures=3)
    g = torch.Generator().manual_seed(0)
    noisy, clean = next(
        speech_task.make_data("real", cfg, split="train", batch_size=2, generator=g)
    )
    assert noisy.shape == clean.shape == (2, 8000)
    assert torch.isfinite(noisy).all() and clean.abs().max() > 0
    val = list(speech_task.make_data("real", cfg, split="val", batch_size=1, generator=g))
    assert len(val) == 3 and all(x.shape == y.shape and x.shape[0] == 1 for x, y in val)


def test_missing_data_names_the_package(tmp_path) -> None:
    with pytest.raises(DataUnavailable, match="asterisk-core-sounds-en-g722"):
        speech.load_clean_corpus(tmp_path / "absent", cache_dir=None)
    with pytest.raises(DataUnavailable, match="pocketsphinx-testdata"):
        speech.load_heldout_corpus(tmp_path / "absent")
    cfg = tiny_cfg(clean_root=str(tmp_path / "also-absent"))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(DataUnavailable, match="asterisk-core-sounds-en-g722"):
        speech_task.make_data("real", cfg, split="train", batch_size=2, generator=g)


def test_clean_corpus_from_an_overridden_root_is_decoded_and_cached(tmp_path) -> None:
    g722 = pytest.importorskip("G722")
    root = tmp_path / "prompts"
    (root / "sub").mkdir(parents=True)
    t = np.arange(8000)
    tone = (np.sin(2 * np.pi * 440 * t / speech.SAMPLE_RATE) * 8000).astype(np.int16)
    for name in ("a.g722", "sub/b.g722"):
        (root / name).write_bytes(g722.G722(speech.SAMPLE_RATE, 64000).encode(tone))
    first = speech.load_clean_corpus(root, cache_dir=tmp_path / "cache")
    assert len(first) == 2 and list((tmp_path / "cache").glob("speech_clean_*.npz"))
    # The decoded tone keeps its pitch: the spectral peak sits at 440 Hz (within one bin).
    spec = np.abs(np.fft.rfft(first[0].numpy()))
    assert abs(np.argmax(spec) * speech.SAMPLE_RATE / len(first[0]) - 440) < 2 * 16000 / len(spec)
    cached = speech.load_clean_corpus(root, cache_dir=tmp_path / "cache")
    assert all(torch.equal(a, b) for a, b in zip(first, cached, strict=True))


def test_bad_data_arguments_are_rejected() -> None:
    cfg, g = tiny_cfg(), torch.Generator()
    with pytest.raises(ValueError, match="data must be"):
        speech_task.make_data("noise", cfg, split="train", batch_size=2, generator=g)
    with pytest.raises(ValueError, match="split must be"):
        speech_task.make_data("synthetic", cfg, split="test", batch_size=2, generator=g)
    with pytest.raises(ValueError, match="batch_size"):
        speech_task.make_data("synthetic", cfg, split="train", batch_size=0, generator=g)
