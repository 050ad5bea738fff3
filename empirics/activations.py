"""Torch implementations of the theory registry's activations, under the same names.

Native torch functions where they exist, custom autograd Functions for the clipped squares (zero
gradient where clipped, as the paper's code intends), and a function compiled from the sympy
expression for anything a user registers. The torch function is found once per Activation object
(`torch_fn(act)`, memoised on the object); `make_activation(act)` gives an nn.Module for models.
The functions that take an activation accept the object, or a spec which they parse once.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any

import sympy as sp
import torch
import torch.nn.functional as F
from pydantic import GetPydanticSchema
from torch import nn

from theory import registry
from theory.registry import Activation, RegistryError

TorchFn = Callable[[torch.Tensor], torch.Tensor]


class _ClippedSquare(torch.autograd.Function):
    """min(f(x)^2, c) with gradient 2 f f' below the clip and exactly 0 where clipped."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, c: float, base: str) -> torch.Tensor:  # type: ignore[override]
        ctx.c, ctx.base = c, base
        ctx.save_for_backward(x)
        f = F.relu(x) if base == "relu" else F.gelu(x)
        return torch.clamp(f * f, max=c)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            f = F.relu(xd) if ctx.base == "relu" else F.gelu(xd)
            (df,) = torch.autograd.grad(f.sum(), xd)
        f = f.detach()
        sq = f * f
        local = torch.where(sq < ctx.c, 2 * f * df, torch.zeros_like(x))
        return grad * local, None, None


def _relu2(t: torch.Tensor) -> torch.Tensor:
    r = F.relu(t)
    return r * r


def _gelu2(t: torch.Tensor) -> torch.Tensor:
    g = F.gelu(t)
    return g * g


def _native(act: Activation) -> TorchFn | None:
    family = act.name.partition(":")[0]
    p = dict(act.params)
    if family in ("relu2_clip", "relu2_clip50"):
        c = float(p["c"])
        return lambda t: _ClippedSquare.apply(t, c, "relu")
    if family == "gelu2_clip":
        c = float(p["c"])
        return lambda t: _ClippedSquare.apply(t, c, "gelu")
    if family == "leaky_relu":
        slope = float(p["slope"])
        return lambda t: F.leaky_relu(t, slope)
    return {
        "relu": F.relu,
        "gelu": F.gelu,
        "silu": F.silu,
        "tanh": torch.tanh,
        "identity": lambda t: t,
        "relu2": _relu2,
        "gelu2": _gelu2,
    }.get(act.name)


# sympy function -> torch function of the already-translated arguments.
_UNARY: dict[type, TorchFn] = {
    sp.exp: torch.exp,
    sp.log: torch.log,
    sp.tanh: torch.tanh,
    sp.sinh: torch.sinh,
    sp.cosh: torch.cosh,
    sp.sin: torch.sin,
    sp.cos: torch.cos,
    sp.atan: torch.atan,
    sp.erf: torch.erf,
    sp.erfc: torch.erfc,
    sp.Abs: torch.abs,
    sp.sign: torch.sign,
}
# Candidate points at which to evaluate a branch that is not taken (the two-`where` pattern).
_SAFE_POINTS = (1.0, 0.5, 2.0, -1.0, -0.5, -2.0, 0.0, 3.0, -3.0, 10.0, -10.0)


def _safe_point(branch: sp.Expr) -> float:
    """A point where the branch and its derivative are finite reals: inputs where the branch
    is not taken are replaced by it, so that neither its value nor its gradient is NaN there."""
    deriv = sp.diff(branch, registry.x)
    for point in _SAFE_POINTS:
        try:
            v = complex(sp.N(branch.subs(registry.x, point)))
            d = complex(sp.N(deriv.subs(registry.x, point)))
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if all(math.isfinite(z.real) and abs(z.imag) < 1e-12 for z in (v, d)):
            return point
    raise RegistryError(
        f"cannot compile {branch}: no point among {_SAFE_POINTS} where it and its derivative "
        "are finite, so its untaken inputs cannot be kept away from NaN"
    )


def _translate(e: sp.Basic) -> Callable[[torch.Tensor], torch.Tensor | float | bool]:
    """A torch function of x for a sympy expression (or condition), node by node."""
    if e == registry.x:
        return lambda t: t
    if e is sp.true or e is sp.false:
        value = bool(e)
        return lambda t: torch.full_like(t, value, dtype=torch.bool)
    if isinstance(e, sp.Expr) and e.is_number:
        value = float(sp.N(e))
        return lambda t: value
    if isinstance(e, sp.Piecewise):
        return _piecewise(e)
    args = [_translate(a) for a in e.args]
    if isinstance(e, sp.Add):
        return lambda t: functools.reduce(operator.add, (f(t) for f in args))
    if isinstance(e, sp.Mul):
        return lambda t: functools.reduce(operator.mul, (f(t) for f in args))
    if isinstance(e, sp.Pow):
        base, power = args
        if e.exp.is_number:
            p = float(e.exp)
            if p == 0.5:
                return lambda t: torch.sqrt(base(t))
            if p.is_integer():
                k = int(p)
                return lambda t: torch.pow(base(t), k) if k >= 0 else 1.0 / torch.pow(base(t), -k)
            return lambda t: torch.pow(base(t), p)
        return lambda t: torch.pow(base(t), power(t))
    if e.func in _UNARY:
        fn, (a,) = _UNARY[e.func], args
        return lambda t: fn(torch.as_tensor(a(t), dtype=t.dtype, device=t.device))
    if isinstance(e, (sp.Max, sp.Min)):
        pick = torch.maximum if isinstance(e, sp.Max) else torch.minimum

        def extremum(t: torch.Tensor) -> torch.Tensor:
            vals = [torch.as_tensor(f(t), dtype=t.dtype, device=t.device) for f in args]
            return functools.reduce(pick, vals)

        return extremum
    if isinstance(e, sp.Heaviside):
        (a, *rest) = args
        h0 = float(e.args[1]) if len(e.args) > 1 else 0.5
        return lambda t: torch.heaviside(a(t), torch.tensor(h0, dtype=t.dtype, device=t.device))
    compare = {sp.StrictLessThan: operator.lt, sp.LessThan: operator.le}
    compare |= {sp.StrictGreaterThan: operator.gt, sp.GreaterThan: operator.ge}
    if type(e) in compare:
        op, (a, b) = compare[type(e)], args
        return lambda t: torch.as_tensor(op(a(t), b(t)), device=t.device).expand_as(t)
    if isinstance(e, (sp.And, sp.Or)):
        join = torch.logical_and if isinstance(e, sp.And) else torch.logical_or
        return lambda t: functools.reduce(join, (f(t) for f in args))
    if isinstance(e, sp.Not):
        (a,) = args
        return lambda t: torch.logical_not(a(t))
    raise RegistryError(f"cannot compile {e.func.__name__} ({e}) to torch")


def _piecewise(e: sp.Piecewise) -> TorchFn:
    """Piecewise by the two-`where` pattern: each branch sees the inputs where it is taken and a
    safe point elsewhere, so a branch's invalid values (x**(1/3) at x < 0) never reach the
    output or its gradient (a NaN in the untaken side of one `where` leaks into the gradient:
    0 * NaN)."""
    pieces = []
    for branch, cond in e.args:
        safe = _safe_point(branch) if not branch.is_number else 0.0
        pieces.append((_translate(branch), _translate(cond), safe))

    def call(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(t)
        decided = torch.zeros_like(t, dtype=torch.bool)
        for branch, cond, safe in pieces:
            take = torch.logical_and(cond(t).expand_as(t), torch.logical_not(decided))
            inner = torch.where(take, t, torch.full_like(t, safe))
            value = torch.as_tensor(branch(inner), dtype=t.dtype, device=t.device).expand_as(t)
            out = torch.where(take, value, out)
            decided = torch.logical_or(decided, take)
        return out

    return call


def compile_expression(expr: sp.Expr) -> TorchFn:
    """A torch function of x from a sympy expression, translated node by node (constants folded
    to floats); Piecewise branches by the two-`where` pattern (see `_piecewise`)."""
    fn = _translate(expr)

    def call(t: torch.Tensor) -> torch.Tensor:
        out = torch.as_tensor(fn(t), dtype=t.dtype, device=t.device)
        # Constant branches or a constant expression come back as scalars; give them t's shape.
        return out.expand_as(t) if out.shape != t.shape else out

    return call


@functools.lru_cache(maxsize=registry.CACHE_SIZE)
def torch_fn(act: Activation) -> TorchFn:
    """The torch function of an Activation, chosen once per object (the registry's CACHE_SIZE
    most recently used are kept): native torch for built-ins where one exists, else compiled
    from its expression."""
    native = _native(act) if act.builtin else None
    return native if native is not None else compile_expression(act.expr)


registry.register_cache(torch_fn.cache_clear)


class ActivationOverflow(ValueError):
    """An activation (or its derivative) is not finite in a floating-point type over the range
    of pre-activations an estimate samples: an overflow, not a property of the theory."""


def check_finite_range(
    activation: Activation | str,
    dtype: torch.dtype = torch.float32,
    bound: float = 10.0,
    points: int = 4001,
) -> None:
    """Raise ActivationOverflow when sigma, sigma' or sigma^2 (what the estimators form) is not
    finite in `dtype` somewhere on [-bound, bound]: a Gaussian pre-activation of std <= bound/6
    stays inside with probability 1 - 2e-9 per draw, so an overflow there would reach the
    estimate as inf or NaN and read as a result."""
    act = parse_activation(activation)
    label = activation if isinstance(activation, str) else act.name
    t = torch.linspace(-bound, bound, points, dtype=dtype).requires_grad_(True)
    with torch.enable_grad():
        value = torch_fn(act)(t)
        (grad,) = torch.autograd.grad(value.sum(), t)
    value = value.detach()
    for what, v in (("sigma(x)", value), ("sigma(x)^2", value * value), ("sigma'(x)", grad)):
        bad = ~torch.isfinite(v)
        if bool(bad.any()):
            at = float(t.detach()[bad.nonzero()[0, 0]])
            kind = str(dtype).removeprefix("torch.")
            raise ActivationOverflow(
                f"activation {label!r}: {what} overflows {kind} at x = {at:.3g} (within the "
                f"pre-activation range +-{bound:g} the Monte Carlo samples); this is a floating-"
                "point overflow, not a result: use --dtype float64 (Monte Carlo) or scale the "
                "activation down (e.g. divide its expression by a constant)"
            )


@functools.lru_cache(maxsize=registry.CACHE_SIZE)
def torch_derivative(act: Activation) -> TorchFn:
    """sigma'(x) via autograd of the torch implementation (what training actually uses), built
    once per Activation object (the registry's CACHE_SIZE most recently used are kept)."""
    fn = torch_fn(act)

    def deriv(t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            td = t.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(td).sum(), td)
        return g

    return deriv


registry.register_cache(torch_derivative.cache_clear)


class ActivationLayer(nn.Module):
    """An activation layer for an Activation (or its spec); metrics hooks attach to these
    modules. `name` is the text it was given, or the object's spec."""

    def __init__(self, activation: Activation | str) -> None:
        super().__init__()
        self.activation = parse_activation(activation)
        self.name = activation if isinstance(activation, str) else self.activation.spec
        self.fn = torch_fn(self.activation)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fn(t)

    def extra_repr(self) -> str:
        return self.name


def make_activation(activation: Activation | str) -> nn.Module:
    """nn.Module for an Activation or a spec; raises RegistryError listing valid names."""
    return ActivationLayer(activation)


__all__ = [
    "ActivationLayer",
    "ActivationOverflow",
    "RegistryError",
    "check_finite_range",
    "compile_expression",
    "make_activation",
    "parse_activation",
    "torch_derivative",
    "torch_fn",
]


# ------------------------------------------------------------------------------ the boundary


def parse_activation(spec: str | Activation) -> Activation:
    """The one place a spec from a command line, a config or a ledger entry becomes the
    Activation object that everything below takes (an object passes through unchanged)."""
    if not isinstance(spec, (str, Activation)):
        raise RegistryError(f"activation: expected a spec string, got {type(spec).__name__}")
    return registry.as_activation(spec)


def _activation_schema(_source: Any, _handler: Any) -> Any:
    from pydantic_core import core_schema

    return core_schema.no_info_plain_validator_function(
        parse_activation,
        serialization=core_schema.plain_serializer_function_ser_schema(lambda a: a.spec),
    )


# A config field holding an activation: validated from its spec string (or an object), stored as
# the object, written back as its spec (so config.json and resume checks see the same text).
ActivationField = Annotated[Activation, GetPydanticSchema(_activation_schema)]
