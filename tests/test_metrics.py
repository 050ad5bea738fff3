"""Metrics on hand-built tensors with known answers, and the hook tracker against them.

Run: `.venv/bin/python -m pytest tests/test_metrics.py -q`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from empirics.activations import make_activation
from empirics.train import feed_stats as FS
from empirics.train import metrics as M
from empirics.train import tensor_stats as S


def test_weight_metrics_known_values() -> None:
    w = torch.tensor([[1.0, -2.0], [3.0, -6.0]])
    assert S.weight_mean(w) == pytest.approx(-1.0)
    assert S.weight_neg_frac(w) == pytest.approx(0.5)
    assert S.bias_mean(torch.tensor([0.5, -1.5, 4.0])) == pytest.approx(1.0)


def test_drift_score_known_value_and_zero_at_init() -> None:
    w0 = torch.tensor([1.0, -1.0, 1.0, -1.0])  # population std 1
    assert S.drift_score(w0, w0.clone()) == 0.0
    # A uniform shift keeps the std: 2 * (-0.5) / (1 + 1).
    assert S.drift_score(w0 - 0.5, w0) == pytest.approx(-0.5)
    # Scaling without a shift is no drift.
    assert S.drift_score(3 * w0, w0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="shape"):
        S.drift_score(w0, w0[:3])
    one = torch.tensor([1.0])  # a single gain has no spread: a shift is undefined, not infinite
    assert S.drift_score(one, one.clone()) == 0.0
    assert math.isnan(S.drift_score(one + 0.1, one))


def test_activation_metrics_known_values() -> None:
    p = torch.tensor([-1.0, 0.0, 2.0, 3.0])
    a = torch.relu(p)
    assert S.preact_mean(p) == pytest.approx(1.0)
    assert S.sparsity(a) == pytest.approx(0.5)  # -1 and 0 map to exact zeros
    assert S.negative_rate(p) == pytest.approx(0.25)  # 0 is not negative
    b = torch.tensor([0.0, -4.0, 1.0, 2.0])
    assert S.spike_max(b) == pytest.approx(4.0)
    # Zeros are left out of the median: median(|-4|, 1, 2) = 2.
    assert S.spike_ratio(b) == pytest.approx(2.0)
    assert math.isnan(S.spike_ratio(torch.zeros(5)))


@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=64),
)
def test_rates_are_fractions_and_relu_sparsity_counts_nonpositive(values: list[float]) -> None:
    p = torch.tensor(values)
    a = torch.relu(p)
    sp, neg = S.sparsity(a), S.negative_rate(p)
    assert 0.0 <= sp <= 1.0 and 0.0 <= neg <= 1.0
    # For ReLU the exact zeros are the non-positive inputs.
    assert sp == pytest.approx(float((p <= 0).float().mean()))
    assert neg <= sp


@given(
    st.lists(st.sampled_from([0.0, -3.0, -1.0, 0.5, 1.0, 2.0, 7.0]), min_size=1, max_size=40),
)
def test_spike_ratio_median_is_the_lower_median_of_nonzero_magnitudes(values: list[float]) -> None:
    a = torch.tensor(values)
    nonzero = sorted(abs(v) for v in values if v != 0)
    if not nonzero:
        assert math.isnan(S.spike_ratio(a))
        return
    lower_median = nonzero[(len(nonzero) - 1) // 2]  # computed independently, by sorting
    assert S.spike_ratio(a) == pytest.approx(max(nonzero) / lower_median)


def test_feed_metrics_decompose_the_linear_preact_mean() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(7, 5)
    x = torch.rand(32, 7) + 0.3  # non-negative inputs, like post-ReLU ones
    pre = lin(x)
    xbar = FS.mean_input(lin, x)
    got = FS.feed_metrics(lin, lin.weight, lin.weight, xbar)
    total = got["preact_weight_part"] + S.bias_mean(lin.bias)
    assert total == pytest.approx(S.preact_mean(pre), abs=1e-5)
    # The plain-mean part is mean(W) * sum(xbar), by its definition.
    assert got["preact_weight_meanpart"] == pytest.approx(
        S.weight_mean(lin.weight) * float(xbar.sum()), rel=1e-5
    )
    assert got["weight_meandir_delta"] == 0.0


def test_drift_along_mean_input_is_seen_by_meandir_not_by_weight_mean() -> None:
    """The transformer case: W moves along x̄ and its plain mean does not move at all."""
    torch.manual_seed(1)
    lin = nn.Linear(4, 3, bias=False)
    w0 = lin.weight.detach().clone()
    xbar = torch.tensor([1.0, -1.0, 2.0, -2.0])  # sums to 0, like a normalised input
    delta = 0.3
    w = w0 - delta * torch.ones(3, 1) * xbar / xbar.norm()  # every row moves along x̄
    assert S.weight_mean(w) == pytest.approx(S.weight_mean(w0), abs=1e-6)
    got, init = FS.feed_metrics(lin, w, w0, xbar), FS.feed_metrics(lin, w0, w0, xbar)
    assert got["weight_meandir_delta"] == pytest.approx(-delta, rel=1e-5)
    assert got["weight_meandir"] - init["weight_meandir"] == pytest.approx(-delta, rel=1e-5)
    assert got["preact_weight_meanpart"] == pytest.approx(init["preact_weight_meanpart"], abs=1e-6)


def test_one_pass_weight_and_feed_numbers_equal_torch_s() -> None:
    # `host_kernels`' float64 sums (a matrix numpy can view) against torch's reductions of the
    # same values in a layout numpy cannot view: equal within float32 rounding, the negatives
    # count exactly, and W = W0 still gives a drift of exactly 0.
    from empirics.host import host_view

    torch.manual_seed(5)
    w = torch.randn(48, 33)
    w0 = w + 0.01 * torch.randn_like(w)
    xbar = torch.randn(33)
    lin = nn.Linear(33, 48, bias=False)
    assert host_view(w) is not None and host_view(_strided(w)) is None
    host = [float(v) for v in S.weight_parts(w)]
    torch_path = [float(v) for v in S.weight_parts(_strided(w))]
    assert host[:2] == pytest.approx(torch_path[:2], rel=1e-5, abs=1e-7)
    assert host[2] == torch_path[2] == int((w < 0).sum())
    got = FS.feed_metrics(lin, w, w0, xbar)
    want = FS.feed_metrics(lin, _strided(w), w0, xbar)
    assert set(got) == set(want)
    for metric in got:
        assert got[metric] == pytest.approx(want[metric], rel=1e-4, abs=1e-6), metric
    assert S.drift_score(w, w.clone()) == 0.0
    assert FS.feed_metrics(lin, w, w, xbar)["weight_meandir_delta"] == 0.0


def test_conv_response_matches_the_conv_on_a_constant_input() -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, kernel_size=3)
    xbar = torch.tensor([0.5, -1.0, 2.0])
    x = xbar.view(1, 3, 1, 1).expand(1, 3, 6, 6)  # spatially constant input
    out = conv(x) - conv.bias.view(1, 4, 1, 1)  # (1, 4, 4, 4), constant over space
    assert FS.mean_input(conv, x) == pytest.approx(xbar.tolist())
    got = FS.response_to(conv, conv.weight, xbar)
    assert got.tolist() == pytest.approx(out[0, :, 0, 0].tolist(), abs=1e-5)


def test_transposed_conv_response_is_the_mean_interior_output() -> None:
    torch.manual_seed(4)
    up = nn.ConvTranspose2d(3, 4, kernel_size=(1, 3), stride=(1, 2))
    xbar = torch.tensor([1.0, -0.5, 0.25])
    x = xbar.view(1, 3, 1, 1).expand(1, 3, 2, 8)
    out = up(x) - up.bias.view(1, 4, 1, 1)  # (1, 4, 2, 17); width 17 = (8 - 1) * 2 + 3
    interior = out[0, :, 0, 2:14].mean(dim=1)  # six full stride periods, away from the borders
    got = FS.response_to(up, up.weight, xbar)
    assert got.tolist() == pytest.approx(interior.tolist(), abs=1e-5)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act1 = make_activation("relu")
        self.fc2 = nn.Linear(8, 8)
        self.act2 = make_activation("gelu")
        self.head = nn.Linear(8, 2)
        self.act1.feeds_from = "fc1"
        self.act2.feeds_from = "fc2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act2(self.fc2(self.act1(self.fc1(x)))))


def test_tracker_matches_pure_functions_and_only_collects_when_armed() -> None:
    torch.manual_seed(3)
    model = _Tiny()
    tracker = M.MetricsTracker(model)
    x = torch.randn(16, 6)
    model(x)  # not armed: no activation statistics
    assert not [k for k in tracker.measure() if k[1] in M.ACTIVATION_METRICS]
    with tracker.collect():
        model(x)
    got = tracker.measure()
    p1 = model.fc1(x)
    a1 = torch.relu(p1)
    p2 = model.fc2(a1)
    for metric, fn, t in (
        ("preact_mean", S.preact_mean, p1),
        ("negative_rate", S.negative_rate, p1),
        ("sparsity", S.sparsity, a1),
        ("spike_max", S.spike_max, a1),
        ("spike_ratio", S.spike_ratio, a1),
    ):
        assert got[("act1", metric)] == pytest.approx(fn(t), rel=1e-6), metric
    assert got[("act2", "preact_mean")] == pytest.approx(S.preact_mean(p2), rel=1e-6)
    for layer in ("fc1", "fc2", "head"):
        assert got[(layer, "drift_score")] == 0.0  # W is W0 before any update
    for act, src in (("act1", "fc1"), ("act2", "fc2")):
        total = got[(src, "preact_weight_part")] + got[(src, "bias_mean")]
        assert total == pytest.approx(got[(act, "preact_mean")], abs=1e-5)
    assert ("head", "preact_weight_part") not in got  # the head feeds no activation
    with torch.no_grad():
        model.fc1.weight.sub_(0.1)
    assert tracker.measure()[("fc1", "drift_score")] < 0
    tracker.remove()
    with tracker.collect():
        model(x)
    assert not [k for k in tracker.measure() if k[1] in M.ACTIVATION_METRICS]


def test_tracker_rejects_a_model_without_activations_and_bad_feeds() -> None:
    with pytest.raises(ValueError, match="no ActivationLayer"):
        M.MetricsTracker(nn.Linear(2, 2))
    model = _Tiny()
    model.act1.feeds_from = "nope"
    with pytest.raises(ValueError, match="nope"):
        M.MetricsTracker(model)


def test_spike_amplification_over_two_runs() -> None:
    def rows(values: dict[str, float], step: int = 5) -> list[dict[str, object]]:
        return [
            {"step": step, "layer": layer, "metric": "spike_max", "value": v}
            for layer, v in values.items()
        ]

    ours = rows({"h.0": 50.0, "h.1": 9.0}) + rows({"h.0": 1.0}, step=0)
    relu = rows({"h.0": 2.0, "h.1": 3.0}) + rows({"h.0": 1.0}, step=0)
    assert M.spike_amplification(ours, relu) == {"h.0": 25.0, "h.1": 3.0}
    assert M.spike_amplification(ours, relu, step=0) == {"h.0": 1.0}
    with pytest.raises(ValueError, match="metric"):
        M.spike_amplification(ours, relu, metric="loss")
    with pytest.raises(ValueError, match="step 7"):
        M.spike_amplification(ours, relu, step=7)


class _Shared(nn.Module):
    """One activation layer called twice in one forward pass (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.act = make_activation("gelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.b(self.act(self.a(x)))))


def _expected_grad_stats(p: torch.Tensor, g: torch.Tensor) -> dict[str, float]:
    # Independent of the probe: boolean indexing instead of sign masks.
    return {
        "grad_pos": float(g[p > 0].mean()),
        "grad_neg": float(g[p < 0].mean()),
        "grad_mean": float(g.mean()),
    }


def test_grad_probe_matches_autograd_and_runs_only_when_armed() -> None:
    torch.manual_seed(0)
    model = _Shared().double()
    tracker = M.MetricsTracker(model)
    x = torch.randn(16, 5, dtype=torch.float64)
    # Unarmed: no hook is put on the activations' inputs, nothing is measured.
    model(x).square().mean().backward()
    assert tracker.measure_grads() == {}
    with tracker.collect():
        out = model(x)
    out.square().mean().backward()
    got = tracker.measure_grads()
    # The same loss with both pre-activations as leaves: dl/dp by autograd, independently.
    p1 = model.a(x).detach().requires_grad_(True)
    p2 = model.b(model.act(p1))
    p2.retain_grad()
    model.head(model.act(p2)).square().mean().backward()
    exp1, exp2 = _expected_grad_stats(p1, p1.grad), _expected_grad_stats(p2, p2.grad)
    for metric in M.GRAD_METRICS:
        # A layer called twice reports the mean over its calls.
        want = (exp1[metric] + exp2[metric]) / 2
        assert got[("act", metric)] == pytest.approx(want, rel=1e-5, abs=1e-12)
    # The ReLU teeth: grad_neg of a ReLU layer is exactly 0 (no gradient flows where p < 0).
    relu = nn.Sequential(nn.Linear(5, 8), make_activation("relu"), nn.Linear(8, 3)).double()
    t2 = M.MetricsTracker(relu)
    with t2.collect():
        y = relu(x)
    y.square().mean().backward()
    vals = t2.measure_grads()
    assert vals[("1", "grad_neg")] == 0.0 and vals[("1", "grad_pos")] != 0.0


def test_trainer_logs_the_grad_probe_on_logged_steps_only(tmp_path) -> None:
    from empirics.outputs import read_records
    from empirics.train.config import TrainConfig
    from empirics.train.loop import train

    cfg = TrainConfig(arch="mlp", preset="smoke", data="synthetic", steps=4, log_every_early=2,
                      early_steps=10, out=str(tmp_path), progress=False)  # fmt: skip
    rows = read_records(train(cfg) / "records.csv")
    probe = {(r["step"], r["layer"], r["metric"]) for r in rows if r["metric"] in M.GRAD_METRICS}
    layers = {r["layer"] for r in rows if r["metric"] == "sparsity"}
    assert layers and probe == {
        (s, lay, m) for s in (0, 2, 3) for lay in layers for m in M.GRAD_METRICS
    }


def test_unlogged_step_runs_no_hook_body_and_a_logged_one_does(monkeypatch) -> None:
    # Count every call of the hooks' statistics; an unlogged step (forward + backward outside
    # `collect`) must make none, a logged one must make them for each layer. The probe runs
    # from p's masks (CPU) or from p itself: either counts as one probe call.
    names = ("activation_stats", "grad_sign_tensors", "grad_sign_from_masks", "mean_input")
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(M, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(M, name, counted)

    def seen() -> dict[str, int]:
        return {
            "activation_stats": calls["activation_stats"],
            "probe": calls["grad_sign_tensors"] + calls["grad_sign_from_masks"],
            "mean_input": calls["mean_input"],
        }

    torch.manual_seed(0)
    model = _Tiny()
    tracker = M.MetricsTracker(model)
    x = torch.randn(8, 6)
    model(x).square().mean().backward()
    assert seen() == {"activation_stats": 0, "probe": 0, "mean_input": 0}
    assert tracker.measure_grads() == {}
    with tracker.collect():
        model(x).square().mean().backward()
    assert seen() == {"activation_stats": 2, "probe": 2, "mean_input": 2}
    # Back to unlogged: the counts stay where they were.
    model(x).square().mean().backward()
    assert seen() == {"activation_stats": 2, "probe": 2, "mean_input": 2}


def test_scratch_buffer_is_reused_and_grows() -> None:
    scratch = S.Scratch()
    a = scratch.rows(2, 10, torch.float32, torch.device("cpu"))
    b = scratch.rows(1, 5, torch.float32, torch.device("cpu"))
    assert a.shape == (2, 10) and b.shape == (1, 5)
    assert a.data_ptr() == b.data_ptr()  # the same memory, no fresh temporary
    c = scratch.rows(3, 10, torch.float32, torch.device("cpu"))
    assert c.shape == (3, 10) and c.numel() == 30
    d = scratch.rows(1, 4, torch.float64, torch.device("cpu"))
    assert d.dtype == torch.float64 and d.data_ptr() != c.data_ptr()


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_fused_statistics_match_the_per_metric_functions(activation: str) -> None:
    # The hooks' fused passes against the one-metric-at-a-time definitions, with exact zeros
    # in p (a ReLU's boundary) so that the sign counts must tell 0 from both sides.
    torch.manual_seed(1)
    p = torch.randn(7, 33)
    p[0, :5] = 0.0
    act = make_activation(activation)
    a = act(p)
    scratch = S.Scratch()
    got = S.activation_stats(p, a, scratch)
    for metric, fn, t in (
        ("preact_mean", S.preact_mean, p),
        ("negative_rate", S.negative_rate, p),
        ("sparsity", S.sparsity, a),
        ("spike_max", S.spike_max, a),
        ("spike_ratio", S.spike_ratio, a),
    ):
        assert float(got[metric]) == pytest.approx(fn(t), rel=1e-6), metric
    assert float(got["_n_pos"]) == int((p > 0).sum())
    assert float(got["_n_neg"]) == int((p < 0).sum())
    g = torch.randn_like(p)
    counts = (got["_n_pos"], got["_n_neg"])
    fused = S.grad_sign_tensors(p, g, scratch, counts)
    want = _expected_grad_stats(p, g)
    for metric in M.GRAD_METRICS:
        assert float(fused[metric]) == pytest.approx(want[metric], rel=1e-5), metric
    assert S.spike_ratio(torch.zeros(3, 3)) != S.spike_ratio(torch.zeros(3, 3))  # nan
    assert math.isnan(float(S.activation_stats(p, torch.zeros_like(p), scratch)["spike_ratio"]))


def _strided(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous layout: numpy cannot view it, so the statistics take
    their torch path."""
    out = t.t().contiguous().t()
    assert not out.is_contiguous()
    torch.testing.assert_close(out, t, rtol=0, atol=0, equal_nan=True)
    return out


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("special", ["none", "nan_in_p", "nan_in_a", "both_infinities"])
def test_host_counts_equal_the_torch_path(activation: str, special: str) -> None:
    # numpy's exact counts (CPU) against torch's sign sums on the same values: equal bit for
    # bit; a nan entry counts as neither sign and as a zero in both (torch's sign(nan) is 0).
    torch.manual_seed(2)
    p = torch.randn(9, 40)
    p[1, :7] = 0.0
    if special == "nan_in_p":
        p[3, 3] = math.nan
    if special == "both_infinities":
        p[2, 0], p[2, 1] = math.inf, -math.inf
    a = make_activation(activation)(p)
    if special == "nan_in_a":
        a[4, 4] = math.nan
    host = S.activation_stats(p, a)
    torch_path = S.activation_stats(_strided(p), _strided(a))
    for metric in ("negative_rate", "sparsity", "spike_max", "spike_ratio", "_n_pos", "_n_neg"):
        got, want = float(host[metric]), float(torch_path[metric])
        assert (math.isnan(got) and math.isnan(want)) or got == want, (metric, got, want)
    assert not math.isnan(float(host["negative_rate"])) and not math.isnan(float(host["sparsity"]))
    assert math.isnan(float(host["spike_max"])) == bool(a.isnan().any())


def _logged_step(model: nn.Module, tracker: M.MetricsTracker, x: torch.Tensor):
    with tracker.collect():
        model(x).square().mean().backward()
    model.zero_grad(set_to_none=True)
    return tracker.measure(), tracker.measure_grads()


@pytest.mark.parametrize("shared", [False, True])
def test_probe_from_forward_masks_equals_the_probe_holding_p(monkeypatch, shared: bool) -> None:
    # The CPU probe reads p's masks written at the forward pass; the other devices' probe holds
    # p. Same model, same batch: the same values bit for bit, weight sharing included (two
    # calls of one layer, two buffers), and the buffers are reused at the next logged step.
    torch.manual_seed(4)
    model = _Shared() if shared else _Tiny()
    x = torch.randn(32, 5 if shared else 6)
    tracker = M.MetricsTracker(model)
    first = _logged_step(model, tracker, x)
    bases = {name: [id(b) for b in bufs] for name, bufs in tracker._masks._free.items()}
    # _Shared: one layer called twice, two buffers; _Tiny: two layers, one buffer each.
    assert sum(map(len, bases.values())) == 2
    assert _logged_step(model, tracker, x) == first
    assert {n: [id(b) for b in bufs] for n, bufs in tracker._masks._free.items()} == bases
    tracker.remove()
    monkeypatch.setattr(S.ProbeMasks, "serves", staticmethod(lambda p: False))
    holding = M.MetricsTracker(model)
    assert _logged_step(model, holding, x) == first
    assert not holding._masks._free


def test_probe_masks_come_back_when_a_backward_pass_never_runs() -> None:
    torch.manual_seed(5)
    model = _Tiny()
    tracker = M.MetricsTracker(model)
    x = torch.randn(8, 6)
    for _ in range(3):
        with tracker.collect():
            model(x)  # armed forward with grad, no backward: the buffers stay taken
    measured = _logged_step(model, tracker, x)[1]
    assert set(measured) == {(n, m) for n in ("act1", "act2") for m in M.GRAD_METRICS}
    assert sum(map(len, tracker._masks._free.values())) == 2  # one per layer, not one per pass


def test_an_output_numpy_cannot_view_still_gets_the_probe_masks() -> None:
    # p on the numpy path (the probe's masks are written), the activation's output on torch's
    # (non-contiguous): the statistics and the probe equal those of contiguous copies.
    torch.manual_seed(6)
    p = torch.randn(6, 50)
    p[0, :4] = 0.0
    a = torch.relu(p)
    masks = np.empty(p.numel(), dtype=np.int8)
    mixed = S.activation_stats(p, _strided(a), masks=masks)
    plain = S.activation_stats(p, a)
    assert {k: float(v) for k, v in mixed.items()} == {k: float(v) for k, v in plain.items()}
    assert np.array_equal(masks, torch.sign(p).to(torch.int8).numpy().reshape(-1))
    g = torch.randn_like(p)
    counts = (mixed["_n_pos"], mixed["_n_neg"])
    from_masks = S.grad_sign_from_masks(masks, g, counts)
    from_p = S.grad_sign_tensors(p, g, None, counts)
    assert {k: float(v) for k, v in from_masks.items()} == {k: float(v) for k, v in from_p.items()}
    with pytest.raises(ValueError, match="masks are for CPU tensors"):
        S.activation_stats(_strided(p), a, masks=masks)


def test_host_view_steps_aside_while_torch_compile_traces(monkeypatch) -> None:
    # Inside a compiled model's hooks (and C10's selections) the torch path runs (it traces as
    # it is); numpy arrays written in place would not be what the compiled graph sees.
    from empirics import host
    from empirics.sparsity import kth_smallest

    t = torch.randn(4, 5)
    assert host.host_view(t) is not None and host.host_view(t).shape == (4, 5)
    assert host.host_view(t.t()) is None  # not contiguous
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert host.host_view(t) is None
    assert not S.ProbeMasks.serves(t)
    calls = []
    real = torch.Tensor.kthvalue
    monkeypatch.setattr(torch.Tensor, "kthvalue", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert torch.equal(kth_smallest(t, 2, 1), real(t, 2, dim=1, keepdim=True).values)
    assert calls  # the selection fell back to kthvalue
