"""The metrics of a layer that feeds an activation: its batch-mean input x̄ and its drift along
x̄ (DESIGN.md's feed metrics). Pure functions; `empirics.train.metrics` runs them from hooks
while a model trains.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from empirics.host import host_view
from empirics.train import host_kernels


def mean_input(module: nn.Module, inp: torch.Tensor) -> torch.Tensor:
    """x̄: the batch-mean input of a feeding layer, as a vector in its input space.

    Linear: mean over every axis but the last (features). Conv: mean over batch and space,
    one value per input channel.
    """
    inp = inp.detach().float()
    if isinstance(module, nn.modules.conv._ConvNd):
        return inp.transpose(0, 1).reshape(inp.shape[1], -1).mean(dim=1)
    return inp.reshape(-1, inp.shape[-1]).mean(dim=0)


def _host_linear_sums(
    w: torch.Tensor, w0: torch.Tensor, xbar: torch.Tensor
) -> tuple[float, float, float, float, float] | None:
    """`feed_metrics`' numbers (mean_o (W x̄)_o, mean_o (W₀ x̄)_o, mean(W), Σ x̄, ‖x̄‖) for a
    matrix (a Linear's weight is its own effective matrix) in one float64 pass
    (`host_kernels.feed_sums`) where numpy can view W, W₀ and x̄; else None."""
    if w.dim() != 2:
        return None
    wn, w0n, xn = host_view(w), host_view(w0.float()), host_view(xbar)
    if wn is None or w0n is None or xn is None or w0n.shape != wn.shape:
        return None
    if xn.shape != (wn.shape[1],):
        raise ValueError(
            f"weight with {wn.shape[1]} inputs cannot meet a mean input of size {xn.shape[0]}"
        )
    response, response0, total, x_sum, x_square = host_kernels.feed_sums(wn, w0n, xn)
    rows = wn.shape[0]
    return response / rows, response0 / rows, total / wn.size, x_sum, math.sqrt(x_square)


def _effective_matrix(module: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """The (out, in) matrix M with response W x̄ = M x̄ (see `response_to`)."""
    w = w.detach().float()
    if w.dim() > 2:
        if getattr(module, "transposed", False):
            w = w.transpose(0, 1) / math.prod(getattr(module, "stride", (1,)))
        w = w.flatten(2).sum(dim=2)
    return w


def response_to(module: nn.Module, w: torch.Tensor, xbar: torch.Tensor) -> torch.Tensor:
    """W x̄ per output unit (for a conv, the mean response to a spatially constant input x̄).

    A conv's interior output sees the whole kernel: W summed over it. A transposed conv's
    weight is (in, out/groups, *kernel) and, with stride s, spreads each input over s outputs
    per axis, so its mean interior response is the kernel sum over prod(s). Borders (padding)
    are ignored.
    """
    m = _effective_matrix(module, w)
    if m.shape[1] != xbar.shape[0]:
        raise ValueError(
            f"weight with {m.shape[1]} inputs cannot meet a mean input of size {xbar.shape[0]}"
        )
    return m @ xbar.to(m.device)


def weight_meandir(module: nn.Module, w: torch.Tensor, xbar: torch.Tensor) -> float:
    """mean over output units of W·x̄/‖x̄‖ (nan when x̄ = 0).

    Why: the pre-activation mean is mean_o(W x̄)_o + mean(b). In a transformer the input to the
    MLP is normalised, x̄ is a few directions, and W can move along x̄ (pushing every unit's
    pre-activation down) while the mean over all of W's entries barely moves; this metric sees
    that movement and `weight_mean` does not.
    """
    norm = float(xbar.norm())
    if norm == 0.0:
        return math.nan
    return float(response_to(module, w, xbar).mean()) / norm


def feed_metrics(
    module: nn.Module, w: torch.Tensor, w0: torch.Tensor, xbar: torch.Tensor
) -> dict[str, float]:
    """Metrics of a layer feeding an activation, given its batch-mean input x̄.

    The mean pre-activation of a Linear splits exactly as
        preact_mean = preact_weight_part + bias_mean,   preact_weight_part = mean_o (W x̄)_o,
    and the weight part splits again as
        preact_weight_part = preact_weight_meanpart + (the rest),
        preact_weight_meanpart = mean(W)·Σ_k x̄_k   (what the plain weight mean can explain).
    A weight part that moves while the mean part stays flat is drift along x̄, which
    `weight_mean` cannot see. `weight_meandir` = preact_weight_part/‖x̄‖ and
    `weight_meandir_delta` = mean_o ((W − W₀) x̄)_o/‖x̄‖ (the same, relative to init).
    For a conv, W is first summed over its kernel (the response to a spatially constant x̄).
    """
    w = w.detach().float()
    xbar = xbar.detach().float().to(w.device)
    host = _host_linear_sums(w, w0, xbar)
    if host is not None:
        part, base, w_mean, x_sum, norm = host
    else:  # 0-d tensors (norm a float); W x̄ − W₀ x̄ = (W − W₀) x̄ without materialising W − W₀
        part = response_to(module, w, xbar).mean()
        base = response_to(module, w0.to(w.device), xbar).mean()
        w_mean, x_sum, norm = _effective_matrix(module, w).mean(), xbar.sum(), float(xbar.norm())
    out = {
        "preact_weight_part": float(part),
        "preact_weight_meanpart": float(w_mean * x_sum),
    }
    if norm > 0:
        out["weight_meandir"] = float(part) / norm
        out["weight_meandir_delta"] = float(part - base) / norm
    return out
