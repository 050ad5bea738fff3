"""The checks that tie theory, Monte Carlo and trainer together; each raises AssertionError with
the numbers when its link breaks. The hypothesis suites draw configurations and call these; the
teeth tests call them with an injected bug and expect them to fail.

Statistical assertions use K_SIGMA standard errors: with a normal sampling distribution a
two-sided test at 5 sigma falsely alarms with probability 5.7e-7 per assertion, so even the
`verify` profile's few hundred assertions (three per closed-form example) false-alarm with
probability below 1e-3.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp
import torch

from empirics.outputs import read_records
from empirics.montecarlo import NetConfig, draw, estimate_conditional_mean, estimate_first_step
from empirics.train import TrainConfig, train
from theory import predict_drift_coefficient, predict_gradient_sign
from theory.gradient import drift_product
from theory.registry import get_activation, x
from theory.signs import compatible

K_SIGMA = 5.0


@dataclass
class MeanSE:
    mean: float
    stderr: float
    n: int

    def z_against(self, value: float, other_se: float = 0.0) -> float:
        se = math.hypot(self.stderr, other_se)
        diff = self.mean - value
        if se == 0.0:
            return 0.0 if abs(diff) <= 1e-12 * (1.0 + abs(value)) else math.inf
        return diff / se


def mean_se(values: np.ndarray) -> MeanSE:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = values.size
    if n < 2:
        raise AssertionError(f"need at least two independent values, got {n}")
    return MeanSE(float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)), n)


def _numpy_h(activation: str):
    """sigma sigma' from the symbolic registry, evaluated by numpy (independent of torch)."""
    fn = sp.lambdify(x, sp.N(drift_product(activation)), modules=["scipy", "numpy"])

    def h(p: np.ndarray) -> np.ndarray:
        out = np.asarray(fn(p), dtype=np.float64)
        return np.broadcast_to(out, p.shape)

    return h


def _trace_factor(c: np.ndarray, k: int, gen: np.random.Generator, m: int = 8) -> np.ndarray:
    """Unbiased draw of E[1 - sum softmax(z)^2], z ~ N(0, c^2 I_K), per entry of c (m samples)."""
    z = gen.standard_normal((*c.shape, m, k)) * c[..., None, None]
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    pi = e / e.sum(axis=-1, keepdims=True)
    return (1.0 - (pi * pi).sum(axis=-1)).mean(axis=-1)


def net_config(activation: str, loss: str, shape: dict, init: str, inputs: str) -> NetConfig:
    """The last hidden layer of the drawn MLP: its downstream matrix is the i.i.d. output layer."""
    return NetConfig(
        activation=activation,
        loss=loss,
        init=init,
        inputs=inputs,
        labels="class",
        layer=len(shape["widths"]),
        dtype="float64",
        device="cpu",
        antithetic=True,
        **shape,
    ).validate()


def check_conditional_gradient(
    activation: str,
    loss: str,
    shape: dict,
    init: str,
    inputs: str,
    seed: int,
    n_nets: int = 256,
) -> MeanSE:
    """E[dl/dp | p] from sampled networks equals the theory's g(p) at the sampled p.

    MSE (any zero-mean i.i.d. V): g = K s^2 sigma sigma'. Cross-entropy with Gaussian V (Stein):
    g = s^2 sigma sigma' T with T = E[tr Hessian] at z ~ N(0, s^2 |sigma(p)|^2 + s_b^2), drawn
    unbiasedly per input. Cross-entropy with uniform V: only the bounds 0 <= g / (s^2 sigma
    sigma') <= 1 - 1/K hold, checked one-sidedly. The residual delta - g(p) is averaged within
    each network; networks are independent, so the standard error is taken across them.
    """
    cfg = net_config(activation, loss, shape, init, inputs)
    gen = torch.Generator().manual_seed(seed)
    d = draw(cfg, n_nets, gen)
    p = d.p.numpy()
    delta = d.delta.numpy()
    h = _numpy_h(activation)(p)
    k = cfg.n_out
    s2 = cfg.weight_var(len(cfg.sizes) - 1)
    if loss == "mse":
        resid = delta - k * s2 * h
    elif init == "gaussian":
        sig_fn = sp.lambdify(x, sp.N(get_activation(activation).expr), ["scipy", "numpy"])
        sig = np.broadcast_to(np.asarray(sig_fn(p), dtype=np.float64), p.shape)
        c = np.sqrt(s2 * (sig * sig).sum(axis=-1) + cfg.bias_std**2)  # [N, B]
        t_hat = _trace_factor(c, k, np.random.default_rng(seed))
        resid = delta - s2 * h * t_hat[..., None]
    else:
        sgn = np.sign(h)
        lower = mean_se((delta * sgn).reshape(n_nets, -1).mean(axis=1))
        upper = mean_se(((s2 * np.abs(h) * (1 - 1 / k)) - delta * sgn).reshape(n_nets, -1).mean(1))
        for name, est in (("g*sign(h) >= 0", lower), ("g*sign(h) <= s^2|h|(1-1/K)", upper)):
            if est.z_against(0.0) < -K_SIGMA:
                raise AssertionError(
                    f"{activation}/{loss}/{init}: bound {name} violated: "
                    f"{est.mean:.4g} +- {est.stderr:.2g} (n={est.n})"
                )
        return lower
    # E[resid | p] = 0 for every p, so resid has mean 0 against any weight that is a function of
    # p. Three weights: p > 0, p < 0 (an odd g would cancel in a plain mean over both sides) and
    # sign(g(p)), under which a wrong sign or scale of g adds up instead of cancelling.
    weights = {"p>0": p > 0, "p<0": p < 0, "sign(g)": np.sign(h)}
    est = None
    for name, w in weights.items():
        w = w.reshape(n_nets, -1).astype(np.float64)
        count = np.abs(w).sum(axis=1)
        keep = count > 0
        if keep.sum() < 2:
            continue
        per_net = (resid.reshape(n_nets, -1) * w).sum(axis=1)[keep] / count[keep]
        est = mean_se(per_net)
        z = est.z_against(0.0)
        if abs(z) > K_SIGMA:
            scale = float(np.abs(delta).mean())
            raise AssertionError(
                f"{activation}/{loss}/{init}/{inputs} {shape}: E[(delta - g(p)) w] with w = "
                f"{name}: {est.mean:.4g} +- {est.stderr:.2g} (z = {z:.1f}, mean |delta| = "
                f"{scale:.3g}, n = {est.n})"
            )
    assert est is not None, "no network had a pre-activation on either side"
    return est


def check_sign_decision(
    activation: str, loss: str, shape: dict, side: str, seed: int, n_networks: int = 1024
) -> tuple[str, str]:
    """The Monte Carlo sign of E[dl/dp | side] never contradicts a decided symbolic sign."""
    symbolic = predict_gradient_sign(activation, loss, side).sign
    cfg = net_config(activation, loss, shape, "gaussian", "gaussian")
    est = estimate_conditional_mean(
        cfg, side, generator=torch.Generator().manual_seed(seed), n_networks=n_networks
    )
    if symbolic != "undetermined" and est.sign != "undecided":
        assert compatible(est.sign, symbolic), (
            f"{activation}/{loss} on p {'>' if side == 'pos' else '<'} 0: Monte Carlo decided "
            f"{est.sign} ({est.mean:.4g}, CI {est.ci}) but theory says {symbolic}"
        )
    return symbolic, est.sign


# ------------------------------------------------------------------------------ trainer links


def _mlp_run(activation: str, seed: int, steps: int, lr: float, shape: dict, root: Path) -> Path:
    cfg = TrainConfig(
        arch="mlp",
        activation=activation,
        data="synthetic",
        preset="smoke",
        steps=steps + 1,  # step s is logged before its update: steps + 1 logs s = 0..steps
        batch_size=shape["batch"],
        lr=lr,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        warmup=0,
        schedule="constant",
        seed=seed,
        device="cpu",
        out=str(root / f"{activation.split('=')[0]}-{seed}"),
        progress=False,
        eval_batches=1,
        early_steps=steps + 2,
        model={
            "init": "kaiming_normal",
            "depth": shape["depth"],
            "width": shape["width"],
            "in_dim": shape["in_dim"],
            "val_size": 16,
        },
    )
    return train(cfg)


def measured_changes(
    activation: str, seeds: range, steps: int, lr: float, shape: dict
) -> dict[str, MeanSE]:
    """Change of bias_mean and weight_mean of the last hidden layer over `steps` SGD steps,
    one trainer run per seed (read back from its records.csv)."""
    layer = f"layers.fc{shape['depth']}"
    db, dw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            rows = read_records(
                _mlp_run(activation, seed, steps, lr, shape, Path(tmp)) / "records.csv"
            )
            at = {(r["step"], r["metric"]): r["value"] for r in rows if r["layer"] == layer}
            db.append(at[(steps, "bias_mean")] - at[(0, "bias_mean")])
            dw.append(at[(steps, "weight_mean")] - at[(0, "weight_mean")])
    return {"b": mean_se(np.array(db)), "W": mean_se(np.array(dw))}


def check_first_step_vs_montecarlo(
    activation: str, shape: dict, lr: float, seeds: range, mc_seed: int
) -> dict[str, tuple[MeanSE, float, float]]:
    """The trainer's one-step change of b and W (mean over units, averaged over seeds) agrees
    with the Monte Carlo estimate of E[Delta b], E[Delta W] for the same networks: the MLP's
    kaiming_normal init is Gaussian with variance 2/fan_in and zero biases, its synthetic data
    N(0, 1) inputs with uniform labels, cross-entropy averaged over the batch."""
    measured = measured_changes(activation, seeds, 1, lr, shape)
    cfg = NetConfig(
        activation=activation,
        loss="cross_entropy",
        d_in=shape["in_dim"],
        widths=(shape["width"],) * shape["depth"],
        n_out=10,
        inputs_per_net=shape["batch"],
        init="gaussian",
        w_gain=2.0,
        bias_std=0.0,
        inputs="gaussian",
        labels="class",
        layer=shape["depth"],
        dtype="float64",
        device="cpu",
        direct_preact=False,
    )
    mc = estimate_first_step(
        cfg, lr, generator=torch.Generator().manual_seed(mc_seed), n_networks=512
    )
    out = {}
    for key in ("b", "W"):
        z = measured[key].z_against(mc[key].mean, mc[key].stderr)
        assert abs(z) <= K_SIGMA, (
            f"{activation} {shape} lr={lr}: trainer Delta {key} = {measured[key].mean:.4g} "
            f"+- {measured[key].stderr:.2g} vs Monte Carlo {mc[key].mean:.4g} "
            f"+- {mc[key].stderr:.2g} (z = {z:.1f})"
        )
        out[key] = (measured[key], mc[key].mean, z)
    return out


def check_drift_sign_vs_trainer(
    activation: str, shape: dict, lr: float, steps: int, seeds: range
) -> tuple[str, MeanSE]:
    """The sign of D(sigma, 1) predicts the sign of the bias drift of the trainer's MLP over the
    first steps: D > 0 drifts negative, D < 0 positive (both at K_SIGMA), D = 0 (odd or even
    sigma: exactly zero drift in expectation at every step, by the hidden-unit sign symmetry)
    stays within K_SIGMA of 0. Undecided D makes no prediction."""
    d = predict_drift_coefficient(activation)
    drift = measured_changes(activation, seeds, steps, lr, shape)["b"]
    z = drift.z_against(0.0)
    message = (
        f"{activation}: D = {d.value} ({d.sign}, {d.method}) but the bias of the last hidden layer "
        f"moved {drift.mean:.4g} +- {drift.stderr:.2g} (z = {z:.1f}) over {steps} steps"
    )
    if d.sign == "positive":
        assert z < -K_SIGMA, message
    elif d.sign == "negative":
        assert z > K_SIGMA, message
    elif d.sign == "zero":
        assert abs(z) <= K_SIGMA, message
    return d.sign, drift
