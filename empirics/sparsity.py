"""Controlled activation sparsity (claim C10): Top-K per token, a quantile shift, a fixed shift.

A spec `KIND:LEVEL` (`topk:0.75`, `quantile:0.9`, `shift:0.5`, or `none`) is set on any vision or
GPT-nano model with `--set sparsity=topk:0.75`; LEVEL is the fraction of entries the control
ZEROES (the authors' code labels Top-K by the fraction kept; we do not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from torch import nn

from empirics.activations import ActivationLayer
from empirics.host import host_view
from theory.registry import Activation

CONTROLS: tuple[str, ...] = ("none", "topk", "quantile", "shift")
# What each control does, for error messages and the experiment index.
DESCRIPTIONS: dict[str, str] = {
    "none": "no control",
    "topk": "keep the k = round((1 - level)·F) largest pre-activations per token, zero the rest",
    "quantile": "subtract the level-quantile of each token's pre-activations (per channel over "
    "batch and space for convolutions, with a running estimate for eval: a quantile BatchNorm)",
    "shift": "subtract the fixed constant Φ⁻¹(level) (sparsity = level for unit-variance inputs)",
}


@dataclass(frozen=True)
class SparsitySpec:
    """kind in CONTROLS; level in (0, 1) is the fraction of entries the control aims to zero."""

    kind: str = "none"
    level: float = 0.0

    def __str__(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.level:g}"


def parse_sparsity(spec: str | SparsitySpec) -> SparsitySpec:
    """`none` | `topk:LEVEL` | `quantile:LEVEL` | `shift:LEVEL` -> SparsitySpec (ValueError says
    which field, what value, and what is accepted)."""
    if isinstance(spec, SparsitySpec):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"sparsity: expected a string like 'topk:0.75' or 'none', got {spec!r}")
    text = spec.strip().lower()
    if text in ("", "none"):
        return SparsitySpec()
    kind, sep, level_text = text.partition(":")
    if kind not in CONTROLS or kind == "none" or not sep:
        raise ValueError(
            f"sparsity: got {spec!r}; expected none or KIND:LEVEL with KIND one of "
            f"{', '.join(CONTROLS[1:])} and LEVEL the fraction zeroed in (0, 1)"
        )
    try:
        level = float(level_text)
    except ValueError:
        raise ValueError(f"sparsity: level {level_text!r} in {spec!r} is not a number") from None
    if not (0.0 < level < 1.0):
        raise ValueError(f"sparsity: level must be in (0, 1) (fraction zeroed), got {level}")
    return SparsitySpec(kind, level)


def topk_keep(level: float, features: int) -> int:
    """Entries kept per token at `level` (fraction zeroed): at least one, at most all."""
    return min(features, max(1, round((1.0 - level) * features)))


def kth_smallest(p: torch.Tensor, rank: int, dim: int) -> torch.Tensor:
    """The `rank`-th smallest entry (1-based) along `dim`, kept as a size-1 axis: the values of
    `p.kthvalue(rank, dim, keepdim=True)`. A gradient through it reaches one entry holding that
    value, as kthvalue's does: on CPU the first such entry along `dim` (a rule that does not
    depend on the selection algorithm, so the gradient is the same on every CPU); kthvalue's
    choice among tied entries is its own.

    On CPU (float32/float64) the selection is numpy's `np.partition` (0.5 ms against kthvalue's
    5 ms for 1024 rows of 512 here); the C10 Top-K mask and quantile shift built on it are
    3.7-13x and 4.7-5.8x faster than with kthvalue (`benchmarks.train_bench`). Elsewhere, or
    when the selected value is nan, kthvalue."""
    dim = dim % p.dim()
    # numpy's view with the selected axis last; None off CPU, for other dtypes, while
    # torch.compile traces, or for an empty tensor: then kthvalue
    rows = host_view(p.detach().movedim(dim, -1).contiguous()) if p.numel() else None
    if rows is None:
        return p.kthvalue(rank, dim=dim, keepdim=True).values
    value = np.partition(rows, rank - 1, axis=-1)[..., rank - 1 : rank]
    if np.isnan(value).any():
        return p.kthvalue(rank, dim=dim, keepdim=True).values
    if not p.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(value)).movedim(-1, dim)
    first = np.argmax(rows == value, axis=-1, keepdims=True)  # the first entry equal to it
    return p.gather(dim, torch.from_numpy(first).movedim(-1, dim))


def topk_mask(p: torch.Tensor, level: float, dim: int = -1) -> torch.Tensor:
    """1 on the k = topk_keep(level, F) largest entries along `dim`, 0 elsewhere (p's dtype):
    the entries at or above the k-th largest value. Exact ties at that value are kept
    together (more than k entries then), where a scatter of torch.topk's indices would keep
    an arbitrary k of them. Such ties are rare but not absent: over a `small` C10 run's
    ~10^5 rows a few occur (62 of the 150 Top-K runs ended elsewhere within their seed spread
    when this threshold replaced the scatter)."""
    dim = dim % p.dim()
    n = p.shape[dim]
    threshold = kth_smallest(p, n - topk_keep(level, n) + 1, dim)
    return (p >= threshold).to(p.dtype)


def quantile_rank(level: float, n: int) -> int:
    """1-based rank of the order statistic whose subtraction puts ceil(level·n) entries <= 0."""
    return min(n, max(1, math.ceil(level * n - 1e-9)))


class SparseActivation(ActivationLayer):
    """An activation layer with a sparsity control; still an ActivationLayer, so the metric hooks
    measure it (its `sparsity` is the measured fraction of exact zeros AFTER the control; its
    `preact_mean` is the raw input before any shift).

    feature_dim: the axis holding a token's features (-1 for Linear models, 1 for conv maps,
    where a "token" is one spatial position and its features are the channels).
    """

    def __init__(
        self, activation: Activation, spec: str | SparsitySpec, feature_dim: int = -1
    ) -> None:
        super().__init__(activation)
        self.spec = parse_sparsity(spec)
        if self.spec.kind == "none":
            raise ValueError("SparseActivation needs a control; use ActivationLayer for 'none'")
        self.feature_dim = feature_dim
        self.shift = NormalDist().inv_cdf(self.spec.level)
        # Per-channel quantile for conv maps in eval mode (the running half of quantile BN).
        self.register_buffer("running_quantile", torch.zeros(0), persistent=True)
        self.momentum = 0.1

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        kind, level = self.spec.kind, self.spec.level
        if kind == "shift":
            return self.fn(p - self.shift)
        if kind == "topk":
            return self.fn(p) * topk_mask(p.detach(), level, self.feature_dim)
        return self.fn(p - self._quantile(p))

    def _quantile(self, p: torch.Tensor) -> torch.Tensor:
        """The shift: a per-token order statistic (Linear), or per channel over batch and space
        (conv, feature_dim=1) with a running estimate used in eval mode."""
        level = self.spec.level
        dim = self.feature_dim % p.dim()
        if not (p.dim() > 2 and dim == 1):
            rank = quantile_rank(level, p.shape[dim])
            return kth_smallest(p, rank, dim)  # the gradient reaches the pivot
        shape = [1] * p.dim()
        shape[1] = p.shape[1]
        if self.training or self.running_quantile.numel() != p.shape[1]:
            flat = p.transpose(0, 1).reshape(p.shape[1], -1)  # (C, B·H·W)
            q = kth_smallest(flat, quantile_rank(level, flat.shape[1]), 1).squeeze(1)  # (C,)
            with torch.no_grad():
                if self.running_quantile.numel() != p.shape[1]:
                    self.running_quantile = q.detach().clone()
                elif self.training:
                    self.running_quantile.lerp_(q.detach(), self.momentum)
            if self.training:
                return q.view(shape)
        return self.running_quantile.view(shape)

    def extra_repr(self) -> str:
        return f"{self.name}, sparsity={self.spec}"


def make_sparse_activation(
    activation: Activation, sparsity: str | SparsitySpec = "none", *, feature_dim: int = -1
) -> nn.Module:
    """The activation layer for `activation` with the sparsity control `sparsity` (a plain
    ActivationLayer for 'none', so models without a control are unchanged)."""
    spec = parse_sparsity(sparsity)
    if spec.kind == "none":
        return ActivationLayer(activation)
    return SparseActivation(activation, spec, feature_dim=feature_dim)


__all__ = [
    "CONTROLS",
    "DESCRIPTIONS",
    "SparseActivation",
    "SparsitySpec",
    "kth_smallest",
    "make_sparse_activation",
    "parse_sparsity",
    "quantile_rank",
    "topk_keep",
    "topk_mask",
]
