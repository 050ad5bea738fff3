"""`mp_senet`: a small MP-SENet-style speech enhancer (magnitude and phase decoded in parallel).

After Lu et al. 2023 (MP-SENet), re-written small: STFT → compressed magnitude and phase → dense
conv encoder → time/frequency attention blocks → masking magnitude decoder ∥ phase decoder → iSTFT.
Its task is `empirics.tasks.speech` (losses, data, PESQ/STOI); train it with
`python -m empirics.train --arch mp_senet --preset small --activation relu`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from empirics.activations import ActivationField, make_activation
from empirics.data.speech import NOISE_KINDS, SAMPLE_RATE
from empirics.models.common import check_activation, link_activations, muon_split
from theory.registry import Activation

TASK = "speech"


def consumers(act: str, layers: Collection[str]) -> list[str]:
    """No layer is singled out as fed by an activation's output: the drift rows report only
    the feeding norm for MP-SENet."""
    return []


_MAG_EPS = 1e-9  # inside sqrt(|X|^2 + eps): keeps d|X|^c/dX finite at silent bins


@dataclass
class MpSenetConfig:
    """Shape of the enhancer, its STFT, the loss weights and the data mixing.

    The original (PReLU, 64 channels, 4 conformer blocks with attention + conv + FFN, a metric
    discriminator) is cut down: the conformers become attention + FFN blocks, the activation comes
    from the registry by name, and there is no metric discriminator (so no PESQ-driven GAN loss).
    Loss weights default to the paper's (magnitude 0.9, complex 0.1, phase 0.3, time 0.2) plus
    the STFT-consistency term of its released code (0.1).
    """

    activation: ActivationField = "relu"  # a spec here; the object once the config is built
    channels: int = 16  # width of encoder / decoders
    dense_depth: int = 3  # conv layers per dense block (time dilation 1, 2, 4, ...)
    ts_blocks: int = 1  # time-then-frequency attention blocks
    heads: int = 1  # head width 16 at 16 channels, as the original's 4 heads at 64
    ffn_mult: int = 2
    n_fft: int = 400  # 25 ms at 16 kHz, as MP-SENet
    hop: int = 100
    compress: float = 0.3  # magnitude compression |X|^c
    mask_beta: float = 2.0  # the learnable sigmoid's bound: mask in (0, beta)
    segment_seconds: float = 1.0
    snrs: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 15.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    w_mag: float = 0.9
    w_complex: float = 0.1
    w_phase: float = 0.3
    w_time: float = 0.2
    w_consistency: float = 0.1
    clean_root: str | None = None  # None: $BOF_SPEECH_CLEAN_DIR or the Debian path
    heldout_root: str | None = None  # None: $BOF_SPEECH_HELDOUT_DIR or the Debian path
    cache_dir: str | None = None  # None: $BOF_CACHE_DIR or ~/.cache/bugorfeature
    val_mixtures: int = 10
    val_max_seconds: float = 4.0
    val_seed: int = 1234

    def __post_init__(self) -> None:
        self.activation = check_activation(self.activation)  # unknown names fail here
        # Overrides may arrive as JSON lists; keep the fields hashable tuples.
        self.snrs = tuple(float(s) for s in self.snrs)
        self.noise_kinds = tuple(self.noise_kinds)
        positive = ("channels", "dense_depth", "heads", "ffn_mult", "n_fft", "hop", "val_mixtures")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MpSenetConfig.{name} must be a positive int, got {v!r}")
        if not isinstance(self.ts_blocks, int) or self.ts_blocks < 0:
            raise ValueError(f"MpSenetConfig.ts_blocks must be an int >= 0, got {self.ts_blocks!r}")
        if self.channels % self.heads:
            raise ValueError(
                f"MpSenetConfig.channels ({self.channels}) must be divisible by "
                f"heads ({self.heads})"
            )
        if self.n_fft % 2 or self.n_fft < 16:
            raise ValueError(f"MpSenetConfig.n_fft must be even and >= 16, got {self.n_fft}")
        if self.hop > self.n_fft // 2:
            raise ValueError(
                f"MpSenetConfig.hop ({self.hop}) must be <= n_fft/2 ({self.n_fft // 2}) so the "
                "Hann-windowed STFT is invertible"
            )
        if not 0 < self.compress <= 1:
            raise ValueError(f"MpSenetConfig.compress must be in (0, 1], got {self.compress}")
        if not self.mask_beta > 0:
            raise ValueError(f"MpSenetConfig.mask_beta must be > 0, got {self.mask_beta}")
        if self.segment_seconds * SAMPLE_RATE < self.n_fft:
            raise ValueError(
                f"MpSenetConfig.segment_seconds ({self.segment_seconds}) is shorter than one STFT "
                f"frame (n_fft={self.n_fft} samples at {SAMPLE_RATE} Hz)"
            )
        if not 0 < self.val_max_seconds:
            raise ValueError(
                f"MpSenetConfig.val_max_seconds must be > 0, got {self.val_max_seconds}"
            )
        if not self.snrs or not all(math.isfinite(s) for s in self.snrs):
            raise ValueError(
                f"MpSenetConfig.snrs must be a non-empty list of finite dB values, got {self.snrs}"
            )
        bad = [k for k in self.noise_kinds if k not in NOISE_KINDS]
        if bad or not self.noise_kinds:
            raise ValueError(
                f"MpSenetConfig.noise_kinds has invalid {bad or 'empty list'}; "
                f"valid: {', '.join(NOISE_KINDS)}"
            )
        weights = {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("w_")}
        for name, w in weights.items():
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"MpSenetConfig.{name} must be a finite weight >= 0, got {w}")
        if sum(weights.values()) == 0:
            raise ValueError("MpSenetConfig loss weights w_* are all 0: nothing to train")

    @property
    def segment(self) -> int:
        return int(round(self.segment_seconds * SAMPLE_RATE))

    @property
    def freq_bins(self) -> int:
        return self.n_fft // 2 + 1


Config = MpSenetConfig

# smoke: seconds (tests). small: ~0.8 s a training step on one busy core of this CPU (measured),
# so ~3 min for its 200 steps, more with metrics every step. paper: roughly MP-SENet's published
# scale (64 channels, 4 blocks, 4 heads, 2 s segments, AdamW 5e-4 with betas 0.8/0.99, ~100
# VoiceBank epochs of steps). Approximate: its conformers and discriminator are not reproduced.
PRESETS: dict[str, dict[str, object]] = {
    "smoke": {
        "channels": 8,
        "dense_depth": 2,
        "ts_blocks": 1,
        "segment_seconds": 0.25,
        "val_mixtures": 2,
        "val_max_seconds": 1.0,
        "steps": 3,
        "batch_size": 2,
        "lr": 1e-3,
        "optimizer": "adamw",
        "warmup": 0,
    },
    "small": {
        "channels": 16,
        "dense_depth": 2,
        "ts_blocks": 1,
        "heads": 1,
        "segment_seconds": 0.5,
        "val_mixtures": 10,
        "val_max_seconds": 3.0,
        "steps": 200,
        "batch_size": 4,
        "lr": 1e-3,
        "optimizer": "adamw",
        "warmup": 20,
    },
    "paper": {
        "channels": 64,
        "dense_depth": 4,
        "ts_blocks": 4,
        "heads": 4,
        "ffn_mult": 4,
        "segment_seconds": 2.0,
        "val_mixtures": 50,
        "val_max_seconds": 8.0,
        "steps": 290_000,
        "batch_size": 8,
        "lr": 5e-4,
        "optimizer": "adamw",
        "warmup": 1000,
    },
}

# Read by empirics.train.loop where its own fields are left at their defaults.
OPTIMIZER_DETAILS: dict[str, dict[str, object]] = {"paper": {"adam_betas": (0.8, 0.99)}}


# ---- spectra -----------------------------------------------------------------------------------


def analyse(
    wave: torch.Tensor, n_fft: int, hop: int, compress: float, window: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L) audio → compressed magnitude, phase (B, F, T) and compressed complex (B, F, T, 2)."""
    if window is None:
        window = torch.hann_window(n_fft, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(wave, n_fft, hop, n_fft, window, center=True, return_complex=True)
    re, im = spec.real, spec.imag
    mag = torch.sqrt(re * re + im * im + _MAG_EPS)
    mag_c = mag.pow(compress)
    pha = torch.atan2(im, re)
    # X·|X|^(c-1) has magnitude |X|^c and X's phase, without atan2's undefined gradient at 0.
    com_c = torch.stack((re, im), dim=-1) * mag.pow(compress - 1).unsqueeze(-1)
    return mag_c, pha, com_c


def synthesize(
    mag_c: torch.Tensor,
    pha: torch.Tensor,
    length: int,
    n_fft: int,
    hop: int,
    compress: float,
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """Compressed magnitude and phase (B, F, T) → audio (B, length) by the inverse STFT."""
    if window is None:
        window = torch.hann_window(n_fft, dtype=mag_c.dtype, device=mag_c.device)
    mag = mag_c.pow(1.0 / compress)
    spec = torch.complex(mag * torch.cos(pha), mag * torch.sin(pha))
    return torch.istft(spec, n_fft, hop, n_fft, window, center=True, length=length)


# ---- network ------------------------------------------------------------------------------------


class _ConvNormAct(nn.Module):
    """conv → InstanceNorm (affine) → registry activation; the norm feeds the activation."""

    feeder = "norm"  # the submodule feeding `act`, read by Model's link_activations

    def __init__(self, conv: nn.Module, channels: int, activation: Activation) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class _DenseBlock(nn.Module):
    """Dense conv block on (B, C, T, F): layer i sees all earlier outputs, dilation 2^i in time."""

    def __init__(self, channels: int, depth: int, activation: Activation) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(depth):
            dil = 2**i
            conv = nn.Sequential(
                # Pad time on the left only (as the original): kernel 2 with dilation d needs d.
                nn.ZeroPad2d((1, 1, dil, 0)),
                nn.Conv2d(channels * (i + 1), channels, (2, 3), dilation=(dil, 1)),
            )
            self.layers.append(_ConvNormAct(conv, channels, activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x
        for layer in self.layers:
            x = layer(skip)
            skip = torch.cat([x, skip], dim=1)
        return x


class _AxisBlock(nn.Module):
    """Pre-norm self-attention + FFN (Linear → activation → Linear) along one axis: (N, S, C)."""

    feeder = "up"  # the submodule feeding `act`, read by Model's link_activations

    def __init__(self, channels: int, heads: int, ffn_mult: int, activation: Activation) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, ffn_mult * channels)
        self.act = make_activation(activation)
        self.down = nn.Linear(ffn_mult * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, s, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(n, s, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, H, S, C/H)
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(att.transpose(1, 2).reshape(n, s, c))
        return x + self.down(self.act(self.up(self.norm2(x))))


class _TSBlock(nn.Module):
    """Attention along time (per frequency), then along frequency (per frame), as MP-SENet's TS."""

    def __init__(self, channels: int, heads: int, ffn_mult: int, activation: Activation) -> None:
        super().__init__()
        self.time = _AxisBlock(channels, heads, ffn_mult, activation)
        self.freq = _AxisBlock(channels, heads, ffn_mult, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, f = x.shape
        x = x.permute(0, 3, 2, 1).reshape(b * f, t, c)  # (B·F, T, C)
        x = self.time(x)
        x = x.view(b, f, t, c).transpose(1, 2).reshape(b * t, f, c)  # (B·T, F, C)
        x = self.freq(x)
        return x.view(b, t, f, c).permute(0, 3, 1, 2)  # (B, C, T, F)


class Enhanced(NamedTuple):
    """Enhancer outputs: audio (B, L); compressed magnitude, phase (B, F, T); complex (…, 2)."""

    audio: torch.Tensor
    mag_c: torch.Tensor
    pha: torch.Tensor
    com_c: torch.Tensor


class Model(nn.Module):
    """Noisy waveform (B, L) → `Enhanced` (audio and the spectra the losses compare)."""

    def __init__(self, cfg: MpSenetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, act = cfg.channels, cfg.activation
        n_freq = cfg.freq_bins
        n_half = (n_freq - 3) // 2 + 1  # after the stride-2 frequency conv
        out_pad = n_freq - ((n_half - 1) * 2 + 3)  # so the transposed conv gives n_freq back
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

        self.enc_in = _ConvNormAct(nn.Conv2d(2, c, 1), c, act)
        self.enc_dense = _DenseBlock(c, cfg.dense_depth, act)
        self.enc_down = _ConvNormAct(nn.Conv2d(c, c, (1, 3), stride=(1, 2)), c, act)
        self.ts = nn.ModuleList(
            _TSBlock(c, cfg.heads, cfg.ffn_mult, act) for _ in range(cfg.ts_blocks)
        )

        def up() -> nn.Module:
            return nn.ConvTranspose2d(c, c, (1, 3), stride=(1, 2), output_padding=(0, out_pad))

        self.mag_dense = _DenseBlock(c, cfg.dense_depth, act)
        self.mag_up = up()
        self.mag_head = _ConvNormAct(nn.Conv2d(c, 1, 1), 1, act)
        self.mag_out = nn.Conv2d(1, 1, 1)
        # Learnable sigmoid: mask = beta·sigmoid(slope_f · z), one slope per frequency bin.
        self.mask_slope = nn.Parameter(torch.ones(n_freq))

        self.pha_dense = _DenseBlock(c, cfg.dense_depth, act)
        self.pha_up = _ConvNormAct(up(), c, act)
        self.pha_real = nn.Conv2d(c, 1, 1)
        self.pha_imag = nn.Conv2d(c, 1, 1)

        link_activations(
            self,
            {
                f"{name}.act": f"{name}.{module.feeder}"
                for name, module in self.named_modules()
                if isinstance(module, (_ConvNormAct, _AxisBlock))
            },
        )

    def analyse(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        return analyse(wave, cfg.n_fft, cfg.hop, cfg.compress, self.window.to(wave.dtype))

    def synthesize(self, mag_c: torch.Tensor, pha: torch.Tensor, length: int) -> torch.Tensor:
        cfg = self.cfg
        w = self.window.to(mag_c.dtype)
        return synthesize(mag_c, pha, length, cfg.n_fft, cfg.hop, cfg.compress, w)

    def forward(self, noisy: torch.Tensor) -> Enhanced:
        if noisy.dim() != 2:
            raise ValueError(f"mp_senet expects (batch, samples) audio, got {tuple(noisy.shape)}")
        mag_c, pha, _ = self.analyse(noisy)  # (B, F, T)
        x = torch.stack((mag_c, pha), dim=1).transpose(2, 3)  # (B, 2, T, F)
        h = self.enc_down(self.enc_dense(self.enc_in(x)))  # (B, C, T, F/2)
        for block in self.ts:
            h = block(h)
        z = self.mag_out(self.mag_head(self.mag_up(self.mag_dense(h))))[:, 0]  # (B, T, F)
        mask = self.cfg.mask_beta * torch.sigmoid(self.mask_slope * z)
        est_mag = mag_c * mask.transpose(1, 2)  # (B, F, T)
        p = self.pha_up(self.pha_dense(h))  # (B, C, T, F)
        est_pha = torch.atan2(self.pha_imag(p), self.pha_real(p))[:, 0].transpose(1, 2)
        com = torch.stack((est_mag * torch.cos(est_pha), est_mag * torch.sin(est_pha)), dim=-1)
        audio = self.synthesize(est_mag, est_pha, noisy.shape[-1])
        return Enhanced(audio, est_mag, est_pha, com)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Muon for the attention blocks' matrices (its only 2-D weights; convolutions are 4-D,
        torch's Muon takes 2-D matrices); AdamW for convolutions, norms, biases, mask slopes."""
        return muon_split(self, (p for p in self.ts.parameters() if p.ndim == 2))


__all__ = [
    "PRESETS",
    "TASK",
    "Config",
    "Enhanced",
    "Model",
    "MpSenetConfig",
    "OPTIMIZER_DETAILS",
    "analyse",
    "synthesize",
]
