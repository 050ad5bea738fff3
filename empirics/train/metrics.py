"""Drift, sparsity and spike metrics while a model trains: the metric names (as in DESIGN.md),
a `MetricsTracker(model)` that measures them through hooks on every `ActivationLayer`
(`python -m empirics.train` uses it), and analysis over records (`spike_amplification`). The
functions on tensors themselves are in `empirics.train.tensor_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from empirics.activations import ActivationLayer
from empirics.train.feed_stats import feed_metrics, mean_input
from empirics.train.tensor_stats import (
    Number,
    ProbeMasks,
    Scratch,
    activation_stats,
    drift_from_stats,
    grad_sign_from_masks,
    grad_sign_tensors,
    mean_std,
    mean_std_finish,
    read_numbers,
    weight_mean_tensor,
    weight_parts,
)

# Per activation layer (measured on its input = pre-activation p and its output = a).
ACTIVATION_METRICS: tuple[str, ...] = (
    "preact_mean",
    "sparsity",
    "negative_rate",
    "spike_max",
    "spike_ratio",
)
# Per activation layer, from the backward pass: the gradient-sign probe, the mean of dl/dp over
# the entries of the activation's input p with p > 0, with p < 0, and over all of them.
GRAD_METRICS: tuple[str, ...] = ("grad_pos", "grad_neg", "grad_mean")
# Per parametrised layer (Linear, Conv, Embedding, and any norm that feeds an activation).
WEIGHT_METRICS: tuple[str, ...] = ("weight_mean", "weight_neg_frac", "drift_score", "bias_mean")
# Only for the layer feeding an activation: drift along the mean input direction.
FEED_METRICS: tuple[str, ...] = (
    "weight_meandir",
    "weight_meandir_delta",
    "preact_weight_part",
    "preact_weight_meanpart",
)
MODEL_LAYER = "model"  # the `layer` of whole-model rows (loss, accuracy, val_loss, ...)

# ---------------------------------------------------------------------------------- tracker


def activation_layers(model: nn.Module) -> dict[str, ActivationLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ActivationLayer)}


class MetricsTracker:
    """Forward hooks on every ActivationLayer (and the layer feeding it), plus weight metrics.

    Hooks do nothing unless armed (`with tracker.collect(): model(...)`), so they cost a branch
    on steps that are not logged. W₀ is snapshotted at construction (build the tracker before
    the first optimiser step). `measure()` returns {(layer, metric): value} for the last armed
    forward pass together with the current weight metrics.

    The gradient-sign probe: an armed forward pass also puts a backward hook on each activation's
    input p (when it requires grad), which reduces dl/dp to grad_pos/grad_neg/grad_mean as the
    backward pass goes by (on CPU it reads p's int8 signs, written at the forward pass into
    `ProbeMasks`; elsewhere it holds p, which autograd holds anyway); read them with
    `measure_grads()` after `loss.backward()`. dl/dp is the gradient of the loss that is
    backpropagated (the batch's training loss), entry by entry of the activation's input.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.activations = activation_layers(model)
        if not self.activations:
            raise ValueError("MetricsTracker: the model has no ActivationLayer to measure")
        modules = dict(model.named_modules())
        self.feeds: dict[str, str] = {}
        for name, act in self.activations.items():
            src = getattr(act, "feeds_from", None)
            if src is None:
                continue
            if src not in modules:
                raise ValueError(
                    f"activation {name!r} says feeds_from={src!r}, not a module of the model"
                )
            self.feeds[name] = src
        # Parametrised layers reported: every matrix/conv/embedding, and whatever feeds an
        # activation (e.g. a BatchNorm whose bias sets the ReLU's input mean in a ResNet).
        fed = set(self.feeds.values())
        self.weighted: dict[str, nn.Module] = {}
        for name, m in modules.items():
            w = getattr(m, "weight", None)
            if isinstance(w, nn.Parameter) and (w.dim() >= 2 or name in fed):
                self.weighted[name] = m
        self._w0: dict[str, torch.Tensor] = {}
        self._w0_stats: dict[str, tuple[float, float]] = {}
        self.snapshot_init()
        self._armed = False
        self._act_stats: dict[tuple[str, str], torch.Tensor] = {}
        self._grad_stats: dict[tuple[str, str], torch.Tensor] = {}
        self._grad_calls: dict[str, int] = {}
        self._xbar: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        self._feed_calls: dict[str, int] = {}
        self._scratch = Scratch()
        self._masks = ProbeMasks()
        self._handles = [
            act.register_forward_hook(self._activation_hook(name))
            for name, act in self.activations.items()
        ]
        for src in fed:
            self._handles.append(modules[src].register_forward_hook(self._feed_hook(src)))

    def snapshot_init(self) -> None:
        """Take W₀ from the current weights (drift_score is measured against it)."""
        for name, m in self.weighted.items():
            w0 = m.weight.detach().float().clone()
            self._w0[name] = w0
            self._w0_stats[name] = mean_std(w0)

    def _activation_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            if not self._armed:
                return
            p = inputs[0]
            probe = isinstance(p, torch.Tensor) and p.requires_grad and torch.is_grad_enabled()
            masks = self._masks.take(name, p) if probe and self._masks.serves(p) else None
            stats = activation_stats(p, output, self._scratch, masks)
            counts = (stats.pop("_n_pos"), stats.pop("_n_neg"))
            # A layer called k times while armed (weight sharing, or the k micro-batches of one
            # accumulated step) reports the mean over its calls (the max for spike_max).
            calls = self._calls.get(name, 0)
            self._calls[name] = calls + 1
            for metric, value in stats.items():
                key = (name, metric)
                if key in self._act_stats:
                    self._act_stats[key] = (
                        torch.maximum(self._act_stats[key], value)
                        if metric == "spike_max"
                        else self._act_stats[key] + (value - self._act_stats[key]) / (calls + 1)
                    )
                else:
                    self._act_stats[key] = value
            if probe:
                held = p.detach() if masks is None else masks
                p.register_hook(self._grad_hook(name, held, counts))

        return hook

    def _grad_hook(
        self,
        name: str,
        held: torch.Tensor | np.ndarray,
        counts: tuple[torch.Tensor, torch.Tensor],
    ):
        """`held` is what the backward pass reads: p's masks written at the forward pass
        (`ProbeMasks`, CPU), given back once read, or else p itself."""

        def hook(grad: torch.Tensor) -> None:
            if isinstance(held, np.ndarray):
                stats = grad_sign_from_masks(held, grad, counts, self._scratch)
                self._masks.give_back(name, held)
            else:
                stats = grad_sign_tensors(held, grad, self._scratch, counts)
            # Several calls of one layer (weight sharing, micro-batches): the mean over calls.
            calls = self._grad_calls.get(name, 0)
            self._grad_calls[name] = calls + 1
            for metric, value in stats.items():
                key = (name, metric)
                prev = self._grad_stats.get(key)
                self._grad_stats[key] = (
                    value if prev is None else prev + (value - prev) / (calls + 1)
                )

        return hook

    def _feed_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            if self._armed:
                with torch.no_grad():
                    xbar = mean_input(module, inputs[0])
                    calls = self._feed_calls.get(name, 0)
                    self._feed_calls[name] = calls + 1
                    old = self._xbar.get(name)
                    # Equal-size micro-batches: the running mean is the whole batch's mean.
                    self._xbar[name] = xbar if old is None else old + (xbar - old) / (calls + 1)

        return hook

    @contextmanager
    def collect(self) -> Iterator[MetricsTracker]:
        """Arm the hooks for the forward passes inside the block."""
        self._act_stats.clear()
        self._grad_stats.clear()
        self._grad_calls.clear()
        self._xbar.clear()
        self._calls.clear()
        self._feed_calls.clear()
        self._masks.reset()
        self._armed = True
        try:
            yield self
        finally:
            self._armed = False

    def reduce_across(self, reduce: Callable[[torch.Tensor, str], torch.Tensor]) -> None:
        """Combine what the armed passes gathered over processes holding equal-size shards of
        one batch (torchrun), before `measure`: `reduce(t, op)` returns t combined over the
        processes by op "mean" or "max" (a collective: every process calls it the same way).
        Means of shard means are the batch's means; spike_ratio becomes the mean of the shards'
        ratios (a median does not split over shards); x̄ is reduced before the feed metrics."""
        keys = sorted(self._act_stats)
        for op, group in (
            ("mean", [k for k in keys if k[1] != "spike_max"]),
            ("max", [k for k in keys if k[1] == "spike_max"]),
        ):
            if group:
                values = reduce(torch.stack([self._act_stats[k].double() for k in group]), op)
                for key, value in zip(group, values, strict=True):
                    self._act_stats[key] = value
        names = sorted(self._xbar)
        if names:
            flat = reduce(torch.cat([self._xbar[n].double().reshape(-1) for n in names]), "mean")
            for name, part in zip(
                names, flat.split([self._xbar[n].numel() for n in names]), strict=True
            ):
                self._xbar[name] = part.float().view_as(self._xbar[name])

    def weight_metrics(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        with torch.no_grad():
            # Every weight's mean, second moment and negatives (`weight_parts`: one pass over a
            # CPU matrix), then the biases' means; what is still a 0-d tensor is read on the
            # host in one transfer (one sync instead of several per layer). The arithmetic after
            # it is `mean_std`'s. Tied weights are reduced once.
            unique: dict[int, torch.Tensor] = {}
            for m in self.weighted.values():
                unique.setdefault(id(m.weight), m.weight.detach())
            parts: list[Number] = []
            for w in unique.values():
                parts += weight_parts(w)
            biases = {
                name: m.bias
                for name, m in self.weighted.items()
                if isinstance(getattr(m, "bias", None), torch.Tensor)
            }
            parts += [weight_mean_tensor(b) for b in biases.values()]
            values = read_numbers(parts)
            shared: dict[int, tuple[tuple[float, float], float]] = {}
            for k, (key, w) in enumerate(unique.items()):
                mean, second, neg = values[3 * k : 3 * k + 3]
                shared[key] = (mean_std_finish(w, [mean, second]), neg / w.numel())
            bias_means = dict(zip(biases, values[3 * len(unique) :], strict=True))
            for name, m in self.weighted.items():
                stats, neg_frac = shared[id(m.weight)]
                out[(name, "weight_mean")] = stats[0]
                out[(name, "weight_neg_frac")] = neg_frac
                out[(name, "drift_score")] = drift_from_stats(stats, self._w0_stats[name])
                if name in bias_means:
                    out[(name, "bias_mean")] = bias_means[name]
                xbar = self._xbar.get(name)
                w = m.weight.detach().float()
                if xbar is not None and w.dim() >= 2 and getattr(m, "groups", 1) == 1:
                    w0 = self._w0[name].to(w.device)
                    for metric, value in feed_metrics(m, w, w0, xbar).items():
                        out[(name, metric)] = value
        return out

    def measure(self) -> dict[tuple[str, str], float]:
        """Activation metrics of the last armed forward plus the current weight metrics."""
        out = {key: float(value) for key, value in self._act_stats.items()}
        out.update(self.weight_metrics())
        return out

    def measure_grads(
        self, reduce: Callable[[torch.Tensor, str], torch.Tensor] | None = None
    ) -> dict[tuple[str, str], float]:
        """grad_pos, grad_neg, grad_mean per activation layer from the backward pass of the last
        armed forward (empty before it has run); `reduce` as in `reduce_across` averages them
        over processes holding equal shards of the batch."""
        keys = sorted(self._grad_stats)
        if reduce is not None and keys:
            values = reduce(torch.stack([self._grad_stats[k].double() for k in keys]), "mean")
            return {k: float(v) for k, v in zip(keys, values, strict=True)}
        return {key: float(self._grad_stats[key]) for key in keys}

    def mean_sparsity(self, values: Mapping[tuple[str, str], float]) -> float:
        """Mean `sparsity` over activation layers (the progress bar's one number)."""
        vals = [v for (_, metric), v in values.items() if metric == "sparsity"]
        return sum(vals) / len(vals) if vals else math.nan

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._scratch.clear()
        self._masks.clear()


# --------------------------------------------------------------------------------- analysis


def spike_amplification(
    records: Iterable[Mapping[str, Any]],
    relu_records: Iterable[Mapping[str, Any]],
    *,
    metric: str = "spike_max",
    step: int | None = None,
) -> dict[str, float]:
    """Per layer, a run's spike metric divided by the ReLU run's at the same layer and step.

    `step=None` takes the last step both runs logged. Records are rows with keys
    step, layer, metric, value (as `empirics.outputs.read_records` returns them).
    """
    if metric not in ("spike_max", "spike_ratio"):
        raise ValueError(f"metric must be 'spike_max' or 'spike_ratio', got {metric!r}")

    def table(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
        by_step: dict[int, dict[str, float]] = {}
        for r in rows:
            if r["metric"] == metric:
                by_step.setdefault(int(r["step"]), {})[r["layer"]] = float(r["value"])
        return by_step

    ours, ref = table(records), table(relu_records)
    common = sorted(set(ours) & set(ref))
    if not common:
        raise ValueError(f"the two runs share no step with {metric!r} records")
    if step is None:
        step = common[-1]
    elif step not in common:
        raise ValueError(f"step {step} not logged by both runs; common steps end at {common[-1]}")
    out: dict[str, float] = {}
    for layer, value in ours[step].items():
        base = ref[step].get(layer)
        if base is not None:
            out[layer] = value / base if base != 0 else math.inf
    return out
