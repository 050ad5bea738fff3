"""Speech for mp_senet: real clean speech mixed with generated noise at chosen SNRs, all offline.

Training speech: Debian `asterisk-core-sounds-en-g722` decoded with PyPI `G722` (cached as npz);
held-out speech: Debian `pocketsphinx-testdata`; noise is generated. `data="synthetic"` swaps the
speech for seeded sums of enveloped sinusoids. Check it with `python -m empirics.data.speech`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from empirics.data import DataUnavailable, default_cache_dir
from empirics.outputs import atomic_open

SAMPLE_RATE = 16_000
CLEAN_ROOT = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
HELDOUT_ROOT = Path("/usr/share/pocketsphinx/test/data")
HELDOUT_SUBDIRS = ("librivox", "cards")
CLEAN_ENV = "BOF_SPEECH_CLEAN_DIR"
HELDOUT_ENV = "BOF_SPEECH_HELDOUT_DIR"
CLEAN_PACKAGE = "asterisk-core-sounds-en-g722"
HELDOUT_PACKAGE = "pocketsphinx-testdata"
NOISE_KINDS = ("white", "pink", "brown", "babble", "hum", "bursts")
SPLITS = ("train", "val")
DATA_KINDS = ("real", "synthetic")
# Trimming keeps 20 ms frames within 40 dB of the loudest one; the prompts carry long silences.
_TRIM_FRAME = 320
_TRIM_DB = -40.0
_CACHE_VERSION = 1


def clean_root(root: str | Path | None = None) -> Path:
    """The clean-speech directory: the argument, else $BOF_SPEECH_CLEAN_DIR, else Debian's."""
    if root is not None:
        return Path(root)
    env = os.environ.get(CLEAN_ENV)
    return Path(env) if env else CLEAN_ROOT


def heldout_root(root: str | Path | None = None) -> Path:
    """The held-out directory: the argument, else $BOF_SPEECH_HELDOUT_DIR, else Debian's."""
    if root is not None:
        return Path(root)
    env = os.environ.get(HELDOUT_ENV)
    return Path(env) if env else HELDOUT_ROOT


def trim_silence(audio: np.ndarray, threshold_db: float = _TRIM_DB) -> np.ndarray:
    """Drop leading and trailing 20 ms frames quieter than `threshold_db` below the loudest."""
    n = len(audio) // _TRIM_FRAME
    if n == 0:
        return audio
    frames = audio[: n * _TRIM_FRAME].astype(np.float64).reshape(n, _TRIM_FRAME)
    energy = (frames**2).mean(axis=1)
    if energy.max() <= 0:
        return audio[:0]
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (threshold_db / 10))
    return audio[loud[0] * _TRIM_FRAME : (loud[-1] + 1) * _TRIM_FRAME]


def _decode_g722(path: Path) -> np.ndarray:
    try:
        import G722
    except ImportError as err:
        raise DataUnavailable(
            "decoding the clean speech needs the PyPI package `G722` "
            "(pip install G722, or the project's `speech` extra)"
        ) from err
    # A fresh decoder per file: G.722 is adaptive and its state must not leak across prompts.
    raw = G722.G722(SAMPLE_RATE, 64000).decode(path.read_bytes())
    return np.asarray(raw, dtype=np.int16)


def _write_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _split_concat(audio: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [audio[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _to_float(chunks: Sequence[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(c.astype(np.float32) / 32768.0) for c in chunks if len(c) > 0]


def load_clean_corpus(
    root: str | Path | None = None, cache_dir: str | Path | None = "default"
) -> list[torch.Tensor]:
    """Trimmed clean utterances (float32 in [-1, 1), 16 kHz) from the .g722 prompts under `root`.

    Decoded audio is cached as one npz keyed by the file list (names, sizes, mtimes), so a changed
    package invalidates it; `cache_dir=None` disables the cache.
    """
    base = clean_root(root)
    files = sorted(base.rglob("*.g722")) if base.is_dir() else []
    if not files:
        raise DataUnavailable(
            f"no clean speech (*.g722) under {base}: install the Debian package {CLEAN_PACKAGE} "
            f"(apt-get install {CLEAN_PACKAGE}), set ${CLEAN_ENV} or clean_root, "
            "or use data='synthetic'"
        )
    key = hashlib.sha1(f"v{_CACHE_VERSION} trim{_TRIM_DB}".encode())
    for f in files:
        st = f.stat()
        key.update(f"{f.relative_to(base)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    cache = None
    if cache_dir is not None:
        cache_base = default_cache_dir() if cache_dir == "default" else Path(cache_dir)
        cache = cache_base / f"speech_clean_{key.hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return _to_float(_split_concat(z["audio"], z["offsets"]))
    chunks = [trim_silence(_decode_g722(f)) for f in files]
    if cache is not None:
        offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
        try:
            _write_npz_atomic(cache, audio=np.concatenate(chunks), offsets=offsets)
        except OSError as err:  # a read-only home must not stop training, only slow the start
            warnings.warn(f"could not cache decoded speech at {cache}: {err}", stacklevel=2)
    return _to_float(chunks)


def load_heldout_corpus(root: str | Path | None = None) -> list[torch.Tensor]:
    """Trimmed held-out utterances (float32, 16 kHz) from the pocketsphinx test .wav files."""
    from scipy.io import wavfile

    base = heldout_root(root)
    dirs = [base / d for d in HELDOUT_SUBDIRS if (base / d).is_dir()] or [base]
    files = sorted(f for d in dirs for f in d.glob("*.wav")) if base.is_dir() else []
    if not files:
        raise DataUnavailable(
            f"no held-out speech (*.wav) under {base}: install the Debian package "
            f"{HELDOUT_PACKAGE} (apt-get install {HELDOUT_PACKAGE}), set ${HELDOUT_ENV} or "
            "heldout_root, or use data='synthetic'"
        )
    chunks = []
    for f in files:
        rate, audio = wavfile.read(f)
        if rate != SAMPLE_RATE or audio.dtype != np.int16 or audio.ndim != 1:
            raise ValueError(
                f"{f}: expected 16 kHz mono int16, got {rate} Hz {audio.dtype} {audio.shape}"
            )
        chunks.append(trim_silence(audio))
    return _to_float(chunks)


def real_speech_available() -> bool:
    """Whether both Debian speech packages (training and held-out audio) are installed here."""
    try:
        load_heldout_corpus()
        return clean_root().is_dir()
    except DataUnavailable:
        return False


@functools.lru_cache(maxsize=2)
def _cached_clean(root: str | None, cache_dir: str | None) -> tuple[torch.Tensor, ...]:
    return tuple(load_clean_corpus(root, cache_dir if cache_dir is not None else "default"))


@functools.lru_cache(maxsize=2)
def _cached_heldout(root: str | None) -> tuple[torch.Tensor, ...]:
    return tuple(load_heldout_corpus(root))


# ---- synthetic "speech" ---------------------------------------------------------------------


def synthetic_speech(count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(count, length) speech-like signals: harmonic stacks on slow random envelopes plus noise.

    A voiced-like f0 (80-300 Hz) with 8 harmonics of random decaying amplitude, an envelope made
    from a few random levels per 100 ms (squared, so there are near-silent gaps), and white noise
    40 dB down; each row scaled to RMS 0.1 like normalised speech.
    """
    g = generator
    t = torch.arange(length, dtype=torch.float64) / SAMPLE_RATE
    f0 = 80 + 220 * torch.rand(count, 1, 1, generator=g, dtype=torch.float64)
    amp = torch.rand(count, 8, 1, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(count, 8, 1, generator=g, dtype=torch.float64)
    voiced = torch.zeros(count, length, dtype=torch.float64)
    for k in range(1, 9):  # one harmonic at a time keeps memory at (count, length)
        fk = f0[:, 0] * k
        # Harmonics above Nyquist would alias; drop them.
        a = amp[:, k - 1] / k * (fk < SAMPLE_RATE / 2)
        voiced += a * torch.sin(2 * math.pi * fk * t + phase[:, k - 1])
    n_knots = max(2, int(math.ceil(length / (SAMPLE_RATE / 10))) + 1)
    knots = torch.rand(count, 1, n_knots, generator=g, dtype=torch.float64) ** 2
    env = torch.nn.functional.interpolate(knots, size=length, mode="linear", align_corners=True)
    x = voiced * env[:, 0] + 0.01 * torch.randn(count, length, generator=g, dtype=torch.float64)
    x = x / x.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12) * 0.1
    return x.float()


@functools.lru_cache(maxsize=4)
def _synthetic_corpus(count: int, length: int, seed: int) -> tuple[torch.Tensor, ...]:
    # A fixed corpus, seeded apart from the run, so a synthetic "epoch" means what a real one does.
    return tuple(synthetic_speech(count, length, torch.Generator().manual_seed(seed)))


# ---- noise and mixing ------------------------------------------------------------------------


def colored_noise(
    count: int, length: int, exponent: float, generator: torch.Generator
) -> torch.Tensor:
    """(count, length) unit-RMS noise, power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    white = torch.randn(count, length, generator=generator, dtype=torch.float64)
    if exponent == 0:
        shaped = white
    else:
        spec = torch.fft.rfft(white, dim=-1)
        f = torch.fft.rfftfreq(length, dtype=torch.float64)
        f[0] = f[1] if length > 1 else 1.0  # no DC blow-up
        shaped = torch.fft.irfft(spec * f.pow(-exponent / 2), n=length, dim=-1)
        shaped = shaped - shaped.mean(-1, keepdim=True)
    return (shaped / shaped.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)).float()


def _segment(utt: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """A random `length` slice of one utterance, zero-padded at a random offset if it is shorter."""
    n = utt.shape[0]
    if n >= length:
        start = int(torch.randint(0, n - length + 1, (1,), generator=generator))
        return utt[start : start + length]
    out = torch.zeros(length, dtype=utt.dtype)
    start = int(torch.randint(0, length - n + 1, (1,), generator=generator))
    out[start : start + n] = utt
    return out


def _voiced_segment(utt: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Like `_segment`, but retries a few times to avoid slices that are nearly all pause."""
    floor = 0.1 * utt.pow(2).mean()
    seg = _segment(utt, length, generator)
    for _ in range(4):
        if seg.pow(2).mean() >= floor:
            break
        seg = _segment(utt, length, generator)
    return seg


def make_noise(
    kind: str,
    length: int,
    *,
    generator: torch.Generator,
    pool: Sequence[torch.Tensor] | None = None,
    exclude: int | None = None,
) -> torch.Tensor:
    """One (length,) noise signal of the given kind (see NOISE_KINDS), unit RMS.

    `babble` sums 3-6 slices of utterances from `pool` (never `pool[exclude]`, the clean one).
    """
    g = generator
    if kind == "white":
        return colored_noise(1, length, 0.0, g)[0]
    if kind == "pink":
        return colored_noise(1, length, 1.0, g)[0]
    if kind == "brown":
        return colored_noise(1, length, 2.0, g)[0]
    if kind == "hum":
        f0 = 50.0 if torch.rand(1, generator=g).item() < 0.5 else 60.0
        t = torch.arange(length, dtype=torch.float64) / SAMPLE_RATE
        k = torch.arange(1, 9, dtype=torch.float64).view(8, 1)
        amp = torch.rand(8, 1, generator=g, dtype=torch.float64) / k
        phase = 2 * math.pi * torch.rand(8, 1, generator=g, dtype=torch.float64)
        hum = (amp * torch.sin(2 * math.pi * f0 * k * t + phase)).sum(0).float()
        hum = hum / hum.pow(2).mean().sqrt()
        return _unit_rms(hum + 0.03 * colored_noise(1, length, 0.0, g)[0])
    if kind == "bursts":
        gate = torch.zeros(length)
        for _ in range(int(torch.randint(1, 6, (1,), generator=g))):
            width = int(torch.randint(SAMPLE_RATE // 50, SAMPLE_RATE // 5 + 1, (1,), generator=g))
            start = int(torch.randint(0, max(1, length - width + 1), (1,), generator=g))
            gate[start : start + width] = 1.0
        # A quiet floor between bursts, so the noise is never exactly silent anywhere.
        return _unit_rms(colored_noise(1, length, 0.0, g)[0] * (gate + 0.03))
    if kind == "babble":
        if pool is None or len(pool) < 2:
            raise ValueError("babble noise needs a pool of at least 2 other utterances")
        talkers = int(torch.randint(3, 7, (1,), generator=g))
        mix = torch.zeros(length)
        for _ in range(talkers):
            i = int(torch.randint(0, len(pool), (1,), generator=g))
            if i == exclude:
                i = (i + 1) % len(pool)
            seg = _voiced_segment(pool[i], length, g)
            mix += seg / seg.pow(2).mean().sqrt().clamp_min(1e-8)
        return _unit_rms(mix)
    raise ValueError(f"unknown noise kind {kind!r}; valid: {', '.join(NOISE_KINDS)}")


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    return x / x.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)


def mix_at_snr(
    clean: torch.Tensor, noise: torch.Tensor, snr_db: float | torch.Tensor
) -> torch.Tensor:
    """clean + a·noise with a chosen so that 10·log10(P_clean / P_(a·noise)) = snr_db (per row)."""
    if clean.shape != noise.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and noise {tuple(noise.shape)} differ")
    snr = torch.as_tensor(snr_db, dtype=torch.float64)
    p_clean = clean.double().pow(2).mean(-1)
    p_noise = noise.double().pow(2).mean(-1)
    if bool((p_noise <= 0).any()):
        raise ValueError("noise has zero power; cannot mix at a finite SNR")
    scale = torch.sqrt(p_clean / (p_noise * 10 ** (snr / 10)))
    return (clean.double() + scale.unsqueeze(-1) * noise.double()).to(clean.dtype)


def measure_snr(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """SNR in dB of `noisy` against `clean` (per row), in float64."""
    c = clean.double()
    return 10 * torch.log10(c.pow(2).mean(-1) / (noisy.double() - c).pow(2).mean(-1))


def _normalise(noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # MP-SENet normalises the noisy signal to unit RMS and the clean one by the same factor.
    factor = 1.0 / noisy.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
    return noisy * factor, clean * factor


def _mixture(
    clean: torch.Tensor,
    *,
    pool: Sequence[torch.Tensor],
    index: int,
    kind: str,
    snr: float,
    generator: torch.Generator,
) -> torch.Tensor:
    noise = make_noise(kind, clean.shape[-1], generator=generator, pool=pool, exclude=index)
    return mix_at_snr(clean, noise, snr)


# ---- batch iterators -------------------------------------------------------------------------


def train_batches(
    utterances: Sequence[torch.Tensor],
    *,
    batch_size: int,
    segment: int,
    snrs: Sequence[float],
    noise_kinds: Sequence[str],
    generator: torch.Generator,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (noisy, clean) batches of shape (batch_size, segment), normalised as MP-SENet does.

    Each epoch visits the utterances in a fresh random order (from `generator`), taking one random
    voiced slice of each, mixed with a random noise kind at a random SNR from the given lists.
    """
    if len(utterances) < 2:
        raise ValueError("need at least 2 utterances (babble noise mixes other talkers)")
    order: list[int] = []
    while True:
        noisy, clean = [], []
        for _ in range(batch_size):
            if not order:
                order = torch.randperm(len(utterances), generator=generator).tolist()
            i = order.pop()
            seg = _voiced_segment(utterances[i], segment, generator)
            kind = noise_kinds[int(torch.randint(0, len(noise_kinds), (1,), generator=generator))]
            snr = float(snrs[int(torch.randint(0, len(snrs), (1,), generator=generator))])
            opts = dict(pool=utterances, index=i, kind=kind, snr=snr, generator=generator)
            noisy.append(_mixture(seg, **opts))
            clean.append(seg)
        x, y = _normalise(torch.stack(noisy), torch.stack(clean))
        yield x.to(device), y.to(device)


def val_batches(
    utterances: Sequence[torch.Tensor],
    *,
    count: int,
    max_len: int,
    snrs: Sequence[float],
    noise_kinds: Sequence[str],
    seed: int,
    device: str | torch.device = "cpu",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed list of `count` (noisy, clean) mixtures, one utterance per batch (shape (1, n)).

    Utterances (cut to `max_len` samples) are used in turn; SNRs and noise kinds cycle through the
    lists, so every SNR is covered. The noise comes from its own `seed`, independent of training,
    so every run is scored on the same mixtures. Variable lengths are why a batch holds one.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for j in range(count):
        i = j % len(utterances)
        clean = utterances[i][:max_len]
        kind = noise_kinds[j % len(noise_kinds)]
        snr = float(snrs[j % len(snrs)])
        noisy = _mixture(clean, pool=utterances, index=i, kind=kind, snr=snr, generator=g)
        x, y = _normalise(noisy.unsqueeze(0), clean.unsqueeze(0))
        out.append((x.to(device), y.to(device)))
    return out


def speech_batches(
    data: str,
    *,
    split: str,
    batch_size: int,
    segment: int,
    snrs: Sequence[float],
    noise_kinds: Sequence[str],
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    val_count: int = 10,
    val_max_len: int = 4 * SAMPLE_RATE,
    val_seed: int = 1234,
    clean_dir: str | None = None,
    heldout_dir: str | None = None,
    cache_dir: str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The mp_senet data entry point: `data` "real" | "synthetic", split "train" | "val"."""
    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}, got {data!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    bad = [k for k in noise_kinds if k not in NOISE_KINDS]
    if bad or not noise_kinds:
        raise ValueError(f"noise kinds {bad or '[]'} invalid; valid: {', '.join(NOISE_KINDS)}")
    if data == "real" and split == "train":
        utts: Sequence[torch.Tensor] = _cached_clean(clean_dir, cache_dir)
    elif data == "real":
        utts = _cached_heldout(heldout_dir)
    elif split == "train":
        utts = _synthetic_corpus(32, 2 * SAMPLE_RATE, 0)
    else:
        utts = _synthetic_corpus(10, val_max_len, 1)
    if split == "train":
        return train_batches(
            utts,
            batch_size=batch_size,
            segment=segment,
            snrs=snrs,
            noise_kinds=noise_kinds,
            generator=generator,
            device=device,
        )
    batches = val_batches(
        utts,
        count=val_count,
        max_len=val_max_len,
        snrs=snrs,
        noise_kinds=noise_kinds,
        seed=val_seed,
        device=device,
    )
    return iter(batches)


def _main() -> None:
    clean = load_clean_corpus()
    held = load_heldout_corpus()
    for name, utts in (("clean", clean), ("held-out", held)):
        secs = sum(u.shape[0] for u in utts) / SAMPLE_RATE
        print(f"{name}: {len(utts)} utterances, {secs / 60:.1f} min after trimming")
    g = torch.Generator().manual_seed(0)
    kw = dict(snrs=(-5, 0, 5, 10, 15), noise_kinds=NOISE_KINDS, generator=g)
    x, y = next(speech_batches("real", split="train", batch_size=4, segment=SAMPLE_RATE, **kw))
    print(f"train batch: noisy {tuple(x.shape)}, clean {tuple(y.shape)}")
    print(f"measured SNRs (dB): {measure_snr(y, x).numpy().round(2)}")


if __name__ == "__main__":
    _main()
