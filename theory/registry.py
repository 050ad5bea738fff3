"""The single registry of activations and losses, as sympy expressions (the source of all names).

Add an activation with `register_activation("name", "expr in x")` or, from any CLI,
`--activation NAME=EXPR`; parametrised entries are addressed as `leaky_relu:slope=0.2`.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

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
    source: str = ""  # the EXPR text a user gave, so `spec` recreates the activation

    @property
    def spec(self) -> str:
        """The text that recreates this activation in any process: its name for built-ins and
        parametrised families, NAME=EXPR for a user's expression (what run records store)."""
        if self.builtin:
            return self.name
        return f"{self.name}={self.source or self.expr}"

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


# ------------------------------------------------------------------- the expression whitelist

# Functions a user expression may call, by the name it is written with. Nothing else is callable:
# the text is parsed by Python's `ast` into a tree that is checked node by node and built with
# sympy constructors; it is never evaluated (sympy's `sympify` would run arbitrary Python).
_FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "sin": sp.sin,
    "cos": sp.cos,
    "atan": sp.atan,
    "erf": sp.erf,
    "erfc": sp.erfc,
    "Abs": sp.Abs,
    "abs": sp.Abs,
    "sign": sp.sign,
    "Heaviside": sp.Heaviside,
    "Min": sp.Min,
    "Max": sp.Max,
    "min": sp.Min,
    "max": sp.Max,
    "Piecewise": sp.Piecewise,
    "relu": lambda e: _relu(e),
    "gelu": lambda e: _gelu(e),
    "sigmoid": lambda e: 1 / (1 + sp.exp(-e)),
}
_CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}
_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
    ast.BitXor: lambda a, b: a**b,  # x^2 as sympy's parser reads it
}
_COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}
MAX_EXPRESSION_CHARS = 500
MAX_EXPRESSION_NODES = 200
_MAX_LITERAL = 1e6  # larger numbers (and integer powers of them) are refused, not evaluated
_MAX_EXPONENT = 16

ALLOWED_SYNTAX = (
    "numbers, the variable x, + - * / ** (or ^), comparisons < <= > >= inside Piecewise, pi, E "
    f"and the functions {', '.join(sorted(_FUNCTIONS))}"
)


class _Refused(ValueError):
    """A node outside the whitelist; the message names it."""


class _TooLarge(_Refused):
    """A constant beyond the literal limit (no syntax list needed to explain it)."""


def parse_safe(text: str, symbols: dict[str, sp.Expr]) -> sp.Expr:
    """Build a sympy expression from `text` using the whitelist only (never `eval`/`sympify`).

    `symbols` maps the variable names allowed (e.g. {"x": x}) to their sympy symbols. Raises
    ValueError naming what is not allowed."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a formula ({exc.msg})") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_EXPRESSION_NODES:
        raise ValueError(f"more than {MAX_EXPRESSION_NODES} syntax nodes")

    def folded(expr: Any, text: str) -> Any:
        """A subexpression without x is a constant: fold it to a float and apply the literal
        limit to the result, so that 1000000*1000000*x or exp(exp(100)) cannot bypass it."""
        if not isinstance(expr, sp.Expr) or expr.free_symbols:
            return expr
        if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
            raise _TooLarge(f"the constant {text!r} is not finite")
        try:
            value = complex(sp.lambdify((), expr, modules="math")())
        except (OverflowError, ValueError, ZeroDivisionError, TypeError):
            raise _TooLarge(
                f"the constant {text!r} is not finite or exceeds {_MAX_LITERAL:g}"
            ) from None
        if not (math.isfinite(value.real) and math.isfinite(value.imag)):
            raise _TooLarge(f"the constant {text!r} is not finite")
        if abs(value) > _MAX_LITERAL:
            raise _TooLarge(f"the constant {text!r} = {value.real:.6g} exceeds {_MAX_LITERAL:g}")
        return expr

    def number(value: Any) -> sp.Expr:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Refused(f"the literal {value!r} is not a number")
        if not math.isfinite(value) or abs(value) > _MAX_LITERAL:
            raise _Refused(f"the number {value!r} is not finite or exceeds {_MAX_LITERAL:g}")
        return sp.Integer(value) if isinstance(value, int) else sp.nsimplify(value, rational=True)

    def build(node: ast.AST, in_piecewise: bool = False) -> Any:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant):
            if node.value is True and in_piecewise:
                return sp.true
            return number(node.value)
        if isinstance(node, ast.Name):
            if node.id in symbols:
                return symbols[node.id]
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise _Refused(f"unknown name {node.id!r}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = build(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = build(node.left), build(node.right)
            if isinstance(node.op, (ast.Pow, ast.BitXor)) and right.is_number:
                if abs(complex(right)) > _MAX_EXPONENT:
                    raise _Refused(f"the exponent {right} exceeds {_MAX_EXPONENT}")
            return folded(_BINARY[type(node.op)](left, right), ast.unparse(node))
        if isinstance(node, ast.Compare) and in_piecewise and len(node.ops) == 1:
            op = type(node.ops[0])
            if op not in _COMPARE:
                raise _Refused("only < <= > >= comparisons are allowed")
            return _COMPARE[op](build(node.left), build(node.comparators[0]))
        if isinstance(node, ast.Tuple) and in_piecewise and len(node.elts) == 2:
            return (build(node.elts[0]), build(node.elts[1], in_piecewise=True))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                if isinstance(node.func, ast.Name):
                    raise _Refused(f"the function {node.func.id!r} is not allowed")
                raise _Refused(
                    "only named functions may be called: calling attributes or results is "
                    "not allowed"
                )
            if node.keywords or not node.args:
                raise _Refused(f"{node.func.id}() takes positional arguments only")
            piecewise = node.func.id == "Piecewise"
            args = [build(a, in_piecewise=piecewise) for a in node.args]
            if piecewise and not all(isinstance(a, tuple) for a in args):
                raise _Refused("Piecewise takes (expression, condition) pairs")
            return folded(_FUNCTIONS[node.func.id](*args), ast.unparse(node))
        raise _Refused(f"the syntax {type(node).__name__} is not allowed")

    try:
        expr = build(tree)
    except _TooLarge as exc:
        raise ValueError(str(exc)) from None
    except _Refused as exc:
        raise ValueError(f"{exc}; allowed: {ALLOWED_SYNTAX}") from None
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"sympy cannot build it ({exc})") from None
    if not isinstance(expr, sp.Expr):
        raise ValueError("not an expression")
    return expr


class _Undecided(Exception):
    """The singularity analysis cannot decide a node; the caller refuses the expression."""


_ENTIRE = (
    sp.exp,
    sp.sin,
    sp.cos,
    sp.tanh,
    sp.sinh,
    sp.cosh,
    sp.atan,
    sp.erf,
    sp.erfc,
    sp.Abs,
    sp.sign,
    sp.Heaviside,
    sp.Min,
    sp.Max,
)


def _solve(condition: Any, where: sp.Set) -> sp.Set:
    found = sp.solveset(condition, x, where)
    if isinstance(found, (sp.ConditionSet, sp.ImageSet)) or found.has(sp.ConditionSet):
        raise _Undecided(str(condition))
    return found


def _singular_set(e: sp.Expr, where: sp.Set) -> sp.Set:
    """Points of `where` at which e is undefined (a pole, log or root of a negative number)."""
    if where is sp.S.EmptySet or e == x:
        return sp.S.EmptySet
    if e.is_number:  # zoo, oo or nan (1/0 inside a branch) is undefined wherever it is taken
        return where if e.has(sp.zoo, sp.oo, -sp.oo, sp.nan) else sp.S.EmptySet
    if isinstance(e, sp.Piecewise):
        bad, rest = sp.S.EmptySet, where
        for branch, cond in e.args:
            active = rest if cond is sp.true else sp.Intersection(rest, cond.as_set())
            # A branch is checked on the closure of where it is taken: 1/x taken for x > 0 has
            # no pole there, but it is unbounded as x -> 0+, so its expectations diverge.
            closed = active if active is sp.S.EmptySet else active.closure
            bad = sp.Union(bad, _singular_set(branch, closed))
            rest = sp.Complement(rest, active)
        return bad
    if isinstance(e, (sp.Add, sp.Mul)) or e.func in _ENTIRE:
        out = sp.S.EmptySet
        for arg in e.args:
            out = sp.Union(out, _singular_set(arg, where))
        return out
    if isinstance(e, sp.Pow):
        base, power = e.args
        if power.has(x):
            raise _Undecided(str(e))
        out = _singular_set(base, where)
        if power.is_integer and power.is_nonnegative:
            return out
        if power.is_negative:
            out = sp.Union(out, _solve(sp.Eq(base, 0), where))
        if not power.is_integer:
            out = sp.Union(out, _solve(base < 0, where))
        return out
    if isinstance(e, sp.log):
        (arg,) = e.args
        return sp.Union(_singular_set(arg, where), _solve(arg <= 0, where))
    raise _Undecided(str(e.func))


def singularities(expr: sp.Expr) -> sp.Set:
    """The real points where `expr` is undefined, decided symbolically; raises ValueError when
    sympy cannot decide (such an expression is refused rather than guessed about)."""
    try:
        return sp.simplify(_singular_set(expr, sp.S.Reals))
    except _Undecided as exc:
        raise ValueError(f"cannot decide where {exc} is finite on the real line") from None
    except (TypeError, NotImplementedError) as exc:
        raise ValueError(f"cannot decide where it is finite ({type(exc).__name__})") from None


def parse_expression(text: str | sp.Expr, name: str = "<expr>") -> sp.Expr:
    """Parse (by the whitelist, see `parse_safe`) and validate an activation expression in `x`.

    Min/Max/Abs/Heaviside are rewritten as Piecewise so that every derivation differentiates them
    branch by branch. Raises RegistryError for text outside the whitelist, other free symbols,
    real points where the expression is undefined (decided symbolically), or values that are
    not real and finite at sample points of the real line.
    """
    if isinstance(text, sp.Basic):
        expr = text
    else:
        try:
            expr = parse_safe(str(text), {"x": x})
        except ValueError as exc:
            raise RegistryError(f"activation {name!r}: cannot use {text!r}: {exc}") from None
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
    try:
        bad = singularities(expr)
    except ValueError as exc:
        raise RegistryError(f"activation {name!r}: {text!r}: {exc}") from None
    if bad != sp.S.EmptySet:
        raise RegistryError(
            f"activation {name!r}: {text!r} is undefined on the real line at {bad} (or a "
            "Piecewise branch is unbounded as x approaches it); an activation must be finite "
            "and bounded near every real x"
        )
    for point in _PROBE_POINTS:
        try:
            value = complex(sp.N(expr.subs(x, point), 20))
        except (TypeError, ValueError, ZeroDivisionError):
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


# ------------------------------------------------------------ caches keyed by the expression

_CACHE_CLEARERS: list[Callable[[], None]] = []


def register_cache(clear: Callable[[], None]) -> None:
    """Have `clear_caches` also empty another cache (e.g. one keyed by a loss name)."""
    _CACHE_CLEARERS.append(clear)


def cached_by_expression(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Memoise `fn(activation, *args)` on the activation's expression (never its name): a name
    registered again with another expression gets fresh answers, and two names with one
    expression share them."""
    store: dict[tuple, Any] = {}
    _CACHE_CLEARERS.append(store.clear)

    @functools.wraps(fn)
    def wrapper(activation: str, *args: Any, **kwargs: Any) -> Any:
        key = (get_activation(activation).expr, args, tuple(sorted(kwargs.items())))
        if key not in store:
            store[key] = fn(activation, *args, **kwargs)
        return store[key]

    wrapper.cache_clear = store.clear  # type: ignore[attr-defined]
    return wrapper


def clear_caches() -> None:
    """Empty every expression-keyed cache (tests that patch the registry's semantics use it)."""
    for clear in _CACHE_CLEARERS:
        clear()


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
        if isinstance(expr, str) and expr.strip() == old.spec.partition("=")[2]:
            return old  # the same NAME=EXPR again (another layer, a worker): no second parse
        new_expr = parse_expression(expr, name)
        if sp.simplify(old.expr - new_expr) == 0:
            return old
        raise RegistryError(f"activation {name!r} is already registered with {old.expr}")
    act = Activation(name, parse_expression(expr, name), {}, False, description or str(expr))
    if isinstance(expr, str):
        act = replace(act, source=expr.strip())
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
    if isinstance(expr, sp.Basic):
        parsed = expr
    else:
        text = str(expr)
        allowed = {n: sp.Symbol(n) for n in set(re.findall(r"\b[zy]\d*\b", text))}
        try:
            parsed = parse_safe(text, allowed)
        except ValueError as exc:
            raise RegistryError(
                f"loss {name!r}: cannot use {expr!r}: {exc} (use symbols z and y per output, or "
                "z0.., y0..)"
            ) from None
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
            return sp.Integer(0) + total, z, y
        mapping = {s: sp.Symbol(s.name, real=True) for s in parsed.free_symbols}
        used = parsed.subs(mapping)
        out_of_range = [s.name for s in used.free_symbols if int(s.name[1:]) >= k]
        if out_of_range:
            raise RegistryError(f"loss {name!r} uses {out_of_range} but K = {k}")
        return used, z, y

    loss = Loss(name, builder, target, False, str(expr))
    LOSSES[name] = loss
    clear_caches()  # loss-keyed answers (the Hessian factor) may have changed
    return loss


def get_loss(name: str) -> Loss:
    if name in LOSSES:
        return LOSSES[name]
    raise RegistryError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")


def loss_names() -> list[str]:
    return list(LOSSES)
