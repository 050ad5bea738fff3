"""docs/proofs.md and theory/proofs.py agree, every checked step holds, and the enumerations
behind the unit flip and the counterexample can see what they exclude."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from theory.depth import RADEMACHER, SKEW_RIGHT
from theory.proofs import STEPS, flip_enumeration

DOC = Path(__file__).resolve().parents[1] / "docs" / "proofs.md"


def _cited() -> set[str]:
    return set(re.findall(r"\[([A-Z][A-Za-z0-9]*)(?:, [^\]]*)?\]", DOC.read_text()))


def test_the_document_cites_exactly_the_checked_steps():
    cited = _cited()
    assert cited == set(STEPS), (
        f"cited but not checked: {sorted(cited - set(STEPS))}; "
        f"checked but not cited: {sorted(set(STEPS) - cited)}"
    )


@pytest.mark.parametrize("step_id", sorted(STEPS))
def test_step_holds(step_id):
    assert STEPS[step_id].check() is True


def test_flip_enumeration_sees_a_drift_without_parity_or_symmetry():
    # The same enumeration that gives 0 for x^2 under Rademacher init is not 0 for a skewed law
    # (no sign symmetry) nor for relu-like x^2 + x: the zero of U2 is not the enumeration's
    # blind spot.
    x = (Fraction(1), Fraction(2))
    assert flip_enumeration(lambda p: p * p, lambda p: 2 * p, x, SKEW_RIGHT) != 0
    assert flip_enumeration(lambda p: p * p + p, lambda p: 2 * p + 1, x, RADEMACHER) != 0


def test_a_step_that_is_false_is_reported_false(monkeypatch):
    # Teeth for the registry itself: a wrong base-case moment makes D1a false.
    import sympy as sp

    import theory.proofs as proofs

    monkeypatch.setattr(proofs, "derive_gate_moments", lambda: (sp.Integer(0), sp.Rational(1, 3)))
    assert proofs.gate_base_case() is False
