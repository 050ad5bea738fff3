"""The single registry of activations and losses, as sympy expressions (the source of all names).

Add an activation with `register_activation("name", "expr in x")` or, from any CLI,
`--activation NAME=EXPR`; parametrised entries are addressed as `leaky_relu:slope=0.2`.
"""

from __future__ import annotations

import functools
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import sympy as sp

from theory.parse import gelu_expr as _gelu
from theory.parse import parse_safe
from theory.parse import relu_expr as _relu

x = sp.Symbol("x", real=True)

# Sample points used to reject expressions that are not real-valued on the real line.
_PROBE_POINTS = (-7.5, -3.0, -1.3, -0.4, -1e-3, 0.0, 1e-3, 0.37, 1.1, 2.9, 6.2)
# A parameter value written as a plain non-negative decimal keeps its text in a run name.
_PLAIN_NUMBER = re.compile(r"^(\d+\.?\d*|\.\d+)([eE]-?\d+)?$")

Params = tuple[tuple[str, float], ...]


class RegistryError(ValueError):
    """A name, spec or expression the registry cannot accept; the message says why."""


def _number_slug(value: float) -> str:
    """A float as run-name characters only, one text per value: `neg` for the sign, `em`/`ep`
    for the exponent's sign (a run name turns '-' and '+' alike into '-')."""
    text = repr(abs(float(value))).replace("e-", "em").replace("e+", "ep")
    return ("neg" if value < 0 else "") + text


@dataclass(frozen=True)
class Activation:
    """An activation sigma(x) as a sympy expression in the real symbol `x`.

    Parsed once from its spec (`parse_activation_spec`) and passed around as the object: it is
    hashable (`params` is a sorted tuple of (key, value) pairs), its `cache_key` is what caches
    key on (the expression, never the name), its `run_name` names runs, and it pickles as its
    spec, so a worker process re-registers a user's NAME=EXPR."""

    name: str
    expr: sp.Expr
    params: Params = ()
    builtin: bool = True
    description: str = ""
    source: str = ""  # the EXPR text a user gave, so `spec` recreates the activation

    def __post_init__(self) -> None:
        if isinstance(self.params, Mapping):
            object.__setattr__(self, "params", tuple(sorted(self.params.items())))

    @property
    def spec(self) -> str:
        """The text that recreates this activation in any process: its name for built-ins and
        parametrised families, NAME=EXPR for a user's expression (what run records store)."""
        if self.builtin:
            return self.name
        return f"{self.name}={self.source or self.expr}"

    @property
    def cache_key(self) -> sp.Expr:
        """What expression-keyed caches key on: a name registered again with another expression
        gets fresh answers, and two names with one expression share them."""
        return self.expr

    @property
    def run_name(self) -> str:
        """The activation's part of a run name: NAME for a user's NAME=EXPR, the name of a
        built-in, `family-key-value` for a parametrised family. Injective: a value written as a
        plain decimal keeps its text (the names of existing runs), any other is spelled out."""
        family, sep, rest = self.name.partition(":")
        if not (self.builtin and sep):
            return self.name
        values = dict(self.params)
        parts = [family]
        for item in filter(None, (i.strip() for i in rest.split(","))):
            key, _, text = (t.strip() for t in item.partition("="))
            plain = _PLAIN_NUMBER.match(text)
            parts += [key, text if plain else _number_slug(values[key])]
        return "-".join(parts)

    @property
    def derivative(self) -> sp.Expr:
        return sp.diff(self.expr, x)

    def __call__(self, value: sp.Expr | float) -> sp.Expr:
        return self.expr.subs(x, value)

    def __reduce__(self) -> tuple[Callable[..., Activation], tuple[Any, ...]]:
        # By its spec when text recreates it (a built-in, a family, a user's NAME=EXPR), so a
        # worker process registers it; an activation registered from a sympy expression carries
        # its expression (sympy's printout need not pass the whitelist parser).
        if self.builtin or self.source:
            return parse_activation_spec, (self.spec,)
        return _restore_activation, (self.name, self.expr, self.description)


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


def _shown(text: object, limit: int = 80) -> str:
    """The input as an error message quotes it: repr, cut to `limit` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


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
            raise RegistryError(f"activation {name!r}: cannot use {_shown(text)}: {exc}") from None
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
# Entries each activation-keyed cache keeps, the least recently used going first: far above what
# one ledger or sweep derives (about 60 activations), and a bound for a process that is fed
# activation after activation (a property test, a sweep over family parameters).
CACHE_SIZE = 512


def register_cache(clear: Callable[[], None]) -> None:
    """Have `clear_caches` also empty another cache (e.g. one keyed by a loss name)."""
    _CACHE_CLEARERS.append(clear)


def cached_by_expression(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Memoise `fn(act, *args)` on the activation's `cache_key` (its expression, never its name):
    a name registered again with another expression gets fresh answers, and two names with one
    expression share them. `fn` receives the Activation object; a public entry point may be
    handed a spec, which is parsed here, once, and the object passed on. Keeps the CACHE_SIZE
    most recently used answers."""
    store: OrderedDict[tuple, Any] = OrderedDict()
    _CACHE_CLEARERS.append(store.clear)

    @functools.wraps(fn)
    def wrapper(activation: Activation | str, *args: Any, **kwargs: Any) -> Any:
        act = as_activation(activation)
        key = (act.cache_key, args, tuple(sorted(kwargs.items())))
        if key in store:
            store.move_to_end(key)
            return store[key]
        value = store[key] = fn(act, *args, **kwargs)
        while len(store) > CACHE_SIZE:  # at most CACHE_SIZE answers, the oldest used go first
            store.popitem(last=False)
        return value

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


def _restore_activation(name: str, expr: sp.Expr, description: str) -> Activation:
    """Unpickling an activation registered from an expression: the registered one when the
    name holds the same expression, else one registered under the name if it is free, else
    the object alone (another definition owns the name in this process)."""
    old = ACTIVATIONS.get(name)
    if old is not None and old.expr == expr:
        return old
    act = Activation(name, expr, {}, False, description)
    if old is None:
        ACTIVATIONS[name] = act
    return act


def parse_activation_spec(spec: str) -> Activation:
    """`NAME=EXPR` (register and return) or a name, optionally `family:key=value,...`."""
    if "=" in spec and ":" not in spec.split("=", 1)[0]:
        name, text = spec.split("=", 1)
        return register_activation(name.strip(), text.strip())
    return get_activation(spec)


def as_activation(activation: Activation | str) -> Activation:
    """The Activation object of a public entry point's argument: an object passes through, a
    spec is parsed (the one conversion, at the entry point's top)."""
    if isinstance(activation, Activation):
        return activation
    return parse_activation_spec(activation)


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
                f"loss {name!r}: cannot use {_shown(expr)}: {exc} (use symbols z and y per "
                "output, or z0.., y0..)"
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
