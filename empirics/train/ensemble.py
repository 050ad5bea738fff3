"""Seed ensembles: S runs of one configuration, differing only in the seed, trained as one
batched model (torch.func: stacked parameters, `functional_call`, `vmap`).

Library module; `benchmarks.arch_bench --ensemble` times it against S sequential runs. Seed k
draws its initialisation and its batches exactly as `train(cfg.replace(seed=k))` does, and every
step of it is that run's step up to float rounding (batched matmuls round differently), so the
records of seed k are those of the single run. For the small presets whose one model leaves the
cores idle (the MLP's step is a few milliseconds); the task must be `images` (softmax
cross-entropy on logits) and the optimiser elementwise (sgd, adamw: Muon orthogonalises each
matrix, which a stacked parameter would mix across seeds).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from empirics.train.config import ConfigError, Plan, TrainConfig, resolve
from empirics.train.loop import DATA_SEED
from empirics.train.optim import build_optimizers, schedulers
from empirics.train.runtime import BatchStream, seed_everything

ENSEMBLE_TASKS = ("images",)
ELEMENTWISE_OPTIMIZERS = ("sgd", "adamw")


@dataclass
class EnsembleResult:
    """Per seed, per step: the training loss and accuracy (before that step's update) and the
    learning rate, as the trainer's `model` rows; and the final parameters of each seed."""

    seeds: tuple[int, ...]
    loss: dict[int, list[float]] = field(default_factory=dict)
    accuracy: dict[int, list[float]] = field(default_factory=dict)
    lr: list[float] = field(default_factory=list)
    params: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def _check(plan: Plan) -> None:
    task = plan.arch.TASK
    if task not in ENSEMBLE_TASKS:
        raise ConfigError(
            f"arch: seed ensembles need a task in {', '.join(ENSEMBLE_TASKS)}; "
            f"{plan.cfg.arch} has {task!r}"
        )
    if plan.cfg.optimizer not in ELEMENTWISE_OPTIMIZERS:
        raise ConfigError(
            f"optimizer: seed ensembles need one of {', '.join(ELEMENTWISE_OPTIMIZERS)}, "
            f"got {plan.cfg.optimizer!r}"
        )
    if plan.cfg.grad_accum != 1:
        raise ConfigError(f"grad_accum: seed ensembles take 1, got {plan.cfg.grad_accum}")


def _models(plan: Plan, seeds: Sequence[int], device: str) -> list[nn.Module]:
    """Each seed's model, initialised as the trainer does (global seed, then the constructor)."""
    models = []
    for seed in seeds:
        seed_everything(seed)
        model = plan.arch.Model(plan.model_cfg).to(device)
        model.train()
        models.append(model)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in models[0].modules()):
        raise ConfigError(
            f"arch: {plan.cfg.arch} has batch norm, whose running statistics a vmapped "
            "forward pass cannot update in place"
        )
    return models


def _stream(plan: Plan, seed: int, device: str) -> BatchStream:
    """Seed's train batches, from the generator the trainer seeds for it."""
    gen = torch.Generator().manual_seed((seed + DATA_SEED) % 2**63)
    return BatchStream(
        lambda: plan.task.make_data(
            plan.cfg.data,
            plan.model_cfg,
            split="train",
            batch_size=plan.cfg.batch_size,
            generator=gen,
            device=device,
        ),
        gen,
    )


class SeedEnsemble:
    """S seeds of one resolved plan as stacked parameters; `step()` takes one optimiser step
    of every seed and returns each seed's (loss, accuracy) before the update."""

    def __init__(
        self,
        plan: Plan,
        seeds: Sequence[int],
        device: str = "cpu",
        *,
        transpose_matrices: bool = True,
    ) -> None:
        _check(plan)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds: expected distinct seeds, got {list(seeds)}")
        self.plan, self.seeds, self.device = plan, tuple(seeds), device
        models = _models(plan, self.seeds, device)
        stacked, self.buffers = stack_module_state(models)  # [S, ...]
        # The module that runs each seed's slice: structure only, its own tensors unused.
        self.base = copy.deepcopy(models[0]).to("meta")
        # Matrices are held transposed ([S, in, out], contiguous) and passed on as a transposed
        # view: the batched weight gradient comes out of its matmul in that layout, where the
        # [S, out, in] layout would cost a strided copy of every matrix's gradient per step.
        self._transposed = {
            name for name, t in stacked.items() if t.dim() == 3 and transpose_matrices
        }
        holder = nn.Module()
        holder.params = nn.ParameterList(
            [
                nn.Parameter(t.transpose(1, 2).contiguous() if name in self._transposed else t)
                for name, t in stacked.items()
            ]
        )
        self.params = dict(zip(stacked, holder.params, strict=True))
        self.opts = build_optimizers(holder, plan)
        self.scheds = schedulers(self.opts, plan)
        self.streams = [_stream(plan, s, device) for s in self.seeds]

        def one(params: dict[str, Any], buffers: dict[str, Any], x: torch.Tensor) -> Any:
            return functional_call(self.base, (params, buffers), (x,))

        self._forward = vmap(one)

    def _views(self) -> dict[str, torch.Tensor]:
        return {
            name: p.transpose(1, 2) if name in self._transposed else p
            for name, p in self.params.items()
        }

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Logits [S, B, classes] of every seed on its own inputs xs [S, B, ...]."""
        return self._forward(self._views(), self.buffers, xs)

    def next_batches(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every seed's next train batch, stacked: xs [S, B, ...], ys [S, B]."""
        batches = [next(s) for s in self.streams]
        return torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])

    def step(
        self, batches: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[list[float], list[float]]:
        """One optimiser step of every seed on `batches` (default: each seed's next batch)."""
        xs, ys = batches if batches is not None else self.next_batches()
        logits = self.forward(xs)  # (S, B, C)
        # Each seed's mean cross-entropy, as the images task's loss; their sum backpropagates
        # each seed's own gradient into its own slice (the seeds share no parameter).
        losses = vmap(F.cross_entropy)(logits, ys)
        losses.sum().backward()
        with torch.no_grad():
            acc = (logits.argmax(dim=-1) == ys).float().mean(dim=-1)
        for o in self.opts:
            o.step()
        for o in self.opts:
            o.zero_grad(set_to_none=True)
        for s in self.scheds:
            s.step()
        return losses.detach().tolist(), acc.tolist()

    def seed_params(self, k: int) -> dict[str, torch.Tensor]:
        """Seed number k's parameters (k indexes `seeds`), detached copies."""
        return {name: p[k].detach().clone() for name, p in self._views().items()}


def train_ensemble(cfg: TrainConfig, seeds: Sequence[int], steps: int | None = None) -> Any:
    """Train `cfg` for every seed at once; `cfg.seed` is ignored. Returns an EnsembleResult."""
    from empirics.outputs import resolve_device

    plan = resolve(cfg)
    device = resolve_device(plan.cfg.device)
    ens = SeedEnsemble(plan, seeds, device)
    res = EnsembleResult(tuple(seeds))
    for s in seeds:
        res.loss[s], res.accuracy[s] = [], []
    for _ in range(plan.cfg.steps if steps is None else steps):
        res.lr.append(ens.scheds[0].get_last_lr()[0])
        losses, accs = ens.step()
        for s, loss, acc in zip(seeds, losses, accs, strict=True):
            res.loss[s].append(loss)
            res.accuracy[s].append(acc)
        if not all(math.isfinite(v) for v in losses):
            break
    res.params = {s: ens.seed_params(k) for k, s in enumerate(seeds)}
    return res
