"""Speech enhancement for mp_senet: noisy/clean mixtures, MP-SENet's losses (magnitude, complex,
anti-wrapped phase, time, STFT consistency) and evaluation by PESQ (wide-band) and STOI.

Not run on its own; `python -m empirics.data.speech` checks the data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from empirics.data.speech import DATA_KINDS, SAMPLE_RATE, speech_batches

Batch = tuple[torch.Tensor, ...]


def check_data(data: str, cfg: Any) -> None:
    """The data kind is one this task reads."""
    if data not in DATA_KINDS:
        raise ValueError(f"unknown value {data!r}; valid for speech: {', '.join(DATA_KINDS)}")


def anti_wrap(x: torch.Tensor) -> torch.Tensor:
    """|x - 2π·round(x / 2π)|: the distance of a phase difference to the nearest multiple of 2π."""
    return torch.abs(x - 2 * math.pi * torch.round(x / (2 * math.pi)))


def phase_losses(
    pha_ref: torch.Tensor, pha_est: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MP-SENet's anti-wrapped phase losses on (B, F, T) phases: instantaneous phase, group delay
    (difference along frequency) and instantaneous frequency (difference along time)."""
    ip = anti_wrap(pha_ref - pha_est).mean()
    gd = anti_wrap(torch.diff(pha_ref, dim=-2) - torch.diff(pha_est, dim=-2)).mean()
    iaf = anti_wrap(torch.diff(pha_ref, dim=-1) - torch.diff(pha_est, dim=-1)).mean()
    return ip, gd, iaf


def component_losses(model: Any, out: Any, clean: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every loss term against the clean signal, plus `loss`, their weighted sum."""
    cfg = model.cfg
    ref_mag, ref_pha, ref_com = model.analyse(clean)
    ip, gd, iaf = phase_losses(ref_pha, out.pha)
    _, _, re_com = model.analyse(out.audio)  # consistency: the output's own STFT
    terms = {
        "loss_mag": F.mse_loss(out.mag_c, ref_mag),
        # Sum over real/imag, mean over bins: MP-SENet's 2·mean over both parts.
        "loss_complex": 2 * F.mse_loss(out.com_c, ref_com),
        "loss_phase": ip + gd + iaf,
        "loss_time": F.l1_loss(out.audio, clean),
        "loss_consistency": 2 * F.mse_loss(re_com, ref_com),
    }
    total = (
        cfg.w_mag * terms["loss_mag"]
        + cfg.w_complex * terms["loss_complex"]
        + cfg.w_phase * terms["loss_phase"]
        + cfg.w_time * terms["loss_time"]
        + cfg.w_consistency * terms["loss_consistency"]
    )
    return {"loss": total, **terms, "loss_ip": ip, "loss_gd": gd, "loss_iaf": iaf}


def loss_and_metrics(
    model: Any, batch: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, dict[str, float]]:
    noisy, clean = batch[0], batch[1]
    terms = component_losses(model, model(noisy), clean)
    return terms["loss"], {k: float(v.detach()) for k, v in terms.items()}


def make_data(
    data: str,
    cfg: Any,
    *,
    split: str,
    batch_size: int,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(noisy, clean) batches: train (batch_size, segment), endless; val (1, n) each, fixed."""
    return speech_batches(
        data,
        split=split,
        batch_size=batch_size,
        segment=cfg.segment,
        snrs=cfg.snrs,
        noise_kinds=cfg.noise_kinds,
        generator=generator,
        device=device,
        val_count=cfg.val_mixtures,
        val_max_len=int(round(cfg.val_max_seconds * SAMPLE_RATE)),
        val_seed=cfg.val_seed,
        clean_dir=cfg.clean_root,
        heldout_dir=cfg.heldout_root,
        cache_dir=cfg.cache_dir,
    )


def _speech_scores(clean: np.ndarray, deg: np.ndarray) -> tuple[float | None, float | None]:
    """(wide-band PESQ, STOI) of one signal; None where the metric cannot score it."""
    from pesq import BufferTooShortError, NoUtterancesError, pesq
    from pystoi import stoi

    try:
        p = float(pesq(SAMPLE_RATE, clean, deg, "wb"))
    except (NoUtterancesError, BufferTooShortError):  # silent, or under PESQ's 0.25 s minimum
        p = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns (and still scores) on short signals
        s = float(stoi(clean, deg, SAMPLE_RATE))
    return p, (s if math.isfinite(s) else None)


def evaluate(model: Any, batches: Iterable[tuple[torch.Tensor, ...]]) -> dict[str, float]:
    """val_loss and the component losses; PESQ (wb) and STOI of enhanced and of noisy input.

    `pesq_skipped` counts signals PESQ refused (no utterance found / too short); the PESQ means
    are over the rest (NaN if none).
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    scores: dict[str, list[float]] = {"pesq": [], "stoi": [], "pesq_noisy": [], "stoi_noisy": []}
    skipped = n = 0
    try:
        with torch.no_grad():
            for batch in batches:
                noisy, clean = batch[0], batch[1]
                out = model(noisy)
                b = noisy.shape[0]
                for k, v in component_losses(model, out, clean).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * b
                n += b
                ref = clean.double().cpu().numpy()
                for row in range(b):
                    pairs = (("", out.audio), ("_noisy", noisy))
                    for suffix, sig in pairs:
                        p, s = _speech_scores(ref[row], sig[row].double().cpu().numpy())
                        if p is None:
                            skipped += 1
                        else:
                            scores["pesq" + suffix].append(p)
                        if s is not None:
                            scores["stoi" + suffix].append(s)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate() got no validation batches")
    if skipped:
        warnings.warn(
            f"PESQ skipped {skipped} signal(s): no utterance detected or shorter than 0.25 s; "
            "the PESQ means are over the rest (pesq_skipped counts them)",
            stacklevel=2,
        )
    result = {("val_loss" if k == "loss" else f"val_{k}"): v / n for k, v in sums.items()}
    for k, vals in scores.items():
        result[k] = float(np.mean(vals)) if vals else float("nan")
    result["pesq_skipped"] = float(skipped)
    return result
