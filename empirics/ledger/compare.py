"""Before/after table of two runs of the experiments (torch-free): did a change (a speed-up, say)
keep the experiment rows where they were?

`python -m empirics.ledger.compare [--before reference] [--after results] [--out FILE.json]`
reads the aggregated experiment JSON files the committed ledger reads (under BEFORE) and the
same relative paths under AFTER, and the two ledgers (BEFORE/ledger.json, AFTER/verify/
ledger.json), and prints:

- per file: the numbers found at the same place in both (identical / different), and every
  estimate written as {mean, ci} (a mean over seeds with its interval): how many moved, and
  whether each after-mean lies inside the before-interval (and the other way round);
- per experiment row of the ledger: its verdict before and after, and whether its text changed.

Two runs of the same code and seeds give identical numbers; a change that only reorders float
arithmetic moves them by rounding, and chaotic runs (C10) then end elsewhere within the seed
spread. An estimate outside the other run's interval is listed by path. This is a description,
not a test: for two independent runs of equal spread a mean falls outside the other's 95 %
interval by chance about 17 % of the time (|Z| > 1.96/sqrt 2); the table prints that rate
beside the count.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from empirics.ledger.reference import LEDGER, REFERENCE, experiment_sources
from empirics.outputs import REPO_ROOT, atomic_write_json

# P(|Z| > 1.96 / sqrt 2): how often one of two independent equal-spread means falls outside the
# other's 95 % interval with no change at all.
CHANCE_OUTSIDE = math.erfc(1.959964 / 2)

# Keys whose numbers say when and where a run was made, not what it measured.
_NOT_RESULTS = ("provenance", "timing", "wall_time_s", "wall_seconds")


def _leaves(x: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every number and of every {mean, ci} estimate (also descended into),
    leaving out provenance and timings."""
    if isinstance(x, dict):
        if _is_estimate(x):
            yield path, x
        for k, v in x.items():
            if k not in _NOT_RESULTS:
                yield from _leaves(v, f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield path, float(x)


def _is_estimate(x: dict[str, Any]) -> bool:
    ci = x.get("ci")
    return (
        isinstance(x.get("mean"), (int, float))
        and isinstance(ci, list)
        and len(ci) == 2
        and all(isinstance(c, (int, float)) for c in ci)
    )


def _inside(value: float, ci: Sequence[float]) -> bool:
    return ci[0] <= value <= ci[1]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def compare_files(before: Any, after: Any) -> dict[str, Any]:
    """Numbers and estimates of one JSON file, before against after (matched by path)."""
    old, new = dict(_leaves(before)), dict(_leaves(after))
    common = sorted(set(old) & set(new))
    numbers = [p for p in common if isinstance(old[p], float) and isinstance(new[p], float)]
    estimates = [p for p in common if isinstance(old[p], dict) and isinstance(new[p], dict)]
    moved = [p for p in estimates if not _same(old[p]["mean"], new[p]["mean"])]
    outside = []
    for p in moved:
        o, n = old[p], new[p]
        if not (_inside(n["mean"], o["ci"]) and _inside(o["mean"], n["ci"])):
            outside.append({"path": p, "before": _brief(o), "after": _brief(n)})
    return {
        "numbers": len(numbers),
        "numbers_identical": sum(_same(old[p], new[p]) for p in numbers),
        "only_before": len(set(old) - set(new)),
        "only_after": len(set(new) - set(old)),
        "estimates": len(estimates),
        "estimates_moved": len(moved),
        "estimates_outside": outside,
    }


def _brief(e: dict[str, Any]) -> dict[str, Any]:
    return {"mean": e["mean"], "ci": e["ci"], "n": e.get("n")}


def compare_ledgers(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per experiment row (by id): verdict before and after, and whether its detail changed."""
    old = {e["id"]: e for e in before.get("entries", []) if e.get("experiment") is not None}
    new = {e["id"]: e for e in after.get("entries", []) if e.get("experiment") is not None}
    rows = []
    for rid in sorted(set(old) | set(new)):
        o, n = old.get(rid), new.get(rid)
        rows.append(
            {
                "id": rid,
                "before": o["verdict"] if o else None,
                "after": n["verdict"] if n else None,
                "detail_same": bool(o and n and o.get("detail") == n.get("detail")),
            }
        )
    return rows


def compare(before: Path, after: Path) -> dict[str, Any]:
    """The table: BEFORE is a reference folder (ledger.json + experiments/...), AFTER a results
    folder (verify/ledger.json + experiments/...)."""
    old_ledger = json.loads((before / LEDGER).read_text())
    new_ledger_path = after / "verify" / LEDGER
    new_ledger = json.loads(new_ledger_path.read_text()) if new_ledger_path.is_file() else {}
    files = {}
    for src in experiment_sources(old_ledger):
        parts = Path(src).parts
        if "reference" not in parts:
            # not a committed reference's source: there is no relative path to look up in AFTER
            files[src] = {"missing": [f"{src} (not under reference/)"]}
            continue
        rel = Path(*parts[len(parts) - parts[::-1].index("reference") :])
        a, b = before / rel, after / rel
        if not a.is_file() or not b.is_file():
            # e.g. the GPT-nano ladder's scale/aggregate.json, which `make experiments` does not
            # write: listed as missing, not compared
            files[str(rel)] = {"missing": [str(p) for p in (a, b) if not p.is_file()]}
            continue
        files[str(rel)] = compare_files(json.loads(a.read_text()), json.loads(b.read_text()))
    return {"before": str(before), "after": str(after), "files": files,
            "rows": compare_ledgers(old_ledger, new_ledger)}  # fmt: skip


def render(table: dict[str, Any]) -> str:
    lines = [f"before: {table['before']}   after: {table['after']}", ""]
    lines.append(
        "file | numbers identical | estimates moved | outside the other's CI "
        f"(by chance: about {CHANCE_OUTSIDE:.0%} of moved estimates, for independent runs)"
    )
    for rel, f in table["files"].items():
        if "missing" in f:
            lines.append(f"{rel} | missing: {', '.join(f['missing'])}")
            continue
        lines.append(
            f"{rel} | {f['numbers_identical']}/{f['numbers']} | "
            f"{f['estimates_moved']}/{f['estimates']} | {len(f['estimates_outside'])}"
        )
        if f["only_before"] or f["only_after"]:
            lines.append(
                f"    numbers found in one run only: before {f['only_before']}, "
                f"after {f['only_after']}"
            )
        for o in f["estimates_outside"]:
            b, a = o["before"], o["after"]
            lines.append(
                f"    {o['path']}: {b['mean']:.4g} [{b['ci'][0]:.4g}, {b['ci'][1]:.4g}] -> "
                f"{a['mean']:.4g} [{a['ci'][0]:.4g}, {a['ci'][1]:.4g}]"
            )
    rows = table["rows"]
    changed = [r for r in rows if r["before"] != r["after"]]
    lines += ["", f"experiment rows: {len(rows)}; verdict changed: {len(changed)}; "
              f"text identical: {sum(r['detail_same'] for r in rows)}"]  # fmt: skip
    lines += [f"    {r['id']}: {r['before']} -> {r['after']}" for r in changed]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.ledger.compare", description=__doc__)
    ap.add_argument("--before", type=Path, default=REFERENCE)
    ap.add_argument("--after", type=Path, default=REPO_ROOT / "results")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    args = ap.parse_args(argv)
    for name, folder in (("--before", args.before), ("--after", args.after)):
        if not folder.is_dir():
            print(f"error: {name} {folder}: not a folder", file=sys.stderr)
            return 2
    if not (args.before / LEDGER).is_file():
        print(f"error: --before {args.before}: no {LEDGER} there", file=sys.stderr)
        return 2
    table = compare(args.before, args.after)
    print(render(table))
    if args.out:
        atomic_write_json(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
