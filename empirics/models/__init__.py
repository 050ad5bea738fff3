"""The paper's five architectures, one file each, looked up by name.

Every architecture module defines the same small interface, which `empirics.train.loop` relies on:
  - `<Arch>Config`: a dataclass with at least `activation: ActivationField` (a spec in, the
    Activation object once built), exported also as `Config`. Fields a task reads (e.g.
    `n_classes`, `val_size`, an image model's `input_shape`) live here too, since they are what
    `--set` reaches.
  - `Model(cfg)`: the nn.Module. Its activation layers come from the Activation object and are
    linked to the layer feeding each (`empirics.models.common.link_activations`);
    `Model.optimizer_groups()` says which matrices Muon takes and which parameters AdamW does.
  - `PRESETS`: {"smoke": {...}, "small": {...}, "paper": {...}} overrides of Config fields plus the
    training fields `steps`, `batch_size`, `lr`, `optimizer` that suit the preset.
  - `TASK`: the name of its task in `empirics.tasks` (data, loss, evaluation).
  - `consumers(act, layers)`: the layer(s) whose input is activation layer `act`'s output (the
    weights C5 says drift when that input is non-negative), among the model's `layers`.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from types import ModuleType

ARCHS: tuple[str, ...] = ("mlp", "resnet", "vit", "gpt_nano", "mp_senet")


def get_arch(name: str) -> ModuleType:
    """The architecture module by name; unknown names list the valid ones."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(ARCHS)}")
    return importlib.import_module(f"empirics.models.{name}")


def consumer_layers(arch: str, act: str, layers: Collection[str]) -> list[str]:
    """The layer(s) of architecture `arch` fed by activation layer `act`, as its module declares
    them (`consumers`)."""
    return list(get_arch(arch).consumers(act, set(layers)))
