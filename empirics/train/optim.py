"""The optimiser vocabulary (`sgd`, `adamw`, `muon`) and the learning-rate schedules.

Shared by `empirics.train.loop` and `empirics.montecarlo.early_training`; not run on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from empirics.train.config import OPTIMIZERS, ConfigError, Plan

MUON_SCALES = ("torch", "max_dim")


def make_optimizers(
    optimizer: str,
    params: Sequence[Any],
    lr: float,
    *,
    matrices: Sequence[Any] = (),
    rest: Sequence[Any] = (),
    adam_lr: float | None = None,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.95),
    weight_decay: float = 0.0,
    muon_scale: str = "torch",
) -> list[Any]:
    """The optimizer vocabulary (OPTIMIZERS): `sgd` or `adamw` on `params`; `muon` on `matrices`
    (hidden 2-D matrices) with AdamW at `adam_lr` (default lr) on `rest`.

    `muon_scale` says how lr becomes a step on an A x B matrix: `torch` (torch.optim.Muon's
    default, lr * max(1, A/B)^0.5) or `max_dim` (lr * max(A, B)^0.5, the modded-nanogpt Muon the
    paper's authors train with: at width 768 its steps are ~28x torch's default for the MLP
    matrices). `max_dim` is torch's `match_rms_adamw` rule (0.2 * max(A, B)^0.5) at lr / 0.2."""
    import torch

    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer: unknown value {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if optimizer == "sgd":
        return [torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)]
    if optimizer == "adamw":
        return [torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)]
    opts: list[Any] = []
    if matrices:
        # momentum 0.95 with Nesterov is torch's default and the paper's setting.
        if muon_scale not in MUON_SCALES:
            raise ConfigError(
                f"muon_scale: unknown value {muon_scale!r}; valid: {', '.join(MUON_SCALES)}"
            )
        if muon_scale == "max_dim":
            opts.append(
                torch.optim.Muon(
                    matrices,
                    lr=lr / 0.2,
                    weight_decay=weight_decay,
                    adjust_lr_fn="match_rms_adamw",
                )
            )
        else:
            opts.append(torch.optim.Muon(matrices, lr=lr, weight_decay=weight_decay))
    if rest:
        opts.append(
            torch.optim.AdamW(
                rest, lr=lr if adam_lr is None else adam_lr, betas=betas, weight_decay=weight_decay
            )
        )
    return opts


def build_optimizers(model: Any, p: Plan) -> list[Any]:
    """The plan's optimiser(s) for `model`; under muon the split is `model.optimizer_groups()`."""
    cfg = p.cfg
    params = [q for q in model.parameters() if q.requires_grad]
    hyper = dict(momentum=cfg.momentum, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer != "muon":
        return make_optimizers(cfg.optimizer, params, cfg.lr, **hyper)
    # The model says which matrices are hidden ones (never a guess such as "the last Linear is
    # the head"): every architecture defines optimizer_groups.
    groups = model.optimizer_groups()
    matrices, rest = list(groups["muon"]), list(groups["adamw"])
    if {id(q) for q in matrices + rest} != {id(q) for q in params}:
        raise RuntimeError(f"{type(model).__name__}.optimizer_groups() misses parameters")
    return make_optimizers(
        "muon",
        params,
        cfg.lr,
        matrices=matrices,
        rest=rest,
        adam_lr=cfg.adam_lr,
        muon_scale=getattr(p.model_cfg, "muon_scale", "torch"),
        **hyper,
    )


def lr_multiplier(step: int, p: Plan) -> float:
    """The schedule's factor on lr at `step` (0-based): warmup, then the chosen decay."""
    cfg = p.cfg
    total, warm = cfg.steps, cfg.warmup
    if warm > 0 and step < warm:
        return (step + 1) / warm
    span = max(total - warm, 1)
    progress = min(max((step - warm) / span, 0.0), 1.0)
    floor = cfg.min_lr_frac
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    decay_start = total - int(round(cfg.decay_frac * total))  # wsd
    if step < decay_start:
        return 1.0
    return 1.0 - (1.0 - floor) * (step - decay_start + 1) / max(total - decay_start, 1)


def schedulers(optimizers: Sequence[Any], p: Plan) -> list[Any]:
    """One LambdaLR per optimiser, all following `lr_multiplier`."""
    import torch

    return [
        torch.optim.lr_scheduler.LambdaLR(o, lambda s, p=p: lr_multiplier(s, p)) for o in optimizers
    ]
