"""Next-token prediction for gpt_nano: King James text (characters or BPE), FineWeb token shards,
or uniform random tokens; cross-entropy loss, validation loss in nats and bits per token.

Not run on its own; `python -m empirics.data.text` checks the data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from empirics.data import shards as token_shards
from empirics.data import text

Batch = tuple[torch.Tensor, torch.Tensor]

DATA_KINDS = ("real", "synthetic", "fineweb")


def check_data(data: str, cfg: Any) -> None:
    """The data kind and the config's data options agree (ValueError says how not)."""
    if data not in DATA_KINDS:
        raise ValueError(
            f"unknown value {data!r}; valid for the text task (gpt_nano): {', '.join(DATA_KINDS)}"
        )
    if data == "fineweb" and cfg.data_path is None:
        raise ValueError("fineweb reads token shards: pass --set data_path=FILE|DIR|GLOB")
    if data != "fineweb" and (cfg.data_path is not None or cfg.val_path is not None):
        raise ValueError(f"data_path/val_path are read with --data fineweb, not --data {data}")
    if data == "fineweb" and cfg.tokenizer != "char":
        raise ValueError("fineweb shards are already tokenized: leave tokenizer unset")


def make_data(
    data: str,
    cfg: Any,
    *,
    split: str,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[Batch]:
    """Batches (x, y) of shape (B, block_size), y = x shifted by one token.

    real: King James text, characters or (tokenizer=bpe) BPE tokens (train = first 90%, random
    windows; val = last 10%, cfg.val_windows fixed windows). fineweb: the token shards at
    cfg.data_path, the same windows (val: cfg.val_path, else their last 10%). synthetic: uniform
    random tokens over cfg.vocab_size of the same shape; its val set is fixed by a seed derived
    from the generator's seed (the generator itself is not advanced).
    """
    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}, got {data!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if data == "synthetic":
        if split == "train":
            gen = generator
            n_batches = None
        else:
            base = generator.initial_seed() if generator is not None else 0
            gen = torch.Generator().manual_seed(base + 0x5EED)
            n_batches = math.ceil(cfg.val_windows / batch_size)
        return text.synthetic_batches(
            vocab_size=cfg.vocab_size,
            block_size=cfg.block_size,
            batch_size=batch_size,
            generator=gen,
            n_batches=n_batches,
            device=device,
        )
    if data == "fineweb":
        if cfg.data_path is None:
            raise ValueError("data='fineweb' needs data_path (token shards)")
        train, val = token_shards.fineweb_splits(cfg.data_path, cfg.val_path)
        shards, lo, hi = train if split == "train" else val
        return token_shards.shard_windows(
            shards,
            lo=lo,
            hi=hi,
            block_size=cfg.block_size,
            batch_size=batch_size,
            vocab_size=cfg.vocab_size,
            generator=generator,
            n_windows=None if split == "train" else cfg.val_windows,
            device=device,
        )
    if cfg.tokenizer == "bpe":
        train_ids, val_ids = text.corpus_bpe_splits(cfg.corpus, cfg.vocab_size)
    elif cfg.vocab_size < text.KJV_VOCAB.size:
        raise ValueError(
            f"vocab_size={cfg.vocab_size} is smaller than the King James character "
            f"vocabulary ({text.KJV_VOCAB.size})"
        )
    else:
        train_ids, val_ids = text.kjv_splits()
    if split == "train":
        return text.train_windows(
            train_ids,
            block_size=cfg.block_size,
            batch_size=batch_size,
            generator=generator,
            device=device,
        )
    return text.val_windows(
        val_ids,
        block_size=cfg.block_size,
        batch_size=batch_size,
        n_windows=cfg.val_windows,
        device=device,
    )


def loss_and_metrics(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token cross-entropy (mean over all positions) for one training batch."""
    x, y = batch
    logits = model(x)  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    return loss, {"loss": float(loss.detach())}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
    """val_loss (nats per character) and val_bpc (bits per character) over all batches."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in batches:
            logits = model(x)  # (B, T, V)
            total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: no validation batches")
    val_loss = total / count
    return {"val_loss": val_loss, "val_bpc": val_loss / math.log(2)}
