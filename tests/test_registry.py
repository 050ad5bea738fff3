"""Registry behaviour: names, parametrised specs, NAME=EXPR, bad expressions, losses.

Run: `.venv/bin/python -m pytest -q tests/test_registry.py`.
"""

from __future__ import annotations

import itertools
import math

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from theory import registry
from theory.registry import (
    RegistryError,
    get_activation,
    get_loss,
    parse_activation_spec,
    register_activation,
    register_loss,
    unregister_activation,
    x,
)

_counter = itertools.count()


@pytest.fixture
def fresh_name():
    """A unique activation name, removed from the global registry afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"user_act_{next(_counter)}")
        return names[-1]

    yield make
    for n in names:
        unregister_activation(n)


def value(act: registry.Activation, at: float) -> float:
    return float(act.expr.subs(x, at))


def test_builtins_present_and_real():
    expected = {
        "relu",
        "gelu",
        "silu",
        "tanh",
        "identity",
        "relu2",
        "gelu2",
        "leaky_relu",
        "relu2_clip",
        "gelu2_clip",
        "relu2_clip50",
    }
    assert expected <= set(registry.BUILTIN_ACTIVATIONS)
    assert x.is_real


def test_unknown_activation_lists_valid_names():
    with pytest.raises(RegistryError) as info:
        get_activation("relux")
    msg = str(info.value)
    assert "relux" in msg and "valid names" in msg
    for name in ("relu", "gelu", "silu"):
        assert name in msg


def test_parametrised_specs():
    leaky = get_activation("leaky_relu:slope=0.2")
    assert dict(leaky.params)["slope"] == pytest.approx(0.2)
    assert value(leaky, -1.0) == pytest.approx(-0.2)
    assert value(leaky, 3.0) == pytest.approx(3.0)
    clip = get_activation("relu2_clip:c=50")
    assert value(clip, 10.0) == pytest.approx(50.0)
    assert value(clip, 5.0) == pytest.approx(25.0)
    assert value(clip, -2.0) == 0.0
    # The paper's clip at 50 is the same function under its own name.
    assert value(get_activation("relu2_clip50"), 9.0) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("leaky_relu:slope=abc", "slope must be a number"),
        ("leaky_relu:foo=1", "slope"),
        ("leaky_relu:slope", "expected key=value"),
        ("relu2_clip:c=-1", "must be > 0"),
        ("relu2_clip:c=inf", "finite"),
    ],
)
def test_bad_parametrised_specs(spec, fragment):
    with pytest.raises(RegistryError, match=fragment):
        get_activation(spec)


@given(st.floats(min_value=-0.99, max_value=0.99).filter(lambda a: abs(a) > 1e-6))
def test_leaky_slope_property(slope):
    act = get_activation(f"leaky_relu:slope={slope!r}")
    assert value(act, -2.0) == pytest.approx(-2.0 * slope, rel=1e-12)
    assert value(act, 2.0) == pytest.approx(2.0)


def test_name_equals_expr_registers_and_flows(fresh_name):
    name = fresh_name()
    act = parse_activation_spec(f"{name}=x**3 - x")
    assert act.name == name and not act.builtin
    assert get_activation(name) is act
    assert sp.simplify(act.derivative - (3 * x**2 - 1)) == 0
    # Same definition again is accepted, a different one is refused.
    assert parse_activation_spec(f"{name}=x**3 - x") is act
    with pytest.raises(RegistryError, match="already registered"):
        register_activation(name, "x**2")


def test_min_max_become_piecewise(fresh_name):
    act = register_activation(fresh_name(), "Max(x, 0)")
    assert act.expr.has(sp.Piecewise)
    for at in (-1.5, -0.2, 0.3, 2.0):
        assert value(act, at) == pytest.approx(max(at, 0.0))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x + y", "unknown name 'y'"),
        ("x +* 2", "not a formula"),
        ("sqrt(x)", "undefined on the real line"),
        ("1/x", r"undefined on the real line at \{0\}"),
        ("1/(x-0.5)", r"undefined on the real line at \{1/2\}"),
        ("Piecewise((1/x, x > -1), (0, True))", "undefined on the real line"),
        ("log(x)", "undefined on the real line"),
        ("tan(x)", "'tan' is not allowed"),
        ("9**9**9**9", r"exceeds 1e\+06"),
        ("x**100", "exponent"),
        ("1e400 * x", "not finite"),
        ("x.real", "Attribute is not allowed"),
        ("(lambda: x)()", "only named functions may be called"),
        ("x" + " + x" * 300, "longer than"),
    ],
)
def test_bad_expressions(fresh_name, text, fragment):
    with pytest.raises(RegistryError, match=fragment):
        register_activation(fresh_name(), text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # A branch unbounded as x reaches the edge of where it is taken (the issue-22 case).
        ("Piecewise((1/x, x>0), (0, True))", r"undefined on the real line at \{0\}"),
        ("Piecewise((0, x<1), (1/(x-1), True))", r"undefined on the real line at \{1\}"),
        ("Piecewise((log(x), x>0), (0, True))", r"undefined on the real line at \{0\}"),
        ("Piecewise((1/0, x>0), (0, True))", "not finite"),
        # Constants are folded before the literal limit applies.
        ("1000000*1000000*1000000*1000000*x", r"exceeds 1e\+06"),
        ("exp(exp(exp(100)))*x", r"exceeds 1e\+06"),
        ("x*(1000000+1000000)", r"exceeds 1e\+06"),
    ],
)
def test_poles_in_branches_and_folded_constants_are_refused(fresh_name, text, fragment):
    with pytest.raises(RegistryError, match=fragment):
        register_activation(fresh_name(), text)


@pytest.mark.parametrize(
    "text",
    ["Piecewise((log(x), x > 1), (0, True))", "Max(x, 0)**(1/3)", "x/1000000/1000000", "exp(x)"],
)
def test_bounded_branches_and_small_constants_are_accepted(fresh_name, text):
    act = register_activation(fresh_name(), text)
    assert all(math.isfinite(value(act, at)) for at in (-2.0, 0.0, 0.5, 3.0))


def test_a_pole_guarded_by_its_branch_is_accepted(fresh_name):
    act = register_activation(fresh_name(), "Piecewise((1/x, x > 1), (0, True))")
    assert value(act, 2.0) == pytest.approx(0.5) and value(act, -3.0) == 0.0


@pytest.mark.parametrize(
    "payload",
    [
        '__import__("os").system("touch {marker}")',
        "exec(\"open('{marker}', 'w')\")",
        "Piecewise((x, open('{marker}', 'w')), (0, True))",
        "x + __builtins__.open('{marker}', 'w').close()",
    ],
)
def test_an_expression_is_never_run_as_code(fresh_name, tmp_path, payload):
    """The payloads would create the marker file if the text were evaluated (sympify does)."""
    marker = tmp_path / "pwned"
    with pytest.raises(RegistryError, match="not allowed"):
        register_activation(fresh_name(), payload.format(marker=marker))
    with pytest.raises(RegistryError, match="not allowed"):
        register_loss("payload_loss_test", payload.format(marker=marker).replace("x", "z"))
    assert not marker.exists()


def test_bad_names():
    with pytest.raises(RegistryError, match="identifier"):
        register_activation("1abc", "x")
    with pytest.raises(RegistryError, match="built in"):
        register_activation("relu", "x")
    with pytest.raises(RegistryError, match="built in"):
        unregister_activation("gelu")


def test_losses():
    with pytest.raises(RegistryError) as info:
        get_loss("hinge")
    assert "mse" in str(info.value) and "cross_entropy" in str(info.value)
    expr, zs, ys = get_loss("mse").expr(3)
    at = {zs[0]: 1.0, zs[1]: 2.0, zs[2]: -1.0, ys[0]: 0.0, ys[1]: 2.0, ys[2]: 1.0}
    assert float(expr.subs(at)) == pytest.approx(0.5 * (1 + 0 + 4))
    ce, zs, ys = get_loss("cross_entropy").expr(2)
    at = {zs[0]: 0.3, zs[1]: -0.4, ys[0]: 1, ys[1]: 0}
    assert float(ce.subs(at)) == pytest.approx(-0.3 + math.log(math.exp(0.3) + math.exp(-0.4)))
    with pytest.raises(RegistryError, match="K must be >= 1"):
        get_loss("mse").expr(0)


@pytest.fixture
def loss_cleanup():
    """Losses registered by a test are removed from the global registry afterwards."""
    before = set(registry.LOSSES)
    yield
    for name in set(registry.LOSSES) - before:
        registry.LOSSES.pop(name)


def test_register_loss(loss_cleanup):
    loss = register_loss("quartic_test", "(z - y)**4 / 4")
    expr, zs, ys = loss.expr(2)
    assert float(expr.subs({zs[0]: 2, zs[1]: 0, ys[0]: 0, ys[1]: 1})) == pytest.approx(4.25)
    with pytest.raises(RegistryError, match="symbols"):
        register_loss("bad_loss_test", "(q - y)**2")
    with pytest.raises(RegistryError, match="target"):
        register_loss("bad_target_test", "(z - y)**2", target="ordinal")
    with pytest.raises(RegistryError, match="built in"):
        register_loss("mse", "(z - y)**2")


def test_answers_follow_the_expression_not_the_name(fresh_name):
    """Theory caches are keyed by the expression: a name registered again gets new answers."""
    from theory.drift import parity, predict_drift_coefficient

    name = fresh_name()
    register_activation(name, "tanh(x)")
    assert parity(name) == "odd" and predict_drift_coefficient(name).value == 0
    register_activation(name, "Max(x, 0)", overwrite=True)
    assert parity(name) is None
    assert float(predict_drift_coefficient(name).value) == pytest.approx(1 / math.sqrt(2 * math.pi))


def test_two_names_with_one_expression_get_the_same_verdicts(fresh_name):
    """What the ledger decides (clipped, odd, even) comes from the expression: a copy of
    relu2_clip under another name gets relu2_clip's rows."""
    from empirics.ledger.rows import drift_entry, gradient_entries

    copy = fresh_name()
    clip = registry.get_activation("relu2_clip")
    twin = register_activation(copy, clip.expr)
    for loss in ("mse", "cross_entropy"):
        mine = [(e.id, e.claimed, e.verdict) for e in gradient_entries(twin, loss)]
        theirs = [(e.id, e.claimed, e.verdict) for e in gradient_entries(clip, loss)]
        assert mine == theirs
    assert drift_entry(twin).verdict == drift_entry(clip).verdict


def test_a_spec_is_parsed_once_and_recreates_the_activation(fresh_name, monkeypatch):
    name = fresh_name()
    act = registry.parse_activation_spec(f"{name}=Max(x, 0) * 2")
    calls = []
    monkeypatch.setattr(registry, "parse_expression", lambda *a: calls.append(a))
    assert registry.parse_activation_spec(f"{name}=Max(x, 0) * 2") is act
    assert not calls  # the second sight of the same NAME=EXPR does not parse again
    monkeypatch.undo()
    assert act.spec == f"{name}=Max(x, 0) * 2"
    registry.unregister_activation(name)
    assert registry.parse_activation_spec(act.spec).expr == act.expr
    assert registry.get_activation("relu2_clip:c=50").spec == "relu2_clip:c=50"


def test_activation_caches_keep_the_most_recently_used_and_no_more(monkeypatch) -> None:
    # An expression-keyed cache answers again from memory, and past CACHE_SIZE entries forgets
    # the least recently used (a process fed activation after activation stays bounded).
    calls: list[int] = []
    size = registry.CACHE_SIZE

    @registry.cached_by_expression
    def answer(act, k: int) -> int:
        calls.append(k)
        return k

    monkeypatch.setattr(registry, "CACHE_SIZE", 3)
    for k in range(3):
        answer("relu", k)
    answer("relu", 0)  # used again: now the most recent
    answer("relu", 3)  # a fourth entry: 1, the least recently used, goes
    assert calls == [0, 1, 2, 3]
    answer("relu", 0)
    answer("relu", 2)
    assert calls == [0, 1, 2, 3]  # both still held
    answer("relu", 1)
    assert calls == [0, 1, 2, 3, 1]  # forgotten, computed again
    # The torch-side caches are functools' LRU caches of the same size.
    from empirics.activations import torch_derivative, torch_fn
    from empirics.montecarlo.sampler import activation_pair

    for cached in (torch_fn, torch_derivative, activation_pair):
        assert cached.cache_info().maxsize == size
