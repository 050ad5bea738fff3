"""The checks that tie theory, Monte Carlo and trainer together; each raises AssertionError with
the numbers when its link breaks. The hypothesis suites draw configurations and call these; the
teeth tests call them with an injected bug and expect them to fail.

Statistical assertions use K_SIGMA standard errors: with a normal sampling distribution a
two-sided test at 5 sigma falsely alarms with probability 5.7e-7 per assertion, so even the
`verify` profile's few hundred assertions (three per closed-form example) false-alarm with
probability below 1e-3. Power is stated where an assertion must detect something: the
closed-form check sizes its sample so that an error of half of |g| is caught with probability
>= 0.999 (see `check_conditional_gradient`), and rejects draws where it cannot.
`make calibrate` replays every statistic tested here on exact nulls drawn from the heaviest-tailed
configurations (squared activations, depth 3, gain 2, skewed init) at the sizes used here and
prints the observed false-alarm rates beside these (empirics/ledger/calibrate.py: property_groups).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp
import torch
from scipy import stats

from empirics.montecarlo.estimators import estimate_conditional_mean, estimate_first_step
from empirics.montecarlo.sampler import NetConfig, draw
from empirics.outputs import read_records
from empirics.stats.estimates import SignTest
from empirics.train.config import TrainConfig
from empirics.train.loop import train
from theory.drift import predict_drift_coefficient
from theory.gradient import drift_product, predict_gradient_sign
from theory.registry import get_activation, x
from theory.signs import compatible

K_SIGMA = 5.0
# The two-sided false-alarm rate of a K_SIGMA test under a normal sampling distribution.
ALPHA_CHECK = float(2 * stats.norm.sf(K_SIGMA))


def limit(n: int) -> float:
    """The |t| beyond which a mean over n independent values is declared different at
    ALPHA_CHECK: Student t with n - 1 degrees of freedom (few seeds make 5 SE far too lax)."""
    return float(stats.t.isf(ALPHA_CHECK / 2, max(n - 1, 1)))


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


# Trapezoid nodes for the density of L + cZ (L standard logistic, Z standard normal). Both
# integrands are analytic in a strip (the logistic density's nearest poles are at +-i pi, the
# Gaussian is entire), so the trapezoid rule converges geometrically: with step 0.5 the
# discretisation error is below exp(-2 pi^2 / 0.5) ~ e^-39 relative, and the cut-offs (|z| <= 9,
# |L| <= 40) drop mass below e^-40. Small c integrates over Z (the Gaussian is the wide factor
# there), large c over L (the Gaussian is then wider than the logistic).
_STEP = 0.5
_Z_NODES = np.arange(-9.0, 9.0 + _STEP / 2, _STEP)
_Z_WEIGHTS = _STEP * np.exp(-0.5 * _Z_NODES**2) / math.sqrt(2 * math.pi)
_L_NODES = np.arange(-40.0, 40.0 + _STEP / 2, _STEP)
_L_WEIGHTS = _STEP * np.exp(-np.abs(_L_NODES)) / (1.0 + np.exp(-np.abs(_L_NODES))) ** 2
_CHUNK = 1 << 15  # evaluation points per block: bounds the [points, nodes] temporary (~40 MB)


def _logistic_density(u: np.ndarray) -> np.ndarray:
    """sigmoid(u) sigmoid(-u), written in |u| so that it never overflows."""
    e = np.exp(-np.abs(u))
    return e / (1.0 + e) ** 2


def logistic_normal_pdf(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Density at t of L + cZ, L standard logistic and Z ~ N(0, 1) independent (c >= 0):
    F_c(t) = int sigmoid(u) sigmoid(-u) phi_c(u + t) du. Relative error ~1e-15 at every c (the
    test compares it with adaptive quadrature from c = 0.05 to 1e7)."""
    t, c = np.broadcast_arrays(np.asarray(t, dtype=np.float64), np.asarray(c, dtype=np.float64))
    flat_t, flat_c = t.reshape(-1), c.reshape(-1)
    out = np.empty(flat_t.shape)
    for lo in range(0, flat_t.size, _CHUNK):
        tt, cc = flat_t[lo : lo + _CHUNK], flat_c[lo : lo + _CHUNK]
        res = np.empty(tt.shape)
        small = cc <= 1.0
        if small.any():  # E_Z[s(t - cZ)]: the logistic factor is smooth at the Gaussian's scale
            res[small] = _logistic_density(tt[small, None] - cc[small, None] * _Z_NODES) @ (
                _Z_WEIGHTS
            )
        big = ~small
        if big.any():  # E_L[phi_c(t - L)]: the Gaussian factor is smooth at the logistic's scale
            cb = cc[big, None]
            d = (tt[big, None] - _L_NODES) / cb
            res[big] = (np.exp(-0.5 * d * d) / (math.sqrt(2 * math.pi) * cb)) @ _L_WEIGHTS
        out[lo : lo + _CHUNK] = res
    return out.reshape(t.shape)


def trace_factor(c: np.ndarray, k: int, gen: np.random.Generator, m: int = 8) -> np.ndarray:
    """Unbiased estimate of T = E[1 - sum softmax(z)^2], z ~ N(0, c^2 I_K), per entry of c.

    1 - sum pi^2 = sum_k pi_k (1 - pi_k), and by exchangeability T = K E[pi_1 (1 - pi_1)]. With
    a = log sum_{k >= 2} exp(z_k), pi_1 = sigmoid(z_1 - a) and z_1 ~ N(0, c^2) is independent of
    a, so integrating z_1 out exactly gives T = K E_a[F_c(a)], F_c the density of L + cZ
    (`logistic_normal_pdf`). K = 2: a = z_2, and E[F_c(z_2)] is the density of L + c(Z - Z') at
    0, so T = 2 F_{c sqrt 2}(0) exactly. K > 2: a is drawn m times. Plain sampling of 1 - sum
    pi^2 has relative SD ~0.27 sqrt(c) (a saturated softmax is 0 except near ties); this one's
    relative SD is below 0.25 per entry at m = 8 for every c (tests/properties/
    test_trace_factor.py), because F_c(a) ~ phi_c(a) varies only on the scale of a itself.
    """
    c = np.asarray(c, dtype=np.float64)
    if k < 2:
        raise ValueError(f"k (the number of outputs) must be >= 2, got {k}")
    if k == 2:
        return 2.0 * logistic_normal_pdf(np.zeros_like(c), math.sqrt(2.0) * c)
    z = gen.standard_normal((*c.shape, m, k - 1)) * c[..., None, None]
    zmax = z.max(axis=-1)
    a = zmax + np.log(np.exp(z - zmax[..., None]).sum(axis=-1))  # log-sum-exp of k - 1 logits
    return k * logistic_normal_pdf(a, np.broadcast_to(c[..., None], a.shape)).mean(axis=-1)


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


class LowPower(Exception):
    """The drawn configuration cannot reach the stated power within the largest sample; the
    hypothesis suites reject such a draw (and say so) instead of asserting with no teeth."""


# A |z| > K_SIGMA test detects a true shift of MDE_Z standard errors with probability >= 0.999
# (normal approximation: Phi(MDE_Z - K_SIGMA) = 0.999).
MDE_Z = K_SIGMA + float(stats.norm.isf(1e-3))
# The closed-form check is sized so that a wrong g whose error, averaged over p > 0, over p < 0
# or against sign(g), is at least this fraction of the mean |g| there is caught with probability
# >= 0.999. A negated sigma' (or a negated torch backward) errs by 2 |g|: four times that.
DETECT_FRACTION = 0.5
POWER_LADDER = (256, 1024, 4096)


def check_conditional_gradient(
    activation: str,
    loss: str,
    shape: dict,
    init: str,
    inputs: str,
    seed: int,
    n_nets: int | None = None,
) -> MeanSE:
    """E[dl/dp | p] from sampled networks equals the theory's g(p) at the sampled p.

    MSE (any zero-mean i.i.d. V): g = K s^2 sigma sigma'. Cross-entropy with Gaussian V (Stein):
    g = s^2 sigma sigma' T with T = E[tr Hessian] at z ~ N(0, s^2 |sigma(p)|^2 + s_b^2), drawn
    unbiasedly per input. Cross-entropy with uniform V: the zero-bias transform proves only
    0 < g / (s^2 sigma sigma') <= K/4 (each Hessian diagonal term pi_k (1 - pi_k) <= 1/4 is taken
    at its own perturbed point; the Gaussian bound 1 - 1/K is not proved there), checked
    one-sidedly. The residual delta - g(p) is averaged within each network; networks are
    independent, so the standard error is taken across them.

    Power: the number of networks climbs POWER_LADDER (fixed by the configuration, never by
    time) until the minimum detectable error against sign(g), MDE_Z standard errors, is at most
    DETECT_FRACTION of the mean |g| (for uniform cross-entropy: of the lower bound's mean);
    LowPower if 4096 networks do not get there. `n_nets` pins one size (no power guarantee).
    The p > 0 and p < 0 weights are checked too, at the same false-alarm rate, without a
    stated power.
    """
    sizes = (n_nets,) if n_nets else POWER_LADDER
    for n in sizes:
        tests, powered = _conditional_residuals(activation, loss, shape, init, inputs, seed, n)
        # A look that fails has found the error; more networks only buy power against passing a
        # wrong g. At most three looks: the false-alarm rate is at most 3 x ALPHA_CHECK.
        est = None
        for name, (est, one_sided) in tests.items():
            z = est.z_against(0.0)
            if (z < -K_SIGMA) if one_sided else (abs(z) > K_SIGMA):
                raise AssertionError(
                    f"{activation}/{loss}/{init}/{inputs} {shape}: {name}: {est.mean:.4g} +- "
                    f"{est.stderr:.2g} (z = {z:.1f}, n = {est.n})"
                )
        if powered or n_nets:
            break
    if not powered and not n_nets:
        raise LowPower(
            f"{activation}/{loss}/{init}/{inputs} {shape}: {sizes[-1]} networks do not resolve "
            f"{DETECT_FRACTION:.0%} of |g| at power 0.999"
        )
    assert est is not None, "no network had a pre-activation on either side"
    return est


def _conditional_residuals(
    activation: str, loss: str, shape: dict, init: str, inputs: str, seed: int, n_nets: int
) -> tuple[dict[str, tuple[MeanSE, bool]], bool]:
    """The residual tests of one draw (name -> (estimate, one-sided?)) and whether every test
    reaches the stated power."""
    cfg = net_config(activation, loss, shape, init, inputs)
    gen = torch.Generator().manual_seed(seed)
    d = draw(cfg, n_nets, gen)
    p = d.p.numpy()
    delta = d.delta.numpy()
    h = _numpy_h(activation)(p)
    k = cfg.n_out
    s2 = cfg.weight_var(len(cfg.sizes) - 1)
    tests: dict[str, tuple[MeanSE, bool]] = {}
    powered = True

    def per_net(values: np.ndarray, w: np.ndarray) -> np.ndarray | None:
        w = w.reshape(n_nets, -1).astype(np.float64)
        count = np.abs(w).sum(axis=1)
        keep = count > 0
        if keep.sum() < 2:
            return None
        return (values.reshape(n_nets, -1) * w).sum(axis=1)[keep] / count[keep]

    if loss == "cross_entropy" and init != "gaussian":
        sgn = np.sign(h)
        lower = mean_se((delta * sgn).reshape(n_nets, -1).mean(axis=1))
        upper = mean_se(((s2 * np.abs(h) * k / 4) - delta * sgn).reshape(n_nets, -1).mean(1))
        tests["g*sign(h) >= 0"] = (lower, True)
        tests["g*sign(h) <= s^2|h|K/4"] = (upper, True)
        powered = MDE_Z * lower.stderr <= DETECT_FRACTION * abs(lower.mean)
        return tests, powered
    if loss == "mse":
        g = k * s2 * h
    else:
        sig_fn = sp.lambdify(x, sp.N(get_activation(activation).expr), ["scipy", "numpy"])
        sig = np.broadcast_to(np.asarray(sig_fn(p), dtype=np.float64), p.shape)
        c = np.sqrt(s2 * (sig * sig).sum(axis=-1) + cfg.bias_std**2)  # [N, B]
        g = s2 * h * trace_factor(c, k, np.random.default_rng(seed))[..., None]
    resid = delta - g
    # E[resid | p] = 0 for every p, so resid has mean 0 against any weight that is a function of
    # p. Three weights: p > 0, p < 0 (an odd g would cancel in a plain mean over both sides) and
    # sign(g(p)), under which a wrong sign or scale of g adds up instead of cancelling.
    for name, w in (("p>0", p > 0), ("p<0", p < 0), ("sign(g)", np.sign(h))):
        r, scale = per_net(resid, w), per_net(np.abs(g), np.abs(w))
        if r is None:
            continue
        est = mean_se(r)
        tests[f"E[(delta - g(p)) w] with w = {name}"] = (est, False)
        if name == "sign(g)":  # where any error of g's sign or scale accumulates
            powered = MDE_Z * est.stderr <= DETECT_FRACTION * float(scale.mean())
    return tests, powered


def check_sign_decision(
    activation: str, loss: str, shape: dict, side: str, seed: int, n_networks: int = 1024
) -> tuple[str, str]:
    """The Monte Carlo sign of E[dl/dp | side] never contradicts a decided symbolic sign."""
    symbolic = predict_gradient_sign(activation, loss, side).sign
    cfg = net_config(activation, loss, shape, "gaussian", "gaussian")
    est = estimate_conditional_mean(
        cfg,
        side,
        generator=torch.Generator().manual_seed(seed),
        n_networks=n_networks,
        test=SignTest(alpha=ALPHA_CHECK),
    )
    if symbolic != "undetermined" and est.sign != "undetermined":
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
        assert abs(z) <= limit(measured[key].n), (
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
    first steps: D > 0 drifts negative, D < 0 positive, D = 0 (odd or even
    sigma: exactly zero drift in expectation at every step, by the hidden-unit sign symmetry)
    stays within `limit(n)` standard errors of 0. Undecided D makes no prediction."""
    d = predict_drift_coefficient(activation)
    drift = measured_changes(activation, seeds, steps, lr, shape)["b"]
    z = drift.z_against(0.0)
    message = (
        f"{activation}: D = {d.value} ({d.sign}, {d.method}) but the bias of the last hidden layer "
        f"moved {drift.mean:.4g} +- {drift.stderr:.2g} (z = {z:.1f}) over {steps} steps"
    )
    # D = 0: a null, tested at ALPHA_CHECK with Student t (a mean over a dozen seeds). D != 0:
    # the drift must be significantly signed at one-sided 1e-3; its failure rate on a correct
    # theory is 1 - power, and at the weakest configuration the suite draws (lr 0.02, 3 steps,
    # depth 3, relu2_clip) the drift is about 9.7 standard errors against a 4.0 threshold, so
    # the power is far above 0.999 (README, "what the suites establish").
    if d.sign == "positive":
        assert z < -float(stats.t.isf(1e-3, drift.n - 1)), message
    elif d.sign == "negative":
        assert z > float(stats.t.isf(1e-3, drift.n - 1)), message
    elif d.sign == "zero":
        assert abs(z) <= limit(drift.n), message
    return d.sign, drift
