"""Remark A.2 at init: theory.remark_a2 against its own identities, against numpy sampling of the
input law, and against the early-training statistic on random networks (empirics.ledger.rows)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from empirics.ledger.rows import _remark_a2_terms, remark_a2_rows
from theory.remark_a2 import (
    CovarianceNet,
    derive_terms,
    halfnormal_terms,
    predict_covariance_init,
    predict_covariance_ratio,
    verify_identities,
)

# Comparisons against sampling use |z| <= 4.5 standard errors: a false alarm with probability
# about 7e-6 per comparison under the normal approximation (means of >= 1024 i.i.d. units).
Z = 4.5


def test_every_step_of_the_derivation_checks() -> None:
    checks = verify_identities()
    assert checks and all(checks.values()), {k: v for k, v in checks.items() if not v}


@pytest.mark.parametrize("d", [4, 32])
def test_halfnormal_ratio_matches_sampled_inputs(d: int) -> None:
    # Cov(|x|, x_1) / (E|x| E x_1) by the delta method over 400k sampled half-normal vectors:
    # the closed form d Gamma(d/2)^2 / (2 Gamma((d+1)/2)^2) - 1 must lie within Z SE of it.
    rng = np.random.default_rng(d)
    x = np.abs(rng.standard_normal((400_000, d)))
    r, x1 = np.linalg.norm(x, axis=1), x[:, 0]
    mr, m1 = r.mean(), x1.mean()
    est = (r * x1).mean() / (mr * m1) - 1
    # influence of f(E[r x1], E r, E x1) = E[r x1] / (E r E x1) - 1
    infl = (r * x1 - (r * x1).mean()) / (mr * m1) - (est + 1) * ((r - mr) / mr + (x1 - m1) / m1)
    se = infl.std(ddof=1) / math.sqrt(len(r))
    theory = float(halfnormal_terms(d)["ratio"])
    assert abs(est - theory) < Z * se, (est, theory, se)
    # and the ratio is far from 0 at this n (the comparison has power): at d = 32 it is 1.57 %,
    # about 30 SE
    assert theory > 10 * se


def test_ratio_at_the_issue_sizes() -> None:
    # Var(R)/E[R]^2 for R ~ chi_d behaves as 1/(2d - 1) + O(d^-3): 1.57 % at 32, 0.064 % at 784.
    for d in (32, 784):
        ratio = float(halfnormal_terms(d)["ratio"])
        assert ratio > 0
        assert abs(ratio - 1 / (2 * d - 1)) < 2 / d**2


def test_predictions_signs_and_methods() -> None:
    half = CovarianceNet(inputs="halfnormal")
    assert predict_covariance_init(half).sign == "positive"
    assert predict_covariance_ratio(half).sign == "positive"
    sym = predict_covariance_init(CovarianceNet(inputs="gaussian"))
    assert (sym.sign, sym.value) == ("zero", 0)
    uni = predict_covariance_init(CovarianceNet(inputs="uniform"))
    assert (uni.sign, uni.method, uni.value) == ("positive", "argument", None)
    # alpha of the early-training net: K s_3^2 n_2 s_2^2 / 2 = 10 / 128
    assert derive_terms(half)["alpha"] == sp.Rational(10, 128)


@pytest.mark.parametrize("kwargs", [{"inputs": "cauchy"}, {"widths": (8, 8, 8)}, {"widths": ()}])
def test_bad_network_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CovarianceNet(**kwargs)
    with pytest.raises(ValueError):
        predict_covariance_ratio(CovarianceNet(inputs="gaussian"))


def test_covariance_term_of_random_networks_matches_theory() -> None:
    # The early-training statistic on 1024 fresh networks at init: the covariance term's mean is
    # the theorem's alpha s Cov(|x|, x_j)/sqrt(2 pi) within Z SE, and its mean/ratio to the mean
    # term too; the sign-symmetric control gives 0.
    gen = torch.Generator().manual_seed(11)
    cov, mean = _remark_a2_terms("halfnormal", 1024, gen)
    terms = derive_terms(CovarianceNet())
    se = float(cov.std()) / math.sqrt(cov.numel())
    assert abs(float(cov.mean()) - float(terms["cov"])) < Z * se
    assert float(terms["cov"]) > 3 * se  # power: at n = 1024 the term is about 40 SE from 0
    se_m = float(mean.std()) / math.sqrt(mean.numel())
    assert abs(float(mean.mean()) - float(terms["mean"])) < Z * se_m
    cov0, _ = _remark_a2_terms("gaussian", 1024, gen)
    assert abs(float(cov0.mean())) < Z * float(cov0.std()) / math.sqrt(1024)


def test_ledger_rows_carry_theory_and_a_value_check() -> None:
    rows = {e.id: (e, run) for e, run in remark_a2_rows()}
    assert set(rows) == {
        "C5.covariance.init",
        "C5.covariance.ratio",
        "C5.covariance.init.symmetric",
    }
    entry, _ = rows["C5.covariance.ratio"]
    assert entry.symbolic["value"] == pytest.approx(float(halfnormal_terms(32)["ratio"]))
    assert entry.scope == "extension" and entry.verdict == "confirmed"
