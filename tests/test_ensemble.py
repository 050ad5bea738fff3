"""Seed ensembles (empirics.train.ensemble) against single training runs of the same seeds.

Run: `.venv/bin/python -m pytest tests/test_ensemble.py -q`.
"""

from __future__ import annotations

import pytest

from empirics.outputs import read_records
from empirics.train.config import ConfigError
from empirics.train.ensemble import train_ensemble
from empirics.train.loop import TrainConfig, train
from empirics.train.metrics import MODEL_LAYER

STEPS = 4


def _cfg(tmp_path, seed: int, **kw) -> TrainConfig:
    base = dict(arch="mlp", preset="smoke", data="synthetic", steps=STEPS, seed=seed,
                out=str(tmp_path / f"s{seed}"), progress=False, device="cpu")  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _single(tmp_path, seed: int, **kw) -> dict[str, list[float]]:
    rows = read_records(train(_cfg(tmp_path, seed, **kw)) / "records.csv")
    out: dict[str, list[float]] = {"loss": [], "train_accuracy": [], "lr": []}
    for r in sorted(rows, key=lambda r: int(r["step"])):
        if r["layer"] == MODEL_LAYER and r["metric"] in out:
            out[r["metric"]].append(float(r["value"]))
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_seed_k_of_an_ensemble_is_the_single_run_of_seed_k(tmp_path, optimizer: str) -> None:
    seeds = (0, 1, 2)
    ens = train_ensemble(_cfg(tmp_path, 0, optimizer=optimizer), seeds)
    singles = {s: _single(tmp_path / optimizer, s, optimizer=optimizer) for s in seeds}
    for s in seeds:
        assert len(ens.loss[s]) == STEPS
        # Losses after 1..3 updates: every step of the seed's run, not just its start.
        assert ens.loss[s] == pytest.approx(singles[s]["loss"], rel=1e-5, abs=1e-6), s
        assert ens.accuracy[s] == pytest.approx(singles[s]["train_accuracy"], abs=1e-6), s
        assert ens.lr == pytest.approx(singles[s]["lr"])
    # Teeth: the seeds differ from each other by far more than the tolerance above.
    assert ens.loss[1] != pytest.approx(singles[0]["loss"], rel=1e-3)
    assert ens.params[0]["layers.fc1.weight"].shape == (32, 784)


def test_ensemble_refuses_what_it_cannot_batch(tmp_path) -> None:
    with pytest.raises(ConfigError, match="optimizer"):
        train_ensemble(_cfg(tmp_path, 0, optimizer="muon"), (0, 1))
    with pytest.raises(ConfigError, match="seeds"):
        train_ensemble(_cfg(tmp_path, 0), (0, 0))
    with pytest.raises(ConfigError, match="task"):
        train_ensemble(_cfg(tmp_path, 0, arch="gpt_nano"), (0, 1))
