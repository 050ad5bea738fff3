"""Torch implementations of the theory registry's activations, under the same names.

Native torch functions where they exist, custom autograd Functions for the clipped squares (zero
gradient where clipped, as the paper's code intends), and a function compiled from the sympy
expression for anything a user registers. `make_activation(name)` gives an nn.Module for models.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp
import torch
import torch.nn.functional as F
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
    p = act.params
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


def compile_expression(expr: sp.Expr) -> TorchFn:
    """A torch function of x from a sympy expression (constants folded to floats first)."""
    lowered = sp.N(expr)
    fn = sp.lambdify(registry.x, lowered, modules="torch")

    def call(t: torch.Tensor) -> torch.Tensor:
        out = fn(t)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out, dtype=t.dtype, device=t.device)
        # Constant branches or a constant expression come back as scalars; give them t's shape.
        return out.to(t.dtype).expand_as(t) if out.shape != t.shape else out

    return call


def get_torch_activation(name: str) -> TorchFn:
    """The torch function for a registry name (or `NAME=EXPR`, `family:k=v` spec)."""
    act = registry.parse_activation_spec(name)
    native = _native(act) if act.builtin else None
    return native if native is not None else compile_expression(act.expr)


def get_torch_derivative(name: str) -> TorchFn:
    """sigma'(x) via autograd of the torch implementation (what training actually uses)."""
    fn = get_torch_activation(name)

    def deriv(t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            td = t.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(td).sum(), td)
        return g

    return deriv


class ActivationLayer(nn.Module):
    """An activation layer by registry name; metrics hooks attach to these modules."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = get_torch_activation(name)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fn(t)

    def extra_repr(self) -> str:
        return self.name


def make_activation(name: str) -> nn.Module:
    """nn.Module for the named activation; raises RegistryError listing valid names."""
    return ActivationLayer(name)


__all__ = [
    "ActivationLayer",
    "RegistryError",
    "compile_expression",
    "get_torch_activation",
    "get_torch_derivative",
    "make_activation",
]
