"""What an architecture is trained on: data, loss and evaluation, one module per kind of task.

`images` (Fashion-MNIST: mlp, resnet, vit), `text` (next-token prediction: gpt_nano), `speech`
(enhancement: mp_senet). Not run on its own; `empirics.train.loop` looks a task up by architecture.
Every task module defines the same small interface:
  - `DATA_KINDS`: the `--data` values it reads; `check_data(data, cfg)` raises ValueError when
    the kind and the model config disagree (called at config time, before any compute).
  - `make_data(data, cfg, *, split, batch_size, generator, device) -> Iterator[batch]`, split
    "train" (endless) or "val" (a fixed pass); batches are tuples of tensors, batch first.
  - `loss_and_metrics(model, batch) -> (loss, {metric: float})` for one training batch.
  - `evaluate(model, batches) -> {metric: float}` on validation batches (val_loss, ...).
"""

from __future__ import annotations

import importlib
from types import ModuleType

TASKS: tuple[str, ...] = ("images", "text", "speech")


def get_task(name: str) -> ModuleType:
    """The task module by name (an architecture module names its task in `TASK`)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return importlib.import_module(f"empirics.tasks.{name}")
