"""Render the README's claims table from the ledger JSON (no torch, no verdict of its own).

`python paper_figures/claims_table.py --ledger results/verify/ledger.json --readme README.md`
rewrites the block between the `claims:start` / `claims:end` markers. The verdict of each claim is
computed from the ledger's rows by `empirics.ledger.verdicts.claim_rows`, the one home of those
rules.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from empirics.cli import evidence_scale
from empirics.ledger.claim_verdicts import claim_rows
from empirics.ledger.row_verdicts import summarize, summary_line

START, END = "<!-- claims:start -->", "<!-- claims:end -->"
# The scales whose verdicts may stand in the README: smoke-sized (`quick`) runs check the
# pipeline, their verdicts say nothing about the paper.
README_SCALES = ("full", "paper")
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return False
    return True


def small_scale_rows(ledger: dict[str, Any], ledger_path: Path) -> dict[str, list[str]]:
    """Scale -> ids of the experiment rows read from results of a scale not fit for the README.
    Empty for the committed reference (its ledger, or rows read from reference/)."""
    if _under(ledger_path, REFERENCE_DIR):
        return {}
    found: dict[str, list[str]] = {}
    for e in ledger["entries"]:
        scale = evidence_scale(e)
        source = (e.get("experiment") or {}).get("source") if isinstance(e, dict) else None
        if isinstance(source, str) and _under(Path(source), REFERENCE_DIR):
            continue
        if scale is not None and scale not in README_SCALES:
            found.setdefault(scale, []).append(e["id"])
    return found


def load_ledger(path: Path) -> dict[str, Any]:
    try:
        ledger = json.loads(path.read_text())
    except OSError as exc:
        msg = f"{path}: cannot read the ledger ({exc}); run `make verify` first"
        raise SystemExit(msg) from None
    except ValueError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(ledger, dict) or not isinstance(ledger.get("entries"), list):
        raise SystemExit(f"{path}: no `entries` list; not a ledger written by `make verify`")
    return ledger


def render(ledger: dict[str, Any]) -> str:
    """The Markdown table: one row per claim, verdicts recomputed from the ledger's rows."""
    lines = ["| id | the paper says | we find | verdict | reproduce |", "|---|---|---|---|---|"]
    for row in claim_rows(ledger["entries"]):
        cells = [row[k] for k in ("id", "paper_says", "finding", "verdict", "reproduce")]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.append(f"Ledger: {summary_line(summarize(ledger['entries']))}.")
    return "\n".join(lines)


def rewrite(readme: Path, table: str, writer: Callable[[Path, str], None]) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    writer(readme, f"{head}{START}\n{table}\n{END}{tail}")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _docs(mode: str, reference: Path | None) -> int:
    try:
        from paper_figures import documents
    except ImportError:  # run as a script: this folder is on sys.path instead
        import documents  # type: ignore[no-redef]
    ref = reference or documents.REFERENCE
    try:
        texts = documents.render_all(documents.ROOT, ref)
    except documents.RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for rel, text in texts.items():
        path = documents.ROOT / rel
        if mode == "write":
            _atomic(path, text)
            print(f"rendered {rel} ({len(text.splitlines())} lines) from {ref}")
        elif not path.is_file() or path.read_text() != text:
            print(f"{rel} differs from its rendering: run `make reference` or edit the template")
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=Path, default=Path("results/verify/ledger.json"))
    parser.add_argument("--readme", type=Path, default=None, help="rewrite this README's table")
    parser.add_argument(
        "--docs",
        choices=("write", "check"),
        default=None,
        help="render README.md and docs/FINDINGS.md from docs/templates/ and reference/ "
        "(check: exit 1 naming each file that differs from its rendering)",
    )
    parser.add_argument("--reference", type=Path, default=None, help="default: reference/")
    args = parser.parse_args(argv)
    if args.docs:
        return _docs(args.docs, args.reference)
    ledger = load_ledger(args.ledger)
    small = small_scale_rows(ledger, args.ledger)
    if args.readme and small:
        what = "; ".join(
            f"{len(ids)} row(s) at scale {scale!r} ({', '.join(ids[:3])}{', ...' * (len(ids) > 3)})"
            for scale, ids in sorted(small.items())
        )
        parser.error(
            f"--ledger {str(args.ledger)!r} holds experiment rows below the README's scale: "
            f"{what}; the README table renders only a full-scale run or the committed "
            "reference (make experiments, or make reference); nothing was written"
        )
    table = render(ledger)
    if args.readme:
        rewrite(args.readme, table, _atomic)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
