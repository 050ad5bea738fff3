"""The batched kernel of early training: N independent MLPs trained at once, measured per step.

`train_early(cfg)` trains `cfg.total_networks` networks (one weight stack per layer, one baddbmm
per layer for all of them) and returns their per-network statistics (`per_network_stats`) before
every update, plus each update's parameter change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from empirics.activations import torch_fn
from empirics.montecarlo.early_config import EarlyConfig, check_memory
from empirics.montecarlo.sampler import (
    DTYPES,
    Forward,
    draw_inputs,
    draw_labels,
    forward,
    init_network,
    network_loss,
)
from empirics.train import tensor_stats
from empirics.train.optim import make_optimizers
from empirics.train.runtime import TrainingDiverged
from theory.registry import Activation


class BatchedMLP(nn.Module):
    """N independent MLPs as one weight [N, out, in] and one bias [N, 1, out] per layer, so one
    baddbmm runs every network. SGD and AdamW are elementwise, hence per network on these
    stacks; Muon orthogonalises one matrix at a time, so it gets per-network 2-D views that
    share the stacks' storage (`muon_views`; their gradients are set by `sync_view_grads`)."""

    def __init__(
        self, weights: list[torch.Tensor], biases: list[torch.Tensor], activation: Activation
    ):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b) for b in biases)
        self.activation = activation
        self.fn = torch_fn(activation)
        self._views: list[list[torch.Tensor]] | None = None

    @classmethod
    def init(cls, cfg: EarlyConfig, n: int, gen: torch.Generator) -> BatchedMLP:
        weights, biases = init_network(cfg.net_config(), n, gen)
        return cls(weights, biases, cfg.activation)

    def forward(self, x: torch.Tensor) -> Forward:
        """x [N, B, d_in] -> out, pre-activations and layer inputs (autograd through all)."""
        return forward(x, list(self.weights), list(self.biases), self.fn)

    def muon_views(self) -> list[torch.Tensor]:
        """One 2-D view per network of every hidden matrix (the output layer is the head, which
        Muon does not take, as in the trainer)."""
        if self._views is None:
            self._views = [[w.detach()[i] for i in range(w.shape[0])] for w in self.weights[:-1]]
        return [v for layer in self._views for v in layer]

    def sync_view_grads(self) -> None:
        if self._views is None:
            return
        for w, views in zip(self.weights[:-1], self._views, strict=True):
            for i, v in enumerate(views):
                v.grad = None if w.grad is None else w.grad[i]


def build_optimizers(cfg: EarlyConfig, model: BatchedMLP) -> list[torch.optim.Optimizer]:
    """The trainer's `make_optimizers` (no weight decay, so drift is not confounded with
    shrinkage): sgd/adamw on everything; muon on the hidden matrices, AdamW on the rest."""
    params = [*model.weights, *model.biases]
    hyper: dict[str, Any] = dict(momentum=cfg.momentum, betas=cfg.betas, weight_decay=0.0)
    if cfg.optimizer != "muon":
        return make_optimizers(cfg.optimizer, params, cfg.lr, **hyper)
    rest = [model.weights[-1], *model.biases]
    return make_optimizers("muon", params, cfg.lr, matrices=model.muon_views(), rest=rest, **hyper)


def _fashion_tensors(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    from empirics.data.images import load_fashion_mnist  # raises DataUnavailable with the package

    images, labels = load_fashion_mnist("train")
    # Pixels scaled to [0, 1]: natural non-negative inputs, the case C5 is about.
    x = torch.from_numpy(images.reshape(len(images), -1).copy()).to(device, dtype) / 255.0
    return x, torch.from_numpy(labels.copy()).to(device)


def batches(
    cfg: EarlyConfig, n: int, gen: torch.Generator, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x [N, B, d_in], one-hot targets [N, B, K]) forever; each network gets its own samples."""
    dtype, device = DTYPES[cfg.dtype], cfg.device
    shape = (n, batch_size)
    if cfg.data == "fashion_mnist":
        images, labels = _fashion_tensors(device, dtype)
        while True:
            idx = torch.randint(0, len(images), shape, generator=gen, device=device)
            yield images[idx], nn.functional.one_hot(labels[idx], cfg.n_out).to(dtype)
    net = cfg.net_config()
    while True:
        x = draw_inputs(cfg.data, (*shape, cfg.d_in), gen, dtype, device)
        yield x, draw_labels(net, shape, gen, dtype, device)


# ----------------------------------------------------------------------- per-step statistics
# Per network n and step t, each statistic is one number; the networks are i.i.d., so every
# mean over networks has a CLT standard error over them (samples inside one network share its
# weights and are not independent).


def per_network_stats(fwd: Forward, grads: Sequence[torch.Tensor]) -> dict[tuple[str, str], Any]:
    """Per hidden layer k, tensors [N]: sums and counts of dl/dp over p > 0 and p < 0, the mean
    dl/dp, Remark A.2's split of the mean entry of dl/dW_k into the mean term
    E_x[dl/dp_i] E_x[x_j] and the covariance term Cov_x(dl/dp_i, x_j) (both averaged over i, j,
    within one network over its measure batch), and the smallest layer input; plus floats for
    the records (preact_mean, sparsity, negative_rate). `grads` are d(sum over networks of the
    batch-mean loss)/dp, so the per-sample dl/dp is B times them."""
    out: dict[tuple[str, str], Any] = {}
    with torch.no_grad():
        for k, (p, grad_p) in enumerate(zip(fwd.preacts, grads, strict=True)):
            layer = f"layer{k + 1}"
            x, a = fwd.inputs[k], fwd.inputs[k + 1]
            b = p.shape[1]
            delta = grad_p * b
            pos, neg = (p > 0).to(p.dtype), (p < 0).to(p.dtype)
            out[(layer, "pos_num")] = (delta * pos).sum((1, 2))
            out[(layer, "pos_den")] = pos.sum((1, 2))
            out[(layer, "neg_num")] = (delta * neg).sum((1, 2))
            out[(layer, "neg_den")] = neg.sum((1, 2))
            out[(layer, "g_all")] = delta.mean((1, 2))
            # Averaged over units i and inputs j: with s_b = sum_i dl/dp_bi and t_b = sum_j x_bj,
            # mean_ij E[dl/dp_i x_j] = E[s t] / (n d); the covariance part is the unbiased sample
            # covariance of (s, t) / (n d) and the mean term is the remainder.
            s, t = delta.sum(-1), x.sum(-1)  # [N, B]
            scale = delta.shape[-1] * x.shape[-1]
            full = (s * t).mean(-1) / scale
            cov = (full - s.mean(-1) * t.mean(-1) / scale) * b / (b - 1)
            out[(layer, "cov_term")] = cov
            out[(layer, "mean_term")] = full - cov
            out[(layer, "input_min")] = x.amin((1, 2))
            out[(layer, "preact_mean")] = tensor_stats.preact_mean(p)
            out[(layer, "sparsity")] = tensor_stats.sparsity(a)
            out[(layer, "negative_rate")] = tensor_stats.negative_rate(p)
    return out


# ----------------------------------------------------------------------------- one run


@dataclass
class History:
    """Per-network values [steps, N] of every statistic (numpy, float64) and per-step floats."""

    per_network: dict[tuple[str, str], np.ndarray]
    scalars: dict[tuple[str, str], list[float]]
    steps: int


class EarlyDiverged(TrainingDiverged):
    """A network's loss became non-finite; `history` holds what was measured up to that step
    (the measurements of the step itself, taken before its update, included)."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def train_early(
    cfg: EarlyConfig,
    *,
    progress: bool = False,
    model: BatchedMLP | None = None,
    data: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> History:
    """Train cfg.total_networks networks for cfg.steps steps, measuring before every update
    (step 0 = init) and the parameter change of every update. A config whose estimated memory
    exceeds what is free is refused (ValueError) before anything is allocated."""
    cfg = cfg.validate()
    check_memory([cfg])
    return train_networks(cfg, progress=progress, model=model, data=data)


def train_networks(
    cfg: EarlyConfig,
    *,
    progress: bool = False,
    model: BatchedMLP | None = None,
    data: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> History:
    """`train_early` without the memory check (a grid checks all its runs at once, up front)."""
    cfg = cfg.validate()
    n = cfg.total_networks
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    model = model or BatchedMLP.init(cfg, n, gen)
    data = data or batches(cfg, n, gen, cfg.batch_size)
    # Its own stream, so that the training trajectory does not depend on measure_batch.
    measure_gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 1_000_003)
    measure_data = batches(cfg, n, measure_gen, cfg.measure_batch)
    opts = build_optimizers(cfg, model)
    per_net: dict[tuple[str, str], list[np.ndarray]] = {}
    scalars: dict[tuple[str, str], list[float]] = {}

    def keep(key: tuple[str, str], value: Any) -> None:
        if isinstance(value, torch.Tensor):
            per_net.setdefault(key, []).append(value.detach().double().cpu().numpy())
        else:
            scalars.setdefault(key, []).append(float(value))

    done = 0
    for step in tqdm(range(cfg.steps + 1), disable=not progress, desc=cfg.run_name()):
        xm, ym = next(measure_data)
        fwd_m = model(xm)
        loss_m = network_loss(cfg.loss, fwd_m.out, ym)
        grads_m = torch.autograd.grad(loss_m.sum(), fwd_m.preacts)
        for key, value in per_network_stats(fwd_m, grads_m).items():
            keep(key, value)
        for k, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
            layer = f"layer{k + 1}" if k < len(cfg.widths) else "output"
            keep((layer, "weight_mean"), tensor_stats.weight_mean(w))
            keep((layer, "bias_mean"), tensor_stats.bias_mean(b))
        keep(("output", "measure_loss"), float(loss_m.detach().mean()))
        done = step + 1
        if step == cfg.steps:
            break
        x, y = next(data)
        losses = network_loss(cfg.loss, model(x).out, y)
        if not bool(torch.isfinite(losses).all()):
            raise EarlyDiverged(
                f"{cfg.run_name()}: a network's loss became non-finite at {step}",
                _history(per_net, scalars, step),
            )
        keep(("output", "loss"), float(losses.detach().mean()))
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        # Sum over networks: each network's parameters get exactly its own batch-mean gradient.
        losses.sum().backward()
        model.sync_view_grads()
        before = [
            (w.detach().clone(), b.detach().clone())
            for w, b in zip(model.weights[:-1], model.biases[:-1], strict=True)
        ]
        for opt in opts:
            opt.step()
        for k, (w0, b0) in enumerate(before):
            keep((f"layer{k + 1}", "delta_w"), (model.weights[k].detach() - w0).mean((1, 2)))
            keep((f"layer{k + 1}", "delta_b"), (model.biases[k].detach() - b0).mean((1, 2)))
    return _history(per_net, scalars, done - 1)


def _history(
    per_net: dict[tuple[str, str], list[np.ndarray]],
    scalars: dict[tuple[str, str], list[float]],
    steps: int,
) -> History:
    return History(
        per_network={k: np.stack(v) for k, v in per_net.items()}, scalars=scalars, steps=steps
    )
