"""The single registry of activations and losses, as sympy expressions (the source of all names).

Add an activation with `register_activation("name", "expr in x")` or, from any CLI,
`--activation NAME=EXPR`; parametrised entries are addressed as `leaky_relu:slope=0.2`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

x = sp.Symbol("x", real=True)

# Sample points used to reject expressions that are not real-valued on the real line.
_PROBE_POINTS = (-7.5, -3.0, -1.3, -0.4, -1e-3, 0.0, 1e-3, 0.37, 1.1, 2.9, 6.2)


class RegistryError(ValueError):
    """A name, spec or expression the registry cannot accept; the message says why."""


@dataclass(frozen=True)
class Activation:
    """An activation sigma(x) as a sympy expression in the real symbol `x`."""

    name: str
    expr: sp.Expr
    params: dict[str, float] = field(default_factory=dict)
    builtin: bool = True
    description: str = ""

    @property
    def derivative(self) -> sp.Expr:
        return sp.diff(self.expr, x)

    def __call__(self, value: sp.Expr | float) -> sp.Expr:
        return self.expr.subs(x, value)


@dataclass(frozen=True)
class Loss:
    """A loss l(z, y) for K outputs z and a target y (one-hot for cross-entropy).

    `builder(K)` returns (expr, z_symbols, y_symbols). `convex_in_z` is what the theory may use
    (a general loss has the sign of its Hessian trace, which convexity makes non-negative).
    """

    name: str
    builder: Callable[[int], tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]]
    target: str  # "real" (any y) or "onehot" (a class label)
    builtin: bool = True
    description: str = ""

    def expr(self, k: int) -> tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
        if k < 1:
            raise RegistryError(f"loss {self.name!r}: number of outputs K must be >= 1, got {k}")
        return self.builder(k)


def _relu(e: sp.Expr) -> sp.Expr:
    return sp.Piecewise((e, e > 0), (0, True))


def _gelu(e: sp.Expr) -> sp.Expr:
    return e / 2 * (1 + sp.erf(e / sp.sqrt(2)))


def _clip(e: sp.Expr, c: sp.Expr) -> sp.Expr:
    """min(e, c) written as a Piecewise so that sympy differentiates it branch by branch."""
    return sp.Piecewise((c, e >= c), (e, True))


def _rational(value: float) -> sp.Expr:
    return sp.nsimplify(value, rational=True)


# Parametrised families: name -> (default params, expression factory).
_FAMILIES: dict[str, tuple[dict[str, float], Callable[..., sp.Expr], str]] = {
    "leaky_relu": (
        {"slope": 0.01},
        lambda slope: sp.Piecewise((x, x > 0), (_rational(slope) * x, True)),
        "x for x > 0, slope*x otherwise",
    ),
    "relu2_clip": (
        {"c": 15.0},
        lambda c: sp.Piecewise(
            (0, x <= 0), (x**2, x < sp.sqrt(_rational(c))), (_rational(c), True)
        ),
        "min(relu(x)^2, c); the paper uses c = 15 and 50",
    ),
    "gelu2_clip": (
        {"c": 15.0},
        lambda c: _clip(_gelu(x) ** 2, _rational(c)),
        "min(gelu(x)^2, c)",
    ),
}

_PLAIN: dict[str, tuple[sp.Expr, str]] = {
    "relu": (_relu(x), "max(x, 0)"),
    "gelu": (_gelu(x), "x * Phi(x), exact erf form"),
    "silu": (x / (1 + sp.exp(-x)), "x * sigmoid(x)"),
    "tanh": (sp.tanh(x), "odd, symmetric control"),
    "identity": (x, "linear, symmetric control"),
    "relu2": (sp.Piecewise((x**2, x > 0), (0, True)), "relu(x)^2"),
    "gelu2": (_gelu(x) ** 2, "gelu(x)^2"),
}

ACTIVATIONS: dict[str, Activation] = {}


def _family_activation(family: str, overrides: dict[str, float], name: str) -> Activation:
    defaults, factory, description = _FAMILIES[family]
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise RegistryError(
            f"activation {family!r} has parameters {sorted(defaults)}, not {sorted(unknown)}"
        )
    params = {**defaults, **overrides}
    for key, value in params.items():
        if not math.isfinite(value):
            raise RegistryError(f"activation {family!r}: parameter {key} must be finite")
    if family.endswith("_clip") and params["c"] <= 0:
        raise RegistryError(f"activation {family!r}: clip value c must be > 0, got {params['c']}")
    return Activation(name, factory(**params), params, True, description)


def _install_builtins() -> None:
    for name, (expr, description) in _PLAIN.items():
        ACTIVATIONS[name] = Activation(name, expr, {}, True, description)
    for family in _FAMILIES:
        ACTIVATIONS[family] = _family_activation(family, {}, family)
    ACTIVATIONS["relu2_clip50"] = _family_activation("relu2_clip", {"c": 50.0}, "relu2_clip50")


_install_builtins()
BUILTIN_ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATIONS)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _known_names() -> str:
    return ", ".join(sorted(ACTIVATIONS))


def parse_expression(text: str | sp.Expr, name: str = "<expr>") -> sp.Expr:
    """Parse and validate an activation expression in `x` (Piecewise/Min/Max allowed).

    Min/Max/Abs/Heaviside are rewritten as Piecewise so that every derivation differentiates them
    branch by branch. Raises RegistryError for unparsable text, other free symbols, or values that
    are not real and finite on the real line.
    """
    if isinstance(text, sp.Basic):
        expr = text
    else:
        try:
            expr = sp.sympify(text, locals={"x": x, "relu": _relu, "gelu": _gelu})
        except (sp.SympifyError, SyntaxError, TypeError, AttributeError) as exc:
            raise RegistryError(f"activation {name!r}: cannot parse {text!r}: {exc}") from None
    if not isinstance(expr, sp.Expr):
        raise RegistryError(f"activation {name!r}: {text!r} is not an expression")
    # A user's plain Symbol('x') is not our real x: map it over by name.
    expr = expr.subs({s: x for s in expr.free_symbols if s.name == "x" and s != x})
    extra = expr.free_symbols - {x}
    if extra:
        raise RegistryError(
            f"activation {name!r}: expression may only use the variable x, "
            f"found {sorted(str(s) for s in extra)}"
        )
    if expr.has(sp.Min, sp.Max, sp.Abs, sp.Heaviside, sp.sign):
        expr = sp.piecewise_fold(expr.rewrite(sp.Piecewise))
    for point in _PROBE_POINTS:
        try:
            value = complex(sp.N(expr.subs(x, point), 20))
        except (TypeError, ValueError):
            raise RegistryError(
                f"activation {name!r}: {text!r} does not evaluate to a number at x = {point}"
            ) from None
        if abs(value.imag) > 1e-12 * max(1.0, abs(value.real)):
            raise RegistryError(
                f"activation {name!r}: {text!r} is not real-valued (x = {point} gives {value})"
            )
        if not math.isfinite(value.real):
            raise RegistryError(f"activation {name!r}: {text!r} is not finite at x = {point}")
    return expr


def register_activation(
    name: str, expr: str | sp.Expr, *, description: str = "", overwrite: bool = False
) -> Activation:
    """Add a user activation; it then flows through every derivation, estimate and model."""
    if not _NAME_RE.match(name or ""):
        raise RegistryError(f"activation name {name!r} must be an identifier (letters, digits, _)")
    if name in BUILTIN_ACTIVATIONS:
        raise RegistryError(f"activation {name!r} is built in and cannot be redefined")
    if name in ACTIVATIONS and not overwrite:
        old = ACTIVATIONS[name]
        new_expr = parse_expression(expr, name)
        if sp.simplify(old.expr - new_expr) == 0:
            return old
        raise RegistryError(f"activation {name!r} is already registered with {old.expr}")
    act = Activation(name, parse_expression(expr, name), {}, False, description or str(expr))
    ACTIVATIONS[name] = act
    return act


def unregister_activation(name: str) -> None:
    if name in BUILTIN_ACTIVATIONS:
        raise RegistryError(f"activation {name!r} is built in and cannot be removed")
    ACTIVATIONS.pop(name, None)


def parse_activation_spec(spec: str) -> Activation:
    """`NAME=EXPR` (register and return) or a name, optionally `family:key=value,...`."""
    if "=" in spec and ":" not in spec.split("=", 1)[0]:
        name, text = spec.split("=", 1)
        return register_activation(name.strip(), text.strip())
    return get_activation(spec)


def get_activation(spec: str) -> Activation:
    """Look up a registered name, or a parametrised family as `leaky_relu:slope=0.2`."""
    if spec in ACTIVATIONS:
        return ACTIVATIONS[spec]
    family, sep, rest = spec.partition(":")
    if sep and family in _FAMILIES:
        overrides: dict[str, float] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise RegistryError(f"activation spec {spec!r}: expected key=value, got {item!r}")
            try:
                overrides[key.strip()] = float(value)
            except ValueError:
                raise RegistryError(
                    f"activation spec {spec!r}: {key.strip()} must be a number, got {value!r}"
                ) from None
        act = _family_activation(family, overrides, spec)
        ACTIVATIONS[spec] = act
        return act
    raise RegistryError(
        f"unknown activation {spec!r}; valid names: {_known_names()} "
        f"(families take parameters as {', '.join(f + ':k=v' for f in _FAMILIES)}; "
        "add your own with NAME=EXPR)"
    )


def activation_names(builtin_only: bool = False) -> list[str]:
    return list(BUILTIN_ACTIVATIONS) if builtin_only else list(ACTIVATIONS)


# ----------------------------------------------------------------------------------- losses


def _symbols(prefix: str, k: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"{prefix}{i}", real=True) for i in range(k))


def _mse(k: int) -> tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    z, y = _symbols("z", k), _symbols("y", k)
    return sp.Rational(1, 2) * sum((zi - yi) ** 2 for zi, yi in zip(z, y, strict=True)), z, y


def _cross_entropy(k: int) -> tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    # y is a probability vector (one-hot for a label); loss = -sum_k y_k log softmax(z)_k.
    z, y = _symbols("z", k), _symbols("y", k)
    lse = sp.log(sum(sp.exp(zi) for zi in z))
    return sum(yi * (lse - zi) for zi, yi in zip(z, y, strict=True)), z, y


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", _mse, "real", True, "1/2 ||z - y||^2"),
    "cross_entropy": Loss("cross_entropy", _cross_entropy, "onehot", True, "softmax CE"),
}
BUILTIN_LOSSES: tuple[str, ...] = tuple(LOSSES)


def register_loss(name: str, expr: str | sp.Expr, *, target: str = "real") -> Loss:
    """Add a loss given per output coordinate in symbols `z` and `y` (summed over outputs),
    e.g. `(z - y)**4 / 4`; or in `z0..z{K-1}`, `y0..` for a fixed K."""
    if not _NAME_RE.match(name or ""):
        raise RegistryError(f"loss name {name!r} must be an identifier")
    if name in BUILTIN_LOSSES:
        raise RegistryError(f"loss {name!r} is built in and cannot be redefined")
    if target not in ("real", "onehot"):
        raise RegistryError(f"loss {name!r}: target must be 'real' or 'onehot', got {target!r}")
    try:
        parsed = sp.sympify(expr) if not isinstance(expr, sp.Basic) else expr
    except (sp.SympifyError, SyntaxError, TypeError) as exc:
        raise RegistryError(f"loss {name!r}: cannot parse {expr!r}: {exc}") from None
    names = {s.name for s in parsed.free_symbols}
    coordinatewise = names <= {"z", "y"}
    if not coordinatewise and not all(re.fullmatch(r"[zy]\d+", n) for n in names):
        raise RegistryError(
            f"loss {name!r}: use symbols z and y (per output) or z0.., y0.. only, "
            f"found {sorted(names)}"
        )

    def builder(k: int) -> tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
        z, y = _symbols("z", k), _symbols("y", k)
        if coordinatewise:
            zs, ys = sp.Symbol("z"), sp.Symbol("y")
            total = sum(parsed.subs({zs: zi, ys: yi}) for zi, yi in zip(z, y, strict=True))
            return sp.sympify(total), z, y
        mapping = {s: sp.Symbol(s.name, real=True) for s in parsed.free_symbols}
        used = parsed.subs(mapping)
        out_of_range = [s.name for s in used.free_symbols if int(s.name[1:]) >= k]
        if out_of_range:
            raise RegistryError(f"loss {name!r} uses {out_of_range} but K = {k}")
        return used, z, y

    loss = Loss(name, builder, target, False, str(expr))
    LOSSES[name] = loss
    return loss


def get_loss(name: str) -> Loss:
    if name in LOSSES:
        return LOSSES[name]
    raise RegistryError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")


def loss_names() -> list[str]:
    return list(LOSSES)
