"""Symbolic <-> Monte Carlo: sampled networks reproduce the theory's g(p), and the sequential
sign test never contradicts a sign the theory decided (`make test`: dev profile; `make verify`)."""

from __future__ import annotations

from hypothesis import given, note, reject, settings
from hypothesis import strategies as st

from tests.properties import checks
from tests.properties.strategies import activations, inits, inputs, losses, network_shapes, seeds


@given(
    activation=activations,
    loss=losses,
    shape=network_shapes(),
    init=inits,
    input_law=inputs,
    seed=seeds,
)
def test_conditional_gradient_matches_closed_form(activation, loss, shape, init, input_law, seed):
    """Power >= 0.999 against an error of half of |g| (checks.check_conditional_gradient);
    draws where 4096 networks cannot reach it are rejected, not passed."""
    try:
        est = checks.check_conditional_gradient(activation, loss, shape, init, input_law, seed)
    except checks.LowPower as exc:
        note(str(exc))
        reject()
    note(f"residual {est.mean:.3g} +- {est.stderr:.2g}")


@settings(max_examples=max(4, settings.default.max_examples // 2))
@given(
    activation=activations,
    loss=losses,
    shape=network_shapes(),
    side=st.sampled_from(("pos", "neg")),
    seed=seeds,
)
def test_decided_sign_agrees_with_theory(activation, loss, shape, side, seed):
    symbolic, mc = checks.check_sign_decision(activation, loss, shape, side, seed)
    note(f"theory {symbolic}, Monte Carlo {mc}")
