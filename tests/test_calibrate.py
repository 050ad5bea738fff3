"""`make calibrate` (empirics/ledger/calibrate.py): replayed nulls give false-sign rates within
binomial bounds of nominal, a statistic that is not null is flagged, and the per-row rate it
judges is the ledger's own Bonferroni share.

Run: `.venv/bin/python -m pytest -q tests/test_calibrate.py`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from empirics.ledger import calibrate, verify
from empirics.ledger.rows import LEDGER_ALPHA
from theory.registry import get_activation

REPLAYS = 400  # at 64 networks a replay of the C5 group costs ~0.04 s on one core


def _group(name: str) -> calibrate.NullGroup:
    return next(g for g in calibrate.null_groups() if g.name == name)


def test_clopper_pearson_is_the_exact_binomial_interval():
    for k, n in ((0, 50), (3, 400), (37, 400), (400, 400)):
        exact = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert calibrate.clopper_pearson(k, n) == pytest.approx((exact.low, exact.high))


def test_rates_count_declarations_at_the_t_quantile():
    dof = 15
    t = stats.t.rvs(dof, size=4000, random_state=np.random.default_rng(0))
    r = calibrate.rates(t, dof, 0.05)
    q = stats.t.isf(0.025, dof)
    assert r["declared"] == int((np.abs(t) > q).sum())
    assert r["positive"] + r["negative"] == pytest.approx(r["rate"])
    assert r["ci"][0] <= 0.05 <= r["ci"][1] and r["ok"]
    shifted = calibrate.rates(t + 1.0, dof, 0.05)  # not a null: far above nominal
    assert shifted["ci"][0] > 0.05 and not shifted["ok"]


def test_replayed_null_rates_are_within_binomial_bounds_of_nominal():
    """An odd sigma's first step (tanh, MSE): E[delta b] = E[delta W] = 0 exactly. Replayed at a
    small size, the observed rate of declaring a sign holds its nominal level within the exact
    binomial interval, at 0.05 and 0.01."""
    group = replace(_group("C5 b and W, odd sigma (tanh, mse)"), units=64)
    got = calibrate.replay(group, REPLAYS, seed=0)
    assert got["units"] == 64 and got["replays"] == REPLAYS
    assert set(got["t"]) == {"C5.first_step.b [tanh/mse]", "C5.first_step.W [tanh/mse]"}
    for name, t in got["t"].items():
        assert len(t) == REPLAYS and got["dof"][name] == 63
        for alpha in (0.05, 0.01):
            r = calibrate.rates(t, got["dof"][name], alpha)
            assert r["ci"][0] <= alpha <= r["ci"][1], (name, alpha, r)
    text, ok = calibrate.report({group.name: got}, 0.01)
    assert ok and "ABOVE NOMINAL" not in text


def test_a_statistic_that_is_not_null_is_reported_above_nominal():
    """ReLU's bias step with non-negative inputs is negative (C5): replayed as if it were a null,
    calibrate must say its rate is above nominal, so a passing report means something."""
    run = calibrate._first_step(get_activation("relu"), "mse", True, ("b",))
    group = calibrate.NullGroup("relu bias step, x >= 0", ("C5.first_step.b.nonneg",), 64, run)
    got = calibrate.replay(group, 40, seed=0)
    text, ok = calibrate.report({group.name: got}, 0.01)
    assert not ok and "ABOVE NOMINAL" in text


def test_the_judged_rate_is_the_ledgers_bonferroni_share():
    """`ledger_rows` counts exactly the rows `make verify` estimates, so calibrate judges each
    statistic at the per-row rate the ledger uses."""
    plan = verify.plan_ledger((), None, True, alpha=LEDGER_ALPHA)
    assert calibrate.ledger_rows() == len(plan.runnable)
    assert plan.alpha_row == pytest.approx(LEDGER_ALPHA / calibrate.ledger_rows())
