"""`vit`: a small Vision Transformer for 28x28 Fashion-MNIST.

Non-overlapping patches (7x7 -> 16 tokens) embedded linearly, a class token or mean pooling,
learned position embeddings, pre-norm LayerNorm blocks (attention, then MLP fc1 -> activation ->
fc2), final LayerNorm and a linear head. Its task is `empirics.tasks.images` (Fashion-MNIST):
`python -m empirics.train --arch vit --preset small --activation gelu --out results/vit_gelu`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from empirics.activations import ActivationField
from empirics.models.common import (
    check_activation,
    check_positive_int,
    link_activations,
    muon_split,
)
from empirics.sparsity import make_sparse_activation, parse_sparsity
from theory.registry import Activation

TASK = "images"
POOLS = ("cls", "mean")


def consumers(act: str, layers: Collection[str]) -> list[str]:
    """The layer whose input is activation layer `act`'s output: its MLP's second Linear."""
    return [act.replace(".act", ".fc2")]


@dataclass
class ViTConfig:
    activation: ActivationField = "gelu"  # a spec here; the object once the config is built
    image_size: int = 28
    patch_size: int = 7
    in_channels: int = 1
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    pool: str = "cls"
    n_classes: int = 10
    val_size: int = 10_000
    # C10's sparsity control at every MLP activation (`empirics.sparsity`): none, topk:0.75, ...
    sparsity: str = "none"

    def __post_init__(self) -> None:
        self.activation = check_activation(self.activation)
        parse_sparsity(self.sparsity)
        for name in ("image_size", "patch_size", "in_channels", "dim", "depth", "heads"):
            check_positive_int(name, getattr(self, name))
        for name in ("mlp_ratio", "val_size"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_classes", self.n_classes, minimum=2)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size must divide image_size ({self.image_size}), got {self.patch_size}"
            )
        if self.dim % self.heads:
            raise ValueError(f"heads must divide dim ({self.dim}), got {self.heads}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)


Config = ViTConfig


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)  # 3 x (B, T, C)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, C/heads)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(
        self, dim: int, hidden: int, activation: Activation, sparsity: str = "none"
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_sparse_activation(activation, sparsity)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.mlp = MLP(cfg.dim, cfg.mlp_ratio * cfg.dim, cfg.activation, cfg.sparsity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Model(nn.Module):
    """x (B, C, H, W) -> logits (B, n_classes)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        patch_dim = cfg.in_channels * cfg.patch_size**2
        self.patch_embed = nn.Linear(patch_dim, cfg.dim)
        n_tokens = cfg.n_patches + (1 if cfg.pool == "cls" else 0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, cfg.dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.depth)))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_classes)
        link_activations(
            self, {f"blocks.{i}.mlp.act": f"blocks.{i}.mlp.fc1" for i in range(cfg.depth)}
        )

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, C * p * p), patches in row-major order."""
        b, c, h, w = x.shape
        p = self.cfg.patch_size
        if (c, h, w) != (self.cfg.in_channels, self.cfg.image_size, self.cfg.image_size):
            raise ValueError(
                f"expected images (B, {self.cfg.in_channels}, {self.cfg.image_size}, "
                f"{self.cfg.image_size}), got {tuple(x.shape)}"
            )
        x = x.reshape(b, c, h // p, p, w // p, p).permute(
            0, 2, 4, 1, 3, 5
        )  # (B, H/p, W/p, C, p, p)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(self.patches(x))  # (B, N, D)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        h = self.ln_f(self.blocks(tokens + self.pos_embed))  # (B, T, D)
        pooled = h[:, 0] if self.cls_token is not None else h.mean(dim=1)  # (B, D)
        return self.head(pooled)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Muon for the patch embedding and the blocks' matrices; AdamW for the head, the
        class token, position embeddings, norms and biases."""
        matrices = [
            p for n, p in self.named_parameters() if p.ndim == 2 and not n.startswith("head.")
        ]
        return muon_split(self, matrices)


# Training fields: steps, batch_size, lr, optimizer, warmup. The paper gives no ViT size, data or
# optimizer: "paper" is a plausible ViT-Tiny-like run of ours, not the paper's setting.
PRESETS: dict[str, dict[str, object]] = {
    "smoke": {
        "dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2, "val_size": 128,
        "steps": 10, "batch_size": 16, "lr": 1e-3, "optimizer": "adamw", "warmup": 0,
    },
    "small": {
        "dim": 64, "depth": 4, "heads": 4, "val_size": 2_000,
        "steps": 300, "batch_size": 128, "lr": 1e-3, "optimizer": "adamw", "warmup": 20,
    },
    "paper": {
        "dim": 192, "depth": 12, "heads": 3,
        "steps": 20_000, "batch_size": 256, "lr": 1e-3, "optimizer": "adamw", "warmup": 1_000,
    },
}  # fmt: skip


__all__ = ["Config", "Model", "PRESETS", "TASK", "ViTConfig"]
