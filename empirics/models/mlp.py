"""`mlp`: a fully connected classifier of configurable depth and width, with or without biases.

Its task is `empirics.tasks.images` (Fashion-MNIST flattened, or its synthetic twin):
`python -m empirics.train --arch mlp --preset small --activation relu --out results/mlp_relu`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from empirics.activations import ActivationField
from empirics.models.common import (
    check_activation,
    check_positive_int,
    link_activations,
    muon_split,
)
from empirics.sparsity import make_sparse_activation, parse_sparsity

TASK = "images"


def consumers(act: str, layers: Collection[str]) -> list[str]:
    """The layer whose input is activation layer `act`'s output: the next hidden Linear, after
    the last one the head (`layers` names the model's logged layers)."""
    nxt = f"layers.fc{int(act.rsplit('act', 1)[1]) + 1}"
    return [nxt if nxt in layers else "layers.head"]


INIT_SCHEMES = ("default", "kaiming_normal", "xavier_normal")


@dataclass
class MLPConfig:
    """depth = number of hidden layers, each Linear -> activation; then a Linear head.

    init: "default" is PyTorch's Linear init (uniform, fan-in scaled, biases too);
    "kaiming_normal" / "xavier_normal" draw zero-mean Gaussian weights and zero biases, the
    i.i.d. zero-mean setting of the paper's Theorem 1.
    """

    activation: ActivationField = "relu"  # a spec here; the object once the config is built
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
        self.activation = check_activation(self.activation)
        parse_sparsity(self.sparsity)
        for name in ("depth", "width", "in_dim", "val_size"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_classes", self.n_classes, minimum=2)
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be true or false, got {self.bias!r}")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {self.init!r}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_dim,)


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

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Muon for the hidden weight matrices; AdamW for biases and the head."""
        hidden = (m.weight for n, m in self.layers.named_children() if n.startswith("fc"))
        return muon_split(self, hidden)


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


__all__ = ["Config", "MLPConfig", "Model", "PRESETS", "TASK"]
