"""docs/LAYOUT.md is true of the code: imports go down the layers, no circles, size limits hold."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("theory", "empirics", "paper_figures", "benchmarks")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


@cache
def layers() -> list[tuple[int, str, re.Pattern[str]]]:
    """(rank, name, pattern) rows of the layout table, top layer first."""
    rows = []
    for line in (ROOT / "docs" / "LAYOUT.md").read_text().splitlines():
        m = re.match(r"^\| (\d+) (\w+) \| (.+) \|$", line)
        if m:
            for glob in re.findall(r"`([\w.*]+)`", m.group(3)):
                head = glob.removesuffix(".*")
                tail = r"(\..*)?" if glob.endswith(".*") else ""
                pattern = re.compile("^" + re.escape(head) + tail + "$")
                rows.append((int(m.group(1)), m.group(2), pattern))
    return rows


def layer_of(module: str, table: list[tuple[int, str, re.Pattern[str]]]) -> int | None:
    for rank, _, pattern in table:
        if pattern.match(module):
            return rank
    return None


@cache
def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """Every project module `path` imports, at top level or inside functions."""
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


@cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(p, m, known) for m, p in known.items()}


def test_layout_table_covers_every_module():
    table = layers()
    assert table, "docs/LAYOUT.md lost its layer table"
    missing = [m for m in modules() if layer_of(m, table) is None]
    assert not missing, "modules in no layer of docs/LAYOUT.md:\n" + "\n".join(missing)


def upward_imports(g: dict[str, set[str]], table) -> list[str]:
    """Every import from a module to one in a higher layer."""
    return [
        f"{m} (layer {layer_of(m, table)}) imports {d} (layer {layer_of(d, table)})"
        for m, deps in g.items()
        for d in sorted(deps)
        if (layer_of(d, table) or 0) > (layer_of(m, table) or 0)
    ]


def import_circles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return circles


def test_imports_never_go_up_a_layer():
    upward = upward_imports(graph(), layers())
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    # package __init__ modules import their children by definition of a package; a circle through
    # one is still a circle, so they stay in.
    circles = import_circles(graph())
    assert not circles, "\n".join(" <-> ".join(c) for c in circles)


def test_size_limits():
    too_long = defaultdict(list)
    for module, path in modules().items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long["modules"].append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long["functions"].append(f"{module}.{node.name}: {length} lines")
    assert not too_long, "\n".join(x for v in too_long.values() for x in v)


def test_the_checker_has_teeth(tmp_path):
    """A lazy upward import is read, and an upward edge and a circle planted in a copy of the
    real graph are both reported."""
    table = layers()
    assert layer_of("empirics.train.loop", table) < layer_of("empirics.ledger.verify", table)
    assert layer_of("theory.registry", table) == min(rank for rank, _, _ in table)
    planted = tmp_path / "mod.py"
    planted.write_text("def f():\n    from empirics.ledger import verify\n")
    known = {"empirics.ledger.verify": planted, "empirics.ledger": planted, "x.mod": planted}
    assert imports_of(planted, "x.mod", known) == {"empirics.ledger", "empirics.ledger.verify"}
    g = {m: set(d) for m, d in graph().items()}
    assert not upward_imports(g, table) and not import_circles(g)
    g["empirics.train.loop"].add("empirics.ledger.verify")  # up a layer
    assert upward_imports(g, table) == [
        f"empirics.train.loop (layer {layer_of('empirics.train.loop', table)}) imports "
        f"empirics.ledger.verify (layer {layer_of('empirics.ledger.verify', table)})"
    ]
    g["theory.registry"].add("theory.parse")
    g["theory.parse"].add("theory.registry")  # a circle within one layer
    assert ["theory.parse", "theory.registry"] in import_circles(g)
