"""Optimisers and schedules (empirics/train/optim.py): Muon's matrices named by each model, never
guessed; warmup and decay factors. `.venv/bin/python -m pytest -q tests/test_optim.py`
"""

from __future__ import annotations

import pytest
import torch

from empirics.train import loop as T
from empirics.train.config import ConfigError, TrainConfig
from empirics.train.optim import build_optimizers, lr_multiplier


def test_muon_takes_hidden_matrices_only() -> None:
    p = T.plan(TrainConfig(arch="mlp", preset="smoke", optimizer="muon", progress=False))
    model = p.arch.Model(p.model_cfg)
    muon, adamw = build_optimizers(model, p)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    muon_ids = {id(q) for g in muon.param_groups for q in g["params"]}
    named = dict(model.named_parameters())
    assert muon_ids == {id(named["layers.fc1.weight"]), id(named["layers.fc2.weight"])}
    adam_ids = {id(q) for g in adamw.param_groups for q in g["params"]}
    assert id(named["layers.head.weight"]) in adam_ids and id(named["layers.fc1.bias"]) in adam_ids


# The output layer of each architecture (never Muon's), and a hidden matrix Muon must take
# (None: the architecture has no 2-D hidden matrix). mp_senet's last attention matrix is what
# the old "last nn.Linear is the head" guess wrongly kept from Muon.
OUTPUT_AND_HIDDEN = {
    "mlp": ("layers.head.weight", "layers.fc1.weight"),
    "resnet": ("head.weight", None),
    "vit": ("head.weight", "blocks.0.mlp.fc1.weight"),
    "gpt_nano": ("wte.weight", "blocks.1.mlp.down.weight"),  # wte is lm_head's tied matrix
    "mp_senet": ("mag_out.weight", "ts.0.freq.down.weight"),
}


@pytest.mark.parametrize("arch", sorted(OUTPUT_AND_HIDDEN))
def test_every_architecture_names_its_muon_matrices(arch: str) -> None:
    p = T.plan(TrainConfig(arch=arch, preset="smoke", progress=False))
    model = p.arch.Model(p.model_cfg)
    groups = model.optimizer_groups()
    muon, adamw = [id(q) for q in groups["muon"]], [id(q) for q in groups["adamw"]]
    assert len(set(muon + adamw)) == len(muon) + len(adamw)  # each parameter once
    assert set(muon + adamw) == {id(q) for q in model.parameters()}
    assert all(q.ndim == 2 for q in groups["muon"])
    named = dict(model.named_parameters())
    output, hidden = OUTPUT_AND_HIDDEN[arch]
    assert id(named[output]) in adamw
    if hidden is not None:
        assert id(named[hidden]) in muon
    else:
        assert muon == []


def test_schedules() -> None:
    p = T.plan(TrainConfig(preset="smoke", steps=10, warmup=2, schedule="wsd", decay_frac=0.5))
    got = [lr_multiplier(s, p) for s in range(10)]
    assert got[:2] == [0.5, 1.0] and got[2:5] == [1.0, 1.0, 1.0]
    assert got[5:] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    p = T.plan(TrainConfig(preset="smoke", steps=5, warmup=0, schedule="linear"))
    assert [lr_multiplier(s, p) for s in range(5)] == pytest.approx([1, 0.8, 0.6, 0.4, 0.2])


def test_warmup_may_last_the_whole_run_but_not_longer() -> None:
    p = T.plan(TrainConfig(preset="smoke", steps=4, warmup=4))
    assert [lr_multiplier(s, p) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ConfigError, match=r"warmup: 5 \(set\) exceeds steps=4"):
        T.plan(TrainConfig(preset="smoke", steps=4, warmup=5))
    with pytest.raises(ConfigError, match=r"warmup: 2 \(the 'smoke' preset's\) exceeds steps=1"):
        T.plan(TrainConfig(arch="gpt_nano", preset="smoke", steps=1))
