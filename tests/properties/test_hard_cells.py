"""The closed-form check on its hardest cells (squared activations x cross-entropy x Gaussian
init x depth 3 x gain 2): it must pass there with its stated power, not fail and not dodge as
low-power (tests/properties/hard_cells.py; the 200-seed replay is slow-marked)."""

from __future__ import annotations

import pytest

from tests.properties import hard_cells


@pytest.mark.parametrize("activation", hard_cells.HARD_ACTIVATIONS)
def test_hard_cells_pass_on_a_few_seeds(activation):
    # Seed 0 is the draw that failed in issue 18 (z = 6.1 with the 8-sample trace factor; the
    # old estimator passed 0 of 200 seeds of it). Measured with the exact trace factor: 200 of
    # 200 seeds pass per activation (0 low-power), so 2 of 2 here fails a correct check with
    # probability at most 2 * 0.018 (the 95 % upper bound on the per-seed rate that 0 of 200
    # allows); the observed rate is 0. Teeth: with the old estimator seed 0 failed or dodged.
    r = hard_cells.replay(activation, range(2))
    assert (r["pass"], r["fail"]) == (2, 0), r


@pytest.mark.slow
@pytest.mark.parametrize("activation", hard_cells.HARD_ACTIVATIONS)
def test_hard_cells_pass_on_200_seeds(activation):
    # Issue 18's requirement: >= 90 % of seeds pass at the stated power, 0 fail (about 30 s per
    # activation on one core).
    r = hard_cells.replay(activation, range(200))
    assert r["fail"] == 0 and r["pass"] >= hard_cells.PASS_FRACTION * r["seeds"], r
