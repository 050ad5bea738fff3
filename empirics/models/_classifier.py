"""Loss, metrics and evaluation shared by the image classifiers (`mlp`, `resnet`, `vit`).

Not run on its own; the trainer calls these through each architecture module.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from empirics.activations import ActivationLayer


def check_activation(activation: str) -> None:
    """Resolve the activation through the registry now, so a bad name fails at config time."""
    if not isinstance(activation, str) or not activation:
        raise ValueError(
            f"activation must be a registry name or NAME=EXPR spec, got {activation!r}"
        )
    ActivationLayer(activation)  # raises RegistryError listing the valid names


def check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def link_activations(model: nn.Module, sources: dict[str, str]) -> None:
    """Set `feeds_from` on each activation layer (qualified name -> source module name).

    Checks both names exist, so a renamed submodule cannot silently break drift attribution.
    """
    modules = dict(model.named_modules())
    for act_name, source in sources.items():
        act = modules.get(act_name)
        if not isinstance(act, ActivationLayer):
            raise RuntimeError(f"{act_name!r} is not an activation layer of {type(model).__name__}")
        if source not in modules:
            raise RuntimeError(f"{act_name!r} feeds from unknown module {source!r}")
        act.feeds_from = source
    unlinked = [
        n for n, m in modules.items() if isinstance(m, ActivationLayer) and n not in sources
    ]
    if unlinked:
        raise RuntimeError(f"activation layers without feeds_from: {unlinked}")


def loss_and_metrics(
    model: nn.Module, batch: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Softmax cross-entropy on one batch, and its accuracy."""
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    accuracy = (logits.detach().argmax(dim=-1) == y).float().mean().item()
    return loss, {"accuracy": accuracy}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]]) -> dict[str, float]:
    """Example-weighted val_loss and accuracy in eval mode (BatchNorm uses running stats)."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for x, y in batches:
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(dim=-1) == y).sum().item())
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate got no validation batches")
    return {"val_loss": total_loss / count, "accuracy": correct / count}
