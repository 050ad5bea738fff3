"""`mlp`: a fully connected classifier of configurable depth and width, with or without biases.

Trained on Fashion-MNIST (flattened) or its synthetic twin:
`python -m empirics.train --arch mlp --preset small --activation relu --out results/mlp_relu`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from empirics.data.images import IMAGE_SHAPE, image_batches
from empirics.models._classifier import (
    check_activation,
    check_positive_int,
    evaluate,
    link_activations,
    loss_and_metrics,
)
from empirics.sparsity import make_sparse_activation, parse_sparsity

INITS = ("default", "kaiming_normal", "xavier_normal")


@dataclass
class MLPConfig:
    """depth = number of hidden layers, each Linear -> activation; then a Linear head.

    init: "default" is PyTorch's Linear init (uniform, fan-in scaled, biases too);
    "kaiming_normal" / "xavier_normal" draw zero-mean Gaussian weights and zero biases, the
    i.i.d. zero-mean setting of the paper's Theorem 1.
    """

    activation: str = "relu"
    depth: int = 3
    width: int = 256
    in_dim: int = 784
    n_classes: int = 10
    bias: bool = True
    init: str = "default"
    val_size: int = 10_000
    # C10's sparsity control at every activation (`empirics.sparsity`): none, topk:0.75, ...
    sparsity: str = "none"

    def __post_init__(self) -> None:
        check_activation(self.activation)
        parse_sparsity(self.sparsity)
        for name in ("depth", "width", "in_dim", "val_size"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_classes", self.n_classes, minimum=2)
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be true or false, got {self.bias!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")


Config = MLPConfig


class Model(nn.Module):
    """x (B, in_dim) -> logits (B, n_classes); layers named fc1, act1, ..., head."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        fan_in = cfg.in_dim
        for i in range(1, cfg.depth + 1):
            layers[f"fc{i}"] = nn.Linear(fan_in, cfg.width, bias=cfg.bias)
            layers[f"act{i}"] = make_sparse_activation(cfg.activation, cfg.sparsity)
            fan_in = cfg.width
        layers["head"] = nn.Linear(fan_in, cfg.n_classes, bias=cfg.bias)
        self.layers = nn.Sequential(layers)
        self._init_weights()
        link_activations(self, {f"layers.act{i}": f"layers.fc{i}" for i in range(1, cfg.depth + 1)})

    def _init_weights(self) -> None:
        if self.cfg.init == "default":
            return
        for module in self.layers:
            if isinstance(module, nn.Linear):
                if self.cfg.init == "kaiming_normal":
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                else:
                    nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))  # (B, in_dim) -> (B, n_classes)


# Training fields: steps, batch_size, lr, optimizer, warmup. The paper does not give its MLP's
# size, data or optimizer: "paper" is our plausible full-scale choice, not the paper's number.
PRESETS: dict[str, dict[str, object]] = {
    "smoke": {
        "depth": 2, "width": 32, "val_size": 256,
        "steps": 20, "batch_size": 32, "lr": 0.05, "optimizer": "sgd", "warmup": 0,
    },
    "small": {
        "depth": 3, "width": 256, "val_size": 2_000,
        "steps": 1_000, "batch_size": 128, "lr": 0.05, "optimizer": "sgd", "warmup": 0,
    },
    "paper": {
        "depth": 4, "width": 1024,
        "steps": 20_000, "batch_size": 256, "lr": 0.05, "optimizer": "sgd", "warmup": 500,
    },
}  # fmt: skip


def make_data(
    data: str,
    cfg: MLPConfig,
    *,
    split: str,
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Flattened standardised Fashion-MNIST (or N(0,1) vectors of in_dim) and int64 labels."""
    if data == "real" and cfg.in_dim != IMAGE_SHAPE[0] * IMAGE_SHAPE[1]:
        raise ValueError(f"in_dim must be 784 for real Fashion-MNIST, got {cfg.in_dim}")
    return image_batches(
        data,
        split=split,
        batch_size=batch_size,
        generator=generator,
        device=device,
        flatten=True,
        n_classes=cfg.n_classes,
        synthetic_shape=(cfg.in_dim,),
        val_size=cfg.val_size,
    )


__all__ = ["Config", "MLPConfig", "Model", "PRESETS", "evaluate", "loss_and_metrics", "make_data"]
