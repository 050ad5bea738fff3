"""The sign vocabulary, the `Prediction` every `predict_*` returns, and sympy's three-valued signs.

Signs: positive | nonnegative | zero | nonpositive | negative | undetermined. Methods: sympy (an
identity or simplification sympy checked), argument (a written proof in docs/proofs.md whose every
step is a sympy identity or an exact enumeration, each checked by theory.proofs), certified
(interval arithmetic / rigorous bounds), numeric (evidence only). Library module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy as sp

SIGNS: tuple[str, ...] = (
    "positive",
    "nonnegative",
    "zero",
    "nonpositive",
    "negative",
    "undetermined",
)
# Strongest first: `weakest` labels a chain by its last member here. An argument is weaker than a
# sympy identity because its glue between checked steps is written by hand; an interval bound is
# weaker still because it also rests on floating enclosures and a stated tail bound.
METHODS: tuple[str, ...] = ("sympy", "argument", "certified", "numeric")

# The set of values {-1, 0, +1} each sign allows; "undetermined" allows everything.
_SIGN_SETS: dict[str, frozenset[int]] = {
    "positive": frozenset({1}),
    "nonnegative": frozenset({0, 1}),
    "zero": frozenset({0}),
    "nonpositive": frozenset({-1, 0}),
    "negative": frozenset({-1}),
    "undetermined": frozenset({-1, 0, 1}),
}
_FROM_SET = {v: k for k, v in _SIGN_SETS.items()}
# {-1, +1} (nonzero of unknown sign) has no name in the vocabulary: it is undetermined.
_FROM_SET[frozenset({-1, 1})] = "undetermined"


def check_sign(sign: str) -> str:
    if sign not in _SIGN_SETS:
        raise ValueError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    return sign


def sign_set(sign: str) -> frozenset[int]:
    return _SIGN_SETS[check_sign(sign)]


def sign_of_set(values: frozenset[int] | set[int]) -> str:
    return _FROM_SET[frozenset(values)] if values else "undetermined"


def sign_product(a: str, b: str) -> str:
    """Sign of a product from the signs of its factors (conservative, as sets)."""
    return sign_of_set({u * v for u in sign_set(a) for v in sign_set(b)})


def sign_negate(a: str) -> str:
    return sign_of_set({-u for u in sign_set(a)})


def sign_union(signs: list[str]) -> str:
    """The sign of a function from the signs of its pieces (each piece contributes its set)."""
    out: set[int] = set()
    for s in signs:
        out |= sign_set(s)
    return sign_of_set(out)


def implies(a: str, b: str) -> bool:
    """Whether knowing sign `a` establishes the statement `b` (a's set inside b's)."""
    return sign_set(a) <= sign_set(b)


def compatible(a: str, b: str) -> bool:
    """Whether two sign statements can both hold (their sets intersect)."""
    return bool(sign_set(a) & sign_set(b))


def weakest(*methods: str) -> str:
    """A chain of arguments is only as strong as its weakest step."""
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {m!r}")
    return max(methods, key=METHODS.index)


def sympy_sign(expr: sp.Expr) -> str:
    """Three-valued sign from sympy's assumptions: None from sympy stays `undetermined`."""
    if expr.is_zero is True:
        return "zero"
    if expr.is_positive is True:
        return "positive"
    if expr.is_negative is True:
        return "negative"
    if expr.is_nonnegative is True:
        return "nonnegative"
    if expr.is_nonpositive is True:
        return "nonpositive"
    return "undetermined"


@dataclass(frozen=True)
class Piece:
    """A sub-interval (lo, hi) of the real line and the sign established on it."""

    lo: float
    hi: float
    sign: str

    def __str__(self) -> str:
        return f"{self.sign} on ({self.lo:.6g}, {self.hi:.6g})"


@dataclass(frozen=True)
class Prediction:
    """What theory predicts for one quantity, and how it was established.

    `value` is a number, a sympy expression or None; `pieces` lists sub-intervals with their own
    sign when the quantity is a function whose sign changes (then `sign` is `undetermined` and
    `mixed` is True); `error` bounds (certified) or estimates (numeric) the error of `value`.
    """

    value: Any
    sign: str
    method: str
    detail: str = ""
    pieces: tuple[Piece, ...] = field(default_factory=tuple)
    error: float | None = None

    def __post_init__(self) -> None:
        check_sign(self.sign)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")

    @property
    def mixed(self) -> bool:
        """True when pieces of both strict signs were established (the sign changes)."""
        strict = {p.sign for p in self.pieces}
        return "positive" in strict and "negative" in strict

    @property
    def decided(self) -> bool:
        return self.sign != "undetermined"

    def value_float(self) -> float | None:
        """The value as a float when it is a number (sympy numbers included), else None."""
        if isinstance(self.value, (int, float)) and not isinstance(self.value, bool):
            return float(self.value)
        if isinstance(self.value, sp.Basic) and self.value.is_number:
            try:
                return float(self.value)
            except TypeError:
                return None
        return None
