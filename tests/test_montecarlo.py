"""Monte Carlo estimator vs closed forms computed here independently (numpy/scipy on the sympy
registry expressions), sign-test calibration under a null, and input checking.

Run: `.venv/bin/python -m pytest -q tests/test_montecarlo.py`.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, special, stats

from empirics.montecarlo.cli import main as cli_main
from empirics.montecarlo.cli import run as cli_run
from empirics.montecarlo.estimators import (
    estimate_conditional_mean,
    estimate_drift_coefficient,
    estimate_effective_weights,
    estimate_g_curve,
)
from empirics.montecarlo.ledger import ENTRY_IDS, montecarlo_config_for_entry, montecarlo_for_entry
from empirics.montecarlo.presets import c1_config
from empirics.montecarlo.sampler import NetConfig, draw
from empirics.stats.estimates import RatioAccumulator, SignTest
from theory import registry
from theory.registry import RegistryError

# Every statistical assertion below is |estimate - closed form| <= K_SE standard errors. With a
# normal sampling distribution, K_SE = 4.5 gives a two-sided false-alarm rate of 6.8e-6 per
# assertion, so about 1e-3 over the ~120 assertions in this file.
K_SE = 4.5
USER_SPEC = "softplus_shift=log(1 + exp(x)) - log(2)"
ACTIVATIONS = [*registry.BUILTIN_ACTIVATIONS, "softplus_shift"]


@pytest.fixture(scope="module", autouse=True)
def _user_activation():
    registry.parse_activation_spec(USER_SPEC)
    yield


@functools.cache
def _numpy_pair(activation: registry.Activation | str):
    """sigma and sigma' as numpy functions from the sympy registry (independent of torch)."""
    act = registry.as_activation(activation)
    mods = [{"erf": special.erf}, "numpy"]
    f = sp.lambdify(registry.x, act.expr, modules=mods)
    df = sp.lambdify(registry.x, act.derivative, modules=mods)

    def pair(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.broadcast_to(f(p), p.shape), np.broadcast_to(df(p), p.shape)

    return pair


def _cfg(name: str, loss: str, **kw) -> NetConfig:
    base = dict(
        activation=name,
        loss=loss,
        d_in=8,
        widths=(32,),
        n_out=3 if loss == "mse" else 2,
        inputs_per_net=8,
        w_gain=1.0,
        bias_std=0.3,
        dtype="float64",
    )
    base.update(kw)
    return NetConfig(**base).validate()


def _ce_trace_k2(tau: np.ndarray) -> np.ndarray:
    """E[1 - sum softmax(z)^2] for z ~ N(0, tau I_2): with u = z1 - z2 ~ N(0, 2 tau) the trace is
    2 sigmoid(u) sigmoid(-u); Gauss-Hermite with 80 nodes (error far below any SE here)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    u = np.sqrt(2 * tau)[..., None] * nodes
    s = special.expit(u)
    return (2 * s * (1 - s) * weights).sum(-1) / math.sqrt(2 * math.pi)


def _closed_form(cfg: NetConfig, p: np.ndarray) -> np.ndarray:
    """g(p) per sample: MSE K s^2 sigma sigma'; cross-entropy (Gaussian V, K = 2)
    s^2 sigma sigma' E[tr softmax Jacobian] with z ~ N(0, s^2 |sigma(p)|^2 + bias_std^2)."""
    sig, dsig = _numpy_pair(cfg.activation)(p)
    s2 = cfg.weight_var(len(cfg.sizes) - 1)
    if cfg.loss == "mse":
        return cfg.n_out * s2 * sig * dsig
    tau = s2 * (sig * sig).sum(-1, keepdims=True) + cfg.bias_std**2
    return s2 * sig * dsig * _ce_trace_k2(tau)


def _residual_estimates(cfg: NetConfig, n_nets: int, seed: int, scale: float = 1.0):
    """Conditional means of (dl/dp - scale * g_closed(p)) on p > 0 and p < 0, over networks."""
    gen = torch.Generator().manual_seed(seed)
    accs = {"pos": RatioAccumulator(), "neg": RatioAccumulator()}
    for _ in range(n_nets // 500):
        d = draw(cfg, 500, gen)
        p = d.p.numpy()
        res = d.delta.numpy() - scale * _closed_form(cfg, p)
        for side, mask in (("pos", p > 0), ("neg", p < 0)):
            accs[side].add(
                torch.from_numpy((res * mask).sum((1, 2))), torch.from_numpy(mask.sum((1, 2)) * 1.0)
            )
    return accs


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_gradient_matches_closed_form_conditionally(name: str, loss: str) -> None:
    # Antithetic (label-free) samples and plain samples must both agree with the closed form.
    for antithetic in (True, False):
        cfg = _cfg(name, loss, antithetic=antithetic)
        for side, acc in _residual_estimates(cfg, 500, seed=11 + antithetic).items():
            assert abs(acc.mean) <= K_SE * acc.stderr + 1e-12, (name, loss, side, antithetic)


@pytest.mark.parametrize("init", ["uniform", "gaussian"])
def test_mse_closed_form_holds_for_any_zero_mean_init_and_deeper_layer(init: str) -> None:
    # MSE's g(p) = K s^2 sigma sigma' needs only zero-mean i.i.d. V: uniform init too; and at the
    # last hidden layer of a depth-3 net (layer 2) with W x formed explicitly.
    cfg = _cfg("gelu", "mse", init=init, widths=(16, 32), layer=2)
    gen = torch.Generator().manual_seed(5)
    acc = RatioAccumulator()
    for _ in range(4):
        d = draw(cfg, 500, gen)
        p = d.p.numpy()
        res = d.delta.numpy() - _closed_form(cfg, p) * (p > 0)
        acc.add(
            torch.from_numpy((res * (p > 0)).sum((1, 2))),
            torch.from_numpy((p > 0).sum((1, 2)) * 1.0),
        )
    assert abs(acc.mean) <= K_SE * acc.stderr


def test_residual_test_has_teeth() -> None:
    # A closed form off by 25% must be rejected by the same statistic (power check).
    accs = _residual_estimates(_cfg("relu", "mse"), 500, seed=3, scale=1.25)
    assert abs(accs["pos"].mean) > K_SE * accs["pos"].stderr


def _gaussian_conditional(name: str, scale: float) -> float:
    """K s^2 E[sigma sigma' | p > 0] for p ~ N(0, 1), by scipy quadrature."""
    sig_dsig = _numpy_pair(name)

    def f(t: float) -> float:
        a, b = sig_dsig(np.array([t]))
        return float(a[0] * b[0]) * stats.norm.pdf(t)

    val, _ = integrate.quad(f, 0, 12, points=[1, 3.873, 7.07], limit=200)
    return scale * val / 0.5


@pytest.mark.parametrize(
    ("design", "units", "control"),
    [("networks", 4096, False), ("crossed", 512, True), ("crossed", 512, False)],
)
@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "tanh", "relu2_clip"])
def test_conditional_mean_estimate_matches_quadrature(
    name: str, design: str, units: int, control: bool
) -> None:
    # Sphere inputs + Var W = 1/d: p ~ N(0, 1) exactly, so the closed form is a 1-D integral.
    # Both designs, with and without the control variate, must hit it.
    cfg = NetConfig(
        activation=name,
        loss="mse",
        d_in=8,
        widths=(32,),
        n_out=3,
        inputs_per_net=8,
        inputs="sphere",
        dtype="float64",
        design=design,
        control_variate=control,
    )
    est = estimate_conditional_mean(
        cfg,
        "pos",
        generator=torch.Generator().manual_seed(1),
        n_networks=units,
    )
    truth = _gaussian_conditional(name, cfg.n_out * cfg.weight_var(2))
    assert abs(est.mean - truth) <= K_SE * est.stderr
    assert est.n == units and est.ci[0] < est.mean < est.ci[1]
    assert est.extra["design"] == design


def test_control_variate_regression_is_exact_on_a_linear_model() -> None:
    # num = R den + beta c exactly: the regression estimator recovers R with ~0 error, while the
    # plain ratio is off; with no control it is the plain ratio.
    gen = torch.Generator().manual_seed(0)
    den = torch.rand(200, generator=gen, dtype=torch.float64) + 1
    c = torch.randn(200, generator=gen, dtype=torch.float64)
    num = 0.7 * den + 3.0 * c
    with_cv, plain = RatioAccumulator(), RatioAccumulator()
    with_cv.add(num, den, control=c)
    plain.add(num, den)
    assert abs(with_cv.mean - 0.7) < 1e-9 and with_cv.stderr < 1e-6
    assert abs(plain.mean - float(num.sum() / den.sum())) < 1e-12 and plain.stderr > 1e-3


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "tanh", "identity"])
def test_drift_coefficient_matches_quadrature(name: str) -> None:
    sig_dsig = _numpy_pair(name)
    truth, _ = integrate.quad(
        lambda t: float(np.prod(sig_dsig(np.array([t])), axis=0)[0]) * stats.norm.pdf(t),
        -12,
        12,
        points=[0.0],
        limit=200,
    )
    est = estimate_drift_coefficient(
        name,
        1.0,
        generator=torch.Generator().manual_seed(2),
        n_networks=2048,
    )
    assert abs(est.mean - truth) <= K_SE * est.stderr + 1e-12


def test_relu_negative_side_is_exactly_zero() -> None:
    for loss in ("mse", "cross_entropy"):
        est = estimate_conditional_mean(
            _cfg("relu", loss), "neg", generator=torch.Generator().manual_seed(0), n_networks=64
        )
        assert est.sign == "zero" and est.mean == 0.0 and est.stderr == 0.0


def test_effective_weights_theorem_1_1() -> None:
    # E|v_i|^2 = K s_L^2 prod_{k=l+1}^{L-1} n_k s_k^2 / 2 (ReLU, symmetric init, zero biases);
    # E v_i = 0 and E<v_i, v_j> = 0 for i != j.
    cfg = c1_config(widths=(24, 40), d_in=12, n_out=5)
    est = estimate_effective_weights(
        cfg,
        generator=torch.Generator().manual_seed(4),
        n_networks=3000,
    )
    truth = cfg.n_out * cfg.weight_var(3) * cfg.widths[1] * cfg.weight_var(2) / 2
    assert abs(est["diag"].mean - truth) <= K_SE * est["diag"].stderr
    assert est["diag"].sign == "positive"
    for zero in ("mean", "offdiag"):
        assert abs(est[zero].mean) <= K_SE * est[zero].stderr
        assert est[zero].ci[0] < 0 < est[zero].ci[1]


def test_first_step_matches_closed_form() -> None:
    # E[Delta b_i] = -lr E[g(p_i)], E[Delta W_ik] = -lr E[x_k g(p_i)] with non-negative inputs.
    from empirics.montecarlo.estimators import estimate_first_step

    lr = 0.5
    cfg = _cfg("gelu", "mse", inputs="uniform", bias_std=0.0)
    est = estimate_first_step(
        cfg,
        lr,
        generator=torch.Generator().manual_seed(8),
        n_networks=4000,
    )
    gen = torch.Generator().manual_seed(9)
    b_acc, w_acc = RatioAccumulator(), RatioAccumulator()
    for _ in range(8):
        d = draw(cfg, 500, gen)
        g = _closed_form(cfg, d.p.numpy())
        x = d.layer_input.numpy()
        ones = torch.ones(500, dtype=torch.float64)
        b_acc.add(torch.from_numpy(-lr * g.sum((1, 2))), ones * g.shape[1] * g.shape[2])
        w = -lr * (g.sum(2) * x.sum(2)).sum(1)
        w_acc.add(torch.from_numpy(w), ones * g.shape[1] * g.shape[2] * x.shape[2])
    for key, ref in (("b", b_acc), ("W", w_acc)):
        se = math.hypot(est[key].stderr, ref.stderr)
        assert abs(est[key].mean - ref.mean) <= K_SE * se, key
    assert est["W"].sign == "negative" and est["b"].sign == "negative"


class _UncorrectedTest(SignTest):
    """Each look at the 5% level with no spending: must fail calibration (teeth)."""

    def quantile(self, dof: int) -> float:
        return float(stats.t.isf(0.025, dof))


class _FiveTimesTest(SignTest):
    """One look at five times the nominal rate: must fail calibration (teeth)."""

    def quantile(self, dof: int) -> float:
        return float(stats.t.isf(5 * self.alpha / 2 / self.max_looks, dof))


def _declared_rate(name: str, test: SignTest, reps: int, seed: int, design: str) -> int:
    """How often a sign is declared for a statistic whose true value is exactly 0."""
    declared = 0
    for r in range(reps):
        gen = torch.Generator().manual_seed(seed + r)
        if name == "c1_offdiag":
            # C1's off-diagonal: skewed and heavy-tailed per network, exactly 0 in mean.
            cfg = c1_config(d_in=4, widths=(6, 6), n_out=2, inputs_per_net=2, dtype="float64")
            est = estimate_effective_weights(
                cfg, targets=("offdiag",), test=test, n_networks=256, generator=gen
            )["offdiag"]
        else:
            cfg = NetConfig(
                activation=name,
                loss="mse",
                d_in=4,
                widths=(8,),
                n_out=2,
                inputs_per_net=4,
                bias_std=0.5,
                dtype="float64",
                design=design,
                v_per_block=4,
            )
            est = estimate_conditional_mean(cfg, "all", test=test, n_networks=512, generator=gen)
        declared += est.sign in ("positive", "negative")
    return declared


@pytest.mark.parametrize(
    ("name", "design", "looks"),
    [
        ("tanh", "networks", 6),
        ("identity", "networks", 1),
        ("tanh", "crossed", 1),
        ("c1_offdiag", "networks", 1),
    ],
)
def test_sign_test_calibrated_under_null(name: str, design: str, looks: int) -> None:
    # Odd activations with symmetric p (net drift) and C1's off-diagonal: the true value is
    # exactly 0. A calibrated test declares a sign in at most alpha of the repetitions; allow the
    # binomial 99.9% quantile of Bin(reps, alpha), so this check itself false-alarms with
    # probability <= 1e-3. The crossed design runs with its fitted control variate, the riskiest
    # case for the degrees of freedom; C1's off-diagonal is skewed (skewness about 2 per network).
    reps, test = 120, SignTest(alpha=0.05, max_looks=looks)
    bound = stats.binom.ppf(0.999, reps, test.alpha)
    assert _declared_rate(name, test, reps, 1000, design) <= bound
    # Power of this check against a test at 5x its nominal rate: Bin(120, 0.25) exceeds the
    # bound (14) with probability > 0.999; the variant spending 5% at each of 6 looks likewise.
    if looks == 1:
        assert _declared_rate(name, _FiveTimesTest(alpha=0.05), reps, 1000, design) > bound
    else:
        uncorrected = _UncorrectedTest(alpha=0.05, max_looks=looks)
        assert _declared_rate(name, uncorrected, reps, 1000, design) > bound


def test_g_curve_bins_agree_with_closed_form() -> None:
    cfg = _cfg("silu", "mse", bias_std=0.0)
    bins = estimate_g_curve(
        cfg,
        [-3, -1.5, -0.5, 0.5, 1.5, 3],
        generator=torch.Generator().manual_seed(7),
        n_networks=2000,
    )
    assert len(bins) == 5
    # The bin mean of g(p) lies between g's extremes on the bin: compare against g at the bin's
    # mean p, allowing the curvature term bounded by the bin's range of g (checked by quadrature).
    sig_dsig = _numpy_pair("silu")
    k_s2 = cfg.n_out * cfg.weight_var(2)
    for b in bins:
        grid = np.linspace(b.extra["lo_edge"], b.extra["hi_edge"], 201)
        g = k_s2 * np.prod(sig_dsig(grid), axis=0)
        assert g.min() - K_SE * b.stderr <= b.mean <= g.max() + K_SE * b.stderr


def test_vr_factor_reported_and_label_term_cancels() -> None:
    cfg = _cfg("relu", "cross_entropy")
    est = estimate_conditional_mean(
        cfg,
        "pos",
        generator=torch.Generator().manual_seed(0),
        n_networks=512,
        measure_vr=True,
    )
    assert est.extra["vr_factor"] > 1.0
    # Labels are drawn only for the plain sample, after everything else: the antithetic sample
    # is the same whether or not they exist, and differs from the plain one that uses them.
    d1 = draw(cfg, 4, torch.Generator().manual_seed(3), plain=False)
    d2 = draw(cfg, 4, torch.Generator().manual_seed(3), plain=True)
    assert torch.equal(d1.delta, d2.delta) and not torch.equal(d2.delta, d2.delta_plain)


def test_montecarlo_for_entry_contract() -> None:
    gen = torch.Generator().manual_seed(0)
    for entry in ENTRY_IDS:
        res = montecarlo_for_entry(entry, "relu", "mse", generator=gen, n_networks=256)
        assert res is not None and set(res) == {"mean", "stderr", "n", "ci", "sign"}, entry
        assert montecarlo_config_for_entry(entry, "relu", "mse") is not None
    assert montecarlo_for_entry("C9.sparsity", "relu", None, generator=gen, n_networks=256) is None
    zero = montecarlo_for_entry("C2.g_neg", "relu", None, generator=gen, n_networks=256)
    assert zero["sign"] == "zero"
    pos = montecarlo_for_entry("C3.g_pos", "gelu", None, generator=gen, n_networks=256)
    assert pos["sign"] == "positive"


def test_bad_input_fails_before_compute() -> None:
    with pytest.raises(RegistryError, match="valid names"):
        NetConfig(activation="nope").validate()
    with pytest.raises(ValueError, match="loss"):
        NetConfig(loss="hinge").validate()
    with pytest.raises(ValueError, match="widths"):
        NetConfig(widths=(0,)).validate()
    with pytest.raises(ValueError, match="layer"):
        NetConfig(layer=2).validate()
    with pytest.raises(ValueError, match="inputs"):
        NetConfig(inputs="laplace").validate()
    with pytest.raises(ValueError, match="alpha"):
        SignTest(alpha=1.5)


def test_cli_writes_records_and_json(tmp_path) -> None:
    out = tmp_path / "mc"
    summary = cli_run(
        [
            "g_pos",
            "--activation",
            "sq_user=x**2/2 + x",
            "--d-in",
            "8",
            "--widths",
            "16",
            "--n-out",
            "3",
            "--inputs-per-net",
            "4",
            "--n-networks",
            "256",
            "--out",
            str(out),
            "--no-progress",
            "--dtype",
            "float64",
        ]
    )
    assert (out / "records.csv").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["provenance"]["versions"]["torch"] == torch.__version__
    saved = json.loads((out / "summary.json").read_text())["estimates"]
    assert saved == json.loads(json.dumps(summary))
    registry.unregister_activation("sq_user")


def test_cli_main_returns_its_exit_code_and_lists_activations(tmp_path, capsys) -> None:
    argv = ["D", "--activation", "relu", "--n-networks", "64", "--no-progress"]
    assert cli_main([*argv, "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "summary.json").exists()
    capsys.readouterr()
    assert cli_main(["list", "activations"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert any(line.split()[:1] == ["relu"] for line in listed)
    with pytest.raises(SystemExit) as exc:
        cli_main(["list", "losses"])
    assert exc.value.code == 2


def test_cli_bad_input_is_a_clean_usage_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["g_pos", "--activation", "nope", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "valid names" in capsys.readouterr().err
    assert not (tmp_path / "records.csv").exists()
