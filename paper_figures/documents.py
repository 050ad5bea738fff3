"""Render README.md and docs/FINDINGS.md from their templates and the committed reference run.

`python paper_figures/claims_table.py --docs write` (or `check`: exit 1 when a file differs).
Templates live in docs/templates/; a placeholder is `{{NAME}}` for a block (claims_table,
claims_detail, summary, reference, montecarlo, experiment_results) or `{{ledger:PATH|FMT}}` /
`{{file:REL/PATH.json:PATH|FMT}}` for one number. PATH is dotted keys, `[3]` an index, or
`[key=value,...]` the list item whose fields match; FMT a format spec such as `.3g`. Anything the
reference lacks renders as `n/a`. Nothing is evaluated; no torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from empirics.ledger.claim_verdicts import PAPER_SAYS, claim_rows
from empirics.ledger.reference import LEDGER, PROVENANCE, describe
from empirics.ledger.row_verdicts import VERDICTS, summarize, summary_line

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference"
# Output file (relative to the repository root) -> its template.
DOCUMENTS = {
    "README.md": "docs/templates/README.md",
    "docs/FINDINGS.md": "docs/templates/FINDINGS.md",
}
MISSING = "n/a"
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)?(?:\[([^\]]*)\])?")
_FORMAT = re.compile(r"^[+ -]?,?(\.\d{1,2})?[dfgeE%]$")


class RenderError(ValueError):
    """A template the renderer cannot read; the message names the placeholder."""


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def lookup(data: Any, path: str) -> Any:
    """Follow `a.b[2].c[id=C1.diag,loss=mse].d` into data; None where anything is missing."""
    pos, cur = 0, data
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None or m.end() == pos:
            raise RenderError(f"path {path!r}: cannot read it at character {pos}")
        key, sel = m.group(1), m.group(2)
        if key is not None:
            cur = cur.get(key) if isinstance(cur, dict) else None
        if sel is not None:
            cur = _select(cur, sel, path)
        pos = m.end()
        if pos < len(path):
            if path[pos] != ".":
                raise RenderError(f"path {path!r}: expected '.' at character {pos}")
            pos += 1
    return cur


def _select(cur: Any, sel: str, path: str) -> Any:
    if not isinstance(cur, list):
        return None
    if sel.strip().lstrip("-").isdigit():
        i = int(sel)
        return cur[i] if -len(cur) <= i < len(cur) else None
    want = {}
    for part in sel.split(","):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise RenderError(f"path {path!r}: selector [{sel}] needs key=value items")
        want[k.strip()] = v.strip()
    for item in cur:
        if isinstance(item, dict) and all(str(item.get(k)) == v for k, v in want.items()):
            return item
    return None


def _fmt(value: Any, spec: str | None, where: str) -> str:
    if value is None:
        return MISSING
    if spec is None:
        return str(value)
    if not _FORMAT.match(spec):
        raise RenderError(f"{where}: format {spec!r} not accepted (e.g. .3g, .2f, .0%, d)")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    return format(int(value) if spec.endswith("d") else value, spec)


# A claim judged in more parts than this (per architecture, per control) shows counts in the
# README's row; its parts, one per line, are in docs/FINDINGS.md.
MAX_PARTS_IN_ROW = 4


def short_verdict(text: str) -> str:
    """A claim's verdict as the README's row shows it: as it is, or for a claim judged in many
    parts (`confirmed on mlp; refuted on vit; ...`) the count of parts per verdict."""
    parts = [p for p in str(text).split("; ") if p]
    if len(parts) <= MAX_PARTS_IN_ROW:
        return str(text)
    counts: dict[str, int] = {}
    for part in parts:
        verdict = part.split(" on ", 1)[0]
        counts[verdict] = counts.get(verdict, 0) + 1
    order = sorted(counts, key=lambda v: VERDICTS.index(v) if v in VERDICTS else 99)
    return f"by part, {len(parts)} parts: " + ", ".join(f"{v} {counts[v]}" for v in order)


def short_table(ledger: dict[str, Any] | None) -> str:
    """The README's claims table: one short row per claim, the detail one click away."""
    entries = (ledger or {}).get("entries", [])
    lines = [
        "| claim | the paper says | verdict | evidence | detail |",
        "|---|---|---|---|---|",
    ]
    for row in claim_rows(entries):
        cid = row["id"]
        kinds = sorted(
            {
                e.get("evidence")
                for e in entries
                if e["id"].startswith(cid + ".") and e.get("evidence") not in (None, "none")
            }
        )
        cells = [
            cid,
            row["paper_says"],
            short_verdict(row["verdict"]),
            ", ".join(kinds) or "none",
            f"[{cid}](docs/FINDINGS.md#{cid.lower()})",
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def claims_detail(ledger: dict[str, Any] | None) -> str:
    """One section per claim: the verdict, the finding and each paper-scope row's detail."""
    entries = (ledger or {}).get("entries", [])
    out = []
    for row in claim_rows(entries):
        cid = row["id"]
        out += [
            f"## {cid}",
            "",
            f"*The paper says:* {PAPER_SAYS[cid]}. ",
            f"*Verdict:* {row['verdict']}. ",
        ]
        out += [f"*We find:* {row['finding']}", "", f"Reproduce: {row['reproduce']}.", ""]
        rows = [e for e in entries if e["id"].startswith(cid + ".") and e.get("scope") == "paper"]
        for e in rows:
            where = "/".join(str(v) for v in (e.get("activation"), e.get("loss")) if v)
            what = (e.get("detail") or (e.get("symbolic") or {}).get("detail") or "").strip()
            out.append(
                f"- `{e['id']}`{f' ({where})' if where else ''}: {e['verdict']} "
                f"({e.get('evidence')}){': ' + what if what else ''}"
            )
        out.append("")
    return "\n".join(out).rstrip()


def render(template: str, reference: Path = REFERENCE) -> str:
    """The document: every placeholder of the template replaced from `reference`."""
    ledger = _load(reference / LEDGER)
    prov = _load(reference / PROVENANCE)
    files: dict[str, Any] = {}
    blocks = {
        "claims_table": lambda: short_table(ledger),
        "claims_detail": lambda: claims_detail(ledger),
        "summary": lambda: summary_line(summarize((ledger or {}).get("entries", []))),
        "reference": lambda: describe(prov) if prov else "no reference run is committed yet",
        "montecarlo": lambda: (ledger or {}).get("montecarlo") or MISSING,
        "experiment_results": lambda: (ledger or {}).get("experiment_results") or MISSING,
    }

    def replace(m: re.Match[str]) -> str:
        body = m.group(1)
        if body in blocks:
            return blocks[body]()
        kind, _, rest = body.partition(":")
        rest, _, spec = rest.partition("|")
        spec = spec.strip() or None
        if kind == "ledger":
            return _fmt(lookup(ledger, rest.strip()), spec, body)
        if kind == "file":
            rel, _, path = rest.partition(":")
            rel = rel.strip()
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise RenderError(f"{{{{{body}}}}}: file {rel!r} must lie inside the reference")
            if rel not in files:
                files[rel] = _load(reference / rel)
            return _fmt(lookup(files[rel], path.strip()), spec, body)
        raise RenderError(
            f"{{{{{body}}}}}: unknown placeholder; accepted: {', '.join(blocks)}, "
            "ledger:PATH|FMT, file:REL:PATH|FMT"
        )

    return _PLACEHOLDER.sub(replace, template)


def render_all(root: Path = ROOT, reference: Path = REFERENCE) -> dict[str, str]:
    """Every document's rendering, by its path relative to the repository root."""
    return {out: render((root / tpl).read_text(), reference) for out, tpl in DOCUMENTS.items()}


def stale(root: Path = ROOT, reference: Path = REFERENCE) -> list[str]:
    """The documents whose committed text differs from their rendering."""
    return [
        out
        for out, text in render_all(root, reference).items()
        if not (root / out).is_file() or (root / out).read_text() != text
    ]
