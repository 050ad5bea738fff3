"""Teeth: inject a wrong derivative or a sign flip into one place and show the property suites
fail. A suite that passes a broken implementation proves nothing."""

from __future__ import annotations

import functools
import importlib
import sys

import pytest
import sympy as sp
import torch
from hypothesis import Phase, given, reject, settings

import theory
from empirics import activations as torch_acts
from tests.properties import checks
from tests.properties.strategies import activations, inits, inputs, losses, network_shapes, seeds
from theory import registry

FEW = max(3, settings.default.max_examples // 4)
THEORY_MODULES = [m for name, m in sys.modules.items() if name.startswith("theory")]


def _clear_caches() -> None:
    """Every theory cache (keyed by expression, but a patched derivative changes the answer for
    the same expression), every lru_cache in theory/, and (through `registry.clear_caches`) the
    torch functions and the sampler's pairs memoised per Activation object."""
    registry.clear_caches()
    for module in THEORY_MODULES + [importlib.import_module("theory.certify")]:
        for obj in vars(module).values():
            if isinstance(obj, functools._lru_cache_wrapper):
                obj.cache_clear()


@pytest.fixture
def clean_caches():
    _clear_caches()
    yield
    _clear_caches()


def _replace_entry(monkeypatch, name: str, expr: sp.Expr) -> None:
    old = registry.ACTIVATIONS[name]
    monkeypatch.setitem(
        registry.ACTIVATIONS, name, registry.Activation(name, expr, old.params, True, "broken")
    )


@settings(max_examples=FEW, database=None, phases=[Phase.generate])
@given(
    activation=activations,
    loss=losses,
    shape=network_shapes(),
    init=inits,
    input_law=inputs,
    seed=seeds,
)
def test_wrong_symbolic_derivative_fails_the_suite(activation, loss, shape, init, input_law, seed):
    """sigma' negated for every entry on the theory side: the suite's test body must fail on
    every configuration the suite itself could draw."""
    original = registry.Activation.derivative
    registry.Activation.derivative = property(lambda self: -sp.diff(self.expr, registry.x))
    _clear_caches()
    try:
        # The suite rejects draws where it has no stated power (checks.LowPower): reject them
        # here too. Everywhere else the negated sigma' errs by 2|g|, four times what the suite
        # detects with probability >= 0.999.
        with pytest.raises((AssertionError, checks.LowPower)) as info:
            checks.check_conditional_gradient(activation, loss, shape, init, input_law, seed)
    finally:
        registry.Activation.derivative = original
        _clear_caches()
    if info.type is checks.LowPower:
        reject()


class _WrongBackward(torch.autograd.Function):
    """GELU forward with the derivative's sign flipped."""

    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return torch.nn.functional.gelu(t)

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        with torch.enable_grad():
            td = t.detach().requires_grad_(True)
            (d,) = torch.autograd.grad(torch.nn.functional.gelu(td).sum(), td)
        return -grad * d


@settings(max_examples=FEW, database=None, phases=[Phase.generate])
@given(loss=losses, shape=network_shapes(), init=inits, input_law=inputs, seed=seeds)
def test_wrong_torch_derivative_is_caught(loss, shape, init, input_law, seed):
    """One torch registry entry (gelu) with a wrong backward: every drawn configuration of the
    symbolic <-> Monte Carlo check must catch it."""
    original = torch_acts._native

    def broken(act):
        return _WrongBackward.apply if act.name == "gelu" else original(act)

    torch_acts._native = broken
    _clear_caches()
    try:
        with pytest.raises((AssertionError, checks.LowPower)) as info:
            checks.check_conditional_gradient("gelu", loss, shape, init, input_law, seed)
    finally:
        torch_acts._native = original
        _clear_caches()
    if info.type is checks.LowPower:
        reject()


TRAINER_SHAPE = {"depth": 2, "width": 64, "in_dim": 32, "batch": 64}


def test_symbolic_sign_flip_fails_the_trainer_link(monkeypatch, clean_caches):
    """relu(x) -> relu(-x) in the theory registry only: D turns negative while the trainer's
    ReLU network still drifts negative, so the symbolic <-> trainer check must fail."""
    _replace_entry(monkeypatch, "relu", sp.Piecewise((-registry.x, registry.x < 0), (0, True)))
    assert theory.predict_drift_coefficient("relu").sign == "negative"
    with pytest.raises(AssertionError):
        checks.check_drift_sign_vs_trainer("relu", TRAINER_SHAPE, 0.05, 5, range(12))


def test_trainer_sign_flip_fails_the_montecarlo_link(monkeypatch, clean_caches):
    """The trainer's MLP built with relu(-x) while the estimator uses relu: the Monte Carlo <->
    trainer check must fail."""
    mlp = importlib.import_module("empirics.models.mlp")
    registry.register_activation("teeth_flipped_relu", "Max(-x, 0)")
    try:
        monkeypatch.setattr(
            mlp,
            "make_sparse_activation",
            lambda name, sparsity: torch_acts.make_activation("teeth_flipped_relu"),
        )
        with pytest.raises(AssertionError):
            checks.check_first_step_vs_montecarlo("relu", TRAINER_SHAPE, 0.1, range(16), 7)
    finally:
        registry.unregister_activation("teeth_flipped_relu")


@pytest.mark.parametrize(
    ("activation", "loss", "seed"),
    [("relu2", "cross_entropy", 0), ("gelu2", "cross_entropy", 1), ("relu", "mse", 2)],
)
def test_wrong_factor_of_g_is_caught(monkeypatch, activation, loss, seed):
    """sigma sigma' with a wrong factor 2 (an error of |g|, twice what the check resolves at
    power 0.999) in the closed-form check's g, on the hardest cells (tests/properties/
    hard_cells.py) and an easy one: the check must fail, not pass or dodge as low-power."""
    from tests.properties import hard_cells

    right = checks._numpy_h

    def doubled(act):
        h = right(act)
        return lambda p: 2.0 * h(p)

    monkeypatch.setattr(checks, "_numpy_h", doubled)
    shape, inputs = hard_cells.hard_shape(seed)
    with pytest.raises(AssertionError):
        checks.check_conditional_gradient(activation, loss, shape, "gaussian", inputs, seed)
