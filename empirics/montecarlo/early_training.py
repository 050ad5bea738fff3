"""Early training of many random MLPs at once: how long the sign of E[dl/dp | p > 0] and drift hold.

One configuration: `python -m empirics.montecarlo.early_training --activation relu --optimizer sgd
--lr 0.1`;
the grid behind the C6 and Remark A.2 rows (activations x losses x optimizers x lrs x seeds):
`python -m empirics.montecarlo.early_training --sweep --seeds 0,1,2,3,4` (to
results/montecarlo/...).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from empirics.activations import get_torch_activation
from empirics.cli import (
    MAX_SEED,
    SEED_RANGE,
    activation_slug,
    parse_ints,
    parse_seeds,
    split_list,
)
from empirics.cli import run_name as make_run_name
from empirics.montecarlo.sampler import (
    DTYPES,
    INIT_LAWS,
    INPUT_LAWS,
    Forward,
    NetConfig,
    draw_inputs,
    draw_labels,
    forward,
    init_network,
    network_loss,
)
from empirics.outputs import (
    RecordWriter,
    atomic_open,
    atomic_write_json,
    provenance,
    resolve_device,
)
from empirics.train import metrics
from empirics.train.config import OPTIMIZERS
from empirics.train.optim import make_optimizers
from theory import registry

DATA = (*INPUT_LAWS, "fashion_mnist")
LOSSES = registry.BUILTIN_LOSSES  # the losses the batched networks implement
# Learning-rate grid of the sweep: two per optimizer, a tenfold apart.
LR_GRID: dict[str, tuple[float, ...]] = {
    "sgd": (0.01, 0.1),
    "adamw": (1e-3, 1e-2),
    "muon": (5e-3, 5e-2),
}
SWEEP_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
DEFAULT_OUT = Path("results/montecarlo/early_training")
FASHION_DIM = 28 * 28
# Quantities whose horizons are reported, per hidden layer.
HORIZON_QUANTITIES = ("g_pos", "g_all", "delta_b", "delta_w")
# The layers' non-negative inputs make E[dW] carry the drift (C5); recorded, not assumed.
SCHEMA_VERSION = 2  # 2: bootstrap-t bands (1 had Bonferroni-t, miscalibrated under skew)


@dataclass(frozen=True)
class EarlyConfig:
    """`n_networks * check_factor` independent MLPs d_in -> widths -> n_out, trained `steps` steps.

    The networks come from `empirics.montecarlo.sampler` (the Monte Carlo's init laws, batched
    forward pass and loss): weights i.i.d. zero-mean with variance w_gain / fan_in, biases with
    std bias_std. Each network draws its own mini-batch of `batch_size` fresh inputs per step
    (random class labels for synthetic data). The per-step statistics are measured before each
    update on a separate fresh batch of `measure_batch` inputs per network (same parameters, no
    update from it). Horizons are computed twice: from the first `n_networks` networks and from
    all `n_networks * check_factor` (the N-check: a horizon that measures the sign, not the
    power, must not move). `alpha` is the family-wise error rate of each simultaneous band over
    the steps, built from `bootstrap` resamples of the networks (see `horizon`). Optimizers use
    the trainer's vocabulary (`empirics.train.loop`).
    """

    activation: str = "relu"
    loss: str = "mse"
    optimizer: str = "sgd"
    lr: float = 0.05
    steps: int = 200
    n_networks: int = 32
    check_factor: int = 4
    d_in: int = 32
    widths: tuple[int, ...] = (64, 64)
    n_out: int = 10
    batch_size: int = 32
    measure_batch: int = 64
    data: str = "halfnormal"
    init: str = "gaussian"
    w_gain: float = 1.0
    bias_std: float = 0.0
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    alpha: float = 0.01
    decay_fraction: float = 0.1
    bootstrap: int = 4000
    dtype: str = "float32"
    device: str = "auto"
    seed: int = 0

    def validate(self) -> EarlyConfig:
        """Check every field before any compute; fashion_mnist fixes d_in to 784."""
        registry.parse_activation_spec(self.activation)
        checks = (
            (self.loss in LOSSES, f"loss={self.loss!r}; valid: {', '.join(LOSSES)}"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer={self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}",
            ),
            (self.data in DATA, f"data={self.data!r}; valid: {', '.join(DATA)}"),
            (self.init in INIT_LAWS, f"init={self.init!r}; valid: {', '.join(INIT_LAWS)}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be finite and > 0, got {self.lr}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (0 <= self.seed <= MAX_SEED, f"seed: expected {SEED_RANGE}, got {self.seed}"),
            (self.n_networks >= 3, f"n_networks must be >= 3 (for an SE), got {self.n_networks}"),
            (self.check_factor >= 1, f"check_factor must be >= 1, got {self.check_factor}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.measure_batch >= 2, f"measure_batch must be >= 2, got {self.measure_batch}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (
                len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"betas must be two numbers in [0, 1), got {self.betas}",
            ),
            (0 < self.alpha < 1, f"alpha must be in (0, 1), got {self.alpha}"),
            (
                self.bootstrap * self.alpha >= 20,
                "bootstrap must leave >= 20 resamples beyond the band (bootstrap * alpha >= 20), "
                f"got bootstrap={self.bootstrap}, alpha={self.alpha}",
            ),
            (
                0 < self.decay_fraction < 1,
                f"decay_fraction must be in (0, 1), got {self.decay_fraction}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        d_in = FASHION_DIM if self.data == "fashion_mnist" else self.d_in
        cfg = replace(self, d_in=d_in, widths=tuple(self.widths), betas=tuple(self.betas))
        cfg.net_config().validate()  # d_in, widths, n_out, w_gain, bias_std, dtype
        return replace(cfg, device=resolve_device(self.device))

    def net_config(self) -> NetConfig:
        """The Monte Carlo's description of these networks (init law, sizes, loss, inputs)."""
        return NetConfig(
            activation=self.activation,
            loss=self.loss,
            d_in=self.d_in,
            widths=tuple(self.widths),
            n_out=self.n_out,
            inputs_per_net=self.batch_size,
            init=self.init,
            w_gain=self.w_gain,
            bias_std=self.bias_std,
            inputs=self.data if self.data in INPUT_LAWS else "gaussian",
            labels="class",
            dtype=self.dtype,
            device=self.device,
        )

    @property
    def total_networks(self) -> int:
        return self.n_networks * self.check_factor

    def run_name(self) -> str:
        """From the one run-name function (empirics.cli): family parameters stay in the name,
        so leaky_relu:slope=0.2 and :slope=0.3 are two runs."""
        act = activation_slug(self.activation)
        parts = (act, self.loss, self.optimizer, f"lr{self.lr:g}", self.data)
        return make_run_name(*parts, seed=self.seed)


class BatchedMLP(nn.Module):
    """N independent MLPs as one weight [N, out, in] and one bias [N, 1, out] per layer, so one
    baddbmm runs every network. SGD and AdamW are elementwise, hence per network on these
    stacks; Muon orthogonalises one matrix at a time, so it gets per-network 2-D views that
    share the stacks' storage (`muon_views`; their gradients are set by `sync_view_grads`)."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], activation: str):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b) for b in biases)
        self.activation = activation
        self.fn = get_torch_activation(activation)
        self._views: list[list[torch.Tensor]] | None = None

    @classmethod
    def init(cls, cfg: EarlyConfig, n: int, gen: torch.Generator) -> BatchedMLP:
        weights, biases = init_network(cfg.net_config(), n, gen)
        return cls(weights, biases, cfg.activation)

    def forward(self, x: torch.Tensor) -> Forward:
        """x [N, B, d_in] -> out, pre-activations and layer inputs (autograd through all)."""
        return forward(x, list(self.weights), list(self.biases), self.fn)

    def muon_views(self) -> list[torch.Tensor]:
        """One 2-D view per network of every hidden matrix (the output layer is the head, which
        Muon does not take, as in the trainer)."""
        if self._views is None:
            self._views = [[w.detach()[i] for i in range(w.shape[0])] for w in self.weights[:-1]]
        return [v for layer in self._views for v in layer]

    def sync_view_grads(self) -> None:
        if self._views is None:
            return
        for w, views in zip(self.weights[:-1], self._views, strict=True):
            for i, v in enumerate(views):
                v.grad = None if w.grad is None else w.grad[i]


def build_optimizers(cfg: EarlyConfig, model: BatchedMLP) -> list[torch.optim.Optimizer]:
    """The trainer's `make_optimizers` (no weight decay, so drift is not confounded with
    shrinkage): sgd/adamw on everything; muon on the hidden matrices, AdamW on the rest."""
    params = [*model.weights, *model.biases]
    hyper: dict[str, Any] = dict(momentum=cfg.momentum, betas=cfg.betas, weight_decay=0.0)
    if cfg.optimizer != "muon":
        return make_optimizers(cfg.optimizer, params, cfg.lr, **hyper)
    rest = [model.weights[-1], *model.biases]
    return make_optimizers("muon", params, cfg.lr, matrices=model.muon_views(), rest=rest, **hyper)


def _fashion_tensors(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    from empirics.data.images import load_fashion_mnist  # raises DataUnavailable with the package

    images, labels = load_fashion_mnist("train")
    # Pixels scaled to [0, 1]: natural non-negative inputs, the case C5 is about.
    x = torch.from_numpy(images.reshape(len(images), -1).copy()).to(device, dtype) / 255.0
    return x, torch.from_numpy(labels.copy()).to(device)


def batches(
    cfg: EarlyConfig, n: int, gen: torch.Generator, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x [N, B, d_in], one-hot targets [N, B, K]) forever; each network gets its own samples."""
    dtype, device = DTYPES[cfg.dtype], cfg.device
    shape = (n, batch_size)
    if cfg.data == "fashion_mnist":
        images, labels = _fashion_tensors(device, dtype)
        while True:
            idx = torch.randint(0, len(images), shape, generator=gen, device=device)
            yield images[idx], nn.functional.one_hot(labels[idx], cfg.n_out).to(dtype)
    net = cfg.net_config()
    while True:
        x = draw_inputs(cfg.data, (*shape, cfg.d_in), gen, dtype, device)
        yield x, draw_labels(net, shape, gen, dtype, device)


# ----------------------------------------------------------------------- per-step statistics
# Per network n and step t, each statistic is one number; the networks are i.i.d., so every
# mean over networks has a CLT standard error over them (samples inside one network share its
# weights and are not independent).


def per_network_stats(fwd: Forward, grads: Sequence[torch.Tensor]) -> dict[tuple[str, str], Any]:
    """Per hidden layer k, tensors [N]: sums and counts of dl/dp over p > 0 and p < 0, the mean
    dl/dp, Remark A.2's split of the mean entry of dl/dW_k into the mean term
    E_x[dl/dp_i] E_x[x_j] and the covariance term Cov_x(dl/dp_i, x_j) (both averaged over i, j,
    within one network over its measure batch), and the smallest layer input; plus floats for
    the records (preact_mean, sparsity, negative_rate). `grads` are d(sum over networks of the
    batch-mean loss)/dp, so the per-sample dl/dp is B times them."""
    out: dict[tuple[str, str], Any] = {}
    with torch.no_grad():
        for k, (p, grad_p) in enumerate(zip(fwd.preacts, grads, strict=True)):
            layer = f"layer{k + 1}"
            x, a = fwd.inputs[k], fwd.inputs[k + 1]
            b = p.shape[1]
            delta = grad_p * b
            pos, neg = (p > 0).to(p.dtype), (p < 0).to(p.dtype)
            out[(layer, "pos_num")] = (delta * pos).sum((1, 2))
            out[(layer, "pos_den")] = pos.sum((1, 2))
            out[(layer, "neg_num")] = (delta * neg).sum((1, 2))
            out[(layer, "neg_den")] = neg.sum((1, 2))
            out[(layer, "g_all")] = delta.mean((1, 2))
            # Averaged over units i and inputs j: with s_b = sum_i dl/dp_bi and t_b = sum_j x_bj,
            # mean_ij E[dl/dp_i x_j] = E[s t] / (n d); the covariance part is the unbiased sample
            # covariance of (s, t) / (n d) and the mean term is the remainder.
            s, t = delta.sum(-1), x.sum(-1)  # [N, B]
            scale = delta.shape[-1] * x.shape[-1]
            full = (s * t).mean(-1) / scale
            cov = (full - s.mean(-1) * t.mean(-1) / scale) * b / (b - 1)
            out[(layer, "cov_term")] = cov
            out[(layer, "mean_term")] = full - cov
            out[(layer, "input_min")] = x.amin((1, 2))
            out[(layer, "preact_mean")] = metrics.preact_mean(p)
            out[(layer, "sparsity")] = metrics.sparsity(a)
            out[(layer, "negative_rate")] = metrics.negative_rate(p)
    return out


@dataclass
class Series:
    """Per-step estimates of one quantity: mean [T] and per-network influence values [T, N]
    (the linearisation whose mean square / (N - 1) / N is the squared standard error)."""

    mean: np.ndarray
    influence: np.ndarray

    @property
    def stderr(self) -> np.ndarray:
        n = self.influence.shape[1]
        return np.sqrt((self.influence**2).sum(1) / (n - 1) / n)

    def minus(self, c: float, t0: int = 0) -> Series:
        """The series m_t - c m_{t0} (its influence too): 'below a fraction c of the start'."""
        return Series(self.mean - c * self.mean[t0], self.influence - c * self.influence[t0])


def ratio_series(num: np.ndarray, den: np.ndarray) -> Series:
    """R_t = sum_n num / sum_n den (a conditional mean pooled over networks), delta method."""
    r = num.sum(1) / den.sum(1)
    return Series(r, (num - r[:, None] * den) / den.mean(1)[:, None])


def mean_series(values: np.ndarray) -> Series:
    m = values.mean(1)
    return Series(m, values - m[:, None])


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """[R, n] bootstrap weights (multinomial counts / n) over n i.i.d. networks, seeded."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples) / n


def band_multipliers(series: Series, weights: np.ndarray, alpha: float) -> tuple[float, float]:
    """(c_lo, c_hi) such that [m_t - c_lo se_t, m_t + c_hi se_t] covers every step's true value
    together with probability ~ 1 - alpha: the studentized bootstrap of the maximum over steps,
    each side at alpha / 2. Resampling the networks keeps the dependence between steps (so the
    band is tighter than Bonferroni over the looks) and studentizing corrects the skewness of
    per-network statistics to second order, where Student t intervals over-fire (measured in
    tests/test_early_training.py on skewed nulls)."""
    n = series.influence.shape[1]
    # Centred values, scaled to unit size: float32 matmuls then lose nothing that matters.
    psi = series.influence.T  # [n, T]
    psi = (psi / max(float(np.abs(psi).max()), 1e-300)).astype(np.float32)
    w = weights.astype(np.float32)
    mb = (w @ psi).astype(np.float64)  # [R, T]: resampled means of the centred values
    m2 = (w @ psi**2).astype(np.float64)
    var = np.maximum(m2 - mb**2, 0.0) * n / (n - 1)
    se = np.sqrt(var / n)
    t = np.divide(mb, se, out=np.zeros_like(mb), where=se > 0)
    level = 1 - alpha / 2
    return float(np.quantile(t.max(1), level)), float(np.quantile((-t).max(1), level))


def _sign(lo: float, hi: float) -> int:
    return 1 if lo > 0 else -1 if hi < 0 else 0


SIGN_NAMES = {1: "positive", -1: "negative", 0: "undetermined"}


def band(series: Series, weights: np.ndarray, alpha: float) -> dict[str, list[float]]:
    """Per-step mean and simultaneous band (family-wise 1 - alpha over the steps)."""
    c_lo, c_hi = band_multipliers(series, weights, alpha)
    se = series.stderr
    return {
        "mean": series.mean.tolist(),
        "lo": (series.mean - c_lo * se).tolist(),
        "hi": (series.mean + c_hi * se).tolist(),
    }


def change_point(curves: np.ndarray, side: int) -> np.ndarray:
    """Per curve [R, T] (or one [T]): the step t that best splits it into "still on the initial
    side" (steps < t have side * m > 0) and "past 0" (steps >= t have side * m <= 0), i.e. the t
    minimising the number of steps on the wrong side of the split; T when no split beats
    "never" (the curve stays on its side). Ties take the middle minimiser. Unlike the first
    passage, which noise pulls early, errors on both sides of the true crossing count alike, so
    the estimate does not move with the number of networks, only its spread does."""
    c = np.atleast_2d(curves)
    past = (side * c <= 0).astype(np.int32)  # [R, T]
    t_len = c.shape[1]
    # wrong(t) = #past in [0, t) + #not past in [t, T), for t = 0..T
    before = np.concatenate([np.zeros((c.shape[0], 1), np.int32), np.cumsum(past, 1)], 1)
    not_past_after = (t_len - np.arange(t_len + 1))[None, :] - (before[:, -1:] - before)
    wrong = before + not_past_after  # [R, T + 1]
    best = wrong.min(1, keepdims=True)
    ties = wrong == best
    # the middle minimiser; index T means "no crossing within the run"
    idx = np.argmax(np.cumsum(ties, 1) >= (ties.sum(1, keepdims=True) + 1) // 2, axis=1)
    return idx if np.ndim(curves) > 1 else idx[:1]


def crossing_estimate(
    series: Series, weights: np.ndarray, side: int, level: float = 0.95
) -> dict[str, Any]:
    """The change-point crossing step of a series (`change_point`) with a percentile bootstrap
    interval over networks (the linearised resampled curves m + w psi). `point` / `lo` / `hi`
    are steps, None meaning beyond the run (T = number of steps measured); `beyond_share` is the
    share of resamples that never cross."""
    t_len = series.mean.shape[0]
    point = int(change_point(series.mean, side)[0])
    curves = series.mean[None, :] + (weights - 1.0 / weights.shape[1]) @ series.influence.T
    boot = change_point(curves, side)
    q_lo, q_hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")

    def step(v: float) -> int | None:
        return None if int(v) >= t_len else int(v)

    return {
        "point": step(point),
        "lo": step(q_lo),
        "hi": step(q_hi),
        "beyond_share": float((boot >= t_len).mean()),
        "level": level,
        "steps": t_len,
    }


def intervals_overlap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two `crossing_estimate` intervals share a step (None = beyond the run, which two
    intervals both reaching beyond share)."""
    if not a or not b:
        return False
    big = max(int(a.get("steps") or 0), int(b.get("steps") or 0)) + 1

    def lim(v: int | None) -> int:
        return big if v is None else int(v)

    return max(lim(a["lo"]), lim(b["lo"])) <= min(lim(a["hi"]), lim(b["hi"]))


def band_false_alarm(
    n: int,
    steps: int,
    alpha: float,
    *,
    reps: int = 200,
    resamples: int = 2000,
    rho: float = 0.9,
    seed: int = 0,
) -> dict[str, Any]:
    """Family-wise false-alarm rate of the simultaneous band (`band`) replayed on nulls: n
    networks whose per-step values are skewed AR(1) series (centred exponential innovations,
    autocorrelation rho) with true mean 0 at every step; an alarm is a band that decides a sign
    at any step. Returns the observed rate with its exact 95% binomial interval."""
    rng = np.random.default_rng(seed)
    alarms = 0
    for r in range(reps):
        e = rng.exponential(1.0, (steps, n)) - 1.0
        v = np.empty_like(e)
        v[0] = e[0]
        for t in range(1, steps):
            v[t] = rho * v[t - 1] + math.sqrt(1 - rho**2) * e[t]
        w = resample_weights(n, resamples, seed * 1_000_003 + r)
        b = band(mean_series(v), w, alpha)
        alarms += bool(np.any(np.array(b["lo"]) > 0) or np.any(np.array(b["hi"]) < 0))
    ci = stats.binomtest(alarms, reps).proportion_ci(0.95, method="exact")
    return {
        "null": f"skewed AR(1) (centred exponential, rho {rho:g}), mean 0 at every step",
        "n": n,
        "steps": steps,
        "nominal": alpha,
        "reps": reps,
        "alarms": alarms,
        "rate": alarms / reps,
        "rate_ci95": [float(ci.low), float(ci.high)],
    }


def horizon(
    series: Series, weights: np.ndarray, *, alpha: float, decay_fraction: float
) -> dict[str, Any]:
    """The sign at step 0 and when it ends, from bands simultaneous over all steps.

    - `init_sign`: the sign the band decides at step 0 ("undetermined" leaves both horizons None).
    - `reversal`: the first step whose band lies entirely on the other side of 0 than the
      initial sign (the quantity is confidently reversed), None if none does ("beyond T").
    - `decay`: the first step at which m_t - f m_0 is confidently on the other side of 0 than
      m_0 (f = decay_fraction: the quantity has shrunk below a fraction f of its start, or
      reversed), from its own simultaneous band.
    - `crossing`, `decay_point`: the first steps whose point estimates are past 0 and past
      f m_0 (no error control; the first passage of a noisy mean is biased early, more so with
      fewer networks).
    - `reversal_est`, `decay_est`: the horizons C6 reads, the change point of the mean curve
      past 0 and past f m_0 (`change_point`) with a 95% bootstrap interval over networks
      (`crossing_estimate`); they estimate where the true mean crosses, so N and k N agree up to
      their intervals (`intervals_overlap`), while `reversal`/`decay` measure power.
    Error rates: each band covers all its steps' true values together with probability
    ~ 1 - alpha (bootstrap-t of the maximum over steps, `band_multipliers`), so the initial
    sign and a reported horizon are wrong with probability <= ~alpha / 2 each (one side).
    """
    mean, se = series.mean, series.stderr
    c_lo, c_hi = band_multipliers(series, weights, alpha)
    lo, hi = mean - c_lo * se, mean + c_hi * se
    s0 = _sign(lo[0], hi[0])
    out: dict[str, Any] = {
        "init_sign": SIGN_NAMES[s0],
        "positive_steps": int((lo > 0).sum()),
        "negative_steps": int((hi < 0).sum()),
        "init": {"mean": float(mean[0]), "lo": float(lo[0]), "hi": float(hi[0])},
        "final": {"mean": float(mean[-1]), "lo": float(lo[-1]), "hi": float(hi[-1])},
        "reversal": None,
        "decay": None,
        "crossing": None,
        "decay_point": None,
        "looks": len(mean),
        "networks": series.influence.shape[1],
        "c": [c_lo, c_hi],
    }
    # The N-stable horizons (what C6 reads): change points with bootstrap intervals, from the
    # side the band decides at init, else the point estimate's (so N and k N are comparable).
    side = s0 or int(np.sign(mean[0]))
    rel = series.minus(decay_fraction)
    out["reversal_est"] = crossing_estimate(series, weights, side) if side else None
    out["decay_est"] = crossing_estimate(rel, weights, side) if side else None
    if s0 == 0:
        return out
    # Leaving the initial side: s0 = +1 needs hi < 0, s0 = -1 needs lo > 0.
    reversed_ = np.flatnonzero(hi < 0) if s0 > 0 else np.flatnonzero(lo > 0)
    out["reversal"] = int(reversed_[0]) if reversed_.size else None
    crossed = np.flatnonzero(s0 * mean < 0)
    out["crossing"] = int(crossed[0]) if crossed.size else None
    d_lo, d_hi = band_multipliers(rel, weights, alpha)
    if s0 > 0:
        decayed = np.flatnonzero(rel.mean + d_hi * rel.stderr < 0)
    else:
        decayed = np.flatnonzero(rel.mean - d_lo * rel.stderr > 0)
    out["decay"] = int(decayed[0]) if decayed.size else None
    below = np.flatnonzero(s0 * rel.mean < 0)
    out["decay_point"] = int(below[0]) if below.size else None
    return out


# ----------------------------------------------------------------------------- one run


class TrainingDiverged(RuntimeError):
    """A network's loss became NaN/inf; the steps measured so far are kept."""


@dataclass
class History:
    """Per-network values [steps, N] of every statistic (numpy, float64) and per-step floats."""

    per_network: dict[tuple[str, str], np.ndarray]
    scalars: dict[tuple[str, str], list[float]]
    steps: int


def train_early(
    cfg: EarlyConfig,
    *,
    progress: bool = False,
    model: BatchedMLP | None = None,
    data: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> History:
    """Train cfg.total_networks networks for cfg.steps steps, measuring before every update
    (step 0 = init) and the parameter change of every update."""
    cfg = cfg.validate()
    n = cfg.total_networks
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    model = model or BatchedMLP.init(cfg, n, gen)
    data = data or batches(cfg, n, gen, cfg.batch_size)
    # Its own stream, so that the training trajectory does not depend on measure_batch.
    measure_gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 1_000_003)
    measure_data = batches(cfg, n, measure_gen, cfg.measure_batch)
    opts = build_optimizers(cfg, model)
    per_net: dict[tuple[str, str], list[np.ndarray]] = {}
    scalars: dict[tuple[str, str], list[float]] = {}

    def keep(key: tuple[str, str], value: Any) -> None:
        if isinstance(value, torch.Tensor):
            per_net.setdefault(key, []).append(value.detach().double().cpu().numpy())
        else:
            scalars.setdefault(key, []).append(float(value))

    done = 0
    for step in tqdm(range(cfg.steps + 1), disable=not progress, desc=cfg.run_name()):
        xm, ym = next(measure_data)
        fwd_m = model(xm)
        loss_m = network_loss(cfg.loss, fwd_m.out, ym)
        grads_m = torch.autograd.grad(loss_m.sum(), fwd_m.preacts)
        for key, value in per_network_stats(fwd_m, grads_m).items():
            keep(key, value)
        for k, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
            layer = f"layer{k + 1}" if k < len(cfg.widths) else "output"
            keep((layer, "weight_mean"), metrics.weight_mean(w))
            keep((layer, "bias_mean"), metrics.bias_mean(b))
        keep(("output", "measure_loss"), float(loss_m.detach().mean()))
        done = step + 1
        if step == cfg.steps:
            break
        x, y = next(data)
        losses = network_loss(cfg.loss, model(x).out, y)
        if not bool(torch.isfinite(losses).all()):
            raise TrainingDiverged(
                f"{cfg.run_name()}: a network's loss became non-finite at {step}"
            )
        keep(("output", "loss"), float(losses.detach().mean()))
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        # Sum over networks: each network's parameters get exactly its own batch-mean gradient.
        losses.sum().backward()
        model.sync_view_grads()
        before = [
            (w.detach().clone(), b.detach().clone())
            for w, b in zip(model.weights[:-1], model.biases[:-1], strict=True)
        ]
        for opt in opts:
            opt.step()
        for k, (w0, b0) in enumerate(before):
            keep((f"layer{k + 1}", "delta_w"), (model.weights[k].detach() - w0).mean((1, 2)))
            keep((f"layer{k + 1}", "delta_b"), (model.biases[k].detach() - b0).mean((1, 2)))
    return History(
        per_network={k: np.stack(v) for k, v in per_net.items()},
        scalars=scalars,
        steps=done - 1,
    )


def series_of(hist: History, layer: str, quantity: str, n: int | None = None) -> Series:
    """The per-step Series of one quantity from the first n networks (all by default)."""
    pn = {k: v[:, :n] for k, v in hist.per_network.items() if k[0] == layer}
    if quantity in ("g_pos", "g_neg"):
        side = quantity[2:]
        return ratio_series(pn[(layer, f"{side}_num")], pn[(layer, f"{side}_den")])
    return mean_series(pn[(layer, quantity)])


def summarize_run(cfg: EarlyConfig, hist: History) -> dict[str, Any]:
    """Horizons per layer and quantity at N and at check_factor * N networks, Remark A.2's
    per-step covariance and mean terms with simultaneous bands, and what the verdicts need."""
    layers = [f"layer{k + 1}" for k in range(len(cfg.widths))]
    subsets = {"N": cfg.n_networks, "kN": cfg.total_networks}
    weights = {
        name: resample_weights(n, cfg.bootstrap, cfg.seed + 7_000_001)
        for name, n in subsets.items()
    }
    out: dict[str, Any] = {"layers": {}}
    for layer in layers:
        entry: dict[str, Any] = {
            "nonneg_inputs": bool(hist.per_network[(layer, "input_min")].min() >= 0),
            "horizons": {},
        }
        for quantity in HORIZON_QUANTITIES:
            entry["horizons"][quantity] = {
                name: horizon(
                    series_of(hist, layer, quantity, n),
                    weights[name],
                    alpha=cfg.alpha,
                    decay_fraction=cfg.decay_fraction,
                )
                for name, n in subsets.items()
            }
        out["layers"][layer] = entry
    return out


def write_records(path: Path, cfg: EarlyConfig, hist: History) -> None:
    """Per-step tidy rows (all networks): mean and simultaneous band of every quantity."""
    rows: dict[int, dict[tuple[str, str], float]] = {}
    weights = resample_weights(cfg.total_networks, cfg.bootstrap, cfg.seed + 7_000_001)
    for layer in (f"layer{k + 1}" for k in range(len(cfg.widths))):
        for quantity in (*HORIZON_QUANTITIES, "g_neg", "cov_term", "mean_term"):
            b = band(series_of(hist, layer, quantity), weights, cfg.alpha)
            for t, (m, lo, hi) in enumerate(zip(b["mean"], b["lo"], b["hi"], strict=True)):
                row = rows.setdefault(t, {})
                row[(layer, quantity)] = m
                row[(layer, f"{quantity}_lo")] = lo
                row[(layer, f"{quantity}_hi")] = hi
    for (layer, metric), values in hist.scalars.items():
        for t, v in enumerate(values):
            rows.setdefault(t, {})[(layer, metric)] = v
    with RecordWriter(path, run=cfg.run_name()) as writer:
        for t in sorted(rows):
            writer.write(t, rows[t])


def run_one(cfg: EarlyConfig, out_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Train, write out_dir/records.csv and out_dir/result.json (atomically, last), return the
    result. A diverged run writes its status and message instead of horizons."""
    cfg = cfg.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    body: dict[str, Any] = {"schema": SCHEMA_VERSION, "config": asdict(cfg), "run": cfg.run_name()}
    try:
        hist = train_early(cfg, progress=progress)
    except TrainingDiverged as exc:
        body.update(status="diverged", message=str(exc))
        atomic_write_json(out_dir / "result.json", body)
        return body
    write_records(out_dir / "records.csv", cfg, hist)
    body.update(summarize_run(cfg, hist))
    # The per-network values [steps, N] (float32): Remark A.2 pools them over seeds, and any
    # later analysis can rerun without retraining.
    arrays = {f"{k[0]}.{k[1]}": v.astype(np.float32) for k, v in hist.per_network.items()}
    with atomic_open(out_dir / "per_network.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)
    body.update(status="completed", steps=hist.steps, seconds=time.perf_counter() - start)
    atomic_write_json(out_dir / "result.json", body)
    return body


# ------------------------------------------------------------------------------- the grid


def grid(
    base: EarlyConfig,
    *,
    activations: Sequence[str] = SWEEP_ACTIVATIONS,
    losses: Sequence[str] = LOSSES,
    optimizers: Sequence[str] = OPTIMIZERS,
    lrs: dict[str, Sequence[float]] | None = None,
    seeds: Sequence[int] = (0,),
) -> list[EarlyConfig]:
    """One validated config per grid point (activation x loss x optimizer x lr x seed), every
    one checked before the first step runs."""
    lrs = lrs or LR_GRID
    configs = [
        replace(base, activation=a, loss=lo, optimizer=o, lr=lr, seed=s).validate()
        for a, lo, o, s in itertools.product(activations, losses, optimizers, seeds)
        for lr in lrs[o]
    ]
    names = [c.run_name() for c in configs]
    if len(set(names)) != len(names):
        raise ValueError("two grid points share a run name; give distinct activations/lrs")
    return configs


def _completed(out_dir: Path, cfg: EarlyConfig) -> dict[str, Any] | None:
    try:
        body = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if body.get("schema") != SCHEMA_VERSION:
        return None
    if body.get("status") in ("completed", "diverged") and body.get("config") == json.loads(
        json.dumps(asdict(cfg))
    ):
        return body
    return None


def reanalyze(cfg: EarlyConfig, out_dir: Path) -> dict[str, Any] | None:
    """Recompute a finished run's horizons from its stored per-network values (no training),
    so that a changed analysis reaches old runs; returns the updated result (None if absent)."""
    path = out_dir / "per_network.npz"
    try:
        body = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if body.get("status") != "completed" or not path.exists():
        return None
    with np.load(path) as z:
        per_net = {tuple(k.split(".", 1)): z[k].astype(np.float64) for k in z.files}
    steps = next(iter(per_net.values())).shape[0] - 1
    body.update(summarize_run(cfg, History(per_network=per_net, scalars={}, steps=steps)))
    body["schema"] = SCHEMA_VERSION
    atomic_write_json(out_dir / "result.json", body)
    return body


def report(out: Path) -> list[dict[str, Any]]:
    """Re-analyse every finished run under out/runs (whatever grid made it) and rewrite the
    aggregate JSON files over all of them."""
    results = []
    for path in sorted((out / "runs").glob("*/result.json")):
        body = json.loads(path.read_text())
        fields = dict(body["config"])
        fields.update(widths=tuple(fields["widths"]), betas=tuple(fields["betas"]))
        redone = reanalyze(EarlyConfig(**fields), path.parent)
        if redone is not None:
            results.append(redone)
        elif body.get("status") == "diverged":
            results.append(body)
    write_aggregates(out, results)
    return results


def _worker(cfg: EarlyConfig, out_dir: str, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return run_one(cfg, Path(out_dir))


def run_grid(
    configs: Sequence[EarlyConfig],
    out: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every config whose out/runs/NAME/result.json is missing or from another config
    (resume: a killed grid redoes only unfinished runs), then write the aggregate JSON files
    over the finished ones."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    threads = threads or max(1, (multiprocessing.cpu_count() or 1) // jobs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "config.json",
        {
            "configs": [asdict(c) for c in configs],
            "torch_threads": threads,
            "provenance": provenance(configs[0].device if configs else None),
        },
    )
    todo = [c for c in configs if _completed(out / "runs" / c.run_name(), c) is None]
    bar = tqdm(total=len(todo), disable=not progress, desc="early training grid")
    if jobs == 1:
        torch.set_num_threads(threads)
        for cfg in todo:
            run_one(cfg, out / "runs" / cfg.run_name())
            bar.update(1)
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = [
                pool.submit(_worker, c, str(out / "runs" / c.run_name()), threads) for c in todo
            ]
            for fut in cf.as_completed(futures):
                fut.result()
                bar.update(1)
    bar.close()
    results = [_completed(out / "runs" / c.run_name(), c) for c in configs]
    done = [r for r in results if r is not None]
    write_aggregates(out, done)
    return done


# ----------------------------------------------------------------------------- aggregates


def _spread(values: Sequence[int | None], init_signs: Sequence[str], steps: int) -> dict[str, Any]:
    """Median, min and max over the seeds whose initial sign was decided (a horizon beyond the
    run counts as steps + 1); `undefined` counts the seeds without a decided initial sign."""
    xs = [
        steps + 1 if v is None else v
        for v, s in zip(values, init_signs, strict=True)
        if s != "undetermined"
    ]
    return {
        "median": float(np.median(xs)) if xs else None,
        "min": int(min(xs)) if xs else None,
        "max": int(max(xs)) if xs else None,
        "beyond": sum(x == steps + 1 for x in xs),
        "undefined": len(values) - len(xs),
    }


def _cell_key(cfg: dict[str, Any]) -> tuple:
    return (cfg["activation"], cfg["loss"], cfg["optimizer"], cfg["lr"], cfg["data"])


def aggregate_horizons(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per activation x loss x optimizer x lr x layer x quantity, seeds as lists."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("status") == "completed":
            cells.setdefault(_cell_key(r["config"]), []).append(r)
    rows = []
    for key, runs in sorted(cells.items()):
        runs = sorted(runs, key=lambda r: r["config"]["seed"])
        c0 = runs[0]["config"]
        steps = c0["steps"]
        for layer in runs[0]["layers"]:
            for quantity in HORIZON_QUANTITIES:
                row: dict[str, Any] = {
                    "activation": key[0],
                    "loss": key[1],
                    "optimizer": key[2],
                    "lr": key[3],
                    "layer": layer,
                    "quantity": quantity,
                    "nonneg_inputs": all(r["layers"][layer]["nonneg_inputs"] for r in runs),
                    "data": c0["data"],
                    "steps": steps,
                    "n_networks": {
                        "N": c0["n_networks"],
                        "kN": c0["n_networks"] * c0["check_factor"],
                    },
                    "alpha": c0["alpha"],
                    "decay_fraction": c0["decay_fraction"],
                    "seeds": [r["config"]["seed"] for r in runs],
                }
                for subset in ("N", "kN"):
                    hs = [r["layers"][layer]["horizons"][quantity][subset] for r in runs]
                    signs = [h["init_sign"] for h in hs]
                    row[subset] = {
                        "init_sign": [h["init_sign"] for h in hs],
                        "init_mean": [h["init"]["mean"] for h in hs],
                        "final_mean": [h["final"]["mean"] for h in hs],
                        "reversal": [h["reversal"] for h in hs],
                        "decay": [h["decay"] for h in hs],
                        "crossing": [h["crossing"] for h in hs],
                        "decay_point": [h["decay_point"] for h in hs],
                        "decided_steps": [h["positive_steps"] + h["negative_steps"] for h in hs],
                        "reversal_spread": _spread([h["reversal"] for h in hs], signs, steps),
                        "decay_spread": _spread([h["decay"] for h in hs], signs, steps),
                        "reversal_est": [h.get("reversal_est") for h in hs],
                        "decay_est": [h.get("decay_est") for h in hs],
                    }
                for kind in ("reversal", "decay"):
                    # the N-check of the change-point horizons: do N and k N agree, per seed?
                    row[f"{kind}_agree"] = [
                        intervals_overlap(a, b)
                        for a, b in zip(
                            row["N"][f"{kind}_est"], row["kN"][f"{kind}_est"], strict=True
                        )
                    ]
                row["reversal_shift"] = [
                    None if a is None or b is None else b - a
                    for a, b in zip(row["N"]["reversal"], row["kN"]["reversal"], strict=True)
                ]
                rows.append(row)
    return rows


def null_check(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Exact nulls replayed by the grid: for an odd activation (tanh) the sign flip of
    (W_k, b_k, W_{k+1}) maps training trajectories onto trajectories of equal probability and
    flips dl/dp_k, so E[dl/dp], E[db] and E[dW] of every layer are exactly 0 at every step, for
    every optimizer here (SGD and AdamW are elementwise, Muon's iteration is odd). A band that
    decides a sign at any step is a false alarm; each band's nominal rate is alpha."""
    bands = alarms = 0
    alpha = None
    for row in rows:
        if row["activation"] != "tanh" or row["quantity"] not in ("g_all", "delta_b", "delta_w"):
            continue
        alpha = row["alpha"]
        # With check_factor 1 the kN band is the N band: count it once.
        subsets = ("N", "kN") if row["n_networks"]["kN"] > row["n_networks"]["N"] else ("N",)
        for subset in subsets:
            for decided in row[subset]["decided_steps"]:
                bands += 1
                alarms += decided > 0
    if bands == 0:
        return {"bands": 0}
    ci = stats.binomtest(alarms, bands).proportion_ci(0.95, method="exact")
    return {
        "what": "tanh g_all/delta_b/delta_w of every layer, seed and subset: exact-zero means; "
        "a band deciding a sign at any step is a false alarm",
        "bands": bands,
        "alarms": alarms,
        "rate": alarms / bands,
        "rate_ci95": [ci.low, ci.high],
        "nominal": alpha,
    }


def remark_a2(
    out: Path, results: Sequence[dict[str, Any]], alpha: float, resamples: int
) -> list[dict[str, Any]]:
    """Remark A.2 per activation x loss x optimizer x lr x layer: per step, the covariance term
    Cov_x(dl/dp_i, x_j) and the mean term E[dl/dp_i] E[x_j] (mean entries, per network, then
    over networks pooled across seeds) with simultaneous bands, and counts for a verdict."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("status") == "completed":
            cells.setdefault(_cell_key(r["config"]), []).append(r)
    rows = []
    for key, runs in sorted(cells.items()):
        arrays = [np.load(out / "runs" / r["run"] / "per_network.npz") for r in runs]
        for layer in runs[0]["layers"]:
            pooled = {
                q: mean_series(
                    np.concatenate([a[f"{layer}.{q}"].astype(np.float64) for a in arrays], axis=1)
                )
                for q in ("cov_term", "mean_term")
            }
            n = pooled["cov_term"].influence.shape[1]
            weights = resample_weights(n, resamples, 7_000_003)
            cb = band(pooled["cov_term"], weights, alpha)
            mb = band(pooled["mean_term"], weights, alpha)
            cov_m, cov_se = pooled["cov_term"].mean, pooled["cov_term"].stderr
            mt_m = pooled["mean_term"].mean
            signs = [_sign(lo, hi) for lo, hi in zip(cb["lo"], cb["hi"], strict=True)]
            point = np.sign(cov_m)
            ratio = np.abs(cov_m) / np.maximum(np.abs(mt_m), 1e-300)
            z = cov_m / np.maximum(cov_se, 1e-300)
            inside = [t for t, s in enumerate(signs) if s == 0]
            rows.append(
                {
                    "activation": key[0],
                    "loss": key[1],
                    "optimizer": key[2],
                    "lr": key[3],
                    "data": key[4],
                    "layer": layer,
                    "nonneg_inputs": all(r["layers"][layer]["nonneg_inputs"] for r in runs),
                    "networks": n,
                    "seeds": sorted(r["config"]["seed"] for r in runs),
                    "alpha": alpha,
                    "cov_term": cb,
                    "mean_term": mb,
                    "z": z.tolist(),
                    "summary": {
                        "steps": len(signs),
                        "cov_positive_steps": signs.count(1),
                        "cov_negative_steps": signs.count(-1),
                        "cov_undetermined_steps": signs.count(0),
                        "point_sign_changes": int((point[1:] * point[:-1] < 0).sum()),
                        "first_undetermined_step": inside[0] if inside else None,
                        "init_z": float(z[0]),
                        "max_abs_z": float(np.abs(z).max()),
                        "median_abs_ratio_to_mean_term": float(np.median(ratio)),
                        "mean_term_init_sign": SIGN_NAMES[_sign(mb["lo"][0], mb["hi"][0])],
                    },
                }
            )
    return rows


def write_aggregates(out: Path, results: Sequence[dict[str, Any]]) -> None:
    """out/horizons.json (C6 and the persistence figure) and out/remark_a2.json."""
    rows = aggregate_horizons(results)
    alpha = rows[0]["alpha"] if rows else EarlyConfig.alpha
    resamples = results[0]["config"]["bootstrap"] if results else EarlyConfig.bootstrap
    diverged = [r["run"] for r in results if r.get("status") == "diverged"]
    # The bands' family-wise false-alarm rate at the sizes and length actually used.
    sizes = sorted({n for r in rows for n in r["n_networks"].values()})
    calibration = [
        band_false_alarm(n, rows[0]["steps"] + 1, alpha, resamples=resamples) for n in sizes
    ]
    atomic_write_json(
        out / "horizons.json",
        {
            "schema": SCHEMA_VERSION,
            "rows": rows,
            "diverged": diverged,
            "band_false_alarm": calibration,
            "null_check": null_check(rows),
            "provenance": provenance(),
        },
    )
    atomic_write_json(
        out / "remark_a2.json",
        {
            "schema": SCHEMA_VERSION,
            "rows": remark_a2(out, results, alpha, resamples),
            "provenance": provenance(),
        },
    )


# ---------------------------------------------------------------------------------- the CLI


def _fmt(h: int | None, steps: int) -> str:
    return f">{steps}" if h is None else str(h)


# Upper bounds checked before the memory estimate (whose arithmetic they keep small).
MAX_NETWORKS = 2**24
MAX_CHECK_FACTOR = 64


def estimate_memory(cfg: EarlyConfig) -> int:
    """Bytes one run of `cfg` needs, about: parameters with gradients, optimiser state and the
    pre-update copies (5 per parameter); four [networks, batch, width] tensors per layer for
    the training and the measure batch; the per-network history (float64, ~13 quantities per
    layer and step) and the bootstrap weights. An estimate meant to refuse sizes off by orders
    of magnitude (a width of 10^9) before anything is allocated or written."""
    n = cfg.total_networks
    item = 8 if cfg.dtype == "float64" else 4
    sizes = (cfg.d_in, *cfg.widths, cfg.n_out)
    params = n * sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    acts = 4 * n * (cfg.batch_size + cfg.measure_batch) * sum(sizes)
    history = 8 * (cfg.steps + 1) * n * (13 * len(cfg.widths) + 4)
    bootstrap = 8 * cfg.bootstrap * n
    return item * (5 * params + acts) + history + bootstrap


def check_memory(configs: Sequence[EarlyConfig], jobs: int = 1) -> None:
    """ValueError naming the sizes when the largest run (times the runs at once) exceeds the
    device's free memory."""
    from empirics.train.config import available_memory

    if not configs:
        return
    big = max(configs, key=estimate_memory)
    need = estimate_memory(big) * min(jobs, len(configs))
    have = available_memory(big.device)
    if have is not None and need > have:
        raise ValueError(
            f"memory: {big.total_networks} networks of widths {','.join(map(str, big.widths))} "
            f"(d_in {big.d_in}, batch {big.batch_size} + measure {big.measure_batch}, "
            f"{big.steps} steps, {min(jobs, len(configs))} at once) need about "
            f"{need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB are available; lower --widths, "
            "--n-networks, --check-factor, --steps or --jobs"
        )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m empirics.montecarlo.early_training",
        usage="%(prog)s [--sweep] [--seeds S,S] [options]   (--help lists them)",
        description=__doc__,
    )
    d = EarlyConfig()
    ap.add_argument("--activation", action="append", default=None, help="repeatable; NAME=EXPR ok")
    ap.add_argument("--loss", action="append", default=None, choices=LOSSES)
    ap.add_argument("--optimizer", action="append", default=None, choices=OPTIMIZERS)
    ap.add_argument("--lr", type=float, action="append", default=None)
    ap.add_argument("--sweep", action="store_true", help="all combinations (lrs from LR_GRID)")
    ap.add_argument("--seeds", default="0", help=f"comma-separated seeds, each {SEED_RANGE}")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--n-networks", type=int, default=d.n_networks)
    ap.add_argument("--check-factor", type=int, default=d.check_factor)
    ap.add_argument("--d-in", type=int, default=d.d_in)
    ap.add_argument("--widths", default=",".join(map(str, d.widths)))
    ap.add_argument("--n-out", type=int, default=d.n_out)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--measure-batch", type=int, default=d.measure_batch)
    ap.add_argument(
        "--data",
        "--inputs",  # the Monte Carlo CLI's spelling of the input law
        dest="data",
        default=d.data,
        help=f"comma-separated, each one of {', '.join(DATA)}",
    )
    ap.add_argument("--init", default=d.init, choices=INIT_LAWS)
    ap.add_argument(
        "--w-gain", type=float, default=d.w_gain, help="a variance factor: Var W = w_gain / fan_in"
    )
    ap.add_argument("--bias-std", type=float, default=d.bias_std)
    ap.add_argument("--momentum", type=float, default=d.momentum)
    ap.add_argument("--alpha", type=float, default=d.alpha)
    ap.add_argument(
        "--decay-fraction", "--decay-frac", dest="decay_fraction", type=float,
        default=d.decay_fraction,
    )  # fmt: skip
    ap.add_argument("--dtype", default=d.dtype, choices=tuple(DTYPES))
    ap.add_argument("--device", default=d.device)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per job")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--report",
        action="store_true",
        help="re-analyse every finished run under --out, run nothing",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.jobs < 1:
            raise ValueError(f"--jobs: expected an integer >= 1, got {args.jobs}")
        if args.threads is not None and not 1 <= args.threads <= 4096:
            raise ValueError(f"--threads: expected an integer in [1, 4096], got {args.threads}")
        if not 3 <= args.n_networks <= MAX_NETWORKS:
            raise ValueError(
                f"--n-networks: expected an integer in [3, 2**24], got {args.n_networks}"
            )
        if not 1 <= args.check_factor <= MAX_CHECK_FACTOR:
            raise ValueError(
                f"--check-factor: expected an integer in [1, 64], got {args.check_factor}"
            )
        configs = _configs(args)
        if not args.report:
            check_memory(configs, args.jobs)
        elif not (args.out / "runs").is_dir():
            raise ValueError(
                f"--out: {str(args.out)!r} holds no early-training runs (no runs/), so --report "
                "has nothing to re-analyse; run the grid first (without --report)"
            )
    except (registry.RegistryError, ValueError) as exc:
        ap.error(str(exc))  # exits with status 2 and the usage line, before any compute
    if args.report:
        results = report(args.out)
    else:
        results = run_grid(
            configs, args.out, jobs=args.jobs, threads=args.threads, progress=not args.no_progress
        )
    rows = json.loads((args.out / "horizons.json").read_text())["rows"]
    print(f"horizons (bands simultaneous over steps, family-wise {configs[0].alpha:g}), per seed")
    for r in rows:
        if r["quantity"] not in ("g_pos", "delta_b"):
            continue
        steps = r["steps"]
        name = f"{r['activation']:>6} {r['loss']:>13} {r['data']:>10} {r['optimizer']:>5}"
        name += f" lr={r['lr']:<6g}"
        rev = " ".join(_fmt(h, steps) for h in r["N"]["reversal"])
        rev4 = " ".join(_fmt(h, steps) for h in r["kN"]["reversal"])
        dec = " ".join(_fmt(h, steps) for h in r["kN"]["decay"])
        what = f"{r['layer']} {r['quantity']:>7}"
        print(f"{name} {what}: reversal N [{rev}] kN [{rev4}] decay kN [{dec}]")
    print(f"wrote {args.out}/horizons.json, remark_a2.json, runs/*/records.csv")
    return 1 if any(r.get("status") == "diverged" for r in results) else 0


def _configs(args: argparse.Namespace) -> list[EarlyConfig]:
    acts = [registry.parse_activation_spec(a).name for a in (args.activation or [])]
    data = split_list(str(args.data), "--data")
    for v in data:
        if v not in DATA:
            raise ValueError(f"--data: unknown value {v!r}; valid: {', '.join(DATA)}")
    base = EarlyConfig(
        steps=args.steps,
        n_networks=args.n_networks,
        check_factor=args.check_factor,
        d_in=args.d_in,
        widths=tuple(parse_ints(args.widths, "--widths", lo=1)),
        n_out=args.n_out,
        batch_size=args.batch_size,
        measure_batch=args.measure_batch,
        data=data[0],
        init=args.init,
        w_gain=args.w_gain,
        bias_std=args.bias_std,
        momentum=args.momentum,
        alpha=args.alpha,
        decay_fraction=args.decay_fraction,
        dtype=args.dtype,
        device=args.device,
    )
    optimizers = args.optimizer or (list(OPTIMIZERS) if args.sweep else ["sgd"])
    lrs = (
        {o: tuple(args.lr) for o in optimizers}
        if args.lr
        else {o: LR_GRID[o] if args.sweep else (LR_GRID[o][0],) for o in optimizers}
    )
    return [
        cfg
        for v in data
        for cfg in grid(
            replace(base, data=v),
            activations=acts or (list(SWEEP_ACTIVATIONS) if args.sweep else ["relu"]),
            losses=args.loss or (list(LOSSES) if args.sweep else ["mse"]),
            optimizers=optimizers,
            lrs=lrs,
            seeds=parse_seeds(args.seeds),
        )
    ]


if __name__ == "__main__":
    sys.exit(main())
