"""`resnet`: a small CIFAR-style ResNet with BatchNorm, sized for 28x28x1 Fashion-MNIST.

Conv stem, BasicBlocks (conv-BN-act-conv-BN, activation after the residual sum), global average
pool, linear head; the activation comes by registry name at every place one appears. Its task is
`empirics.tasks.images` (Fashion-MNIST images or their synthetic twin):
`python -m empirics.train --arch resnet --preset small --activation relu --out results/resnet_relu`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from empirics.activations import ActivationField
from empirics.data.images import IMAGE_SHAPE
from empirics.models.common import (
    check_activation,
    check_positive_int,
    link_activations,
    muon_split,
)
from empirics.sparsity import make_sparse_activation, parse_sparsity
from theory.registry import Activation

TASK = "images"


def consumers(act: str, layers: Collection[str]) -> list[str]:
    """The layer(s) whose input is activation layer `act`'s output (at most two, those among
    `layers`): after the stem the first block's conv1 and shortcut, after act1 the block's conv2,
    after a block's act2 the next block's conv1 and shortcut (past a stage's last block, the next
    stage's first block, or the head)."""
    if act == "stem.2":
        cands = ["stages.0.0.conv1", "stages.0.0.shortcut.0"]
    elif act.endswith(".act1"):
        cands = [act[: -len("act1")] + "conv2"]
    else:
        m = re.fullmatch(r"stages\.(\d+)\.(\d+)\.act2", act)
        if not m:
            return []
        s, b = int(m.group(1)), int(m.group(2))
        cands = [f"stages.{s}.{b + 1}.conv1", f"stages.{s}.{b + 1}.shortcut.0"]
        if f"stages.{s}.{b + 1}.conv1" not in layers:
            cands = [f"stages.{s + 1}.0.conv1", f"stages.{s + 1}.0.shortcut.0", "head"]
    return [c for c in cands if c in layers][:2]


@dataclass
class ResNetConfig:
    """widths: channels of each stage (stage 1 at 28x28, each later stage halves the size)."""

    activation: ActivationField = "relu"  # a spec here; the object once the config is built
    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 2
    in_channels: int = 1
    n_classes: int = 10
    val_size: int = 10_000
    # C10's sparsity control (`empirics.sparsity`); on conv maps Top-K runs over the channels
    # of each position and `quantile` per channel over batch and space (a quantile BatchNorm).
    sparsity: str = "none"

    def __post_init__(self) -> None:
        self.activation = check_activation(self.activation)
        parse_sparsity(self.sparsity)
        if isinstance(self.widths, list):
            self.widths = tuple(self.widths)  # JSON configs give lists
        if not isinstance(self.widths, tuple) or not self.widths:
            raise ValueError(f"widths must be a non-empty tuple of integers, got {self.widths!r}")
        for i, w in enumerate(self.widths):
            check_positive_int(f"widths[{i}]", w)
        # 28 -> 14 -> 7 -> 4 -> 2 -> 1: more than five stride-2 stages would leave nothing.
        if len(self.widths) > 6:
            raise ValueError(
                f"widths may have at most 6 stages for 28x28 inputs, got {len(self.widths)}"
            )
        for name in ("blocks_per_stage", "in_channels", "val_size"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_classes", self.n_classes, minimum=2)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *IMAGE_SHAPE)


Config = ResNetConfig


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    # No conv bias: the BatchNorm that follows has its own shift (beta).
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-act1-conv-BN (+ shortcut) -> act2; the shortcut projects when the shape changes."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, activation: Activation, sparsity: str = "none"
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = make_sparse_activation(activation, sparsity, feature_dim=1)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out),
            )
        self.act2 = make_sparse_activation(activation, sparsity, feature_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))  # (B, C_out, H', W')
        return self.act2(self.bn2(self.conv2(h)) + self.shortcut(x))


class Model(nn.Module):
    """x (B, C, 28, 28) -> logits (B, n_classes)."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            _conv3x3(cfg.in_channels, cfg.widths[0]),
            nn.BatchNorm2d(cfg.widths[0]),
            make_sparse_activation(cfg.activation, cfg.sparsity, feature_dim=1),
        )
        stages = []
        c_in = cfg.widths[0]
        for s, width in enumerate(cfg.widths):
            blocks = []
            for b in range(cfg.blocks_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(c_in, width, stride, cfg.activation, cfg.sparsity))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, cfg.n_classes)
        # The module whose output is each activation's input. After a residual sum the input is
        # bn2 + shortcut; we name bn2 (the block's own branch) and list the shortcut separately.
        sources, also = {"stem.2": "stem.1"}, {}
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                prefix = f"stages.{s}.{b}"
                sources[f"{prefix}.act1"] = f"{prefix}.bn1"
                sources[f"{prefix}.act2"] = f"{prefix}.bn2"
                if isinstance(block.shortcut, nn.Sequential):
                    also[f"{prefix}.act2"] = (f"{prefix}.shortcut.1",)
        link_activations(self, sources, also)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))  # (B, C_last, H_last, W_last)
        return self.head(h.mean(dim=(2, 3)))  # global average pool -> (B, n_classes)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Nothing for Muon: its convolutions are 4-D (torch's Muon takes 2-D matrices) and its
        one matrix is the head; everything goes to AdamW."""
        return muon_split(self, ())


# Training fields: steps, batch_size, lr, optimizer, warmup. The paper gives no ResNet size,
# data or optimizer: "paper" is a plausible full-scale run of ours, not the paper's setting.
PRESETS: dict[str, dict[str, object]] = {
    "smoke": {
        "widths": (4, 8), "blocks_per_stage": 1, "val_size": 128,
        "steps": 10, "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "warmup": 0,
    },
    "small": {
        "widths": (16, 32, 64), "blocks_per_stage": 1, "val_size": 1_000,
        "steps": 300, "batch_size": 64, "lr": 0.05, "optimizer": "sgd", "warmup": 0,
    },
    "paper": {
        "widths": (64, 128, 256), "blocks_per_stage": 2,
        "steps": 20_000, "batch_size": 128, "lr": 0.1, "optimizer": "sgd", "warmup": 500,
    },
}  # fmt: skip


__all__ = ["BasicBlock", "Config", "Model", "PRESETS", "ResNetConfig", "TASK"]
