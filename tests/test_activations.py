"""The activation as one object: parsed once at the boundary, then passed on.

Hashable with its parameters, a cache key (its expression), an injective run name, pickling by
spec (a worker re-registers a user's NAME=EXPR), the torch function found once per object, and
the Monte Carlo and the theory taking the object without parsing it again.

Run: `.venv/bin/python -m pytest -q tests/test_activations.py`.
"""

from __future__ import annotations

import itertools
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from empirics import activations
from empirics.activations import make_activation, parse_activation, torch_fn
from empirics.cli import activation_slug, slug
from empirics.montecarlo import ledger as mc_ledger
from empirics.montecarlo.sampler import NetConfig, activation_pair, draw
from theory import drift, registry

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()


@pytest.fixture
def fresh_name():
    names: list[str] = []

    def make() -> str:
        names.append(f"obj_act_{next(_counter)}")
        return names[-1]

    yield make
    for n in names:
        registry.unregister_activation(n)


@pytest.fixture
def count_parses(monkeypatch):
    """Counts every spec the registry parses from here on."""
    calls: list[str] = []
    real = registry.parse_activation_spec

    def counting(spec: str) -> registry.Activation:
        calls.append(spec)
        return real(spec)

    monkeypatch.setattr(registry, "parse_activation_spec", counting)
    return calls


def test_an_activation_hashes_with_its_parameters():
    a, b = parse_activation("leaky_relu:slope=0.2"), parse_activation("leaky_relu:slope=0.3")
    assert isinstance(a.params, tuple) and dict(a.params)["slope"] == pytest.approx(0.2)
    assert len({a, b, parse_activation("leaky_relu:slope=0.2")}) == 2
    assert a.cache_key == a.expr and a.cache_key != b.cache_key


@pytest.mark.parametrize(
    "spec",
    [
        "relu",
        "gelu",
        "relu2_clip50",
        "leaky_relu",
        "leaky_relu:slope=0.2",
        "relu2_clip:c=50",
        "gelu2_clip:c=15.5",
        "leaky_relu:slope=1e-2",
        "leaky_relu: slope = 0.3",
    ],
)
def test_run_names_of_plain_specs_are_unchanged(spec):
    """The run name of a built-in or a family written with plain decimals is the text slug of
    its spec (the rule results on disk are named by)."""
    assert parse_activation(spec).run_name == slug(spec)
    assert activation_slug(spec) == activation_slug(parse_activation(spec)) == slug(spec)


def test_run_names_are_injective():
    specs = [
        "leaky_relu:slope=0.2",
        "leaky_relu:slope=0.3",
        "leaky_relu:slope=-0.2",
        "leaky_relu:slope=1e-2",
        "leaky_relu:slope=1e+2",
        "leaky_relu:slope=-1e-2",
        "relu2_clip:c=50",
        "relu",
        "leaky_relu",
    ]
    acts = {parse_activation(s) for s in specs}
    names = {a.run_name for a in acts}
    assert len(names) == len(acts) == len(specs)
    assert all(slug(n) == n for n in names)  # already directory-safe


def test_a_user_expression_is_named_by_its_name(fresh_name):
    name = fresh_name()
    act = parse_activation(f"{name}=x*tanh(x)")
    assert act.run_name == name == activation_slug(act) == activation_slug(act.spec)


def test_pickling_re_registers_a_user_expression_in_a_fresh_process(fresh_name):
    name = fresh_name()
    act = parse_activation(f"{name}=x*Abs(x) + 1/4")
    assert pickle.loads(pickle.dumps(act)) is act
    probe = (
        "import pickle, sys\n"
        "act = pickle.load(sys.stdin.buffer)\n"
        "from theory import registry\n"
        "value = float(act.expr.subs(registry.x, 2))\n"
        "print(registry.get_activation(act.name) is act, act.spec, value, sep='|')"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        input=pickle.dumps(act),
        capture_output=True,
        cwd=ROOT,
        check=True,
    ).stdout.decode()
    registered, spec, value = out.strip().split("|")
    assert registered == "True" and spec == act.spec
    assert float(value) == pytest.approx(float(act.expr.subs(registry.x, 2)))


def test_an_activation_registered_from_sympy_pickles_by_its_expression(fresh_name):
    # sympy's printout of this expression (a 7-digit numerator) is refused by the whitelist
    # parser, so the object must travel as its expression, not as NAME=printout.
    import sympy as sp

    name = fresh_name()
    act = registry.register_activation(name, sp.Rational(1234567, 10000000) * registry.x)
    assert pickle.loads(pickle.dumps(act)) is act
    probe = (
        "import pickle, sys\n"
        "act = pickle.load(sys.stdin.buffer)\n"
        "from theory import registry\n"
        "print(registry.get_activation(act.name) is act, act.expr, sep='|')"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        input=pickle.dumps(act),
        capture_output=True,
        cwd=ROOT,
        check=True,
    ).stdout.decode()
    assert out.strip() == f"True|{act.expr}"


def test_the_cache_keys_on_the_expression_without_parsing(fresh_name, count_parses):
    act = parse_activation(f"{fresh_name()}=x**3 + x")
    twin = parse_activation(f"{fresh_name()}=x**3 + x")
    count_parses.clear()
    first = drift.parity(act)
    assert drift.parity(twin) == first == "odd"
    assert drift.predict_drift_coefficient(act).sign == "zero"
    assert count_parses == []  # objects go through the cached theory without a parse


def test_the_torch_function_is_found_once_per_object(count_parses):
    act = parse_activation("leaky_relu:slope=0.2")
    count_parses.clear()
    fn = torch_fn(act)
    assert torch_fn(act) is fn and activations.torch_derivative(
        act
    ) is activations.torch_derivative(act)
    assert make_activation(act).fn is fn and make_activation(act).name == act.spec
    assert count_parses == []
    t = torch.linspace(-2, 2, 9)
    assert torch.equal(torch_fn(parse_activation("leaky_relu:slope=0.2"))(t), fn(t))


def test_clearing_the_caches_forgets_the_torch_side():
    act = parse_activation("leaky_relu:slope=0.25")  # a closure: a new one per build
    fn, pair = torch_fn(act), activation_pair(act)
    registry.clear_caches()
    assert torch_fn(act) is not fn and activation_pair(act) is not pair


def test_the_monte_carlo_parses_its_activation_once(count_parses):
    cfg = NetConfig(activation="gelu", d_in=4, widths=(8,), n_out=3, inputs_per_net=4)
    assert count_parses == ["gelu"] and isinstance(cfg.activation, registry.Activation)
    v = cfg.validate()
    draw(v, 3, torch.Generator().manual_seed(0))
    assert activation_pair(v.activation) is activation_pair(cfg.activation)
    assert count_parses == ["gelu"]
    as_dict = cfg.to_dict()
    assert as_dict["activation"] == "gelu" and json.loads(json.dumps(as_dict))["widths"] == [8]


def test_a_ledger_entry_parses_its_activation_once(count_parses):
    gen = torch.Generator().manual_seed(0)
    row = mc_ledger.montecarlo_for_entry("C4.D", "gelu", "mse", generator=gen, n_networks=8)
    assert row is not None and count_parses == ["gelu"]
