"""The safe expression parser: text -> sympy expression by a whitelist, never `eval`/`sympify`.

The text is parsed by Python's `ast` into a tree that is checked node by node and built with
sympy constructors; it is never evaluated (sympy's `sympify` would run arbitrary Python). Both
the activation registry (`NAME=EXPR`, in x) and user losses (in z, y) go through `parse_safe`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

import sympy as sp


def relu_expr(e: sp.Expr) -> sp.Expr:
    return sp.Piecewise((e, e > 0), (0, True))


def gelu_expr(e: sp.Expr) -> sp.Expr:
    return e / 2 * (1 + sp.erf(e / sp.sqrt(2)))


# Functions a user expression may call, by the name it is written with. Nothing else is callable.
FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {
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
    "relu": relu_expr,
    "gelu": gelu_expr,
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
    f"and the functions {', '.join(sorted(FUNCTIONS))}"
)


class _Refused(ValueError):
    """A node outside the whitelist; the message names it."""


class _TooLarge(_Refused):
    """A constant beyond the literal limit (no syntax list needed to explain it)."""


def _folded(expr: Any, text: str) -> Any:
    """A subexpression without x is a constant: fold it to a float and apply the literal limit
    to the result, so that 1000000*1000000*x or exp(exp(100)) cannot bypass it."""
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


def _number(value: Any) -> sp.Expr:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused(f"the literal {value!r} is not a number")
    if not math.isfinite(value) or abs(value) > _MAX_LITERAL:
        raise _Refused(f"the number {value!r} is not finite or exceeds {_MAX_LITERAL:g}")
    return sp.Integer(value) if isinstance(value, int) else sp.nsimplify(value, rational=True)


class _Builder:
    """Builds the sympy expression of a checked `ast` tree over the allowed `symbols`."""

    def __init__(self, symbols: dict[str, sp.Expr]) -> None:
        self.symbols = symbols

    def build(self, node: ast.AST, in_piecewise: bool = False) -> Any:
        if isinstance(node, ast.Expression):
            return self.build(node.body)
        if isinstance(node, ast.Constant):
            return sp.true if node.value is True and in_piecewise else _number(node.value)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.build(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self.binary(node)
        if isinstance(node, ast.Compare) and in_piecewise and len(node.ops) == 1:
            op = type(node.ops[0])
            if op not in _COMPARE:
                raise _Refused("only < <= > >= comparisons are allowed")
            return _COMPARE[op](self.build(node.left), self.build(node.comparators[0]))
        if isinstance(node, ast.Tuple) and in_piecewise and len(node.elts) == 2:
            return (self.build(node.elts[0]), self.build(node.elts[1], in_piecewise=True))
        if isinstance(node, ast.Call):
            return self.call(node)
        raise _Refused(f"the syntax {type(node).__name__} is not allowed")

    def name(self, ident: str) -> sp.Expr:
        if ident in self.symbols:
            return self.symbols[ident]
        if ident in _CONSTANTS:
            return _CONSTANTS[ident]
        raise _Refused(f"unknown name {ident!r}")

    def binary(self, node: ast.BinOp) -> Any:
        left, right = self.build(node.left), self.build(node.right)
        if isinstance(node.op, (ast.Pow, ast.BitXor)) and right.is_number:
            if abs(complex(right)) > _MAX_EXPONENT:
                raise _Refused(f"the exponent {right} exceeds {_MAX_EXPONENT}")
        return _folded(_BINARY[type(node.op)](left, right), ast.unparse(node))

    def call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            if isinstance(node.func, ast.Name):
                raise _Refused(f"the function {node.func.id!r} is not allowed")
            raise _Refused(
                "only named functions may be called: calling attributes or results is not allowed"
            )
        if node.keywords or not node.args:
            raise _Refused(f"{node.func.id}() takes positional arguments only")
        piecewise = node.func.id == "Piecewise"
        args = [self.build(a, in_piecewise=piecewise) for a in node.args]
        if piecewise and not all(isinstance(a, tuple) for a in args):
            raise _Refused("Piecewise takes (expression, condition) pairs")
        return _folded(FUNCTIONS[node.func.id](*args), ast.unparse(node))


def parse_safe(text: str, symbols: dict[str, sp.Expr]) -> sp.Expr:
    """Build a sympy expression from `text` using the whitelist only (never `eval`/`sympify`).

    `symbols` maps the variable names allowed (e.g. {"x": x}) to their sympy symbols. Raises
    ValueError naming what is not allowed."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"longer than {MAX_EXPRESSION_CHARS} characters ({len(text)})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a formula ({exc.msg})") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPRESSION_NODES:
        raise ValueError(f"more than {MAX_EXPRESSION_NODES} syntax nodes")
    try:
        expr = _Builder(symbols).build(tree)
    except _TooLarge as exc:
        raise ValueError(str(exc)) from None
    except _Refused as exc:
        raise ValueError(f"{exc}; allowed: {ALLOWED_SYNTAX}") from None
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"sympy cannot build it ({exc})") from None
    if not isinstance(expr, sp.Expr):
        raise ValueError("not an expression")
    return expr
