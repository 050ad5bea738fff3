"""Early training of batched MLPs: batched == independent per-network training (SGD/Adam/Muon),
per-step statistics vs autograd, persistence horizon, data sources and input checking.

Run: `.venv/bin/python -m pytest -q tests/test_early_training.py`.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from empirics.activations import get_torch_activation
from empirics.early_training import (
    BatchedMLP,
    EarlyConfig,
    batches,
    main,
    per_network_loss,
    persistence_horizon,
    step_metrics,
    train_early,
)
from empirics.outputs import RecordWriter, read_records

SMALL = EarlyConfig(
    activation="gelu",
    n_networks=3,
    d_in=5,
    widths=(7, 6),
    n_out=4,
    batch_size=8,
    measure_batch=16,
    steps=3,
    dtype="float64",
    bias_std=0.1,
)


def _reference_nets(model: BatchedMLP, cfg: EarlyConfig) -> list[nn.Sequential]:
    """Each network of the batch copied into its own nn.Sequential of nn.Linear layers."""
    ws, bs = model.stacked()
    act = get_torch_activation(cfg.activation)
    nets = []
    for n in range(cfg.n_networks):
        layers: list[nn.Module] = []
        for k, (w, b) in enumerate(zip(ws, bs, strict=True)):
            lin = nn.Linear(w.shape[2], w.shape[1]).double()
            with torch.no_grad():
                lin.weight.copy_(w[n])
                lin.bias.copy_(b[n])
            layers.append(lin)
            if k < len(ws) - 1:
                layers.append(_Act(act))
        nets.append(nn.Sequential(*layers))
    return nets


class _Act(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fn(t)


def _reference_optimizers(cfg: EarlyConfig, net: nn.Sequential) -> list[torch.optim.Optimizer]:
    weights = [m.weight for m in net if isinstance(m, nn.Linear)]
    biases = [m.bias for m in net if isinstance(m, nn.Linear)]
    if cfg.optimizer == "sgd":
        return [torch.optim.SGD(weights + biases, lr=cfg.lr)]
    if cfg.optimizer == "adam":
        return [torch.optim.Adam(weights + biases, lr=cfg.lr)]
    return [
        torch.optim.Muon(weights, lr=cfg.lr, weight_decay=0.0),
        torch.optim.Adam(biases, lr=cfg.lr),
    ]


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.1), ("adam", 0.01), ("muon", 0.02)])
def test_batched_training_equals_independent_networks(optimizer: str, lr: float) -> None:
    cfg = replace(SMALL, optimizer=optimizer, lr=lr).validate()
    gen = torch.Generator().manual_seed(0)
    model = BatchedMLP.init(cfg, gen)
    refs = _reference_nets(model, cfg)
    data_gen = torch.Generator().manual_seed(1)
    fixed = [next(batches(cfg, data_gen)) for _ in range(cfg.steps + 1)]
    train_early(cfg, model=model, data=iter(fixed))
    ws, bs = model.stacked()
    for n, net in enumerate(refs):
        opts = _reference_optimizers(cfg, net)
        for x, labels in fixed[: cfg.steps]:
            for opt in opts:
                opt.zero_grad()
            loss = per_network_loss(cfg.loss, net(x[n]).unsqueeze(0), labels[n].unsqueeze(0))
            loss.sum().backward()
            for opt in opts:
                opt.step()
        linears = [m for m in net if isinstance(m, nn.Linear)]
        for k, lin in enumerate(linears):
            torch.testing.assert_close(ws[k][n].detach(), lin.weight.detach())
            torch.testing.assert_close(bs[k][n].detach(), lin.bias.detach())


def test_step_metrics_match_autograd_weight_gradient() -> None:
    # grad_w_mean must be the mean entry of dL/dW_1 (averaged over networks) that autograd gives,
    # and it splits exactly into E[dl/dp] E[x] + Cov_x(dl/dp, x) (Remark A.2).
    cfg = replace(SMALL, data="uniform").validate()
    model = BatchedMLP.init(cfg, torch.Generator().manual_seed(2))
    x, labels = next(batches(cfg, torch.Generator().manual_seed(3), 64))
    out, preacts, inputs = model(x)
    loss = per_network_loss(cfg.loss, out, labels).sum()
    grads = torch.autograd.grad(loss, preacts, retain_graph=True)
    stats = step_metrics(model, preacts, list(grads), inputs, 2.5)
    all_w1 = torch.autograd.grad(loss, list(model.weights[0]))
    expected = torch.stack(all_w1).mean().item()
    assert stats[("layer1", "grad_w_mean")] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    parts = stats[("layer1", "grad_w_mean_part")] + stats[("layer1", "cov_term")]
    assert parts == pytest.approx(stats[("layer1", "grad_w_mean")], rel=1e-9, abs=1e-15)
    lo, mean, hi = (stats[("layer1", m)] for m in ("g_pos_lo", "g_pos", "g_pos_hi"))
    assert lo < mean < hi
    # Sparsity of GELU is 0 (no exact zeros); the negative rate is a fraction.
    assert stats[("layer1", "sparsity")] == 0.0 and 0 < stats[("layer1", "negative_rate")] < 1


def test_persistence_horizon() -> None:
    assert persistence_horizon([0.3, 0.2, 0.1]) is None
    assert persistence_horizon([0.3, 0.0, 0.1]) == 1
    assert persistence_horizon([0.3, 0.2, -0.1, 0.4]) == 2
    assert persistence_horizon([-0.1]) == 0
    assert persistence_horizon([0.2, float("nan")]) == 1


def test_relu_drift_sign_is_positive_at_init_and_records_written(tmp_path) -> None:
    # At init E[dl/dp | p > 0] = K s^2 E[relu relu' | p > 0] > 0 (about 10 standard errors here),
    # so step 0 is decided positive; the records hold every per-step metric.
    cfg = EarlyConfig(activation="relu", n_networks=8, steps=4, d_in=16, widths=(32,), seed=5)
    with RecordWriter(tmp_path / "records.csv", run="t") as writer:
        res = train_early(cfg, writer=writer)
    assert res.horizons["layer1"] != 0
    assert res.initial["layer1/g_pos_lo"] > 0
    rows = read_records(tmp_path / "records.csv")
    metrics = {r["metric"] for r in rows}
    for m in ("g_pos", "g_pos_lo", "cov_term", "weight_mean", "bias_mean", "sparsity"):
        assert m in metrics
    assert {"negative_rate", "preact_mean", "loss"} <= metrics
    assert {r["step"] for r in rows} == set(range(cfg.steps + 1))


def test_bad_input_fails_before_compute() -> None:
    with pytest.raises(ValueError, match="sgd, adam, muon"):
        EarlyConfig(optimizer="rmsprop").validate()
    with pytest.raises(ValueError, match="lr"):
        EarlyConfig(lr=-1.0).validate()
    with pytest.raises(ValueError, match="data"):
        EarlyConfig(data="imagenet").validate()
    with pytest.raises(ValueError, match="valid names"):
        EarlyConfig(activation="nope").validate()


@pytest.mark.data
def test_fashion_mnist_runs_when_installed() -> None:
    from empirics.data import DataUnavailable

    cfg = EarlyConfig(
        data="fashion_mnist", n_networks=2, widths=(16,), steps=2, measure_batch=32, batch_size=8
    )
    try:
        res = train_early(cfg)
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    assert res.config["d_in"] == 28 * 28
    assert res.initial["layer1/negative_rate"] > 0


def test_cli_sweep_writes_summary(tmp_path) -> None:
    table = main(
        [
            "--activation", "relu", "--loss", "cross_entropy", "--optimizer", "muon",
            "--lr", "0.01", "--steps", "2", "--n-networks", "2", "--d-in", "4",
            "--widths", "8", "--measure-batch", "8", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(table) == 1 and summary["runs"][0]["optimizer"] == "muon"
    assert "provenance" in json.loads((tmp_path / "config.json").read_text())


def test_cli_bad_input_is_a_clean_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--optimizer", "sgd", "--lr", "-1", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "lr must be" in capsys.readouterr().err
