"""Horizons of early training: per-step series over networks, simultaneous bands and crossings.

Per network n and step t, each statistic is one number; the networks are i.i.d., so every mean
over networks has a CLT standard error over them (samples inside one network share its weights
and are not independent). `horizon` reads when a sign that holds at init ends, from bands
simultaneous over the steps (`band_multipliers`) and change points (`crossing_estimate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


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


def band_sign(lo: float, hi: float) -> int:
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
    s0 = band_sign(lo[0], hi[0])
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
