"""The issue-9 ledger rows (empirics/ledger/depth.py): each row draws from the ledger's own
stream at the ledger's per-row alpha, rows are named once, their networks are the named presets,
and a value row's theory lies inside its own Monte Carlo interval.

Run: `.venv/bin/python -m pytest -q tests/test_ledger_depth.py`.
"""

from __future__ import annotations

import pytest
import torch

from empirics.ledger import depth, verify
from empirics.ledger.row_verdicts import VALUE_IDS
from empirics.ledger.rows import LEDGER_ALPHA, attach_montecarlo, row_seed
from empirics.montecarlo import presets
from theory.depth import alpha as alpha_l


def _key(e) -> tuple:
    return (e.id, e.activation, e.loss)


def _entry(entry_id: str, activation: str | None = None, loss: str | None = None):
    return next(e for e in depth.depth_entries() if _key(e) == (entry_id, activation, loss))


def test_rows_are_named_once_and_estimated_where_theory_is_not_exact():
    entries = depth.depth_entries()
    keys = [_key(e) for e in entries]
    assert len(keys) == len(set(keys))
    exact = [e for e in entries if not depth.runs_montecarlo(e)]
    # the two-point counterexamples are enumerated in rationals: no Monte Carlo column
    assert {e.id for e in exact} == {"C1.init_skew_right.offdiag", "C1.init_skew_left.offdiag"}
    assert all(e.symbolic["method"] == "argument" for e in exact)
    assert all(depth.depth_montecarlo(e, generator=None, alpha=0.01) is None for e in exact)
    # every value row of the verdict rule whose sign theory decides has a number to compare
    for e in entries:
        if e.id in VALUE_IDS and e.symbolic["sign"] != "undetermined":
            assert isinstance(e.symbolic["value"], float), e.id


def test_depth_rows_draw_from_the_ledgers_streams(monkeypatch):
    """verify fills each depth row from a generator seeded by `row_seed(seed, row)` at
    alpha / (rows estimated); the streams differ between rows and between seeds."""
    calls: dict[tuple, tuple[int, float]] = {}

    def record(entry, *, generator, alpha):
        calls[_key(entry)] = (generator.initial_seed(), alpha)
        return None

    monkeypatch.setattr(depth, "depth_montecarlo", record)
    plan = verify.plan_ledger((), ["relu"], True, alpha=LEDGER_ALPHA, extensions=True)
    monkeypatch.setattr(plan.mc_mod, "montecarlo_for_entry", lambda *a, **k: None)
    verify.run_montecarlo(plan, seed=5, threads=1)
    estimated = [e for e in depth.depth_entries() if depth.runs_montecarlo(e)]
    assert set(calls) == {_key(e) for e in estimated}
    assert plan.alpha_row == pytest.approx(LEDGER_ALPHA / len(plan.runnable))
    for e in estimated:
        assert calls[_key(e)] == (row_seed(5, e), plan.alpha_row)
    seeds = [row_seed(5, e) for e in estimated]
    assert len(set(seeds)) == len(seeds)
    assert all(row_seed(6, e) != s for e, s in zip(estimated, seeds, strict=True))


def test_networks_are_the_named_presets():
    """A row's `network` is the preset it is estimated on (sizes, variances, init law)."""
    for depth_ in (3, 4, 5):
        cfg = presets.c1_gated(depth_ - 2)
        net = _entry(f"C1.depth{depth_}.cond_diag").network
        assert net["widths"] == list(cfg.widths) and len(net["widths"]) == depth_ - 1
        assert net["weight_var"] == [2.0 / n for n in (cfg.d_in, *cfg.widths)]
        assert net["bias_std"] == cfg.bias_std > 0
        relu = _entry(f"C2.depth{depth_}.g_pos", "relu", "mse").network
        assert relu["inputs"] == "sphere" and relu["widths"] == [64] * (depth_ - 1)
    for init in depth.INIT_LAWS:
        assert _entry(f"C1.init_{init}.cond_offdiag").network["init"] == init
    # the theory's alpha_l reads the same network: ReLU gating, P(h != 0) < 1, alpha below 1
    for m in range(3):
        a = float(alpha_l(presets.depth_net(presets.c1_gated(m))))
        assert 0 < a <= 1


def test_value_row_theory_inside_its_monte_carlo_interval():
    """Theorem D2 at depth 3 (ReLU, MSE): E[g | p > 0] = alpha_l E[p | p > 0] is a number, and
    the row's own estimator (256 networks, its ledger stream) must bracket it."""
    e = _entry("C2.depth3.g_pos", "relu", "mse")
    gen = torch.Generator().manual_seed(row_seed(0, e))
    mc = depth.depth_montecarlo(e, generator=gen, alpha=1e-3)
    assert mc is not None and mc["sign"] == "positive"
    filled = attach_montecarlo(e, mc)
    assert filled.verdict == "confirmed", filled.notes
    assert any("inside the Monte Carlo CI" in n for n in filled.notes)
    again = depth.depth_montecarlo(
        e, generator=torch.Generator().manual_seed(row_seed(0, e)), alpha=1e-3
    )
    assert again == mc
