"""GPT-nano, the paper's transformer: pre-norm RMSNorm, rotary q/k, no biases, tied embeddings.

MLP up (mlp_ratio x) -> registry activation -> down; causal attention through SDPA. Default PyTorch
init throughout (nn.Linear's uniform +-1/sqrt(fan_in); the tied embedding shares lm_head's weight,
so it has that init too). Its task is `empirics.tasks.text` (next-token prediction); trained by
`python -m empirics.train --arch gpt_nano --preset small`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from empirics.activations import ActivationField
from empirics.data import shards, text
from empirics.models.common import check_activation, link_activations, muon_split
from empirics.sparsity import make_sparse_activation, parse_sparsity

TASK = "text"


def consumers(act: str, layers: Collection[str]) -> list[str]:
    """The layer whose input is activation layer `act`'s output: its MLP's down projection."""
    return [act.replace(".act", ".down")]


@dataclass
class GPTNanoConfig:
    """Shape of the model; the paper's GPT-nano is n_layer=12, n_head=12, n_embd=768, vocab 50257.

    vocab_size defaults to the 64-character King James alphabet (`empirics.data.text`); the paper
    trains on FineWeb with the GPT-2 BPE. Data options (here because the text task's `make_data`
    receives this config): `tokenizer=bpe` reads the King James text through a byte-level BPE of
    vocab_size entries trained offline; `--data fineweb` reads modded-nanogpt `.bin` token shards
    from `data_path` (a file, directory or glob; `val_path` for separate validation shards).
    """

    activation: ActivationField = "relu"  # a spec here; the object once the config is built
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    vocab_size: int = text.KJV_VOCAB.size
    block_size: int = 64
    mlp_ratio: int = 4
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    # Scale the attention branch by 1/sqrt(2 n_layer), as the authors' GPT-nano code does.
    attn_scale: bool = True
    # Number of fixed validation windows `make_data(split="val")` yields (spread over the split).
    val_windows: int = 256
    # C10's sparsity control at every MLP activation (`empirics.sparsity`): none, topk:0.75, ...
    sparsity: str = "none"
    tokenizer: str = "char"
    # Which offline text `--data real` reads: `kjv`, or `kjv+fortunes` (BPE only; the scaling
    # ladder's corpus, `empirics.data.text.CORPORA`).
    corpus: str = "kjv"
    # How Muon turns lr into a step (`empirics.train.optim.make_optimizers`): `torch` (torch's
    # default)
    # or `max_dim` (the authors' modded-nanogpt Muon, lr * sqrt(max(rows, cols))).
    muon_scale: str = "torch"
    data_path: str | None = None
    val_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTNanoConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.val_windows, int) or self.val_windows < 1:
            raise ValueError(f"GPTNanoConfig.val_windows must be >= 1, got {self.val_windows!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTNanoConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"GPTNanoConfig: head size n_embd/n_head = {self.n_embd}/{self.n_head} = "
                f"{self.n_embd // self.n_head} must be even (rotary embeddings rotate pairs)"
            )
        if not (math.isfinite(self.rope_base) and self.rope_base > 1.0):
            raise ValueError(
                f"GPTNanoConfig.rope_base must be finite and > 1, got {self.rope_base}"
            )
        if not (math.isfinite(self.norm_eps) and self.norm_eps > 0.0):
            raise ValueError(f"GPTNanoConfig.norm_eps must be finite and > 0, got {self.norm_eps}")
        self.activation = check_activation(self.activation)  # unknown names: RegistryError
        parse_sparsity(self.sparsity)
        if self.tokenizer not in text.TOKENIZERS:
            raise ValueError(
                f"tokenizer: unknown value {self.tokenizer!r}; valid: {', '.join(text.TOKENIZERS)}"
            )
        if self.tokenizer == "bpe":
            text.check_bpe_vocab(self.vocab_size)
        if self.muon_scale not in ("torch", "max_dim"):
            raise ValueError(
                f"muon_scale: unknown value {self.muon_scale!r}; valid: torch, max_dim"
            )
        if self.corpus not in text.CORPORA:
            raise ValueError(
                f"corpus: unknown value {self.corpus!r}; valid: {', '.join(text.CORPORA)}"
            )
        if self.corpus != "kjv" and self.tokenizer != "bpe":
            raise ValueError(
                f"corpus={self.corpus!r} needs tokenizer=bpe (the fortunes hold characters "
                "outside the 64-character King James alphabet)"
            )
        for name in ("data_path", "val_path"):  # headers checked now: a bad shard fails early
            if getattr(self, name) is not None:
                for path in shards.shard_paths(getattr(self, name)):
                    shards.read_shard(path)


Config = GPTNanoConfig

# smoke: seconds (tests); small: a few minutes on a 2-core CPU; paper: appendix G.6 (GPU).
# paper (appendix G.6): Muon lr 5e-4 (momentum 0.95, Nesterov: torch's defaults) on the block
# matrices (`Model.optimizer_groups`), Adam lr 0.005 (betas 0.9/0.95) on the tied embedding and
# norm gains, no weight decay, 2000 warmup and 2028 warmdown steps of 7168. The paper accumulates
# 16 micro-batches of 16 x 2048 tokens per step; the trainer has no accumulation, so
# batch_size=256 reproduces that batch where memory allows.
PRESETS: dict[str, dict[str, object]] = {
    "smoke": {
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
        "block_size": 32,
        "val_windows": 16,
        "steps": 20,
        "batch_size": 8,
        "lr": 3e-3,
        "optimizer": "adamw",
        "warmup": 2,
    },
    "small": {
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 128,
        "block_size": 64,
        "val_windows": 128,
        "steps": 300,
        "batch_size": 16,
        "lr": 2e-3,
        "optimizer": "adamw",
        "warmup": 20,
    },
    "paper": {
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "vocab_size": 50257,
        "block_size": 2048,
        "val_windows": 512,
        "steps": 7168,
        "batch_size": 16,
        "lr": 5e-4,
        "optimizer": "muon",
        "muon_scale": "max_dim",
        "warmup": 2000,
    },
}
# What the common preset keys cannot say; the trainer reads OPTIMIZER_DETAILS[preset] for the
# AdamW side of a Muon run and turns `warmdown` into its "wsd" schedule.
OPTIMIZER_DETAILS: dict[str, dict[str, object]] = {
    "paper": {"adam_lr": 0.005, "adam_betas": (0.9, 0.95), "weight_decay": 0.0, "warmdown": 2028},
}


class _RMSNormFunction(torch.autograd.Function):
    """x * rsqrt(mean(x^2) + eps) * w with a hand-written backward (fewer passes over x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(eps))  # (.., 1)
        xhat = x * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        xhat, rstd, weight = ctx.saved_tensors
        grad_xhat = grad * xhat
        grad_weight = grad_xhat.flatten(0, -2).sum(0)
        # d xhat / d x = rstd (I - xhat xhat^T / C): remove the component along xhat, whose
        # size (grad * w) . xhat / C equals (grad * xhat) . w / C, one matrix-vector product.
        dot = (grad_xhat @ weight).unsqueeze(-1).div_(xhat.shape[-1])  # (.., 1)
        grad_x = torch.addcmul(grad * weight, xhat, dot, value=-1).mul_(rstd)
        return grad_x, grad_weight, None


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm (learned gain, no bias). When training on a CPU it goes through
    `_RMSNormFunction`: forward + backward took about half the composite F.rms_norm's time
    there (11 vs 21 ms on (16, 64, 128), one thread, loaded machine). Elsewhere (CUDA has a
    fused kernel) and without grad it is torch's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.weight is not None and torch.is_grad_enabled():
            eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
            return _RMSNormFunction.apply(x, self.weight, eps)
        return super().forward(x)


class Rotary(nn.Module):
    """Rotary position embedding with cos/sin tables precomputed for every position up to max_len.

    Channels (2i, 2i+1) of each head form a pair rotated by angle pos * base^(-2i/D); the pair is
    treated as one complex number, so the rotation is a single complex multiply (several times
    faster on a CPU than the split-halves form, forward and backward).
    """

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        self.head_dim = head_dim
        # Tables computed in float64 then stored in float32: long sequences keep accurate angles.
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # (L, D/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, t: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Rotate t of shape (B, T, ..., D) as if its T positions were start, ..., start + T - 1."""
        seq = t.shape[1]
        if start < 0 or start + seq > self.cos.shape[0]:
            raise ValueError(
                f"rotary positions {start}..{start + seq - 1} exceed the table "
                f"({self.cos.shape[0]} positions)"
            )
        shape = (seq,) + (1,) * (t.dim() - 3) + (self.head_dim // 2,)
        # Complex multiply needs float32/64; half-precision inputs are rotated in float32.
        work = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32
        rot = torch.complex(
            self.cos[start : start + seq].to(work), self.sin[start : start + seq].to(work)
        ).view(shape)  # (T, 1.., D/2)
        # A contiguous copy first: the complex multiply on a strided view (q or k cut out of the
        # fused qkv output) is slower, forward and backward, than the copy costs.
        pairs = torch.view_as_complex(
            t.to(work).contiguous().unflatten(-1, (-1, 2))
        )  # (B, T, .., D/2)
        return torch.view_as_real(pairs * rot).flatten(-2).to(t.dtype)  # (B, T, .., D)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTNanoConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, h: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        B, T, C = h.shape
        # split (not slicing) keeps the backward to one concatenation of the q/k/v gradients; q
        # and k are rotated together, in one call (the same values as one call each).
        qk, v = self.qkv(h).view(B, T, 3, self.n_head, self.head_dim).split((2, 1), dim=2)
        q, k = (t.transpose(1, 2) for t in rotary(qk).unbind(2))  # (B, H, T, D) each
        v = v.squeeze(2).transpose(1, 2)  # (B, H, T, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTNanoConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.n_embd
        self.up = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.act = make_sparse_activation(cfg.activation, cfg.sparsity)
        self.down = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(h)))


class Block(nn.Module):
    def __init__(self, cfg: GPTNanoConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.attn_scale = 1.0 / math.sqrt(2 * cfg.n_layer) if cfg.attn_scale else 1.0

    def forward(self, h: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        h = torch.add(h, self.attn(self.norm1(h), rotary), alpha=self.attn_scale)
        return h + self.mlp(self.norm2(h))


class Model(nn.Module):
    """GPT-nano: token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, cfg: GPTNanoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.rotary = Rotary(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_base)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        # Tie: one Parameter serves as embedding table and output matrix (lm_head's init).
        self.wte.weight = self.lm_head.weight
        link_activations(
            self, {f"blocks.{i}.mlp.act": f"blocks.{i}.mlp.up" for i in range(cfg.n_layer)}
        )

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.cfg.block_size}")
        h = self.wte(idx)  # (B, T, C)
        for block in self.blocks:
            h = block(h, self.rotary)
        return self.lm_head(self.norm_f(h))  # (B, T, V)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """The paper's split: Muon for the matrices inside the blocks; AdamW for the rest (the
        tied embedding/lm_head matrix and the RMSNorm gains)."""
        # named_parameters lists the tied matrix once, as wte.weight (not a block's).
        blocks = (p for n, p in self.named_parameters() if p.ndim == 2 and n.startswith("blocks."))
        return muon_split(self, blocks)


__all__ = [
    "OPTIMIZER_DETAILS",
    "PRESETS",
    "TASK",
    "Config",
    "GPTNanoConfig",
    "Model",
    "Rotary",
]
