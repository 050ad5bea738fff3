"""Statistics over seeds: Student-t intervals (`mean_ci`), paired differences between two
settings (`paired`, the exact sign-flip test `sign_flip_p`) and Holm's step-down correction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from empirics.stats.estimates import CI_LEVEL


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
