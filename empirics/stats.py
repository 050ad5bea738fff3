"""The project's statistics, torch-free (numpy, scipy): Monte Carlo estimates and the sign test
(`Estimate`, `RatioAccumulator`, `SignTest`); over seeds t intervals, paired tests and Holm
(`mean_ci`, `paired`, `sign_flip_p`, `holm`); the hinge, critical-sparsity and nested F fits.
Library module (no CLI); `python -m empirics.montecarlo --help` runs the estimators that use it.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

CI_LEVEL = 0.95
SIGNS = ("positive", "nonnegative", "zero", "nonpositive", "negative", "undetermined")


@dataclass
class Estimate:
    """A Monte Carlo estimate: mean, standard error, n (independent networks), confidence interval.

    `n_samples` counts the scalar gradient samples behind the mean (they are correlated within a
    network, which is why `n` and the standard error are taken over networks). `sign` comes from
    the sign test (`undetermined` when the interval contains 0: the theory's word for "not
    decided"); `confidence` is the simultaneous level of the interval over all looks the test
    was allowed.
    """

    mean: float
    stderr: float
    n: int
    ci: tuple[float, float]
    sign: str
    confidence: float
    n_samples: int = 0
    looks: int = 1
    method: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = [float(self.ci[0]), float(self.ci[1])]
        return out

    def ledger_dict(self) -> dict[str, Any]:
        """The five fields the claims ledger stores."""
        return {
            "mean": self.mean,
            "stderr": self.stderr,
            "n": self.n,
            "ci": [float(self.ci[0]), float(self.ci[1])],
            "sign": self.sign,
        }


class RatioAccumulator:
    """Streams per-network sums (num_n, den_n) and estimates R = E[num] / E[den].

    A conditional mean E[g | p in A] is the ratio of E[sum of g over A] to E[count of A] per
    network; networks are i.i.d., so the delta method over networks gives the standard error
    (samples inside one network share its weights and are not independent). A plain mean is the
    special case of a constant denominator. Sums are kept in float64.

    With a control variate c_n of exactly known mean 0 (passed as `control`), the estimate is
    R = (sum num - beta sum c) / sum den with beta making the residuals num - beta c - R den
    orthogonal to c (the regression estimator; both solved jointly, a 2 x 2 linear system); its
    variance is that of those residuals.
    beta is fitted on the same networks, which biases R by O(1/n), far below its standard error
    at the n >= 64 the sequential test starts from.
    """

    def __init__(self) -> None:
        self.n = 0
        self.s_num = 0.0
        self.s_den = 0.0
        self.s_nn = 0.0
        self.s_dd = 0.0
        self.s_nd = 0.0
        self.nonzero = False  # any sample of the numerator not exactly 0
        self.s_c = self.s_cc = self.s_nc = self.s_dc = 0.0
        self.has_control = False

    def add(
        self,
        num: Any,
        den: Any,
        *,
        any_nonzero: bool | None = None,
        control: Any | None = None,
    ) -> None:
        """One batch of per-network sums (torch tensors; held in float64)."""
        num = num.detach().double().reshape(-1)
        den = den.detach().double().reshape(-1)
        if num.shape != den.shape:
            raise ValueError(f"num and den differ in shape: {tuple(num.shape)} vs {den.shape}")
        self.n += num.numel()
        self.s_num += float(num.sum())
        self.s_den += float(den.sum())
        self.s_nn += float((num * num).sum())
        self.s_dd += float((den * den).sum())
        self.s_nd += float((num * den).sum())
        self.nonzero = self.nonzero or bool(
            (num != 0).any() if any_nonzero is None else any_nonzero
        )
        if control is not None:
            c = control.detach().double().reshape(-1)
            self.has_control = True
            self.s_c += float(c.sum())
            self.s_cc += float((c * c).sum())
            self.s_nc += float((num * c).sum())
            self.s_dc += float((den * c).sum())

    def _solve(self) -> tuple[float, float]:
        """(R, beta) with sum(num - beta c - R den) = 0 and sum((num - beta c - R den) c) = 0."""
        if self.s_den <= 0:
            return math.nan, 0.0
        det = self.s_den * self.s_cc - self.s_c * self.s_dc
        if not self.has_control or self.s_cc <= 0 or det == 0:
            return self.s_num / self.s_den, 0.0
        r = (self.s_num * self.s_cc - self.s_c * self.s_nc) / det
        beta = (self.s_den * self.s_nc - self.s_dc * self.s_num) / det
        return r, beta

    @property
    def beta(self) -> float:
        """Control-variate coefficient (0 without a control)."""
        return self._solve()[1]

    @property
    def mean(self) -> float:
        return self._solve()[0]

    @property
    def stderr(self) -> float:
        if self.n < 2 or self.s_den <= 0:
            return math.nan
        r, b = self._solve()
        # sum_n (num_n - b c_n - r den_n)^2, expanded so that only running sums are needed.
        ss = (
            self.s_nn
            + b * b * self.s_cc
            + r * r * self.s_dd
            - 2 * b * self.s_nc
            - 2 * r * self.s_nd
            + 2 * b * r * self.s_dc
        )
        ss = max(ss, 0.0)
        return math.sqrt(ss / self.dof / self.n) / (self.s_den / self.n)

    @property
    def dof(self) -> int:
        """Degrees of freedom of the residual variance (one more lost to a fitted control)."""
        return max(self.n - 1 - int(self.has_control), 1)

    def estimate(self, z: float, confidence: float, **kw: Any) -> Estimate:
        """The estimate with interval mean ± z·SE and the sign that interval decides."""
        mean, se = self.mean, self.stderr
        if not self.nonzero and self.s_den > 0:
            # Every sample is exactly 0 (e.g. relu' on p < 0): the mean is 0 with no error.
            return Estimate(0.0, 0.0, self.n, (0.0, 0.0), "zero", confidence, **kw)
        if not (math.isfinite(mean) and math.isfinite(se)):
            return Estimate(
                mean, se, self.n, (math.nan, math.nan), "undetermined", confidence, **kw
            )
        lo, hi = mean - z * se, mean + z * se
        sign = "positive" if lo > 0 else "negative" if hi < 0 else "undetermined"
        return Estimate(mean, se, self.n, (lo, hi), sign, confidence, **kw)


@dataclass(frozen=True)
class SignTest:
    """Sign decision at a stated false-sign rate, on a sample size fixed by the configuration.

    Method: at each of `max_looks` looks (the schedule N / 2^(L-1), ..., N of
    `estimators.look_sizes`; the default is one look, a fixed-sample test) form the interval
    mean ± q·SE with q the 1 - alpha / (2 max_looks) quantile of Student t with the standard
    error's degrees of freedom (n - 1, or n - 2 with a fitted control variate), and declare
    `positive` (`negative`) as soon as the interval excludes 0 from below (above).
    Guarantee: by the union bound over looks, if the true mean is 0 the probability of declaring
    any sign is at most alpha, and if it is > 0 (< 0) the probability of declaring the opposite
    sign is at most alpha / 2; all intervals reported hold simultaneously with probability
    >= 1 - alpha. Each look relies on the normal approximation of a mean of n i.i.d. units. The
    per-network statistics here are skewed and heavy-tailed (C1's off-diagonal: skewness about 2,
    excess kurtosis about 8), so at small n the one-sided tail of t is far off; to first order in
    1/sqrt(n) the skew moves probability from one tail to the other and the two-sided rate holds.
    `make calibrate` replays >= 2000 nulls of every null statistic the ledger uses at the ledger's
    n and prints the observed rates (two-sided and per side) beside alpha.
    """

    alpha: float = 1e-3
    max_looks: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.max_looks < 1:
            raise ValueError(f"max_looks must be >= 1, got {self.max_looks}")

    @property
    def z(self) -> float:
        """The large-sample per-look quantile."""
        return float(stats.norm.isf(self.alpha / (2 * self.max_looks)))

    def quantile(self, dof: int) -> float:
        """Per-look quantile for a standard error with `dof` degrees of freedom (Student t, which
        tends to `z`; few networks, or a fitted control variate, would otherwise make the
        interval too narrow)."""
        return float(stats.t.isf(self.alpha / (2 * self.max_looks), max(dof, 1)))

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    def describe(self) -> str:
        looks = "one look" if self.max_looks == 1 else f"{self.max_looks} looks, Bonferroni"
        return f"Student-t sign test, alpha={self.alpha:.3g} two-sided, {looks}"


def fixed_interval(acc: RatioAccumulator, confidence: float = 0.99, **kw: Any) -> Estimate:
    """A single-look estimate at a two-sided `confidence` (no sequential spending)."""
    z = float(stats.norm.isf((1 - confidence) / 2))
    return acc.estimate(z, confidence, **kw)


def critical_sparsity(
    sparsity: Sequence[float], relative: Sequence[float], threshold: float
) -> dict[str, Any]:
    """The largest sparsity that keeps relative performance >= `threshold` (e.g. 0.99 of the
    dense baseline), read off one measured curve (points sorted by sparsity).

    Walking up the sparsity axis, the curve keeps the threshold until the first point below it;
    the critical sparsity is where the straight line between that point and the one before
    crosses the threshold (`bracketed`: grid points on both sides). When every point keeps it the
    answer is censored above (`>=` the largest sparsity measured); when the first point already
    falls below, censored below (`<` the smallest). No point is extrapolated past the grid."""
    pts = sorted(
        (float(s), float(r))
        for s, r in zip(sparsity, relative, strict=True)
        if math.isfinite(s) and math.isfinite(r)
    )
    if not pts:
        return {"value": None, "censored": None, "bracket": None, "threshold": threshold}
    below = next((k for k, (_, r) in enumerate(pts) if r < threshold), None)
    if below is None:
        return {
            "value": pts[-1][0],
            "censored": "above",
            "bracket": [pts[-1][0], None],
            "threshold": threshold,
        }
    if below == 0:
        return {
            "value": pts[0][0],
            "censored": "below",
            "bracket": [None, pts[0][0]],
            "threshold": threshold,
        }
    (s0, r0), (s1, r1) = pts[below - 1], pts[below]
    # r0 >= threshold > r1: the crossing lies in [s0, s1); equal sparsities keep s0
    value = s0 if s1 == s0 else s0 + (r0 - threshold) / (r0 - r1) * (s1 - s0)
    return {"value": value, "censored": None, "bracket": [s0, s1], "threshold": threshold}


# ----------------------------------------------------------------- over seeds and fits


def mean_ci(values: Iterable[float], level: float = CI_LEVEL) -> dict[str, Any]:
    """Mean over seeds with a Student-t interval (n, sd, se, ci, values)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = int(v.size)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "se": None, "ci": [None, None], "values": []}
    mean = float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "se": None, "ci": [None, None], "values": [mean]}
    sd = float(v.std(ddof=1))
    se = sd / math.sqrt(n)
    h = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "se": se,
        "ci": [mean - h, mean + h],
        "values": v.tolist(),
    }


def sign_flip_p(diffs: Sequence[float]) -> float | None:
    """Exact two-sided sign-flip permutation p-value of mean(diffs) = 0 (all 2^n flips; n <= 16).

    Its smallest possible value is 2/2^n (0.0625 at n = 5): reported beside the t-test because it
    needs no normality, not as the decision."""
    d = np.asarray(diffs, dtype=float)
    n = d.size
    if n == 0 or n > 16:
        return None
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    null = np.abs((signs * d).mean(axis=1))
    return float(np.mean(null >= observed - 1e-12 * max(1.0, observed)))


def paired(
    a: Mapping[int, float], b: Mapping[int, float], level: float = CI_LEVEL
) -> dict[str, Any]:
    """a − b paired by seed (same seed = same init and data order): mean difference, t interval,
    two-sided paired t p-value, exact sign-flip p-value, and the difference the test detects with
    80 % power at this n and the observed spread (two-sided α = 1 − level)."""
    seeds = sorted(set(a) & set(b))
    diffs = [
        a[s] - b[s]
        for s in seeds
        if a[s] is not None and b[s] is not None and math.isfinite(a[s] - b[s])
    ]
    out: dict[str, Any] = {"test": "paired t (two-sided)", "seeds": seeds, **mean_ci(diffs, level)}
    n = len(diffs)
    out["p_t"] = out["p_signflip"] = out["mde80"] = None
    if n >= 2:
        sd = out["sd"]
        if sd == 0:
            out["p_t"] = 0.0 if out["mean"] != 0 else 1.0
        else:
            out["p_t"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
        out["p_signflip"] = sign_flip_p(diffs)
        alpha = 1 - level
        t_a, t_b = stats.t.ppf(1 - alpha / 2, n - 1), stats.t.ppf(0.8, n - 1)
        out["mde80"] = float((t_a + t_b) * sd / math.sqrt(n)) if sd is not None else None
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (family-wise error over the given comparisons)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])  # type: ignore[arg-type, return-value]
    adj: list[float | None] = [None] * len(pvalues)
    running = 0.0
    m = len(order)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))  # type: ignore[arg-type]
        adj[i] = running
    return adj


def hinge_fit(x: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None) -> dict[str, float]:
    """Segmented regression y = a + b·x + c·max(0, x − k) (continuous, one knee k) by least
    squares over a grid of knees (all knees solved at once); also the straight line (c = 0)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if grid is None:
        grid = np.linspace(np.quantile(x, 0.05), np.quantile(x, 0.95), 181)
    grid = np.asarray(grid, float)
    hinge = np.maximum(0.0, x[None, :] - grid[:, None])  # (K, n)
    design = np.stack([np.ones_like(hinge), np.broadcast_to(x, hinge.shape), hinge], axis=-1)
    coef = np.linalg.pinv(design) @ y  # (K, 3): least squares per knee (pinv: a knee past
    sse = np.sum((y - np.einsum("knp,kp->kn", design, coef)) ** 2, axis=1)  # every x is fine)
    best_k = int(np.argmin(sse))
    a, b, c = (float(v) for v in coef[best_k])
    line = np.column_stack([np.ones_like(x), x])
    lcoef, *_ = np.linalg.lstsq(line, y, rcond=None)
    return {
        "knee": float(grid[best_k]),
        "a": a,
        "b": b,
        "c": c,
        "sse": float(sse[best_k]),
        "sse_line": float(np.sum((y - line @ lcoef) ** 2)),
        "slope_before": b,
        "slope_after": b + c,
    }


def cliff_analysis(
    x: Sequence[float],
    y: Sequence[float],
    *,
    groups: Sequence[Any] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Hinge fit of relative performance against measured sparsity, a percentile-bootstrap CI on
    the knee, an F-test of the knee against a straight line, and the fitted performance at
    50/70/90 % sparsity. With `groups` (the configuration of each point) the bootstrap resamples
    whole configurations, all seeds of one together (a cluster bootstrap: seeds of one
    configuration share its sparsity level and are not independent draws of it); without, it
    resamples points."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    n = xa.size
    if n < 6:
        return {"n": n, "fit": None}
    grid = np.linspace(max(0.0, xa.min()), min(1.0, xa.max()), 121)
    fit = hinge_fit(xa, ya, grid)
    rng = np.random.default_rng(seed)
    if groups is None:
        clusters = [np.array([k]) for k in range(n)]
    else:
        index: dict[Any, list[int]] = defaultdict(list)
        for k, g in enumerate(groups):
            index[g].append(k)
        clusters = [np.array(v) for _, v in sorted(index.items(), key=lambda kv: str(kv[0]))]
    knees, drops = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(clusters), len(clusters))
        i = np.concatenate([clusters[c] for c in pick])
        if np.unique(xa[i]).size < 4:
            continue
        f = hinge_fit(xa[i], ya[i], grid)
        knees.append(f["knee"])
        drops.append(f["slope_after"] - f["slope_before"])
    # F-test: 4 parameters (with the knee) against 2; the knee's grid search makes this test
    # anti-conservative (Davies), so its p-value is a screen, the bootstrap CI the evidence.
    df2 = n - 4
    f_stat = ((fit["sse_line"] - fit["sse"]) / 2) / (fit["sse"] / df2) if fit["sse"] > 0 else None
    p_f = float(stats.f.sf(f_stat, 2, df2)) if f_stat is not None and df2 > 0 else None

    def at(s: float) -> float:
        return fit["a"] + fit["b"] * s + fit["c"] * max(0.0, s - fit["knee"])

    return {
        "n": n,
        "fit": fit,
        "knee_ci": [float(np.quantile(knees, 0.025)), float(np.quantile(knees, 0.975))]
        if knees
        else [None, None],
        "slope_change_ci": [float(np.quantile(drops, 0.025)), float(np.quantile(drops, 0.975))]
        if drops
        else [None, None],
        "bootstrap": {
            "replicates": len(knees),
            "seed": seed,
            "method": "percentile",
            "resampled": "points" if groups is None else f"{len(clusters)} configurations",
        },
        "f_test_vs_line": {"F": f_stat, "p": p_f, "df": [2, df2]},
        "fitted": {f"{s:.2f}": at(s) for s in (0.0, 0.5, 0.7, 0.9, 0.95)},
    }


# Shares of the dense baseline's performance whose critical sparsity C10 reports (the
# literature's 99 %, and 95 %).
C10_THRESHOLDS = (0.99, 0.95)


def c10_critical(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per architecture x control, per seed: the critical sparsity at each of C10_THRESHOLDS
    (`critical_sparsity` on that seed's curve of relative performance against measured
    sparsity), with a t interval over seeds when every seed's value is bracketed by grid points;
    for the uncontrolled baseline ("none"), its emergent sparsity (performance 1 by definition)."""

    out: dict[str, Any] = {}
    for arch in sorted({p["arch"] for p in points}):
        mine = [p for p in points if p["arch"] == arch and p["activation"] == "relu"]
        out[arch] = {}
        for control in sorted({p["control"] for p in mine}):
            sel = [p for p in mine if p["control"] == control]
            seeds = sorted({p["seed"] for p in sel})
            if control == "none":
                out[arch][control] = {"emergent": mean_ci(p["measured_sparsity"] for p in sel)}
                continue
            cell: dict[str, Any] = {}
            for q in C10_THRESHOLDS:
                per_seed = {}
                for seed in seeds:
                    curve = [p for p in sel if p["seed"] == seed]
                    per_seed[seed] = critical_sparsity(
                        [p["measured_sparsity"] for p in curve], [p["relative"] for p in curve], q
                    )
                values = [c["value"] for c in per_seed.values() if c["censored"] is None]
                censored = [c["censored"] for c in per_seed.values() if c["censored"]]
                cell[f"{q:g}"] = {
                    "per_seed": per_seed,
                    "bracketed": len(values),
                    "censored_above": censored.count("above"),
                    "censored_below": censored.count("below"),
                    **(mean_ci(values) if not censored else {"n": len(per_seed)}),
                }
            out[arch][control] = cell
    return out


def nested_f_p(y: np.ndarray, small: np.ndarray, big: np.ndarray) -> float | None:
    """p-value of the F-test of the least-squares fit on design `big` against `small` (its
    first columns): do the extra columns explain the residuals? None without a residual degree
    of freedom; a perfect larger fit gives 0 (1 when the smaller fit is perfect too)."""
    dof = len(y) - big.shape[1]
    if dof < 1:
        return None
    b1, *_ = np.linalg.lstsq(small, y, rcond=None)
    b2, *_ = np.linalg.lstsq(big, y, rcond=None)
    r1, r2 = y - small @ b1, y - big @ b2
    rss1, rss2 = float(r1 @ r1), float(r2 @ r2)
    if rss2 <= 0:
        return 0.0 if rss1 > 0 else 1.0
    extra = big.shape[1] - small.shape[1]
    return float(stats.f.sf(((rss1 - rss2) / extra) / (rss2 / dof), extra, dof))
