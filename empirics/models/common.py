"""What the architecture modules share: config checks, the activation-to-feeder link, and the
Muon/AdamW parameter split. Not run on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from empirics.activations import ActivationLayer, parse_activation, torch_fn
from theory.registry import Activation


def check_activation(activation: Activation | str) -> Activation:
    """An architecture config's boundary: its activation (a spec, or the object a TrainConfig
    already holds) becomes the Activation object the modules take, and a bad name fails at
    config time (RegistryError listing the valid names)."""
    if not isinstance(activation, Activation) and (
        not isinstance(activation, str) or not activation
    ):
        raise ValueError(
            f"activation must be a registry name or NAME=EXPR spec, got {activation!r}"
        )
    act = parse_activation(activation)
    torch_fn(act)  # an expression torch cannot evaluate fails here too
    return act


def config_record(cfg: object) -> dict[str, Any]:
    """An architecture config as JSON-ready values: the activation as its spec (what config.json
    and the resume checks compare), every other field as it is."""
    out = dataclasses.asdict(cfg)  # type: ignore[call-overload]
    for name, value in vars(cfg).items():
        if isinstance(value, Activation):
            out[name] = value.spec
    return out


def check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def link_activations(
    model: nn.Module,
    sources: Mapping[str, str],
    also: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """Name, on each activation layer, the module whose output is its input (`feeds_from`).

    `sources`: activation's qualified name -> feeding module's; `also`: further modules added
    into that input (a residual shortcut), stored as `also_from`. Every activation layer must be
    linked and every name must exist, so a renamed submodule cannot silently break the drift
    attribution the metrics read from these links.
    """
    modules = dict(model.named_modules())
    also = dict(also or {})
    for act_name, source in sources.items():
        act = modules.get(act_name)
        if not isinstance(act, ActivationLayer):
            raise RuntimeError(f"{act_name!r} is not an activation layer of {type(model).__name__}")
        for name in (source, *also.get(act_name, ())):
            if name not in modules:
                raise RuntimeError(f"{act_name!r} feeds from unknown module {name!r}")
        act.feeds_from = source
        act.also_from = tuple(also.get(act_name, ()))
    stray = sorted(set(also) - set(sources))
    if stray:
        raise RuntimeError(f"also_from given for unlinked activation layers: {stray}")
    unlinked = [
        n for n, m in modules.items() if isinstance(m, ActivationLayer) and n not in sources
    ]
    if unlinked:
        raise RuntimeError(f"activation layers without feeds_from: {unlinked}")


def muon_split(model: nn.Module, matrices: Iterable[nn.Parameter]) -> dict[str, list[nn.Parameter]]:
    """{"muon": matrices, "adamw": every other parameter}, each parameter once (tied ones too)."""
    muon = list({id(p): p for p in matrices}.values())
    if any(p.ndim != 2 for p in muon):
        raise RuntimeError(f"{type(model).__name__}: Muon takes 2-D matrices only")
    taken = {id(p) for p in muon}
    rest = {id(p): p for p in model.parameters() if id(p) not in taken}
    return {"muon": muon, "adamw": list(rest.values())}
