"""The paper's five architectures, one file each, looked up by name.

Every architecture module defines the same small interface, which `empirics.train` relies on:
  - `<Arch>Config`: a dataclass with at least `activation: str` (a registry name or spec);
    exported also as `Config`.
  - `Model(cfg)`: the nn.Module (activation layers from `empirics.activations.make_activation`).
  - `PRESETS`: {"smoke": {...}, "small": {...}, "paper": {...}} overrides of Config fields plus the
    training fields `steps`, `batch_size`, `lr`, `optimizer` that suit the preset.
  - `make_data(data, cfg, *, split, batch_size, generator, device) -> Iterator[batch]`, where
    `data` is "real" or "synthetic" and split is "train" or "val"; batches are tuples of tensors.
  - `loss_and_metrics(model, batch) -> (loss, {metric: float})` for one batch (e.g. accuracy).
  - `evaluate(model, batches) -> {metric: float}` on validation batches (val_loss, accuracy, ...).
"""

from __future__ import annotations

import importlib
from types import ModuleType

ARCHS: tuple[str, ...] = ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")


def get_arch(name: str) -> ModuleType:
    """The architecture module by name; unknown names list the valid ones."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(ARCHS)}")
    return importlib.import_module(f"empirics.models.{name}")
