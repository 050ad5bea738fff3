"""Oracle tests: every registry activation and loss, sympy (lambdified) against an independent
torch implementation written here, in value and derivative, float64, away from kinks.

Run: `.venv/bin/python -m pytest -q tests/test_oracle.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import sympy as sp
import torch
import torch.nn.functional as F

from empirics.activations import parse_activation, torch_derivative, torch_fn
from theory import registry
from theory.gradient import hessian_diagonal
from theory.registry import Activation, get_activation, get_loss, x

TorchFn = Callable[[torch.Tensor], torch.Tensor]
RTOL, ATOL = 1e-10, 1e-12  # float64 paths that differ only in rounding agree far inside this


def _gelu(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0)))


def _gelu_sq_root(c: float) -> float:
    # gelu is increasing for x > -0.75 and below 0.17 in size on the negative side, so the clip
    # gelu(x)^2 = c (c >= 1) is reached once, at x > 0.
    return scipy.optimize.brentq(
        lambda v: (0.5 * v * (1 + scipy.special.erf(v / math.sqrt(2)))) ** 2 - c, 0.0, 50.0
    )


# Independent torch forms (not the ones empirics.activations uses) and their kinks.
INDEPENDENT: dict[str, tuple[TorchFn, list[float]]] = {
    "relu": (lambda t: torch.where(t > 0, t, torch.zeros_like(t)), [0.0]),
    "gelu": (_gelu, []),
    "silu": (lambda t: t / (1.0 + torch.exp(-t)), []),
    "tanh": (lambda t: (torch.exp(2 * t) - 1) / (torch.exp(2 * t) + 1), []),
    "identity": (lambda t: t.clone(), []),
    "relu2": (lambda t: torch.where(t > 0, t * t, torch.zeros_like(t)), [0.0]),
    "gelu2": (lambda t: _gelu(t) ** 2, []),
    "leaky_relu": (lambda t: torch.where(t > 0, t, 0.01 * t), [0.0]),
    "relu2_clip": (
        lambda t: torch.minimum(torch.where(t > 0, t * t, 0 * t), torch.tensor(15.0).double()),
        [0.0, math.sqrt(15.0)],
    ),
    "relu2_clip50": (
        lambda t: torch.minimum(torch.where(t > 0, t * t, 0 * t), torch.tensor(50.0).double()),
        [0.0, math.sqrt(50.0)],
    ),
    "gelu2_clip": (
        lambda t: torch.minimum(_gelu(t) ** 2, torch.tensor(15.0).double()),
        [_gelu_sq_root(15.0)],
    ),
    "leaky_relu:slope=0.2": (lambda t: torch.where(t > 0, t, 0.2 * t), [0.0]),
    "relu2_clip:c=50": (
        lambda t: torch.minimum(torch.where(t > 0, t * t, 0 * t), torch.tensor(50.0).double()),
        [0.0, math.sqrt(50.0)],
    ),
}


def _points(kinks: list[float], n: int = 400, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-6.0, 6.0, size=n)
    keep = np.ones(n, dtype=bool)
    for k in kinks:
        keep &= np.abs(pts - k) > 1e-3
    return torch.tensor(pts[keep], dtype=torch.float64)


def _sympy_fn(expr: sp.Expr) -> Callable[[np.ndarray], np.ndarray]:
    fn = sp.lambdify(x, expr, modules=["numpy", "scipy"])
    return lambda a: np.broadcast_to(np.asarray(fn(a), dtype=np.float64), a.shape)


def _autograd(fn: TorchFn, t: torch.Tensor) -> torch.Tensor:
    td = t.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(td).sum(), td)
    return g


def oracle_errors(act: Activation, ref: TorchFn, kinks: list[float]) -> tuple[float, float]:
    """Max scaled error of sympy's value and derivative against the independent torch form."""
    t = _points(kinks)
    a = t.numpy()
    value_err = np.abs(_sympy_fn(act.expr)(a) - ref(t).numpy())
    deriv_err = np.abs(_sympy_fn(act.derivative)(a) - _autograd(ref, t).numpy())
    scale_v = ATOL + RTOL * np.abs(ref(t).numpy())
    scale_d = ATOL + RTOL * np.abs(_autograd(ref, t).numpy())
    return float(np.max(value_err / scale_v)), float(np.max(deriv_err / scale_d))


def test_every_builtin_has_an_oracle():
    assert set(registry.BUILTIN_ACTIVATIONS) <= set(INDEPENDENT)


@pytest.mark.parametrize("name", sorted(INDEPENDENT))
def test_sympy_matches_independent_torch(name):
    ref, kinks = INDEPENDENT[name]
    value_ratio, deriv_ratio = oracle_errors(get_activation(name), ref, kinks)
    assert value_ratio <= 1.0, f"{name}: value error {value_ratio:.3g} x tolerance"
    assert deriv_ratio <= 1.0, f"{name}: derivative error {deriv_ratio:.3g} x tolerance"


@pytest.mark.parametrize("name", sorted(INDEPENDENT))
def test_empirics_mirror_matches_independent_torch(name):
    """The training-side implementation (native / custom autograd) under the same name."""
    ref, kinks = INDEPENDENT[name]
    t = _points(kinks, seed=1)
    torch.testing.assert_close(torch_fn(parse_activation(name))(t), ref(t), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(
        torch_derivative(parse_activation(name))(t), _autograd(ref, t), rtol=RTOL, atol=ATOL
    )


def test_user_activation_flows_to_torch():
    name = "oracle_user_act"
    act = registry.register_activation(name, "x*tanh(log(1 + exp(x)))")  # mish
    try:
        ref = lambda t: t * torch.tanh(torch.log1p(torch.exp(t)))  # noqa: E731
        value_ratio, deriv_ratio = oracle_errors(act, ref, [])
        assert value_ratio <= 1.0 and deriv_ratio <= 1.0
        t = _points([], seed=2)
        torch.testing.assert_close(
            torch_fn(parse_activation(name))(t), ref(t), rtol=RTOL, atol=ATOL
        )
    finally:
        registry.unregister_activation(name)


def test_flipped_sign_is_caught():
    """The oracle has teeth: one sign flipped inside SiLU (x sigmoid(-x)) must fail it."""
    wrong = Activation("silu", x / (1 + sp.exp(x)))
    value_ratio, deriv_ratio = oracle_errors(wrong, INDEPENDENT["silu"][0], [])
    assert value_ratio > 1e6 and deriv_ratio > 1e6
    wrong_clip = Activation(
        "relu2_clip", sp.Piecewise((0, x <= 0), (-(x**2), x < sp.sqrt(15)), (15, True))
    )
    ref, kinks = INDEPENDENT["relu2_clip"]
    assert oracle_errors(wrong_clip, ref, kinks)[1] > 1e6


# ----------------------------------------------------------------------------------- losses


def _sympy_grad(loss: str, k: int, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    expr, zs, ys = get_loss(loss).expr(k)
    at = {**dict(zip(zs, z.tolist(), strict=True)), **dict(zip(ys, y.tolist(), strict=True))}
    return np.array([float(sp.diff(expr, zi).subs(at)) for zi in zs])


@pytest.mark.parametrize("k", [1, 3, 5])
def test_mse_gradient_matches_autograd(k):
    rng = np.random.default_rng(k)
    z, y = rng.normal(size=k), rng.normal(size=k)
    zt = torch.tensor(z, requires_grad=True)
    (0.5 * F.mse_loss(zt, torch.tensor(y), reduction="sum")).backward()
    np.testing.assert_allclose(_sympy_grad("mse", k, z, y), zt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize(("k", "label"), [(2, 0), (3, 2), (5, 1)])
def test_cross_entropy_gradient_and_hessian_match_autograd(k, label):
    rng = np.random.default_rng(10 + k)
    z = rng.normal(size=k) * 2
    y = np.eye(k)[label]
    zt = torch.tensor(z, requires_grad=True)
    F.cross_entropy(zt[None], torch.tensor([label])).backward()
    np.testing.assert_allclose(_sympy_grad("cross_entropy", k, z, y), zt.grad.numpy(), rtol=1e-12)
    # The Hessian diagonal the theory's Stein factor uses (its label choice must not matter).
    hess = torch.autograd.functional.hessian(
        lambda v: F.cross_entropy(v[None], torch.tensor([label])), torch.tensor(z)
    )
    _, zs, _ = get_loss("cross_entropy").expr(k)
    at = dict(zip(zs, z.tolist(), strict=True))
    diag = [float(d.subs(at)) for d in hessian_diagonal("cross_entropy", k)]
    np.testing.assert_allclose(diag, torch.diagonal(hess).numpy(), rtol=1e-12)


def test_user_loss_matches_autograd():
    registry.register_loss("oracle_quartic", "(z - y)**4 / 4")
    try:
        rng = np.random.default_rng(7)
        z, y = rng.normal(size=3), rng.normal(size=3)
        zt = torch.tensor(z, requires_grad=True)
        (((zt - torch.tensor(y)) ** 4) / 4).sum().backward()
        np.testing.assert_allclose(
            _sympy_grad("oracle_quartic", 3, z, y), zt.grad.numpy(), rtol=1e-12
        )
    finally:
        registry.LOSSES.pop("oracle_quartic")
