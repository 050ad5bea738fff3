"""Image classification on Fashion-MNIST (or its synthetic twin), shared by mlp, resnet and vit.

The model config says the shape of one example in `input_shape`: `(in_dim,)` for a flat vector,
`(C, H, W)` for an image. Not run on its own; `python -m empirics.data.images` checks the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from empirics.data.images import IMAGE_SHAPE, image_batches

DATA_KINDS = ("real", "synthetic")
# The shapes a real Fashion-MNIST example can take: flattened, or one 28x28 channel.
REAL_SHAPES = ((IMAGE_SHAPE[0] * IMAGE_SHAPE[1],), (1, *IMAGE_SHAPE))

Batch = tuple[torch.Tensor, torch.Tensor]


def check_data(data: str, cfg: Any) -> None:
    """The data kind is one this task reads, and real images fit the model's input shape."""
    if data not in DATA_KINDS:
        raise ValueError(f"unknown value {data!r}; valid for image models: {', '.join(DATA_KINDS)}")
    if data == "real" and tuple(cfg.input_shape) not in REAL_SHAPES:
        raise ValueError(
            f"real Fashion-MNIST examples are (784,) or (1, 28, 28); this model reads "
            f"{tuple(cfg.input_shape)} ({_shape_fields(cfg)}); use --data synthetic or change them"
        )


def _shape_fields(cfg: Any) -> str:
    names = ("in_dim", "in_channels", "image_size")
    return ", ".join(f"{n}={getattr(cfg, n)}" for n in names if hasattr(cfg, n))


def make_data(
    data: str,
    cfg: Any,
    *,
    split: str,
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> Iterator[Batch]:
    """Standardised Fashion-MNIST (or N(0,1) examples) of shape cfg.input_shape, int64 labels.

    `cfg` supplies `input_shape`, `n_classes` and `val_size` (examples in the val split).
    """
    shape = tuple(cfg.input_shape)
    if data == "real":
        check_data(data, cfg)
    return image_batches(
        data,
        split=split,
        batch_size=batch_size,
        generator=generator,
        device=device,
        flatten=len(shape) == 1,
        n_classes=cfg.n_classes,
        synthetic_shape=shape,
        val_size=cfg.val_size,
    )


def loss_and_metrics(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Softmax cross-entropy on one batch, and its accuracy."""
    x, y = batch
    logits = model(x)  # (B, n_classes)
    loss = F.cross_entropy(logits, y)
    accuracy = (logits.detach().argmax(dim=-1) == y).float().mean().item()
    return loss, {"accuracy": accuracy}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
    """Example-weighted val_loss and accuracy in eval mode (BatchNorm uses running stats)."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for x, y in batches:
            logits = model(x)  # (B, n_classes)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(dim=-1) == y).sum().item())
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate got no validation batches")
    return {"val_loss": total_loss / count, "accuracy": correct / count}
