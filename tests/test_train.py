"""The training loop: files written, determinism, config errors, divergence, resume.

Run: `.venv/bin/python -m pytest tests/test_train.py -q` (uses the `mlp` smoke preset on
synthetic data, a second or two per run).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from empirics import train as T
from empirics.outputs import RECORD_FIELDS, read_records
from empirics.metrics import ACTIVATION_METRICS, FEED_METRICS, GRAD_METRICS, WEIGHT_METRICS


def _cfg(tmp: Path, **kw: object) -> T.TrainConfig:
    base: dict[str, object] = dict(
        arch="mlp",
        activation="relu",
        data="synthetic",
        preset="smoke",
        steps=6,
        progress=False,
        out=str(tmp),
        early_steps=3,
        log_every_late=2,
    )
    base.update(kw)
    return T.TrainConfig(**base)  # type: ignore[arg-type]


def test_smoke_run_writes_records_config_and_summary(tmp_path: Path) -> None:
    out = T.train(_cfg(tmp_path / "r"))
    with open(out / "records.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == RECORD_FIELDS
    rows = read_records(out / "records.csv")
    known = set(ACTIVATION_METRICS + WEIGHT_METRICS + FEED_METRICS + GRAD_METRICS)
    known |= {"loss", "lr", "train_accuracy", "val_loss", "accuracy"}
    assert {r["metric"] for r in rows} <= known
    # Metrics every step before early_steps=3, then every 2, and always the last step (5).
    logged = sorted({r["step"] for r in rows if r["metric"] == "sparsity"})
    assert logged == [0, 1, 2, 4, 5]
    assert sorted({r["step"] for r in rows if r["metric"] == "loss"}) == list(range(6))
    config = json.loads((out / "config.json").read_text())
    # "train" is the resolved config (preset applied); "given" what the caller set.
    assert config["train"]["arch"] == "mlp" and config["train"]["steps"] == 6
    assert config["train"]["batch_size"] == 32 and "batch_size" not in config["given"]
    assert config["runtime"]["threads"] == torch.get_num_threads()
    assert {"git", "versions", "device"} <= set(config["provenance"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert math.isfinite(summary["final_loss"]) and "val_loss" in summary["val"]
    assert summary["feeds"] == {"layers.act1": "layers.fc1", "layers.act2": "layers.fc2"}
    sp = summary["layers"]["layers.act1"]["sparsity"]
    assert sp["first_step"] == 0 and sp["last_step"] == 5 and 0 <= sp["last"] <= 1
    assert summary["layers"]["layers.fc1"]["drift_score"]["first"] == 0.0


def test_same_seed_same_records_other_seed_differs(tmp_path: Path) -> None:
    a = T.train(_cfg(tmp_path / "a", seed=3, run="x"))
    b = T.train(_cfg(tmp_path / "b", seed=3, run="x"))
    c = T.train(_cfg(tmp_path / "c", seed=4, run="x"))
    text = [(d / "records.csv").read_text() for d in (a, b, c)]
    assert text[0] == text[1]
    assert text[0] != text[2]


def test_user_activation_and_muon_with_schedule(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path / "u",
        activation="halfsq=x**2/2 + x/3",
        optimizer="muon",
        lr=0.02,
        adam_lr=0.01,
        warmup=2,
        schedule="cosine",
    )
    out = T.train(cfg)
    rows = read_records(out / "records.csv")
    lrs = [r["value"] for r in rows if r["metric"] == "lr"]
    assert lrs[:2] == pytest.approx([0.01, 0.02])  # linear warmup over 2 steps
    assert lrs[-1] < 0.02
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def test_muon_takes_hidden_matrices_only() -> None:
    p = T.plan(T.TrainConfig(arch="mlp", preset="smoke", optimizer="muon", progress=False))
    model = p.arch.Model(p.model_cfg)
    muon, adamw = T.build_optimizers(model, p)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    muon_ids = {id(q) for g in muon.param_groups for q in g["params"]}
    named = dict(model.named_parameters())
    assert muon_ids == {id(named["layers.fc1.weight"]), id(named["layers.fc2.weight"])}
    adam_ids = {id(q) for g in adamw.param_groups for q in g["params"]}
    assert id(named["layers.head.weight"]) in adam_ids and id(named["layers.fc1.bias"]) in adam_ids


def test_schedules() -> None:
    p = T.plan(T.TrainConfig(preset="smoke", steps=10, warmup=2, schedule="wsd", decay_frac=0.5))
    got = [T.lr_multiplier(s, p) for s in range(10)]
    assert got[:2] == [0.5, 1.0] and got[2:5] == [1.0, 1.0, 1.0]
    assert got[5:] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    p = T.plan(T.TrainConfig(preset="smoke", steps=5, warmup=0, schedule="linear"))
    assert [T.lr_multiplier(s, p) for s in range(5)] == pytest.approx([1, 0.8, 0.6, 0.4, 0.2])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"arch": "lstm"}, r"arch: input should be 'mlp', 'resnet'.*, got 'lstm'"),
        ({"activation": "nope"}, r"unknown activation 'nope'; valid names: .*relu"),
        ({"data": "imagenet"}, r"data: input should be 'real' or 'synthetic', got 'imagenet'"),
        ({"optimizer": "lion"}, r"optimizer: input should be 'sgd', 'adamw' or 'muon', got 'lion'"),
        ({"steps": 0}, r"steps: input should be greater than or equal to 1, got 0"),
        ({"lr": -1.0}, r"lr: input should be greater than 0, got -1.0"),
        ({"lr": math.inf}, r"lr: input should be a finite number, got inf"),
        ({"momentum": 1.0}, r"momentum: input should be less than 1, got 1.0"),
        ({"model": {"widht": 4}}, r"unknown model key\(s\) widht for mlp; valid: .*width"),
        ({"model": {"width": -4}}, r"mlp config: width must be"),
    ],
)
def test_bad_config_fails_before_any_compute(tmp_path: Path, kw: dict, match: str) -> None:
    out = tmp_path / "never"
    with pytest.raises(T.ConfigError, match=match):
        T.train(_cfg(out, **kw))
    assert not out.exists()


def test_cli_set_is_typed_and_rejects_bad_keys_and_values(tmp_path: Path, capsys) -> None:
    assert T.parse_sets("mlp", ["width=16", "bias=false"]) == {"width": 16, "bias": False}
    with pytest.raises(T.ConfigError, match=r"unknown key 'wdith' for mlp; valid: .*depth"):
        T.parse_sets("mlp", ["wdith=3"])
    with pytest.raises(T.ConfigError, match=r"width: input should be a valid integer.*got 'wide'"):
        T.parse_sets("mlp", ["width=wide"])
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exc:
        T.main(["--arch", "mlp", "--set", "depth=two", "--out", str(out)])
    assert exc.value.code == 2 and "depth: input should be a valid integer" in capsys.readouterr().err
    assert not out.exists()
    code = T.main(
        ["--arch", "mlp", "--preset", "smoke", "--data", "synthetic", "--steps", "3"]
        + ["--set", "width=8", "--activation", "cube=x**3", "--no-progress", "--out", str(out)]
    )
    assert code == 0
    assert json.loads((out / "config.json").read_text())["model"]["width"] == 8


def test_nan_raises_training_diverged_and_keeps_records(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "nan", lr=1e30, optimizer="sgd", steps=20)
    with pytest.raises(T.TrainingDiverged, match="loss became"):
        T.train(cfg)
    summary = json.loads((tmp_path / "nan" / "summary.json").read_text())
    assert summary["status"] == "diverged"
    rows = read_records(tmp_path / "nan" / "records.csv")
    losses = {r["step"]: r["value"] for r in rows if r["metric"] == "loss"}
    assert math.isfinite(losses[0])  # the first step was fine and is kept
    last = max(losses)
    assert not math.isfinite(losses[last]) and last < 19


def test_missing_data_and_interrupt_leave_an_honest_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from empirics.data import DataUnavailable
    from empirics.models import mlp

    def no_data(*args: object, **kwargs: object):
        raise DataUnavailable("install the Debian package dataset-fashion-mnist")

    with monkeypatch.context() as m:
        m.setattr(mlp, "make_data", no_data)
        out = tmp_path / "nodata"
        code = T.main(["--arch", "mlp", "--preset", "smoke", "--no-progress", "--out", str(out)])
        assert code == 1 and "dataset-fashion-mnist" in capsys.readouterr().err
        assert json.loads((out / "summary.json").read_text())["status"] == "failed"

    real_step = mlp.loss_and_metrics
    calls = {"n": 0}

    def interrupt_at_third(model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(model, batch)

    monkeypatch.setattr(mlp, "loss_and_metrics", interrupt_at_third)
    with pytest.raises(KeyboardInterrupt):
        T.train(_cfg(tmp_path / "intr"))
    summary = json.loads((tmp_path / "intr" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    steps = {r["step"] for r in read_records(tmp_path / "intr" / "records.csv")}
    assert steps == {0, 1}
