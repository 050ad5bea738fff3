"""Monte Carlo estimates and the one-look sign test, torch-free: `Estimate` (mean, standard
error, interval, sign), `RatioAccumulator` (a ratio of sums with its delta-method error) and
`SignTest` (a sign decided at a stated false-sign rate, or `undetermined`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

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
