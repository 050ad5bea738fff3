"""The command-line grammar the entry points share: exit codes, lists, seeds, run names, errors.

`python -m empirics.train list activations` and `python -m empirics.montecarlo list activations`
print the registry through `list_activations`. Every `main()` returns one of the exit codes; every
comma list goes through `split_list` (one grammar: an empty item is refused everywhere), every
seed through `check_seed` (one range), every default run name through `run_name` (one function).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from theory.registry import Activation

EXIT_OK = 0  # done, every result passed
EXIT_FAILED = 1  # a result that fails: a `fail` verdict, a diverged run, data not installed
EXIT_BAD_INPUT = 2  # bad input, refused before any compute (argparse exits with it too)

# Seeds are offset (data, validation streams) and handed to torch, whose seeds are 64-bit signed.
MAX_SEED = 2**63 - 1
SEED_RANGE = "an integer in [0, 2**63 - 1]"


class InputError(ValueError):
    """Bad command-line input; the message names the field, the value and what is accepted."""


def fail(prog: str, message: str, stream: TextIO | None = None) -> int:
    """Print `PROG: error: MESSAGE` (argparse's own prefix, so every entry point reads alike) and
    return EXIT_BAD_INPUT."""
    print(f"{prog}: error: {message}", file=stream or sys.stderr)
    return EXIT_BAD_INPUT


def split_list(text: str, field: str, *, allow_empty: bool = False) -> list[str]:
    """`a,b,c` -> ['a', 'b', 'c'], items stripped. An empty item (`a,,b`, `a,`, `,a`) is refused:
    it is almost always a typo, and silently dropping it changes the grid without saying so."""
    text = str(text)
    if not text.strip():
        if allow_empty:
            return []
        raise InputError(f"{field}: expected a comma-separated list, got an empty value {text!r}")
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise InputError(
            f"{field}: empty item in {text!r}; accepted: comma-separated values, none empty"
        )
    return items


def split_specs(values: Iterable[str], field: str) -> list[str]:
    """Repeated `--arch`/`--activation` values, each a comma list unless it holds '='.

    `NAME=EXPR` (e.g. `f=Max(x,0)`) and `name:param=value` specs may contain commas, so a value
    with '=' is taken whole; `relu,gelu` is two entries; `relu,,gelu` is refused."""
    out: list[str] = []
    for value in values:
        if "=" in value:
            if not value.strip():
                raise InputError(f"{field}: empty value {value!r}")
            out.append(value.strip())
        else:
            out.extend(split_list(value, field))
    return out


def parse_ints(
    text: str, field: str, *, lo: int | None = None, hi: int | None = None, accepted: str = ""
) -> list[int]:
    """A comma list of integers, each in [lo, hi]; InputError names the item that is not."""
    accepted = accepted or (
        "integers"
        + (f" >= {lo}" if lo is not None and hi is None else "")
        + (f" in [{lo}, {hi}]" if lo is not None and hi is not None else "")
    )
    out = []
    for item in split_list(text, field):
        try:
            value = int(item)
        except ValueError:
            raise InputError(
                f"{field}: {item!r} in {text!r} is not an integer; accepted: {accepted}"
            ) from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise InputError(f"{field}: {value} in {text!r} is out of range; accepted: {accepted}")
        out.append(value)
    return out


def check_seed(seed: Any, field: str = "--seed") -> int:
    """One seed range for every entry point: [0, 2**63 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{field}: expected {SEED_RANGE}, got {seed!r}")
    return seed


def parse_seeds(values: str | Sequence[str], field: str = "--seeds") -> list[int]:
    """`0,1,2` (or repeated values `['0,1', '2']`) -> [0, 1, 2], each in the one seed range; an
    empty item or a repeated seed is refused (a repeat would run the same point twice)."""
    texts = [values] if isinstance(values, str) else list(values)
    if not texts:
        raise InputError(f"{field}: no seeds given; accepted: comma-separated {SEED_RANGE}")
    seeds: list[int] = []
    for text in texts:
        seeds += parse_ints(text, field, lo=0, hi=MAX_SEED, accepted=SEED_RANGE + " each")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise InputError(f"{field}: seed(s) {repeated} given twice in {','.join(texts)!r}")
    return seeds


# ------------------------------------------------------------------------------- run names

_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def slug(text: str) -> str:
    """A piece of a directory name: runs of other characters become one '-'."""
    return _UNSAFE.sub("-", str(text)).strip("-") or "x"


def activation_slug(activation: Activation | str) -> str:
    """The activation part of a run name: the object's `run_name` (NAME for `NAME=EXPR`, whose
    expression can be long and is recorded in config.json; the whole spec otherwise, parameters
    included, so that `leaky_relu:slope=0.2` and `leaky_relu:slope=0.3` name different runs).
    Takes the Activation or its spec; a spec the registry refuses is named by its text (naming a
    run judges nothing: the spec is refused where it enters)."""
    if isinstance(activation, str):
        head = activation.split(":", 1)[0]
        if "=" in head:  # NAME=EXPR: the name, without parsing the expression
            return slug(activation.split("=", 1)[0])
        from theory.registry import RegistryError, as_activation

        try:
            activation = as_activation(activation)
        except RegistryError:
            return slug(activation)
    return slug(activation.run_name)


def run_name(*parts: Any, seed: int) -> str:
    """The one default run name: the slugged parts joined by '-', then `s<seed>`, e.g.
    `run_name('mlp', activation_slug('relu'), 'real', seed=0) == 'mlp-relu-real-s0'`."""
    pieces = [slug(p) for p in parts if p not in (None, "")]
    return "-".join([*pieces, f"s{int(seed)}"])


# ------------------------------------------------------------------------- ledger scales


def evidence_scale(entry: dict[str, Any]) -> str | None:
    """The experiment scale a ledger row's evidence was read from (`full`, `quick`, ...), from
    the `source` path `results/experiments/<scale>/...`; None for rows without such a source
    (theory, Monte Carlo, the early-training module's own grid)."""
    evidence = entry.get("evidence")
    source = None
    if isinstance(evidence, dict):
        source = evidence.get("source")
    for key in ("experiment", "evidence_detail"):
        block = entry.get(key)
        if source is None and isinstance(block, dict):
            source = block.get("source")
    if not isinstance(source, str):
        return None
    parts = re.split(r"[\\/]+", source)
    for i, part in enumerate(parts[:-1]):
        if part == "experiments" and i + 1 < len(parts) - 1:
            return parts[i + 1]
    return None


def list_activations(stream: TextIO | None = None) -> int:
    """Print every registered activation with its expression, and the spec forms accepted."""
    from theory import registry

    stream = stream or sys.stdout
    for name in registry.activation_names():
        print(f"{name:<16} {registry.get_activation(name).expr}", file=stream)
    print("also: NAME=EXPR (an expression in x), families as leaky_relu:slope=0.2", file=stream)
    return EXIT_OK


# ---------------------------------------------------------------- flags from pydantic configs


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the base type of a field's annotation, whether None is allowed): strips Annotated and
    Optional, keeps Literal, tuple[...] and list[...] as they are."""
    import types
    import typing

    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _convert(base: Any) -> Any:
    """A converter for one value of a scalar field: int, float or (anything else) str."""
    return base if base in (int, float) else str


def _item_parser(annotation: Any, flag: str) -> Any:
    """The argparse `type` of a field: int/float/str converted here, comma lists split by
    `split_list` (so `8,,8` is refused) and each item converted; pydantic then checks bounds.
    A tuple may be written with its brackets, `(0.9,0.95)` as `0.9,0.95`."""
    import typing

    base, _ = _unwrap(annotation)
    origin = typing.get_origin(base)
    if origin not in (tuple, list):
        return _convert(base)
    inner = [a for a in typing.get_args(base) if a is not Ellipsis] or [str]
    item_base, _ = _unwrap(inner[0])
    convert = _convert(item_base)
    kind = {int: "integers", float: "numbers"}.get(convert, "values")

    def parse_list(text: str) -> list[Any]:
        # argparse prefixes `argument FLAG:`; the messages below name the value, not the flag.
        body = text.strip()
        if origin is tuple and body[:1] + body[-1:] in ("()", "[]"):
            body = body[1:-1]
        try:
            items = split_list(body, flag)
        except InputError as exc:
            raise argparse_error(str(exc).removeprefix(f"{flag}: ")) from None
        out = []
        for item in items:
            try:
                out.append(convert(item))
            except ValueError:
                raise argparse_error(
                    f"{item!r} in {text!r} is not a number; accepted: comma-separated {kind}"
                ) from None
        return out

    return parse_list


def argparse_error(message: str) -> Exception:
    import argparse

    return argparse.ArgumentTypeError(message)


def _literal_choices(base: Any) -> tuple[Any, ...] | None:
    import typing

    return typing.get_args(base) if typing.get_origin(base) is typing.Literal else None


def add_config_flags(
    parser: Any,
    model: Any,
    *,
    skip: Iterable[str] = (),
    aliases: dict[str, Sequence[str]] | None = None,
    parsers: dict[str, Any] | None = None,
) -> list[str]:
    """Add one `--field-name` flag per field of the pydantic `model`, its help taken from the
    field's `description` (plus its default and, for a Literal, its choices): a field's type,
    bounds and help are written once, in the config. Booleans become `--field` (default False)
    or `--no-field` (default True). A Literal field's flag refuses other values itself (argparse
    names the flag, the value and the choices). Flags not given are absent from the namespace
    (the parser should use `argument_default=SUPPRESS`), so the config's own defaults and
    presets apply. `parsers` replaces a field's argparse `type` (a list with its own message).
    Returns the field names given flags; `config_kwargs` reads them back."""
    aliases = aliases or {}
    names = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        base, _ = _unwrap(field.annotation)
        flag = "--" + name.replace("_", "-")
        # argparse %-formats help text: a literal '%' must be doubled.
        help_text = (field.description or "").replace("%", "%%")
        choices = _literal_choices(base)
        if choices:
            listed = " | ".join(str(c) for c in choices)
            help_text = f"{help_text} ({listed})" if help_text else listed
        default = field.default
        if base is bool:
            negated = default is True
            if negated and help_text:
                help_text = f"turn off {help_text}"
            parser.add_argument(
                f"--no-{name.replace('_', '-')}" if negated else flag,
                *aliases.get(name, ()),
                dest=name,
                action="store_false" if negated else "store_true",
                help=help_text or None,
            )
            names.append(name)
            continue
        if default is not None and "PydanticUndefined" not in repr(default):
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f"{help_text} (default {shown})".strip()
        parser.add_argument(
            flag,
            *aliases.get(name, ()),
            dest=name,
            type=(parsers or {}).get(name) or _item_parser(field.annotation, flag),
            choices=choices or None,
            metavar=name.upper(),
            help=help_text or None,
        )
        names.append(name)
    return names


def config_kwargs(args: Any, names: Iterable[str]) -> dict[str, Any]:
    """The fields among `names` that were given on the command line (SUPPRESS leaves the others
    out), ready for `Model(**kwargs)`."""
    given = vars(args)
    return {name: given[name] for name in names if name in given}
