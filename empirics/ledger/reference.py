"""The committed reference run: the aggregated experiment JSON the ledger reads, its ledger and
its provenance, under reference/ at the repository root (torch-free).

`python -m empirics.ledger.reference update [--results results] [--machine TEXT]` (`make reference`)
copies from results/ exactly the files the ledger's experiment rows read, with the ledger itself
and PROVENANCE.json; `python -m empirics.ledger.reference show` says what is committed. `make
verify`
reads reference/ for C6-C12 when results/ has no newer experiment results (`choose_results`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirics.outputs import REPO_ROOT, atomic_write_json

REFERENCE = REPO_ROOT / "reference"
LEDGER = "ledger.json"
PROVENANCE = "PROVENANCE.json"
# A quick (smoke) run checks the pipeline; it never stands in for a committed run of more steps.
SCALE_RANK = {"quick": 0, "full": 1, "paper": 2}


class ReferenceError(ValueError):
    """Bad input to `update` (a missing ledger, a source outside results/); exit 2."""


def experiment_sources(ledger: dict[str, Any]) -> list[str]:
    """The `experiment.source` of every experiment row, in first-seen order: exactly the files
    the ledger's C6-C12 rules read (`empirics.ledger.verdicts.experiment_entries`)."""
    seen: dict[str, None] = {}
    for e in ledger.get("entries", []):
        src = (e.get("experiment") or {}).get("source")
        if isinstance(src, str) and src:
            seen.setdefault(src, None)
    return list(seen)


def scale_of(rel: str) -> str | None:
    """`full` / `quick` / ... from a path like experiments/full/drift.json, else None."""
    parts = Path(rel).parts
    if len(parts) > 1 and parts[0] == "experiments" and parts[1] in SCALE_RANK:
        return parts[1]
    return None


def read_provenance(reference: Path = REFERENCE) -> dict[str, Any] | None:
    path = reference / PROVENANCE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def choose_results(results: Path, reference: Path = REFERENCE) -> tuple[Path, str]:
    """Which root the ledger's experiment rows come from, and a sentence saying so.

    results/ wins when it holds experiment files the ledger reads that were written after the
    reference run (its `finished` time) and at no smaller scale; otherwise reference/ when it
    has a PROVENANCE.json; otherwise results/ (rows then say not-tested)."""
    from empirics.ledger.verdicts import experiment_entries

    prov = read_provenance(reference)
    own = [Path(s) for s in experiment_sources({"entries": experiment_entries(results)})]
    own = [p for p in own if p.is_file()]
    shown = _shown(results)
    if prov is None:
        return results, f"C6-C12 from {shown}" if own else "C6-C12: no experiment results"
    ref_rank = SCALE_RANK.get(str(prov.get("scale")), 0)
    newest = max((p.stat().st_mtime for p in own), default=None)
    own_rank = max(
        (SCALE_RANK.get(scale_of(str(_relative(p, results))) or "", 1) for p in own), default=-1
    )
    if newest is not None and newest > float(prov.get("finished_unix", 0)) and own_rank >= ref_rank:
        return results, f"C6-C12 from {shown} (newer than the reference run)"
    why = (
        "no experiment results under results/"
        if newest is None
        else "results/ is older than the reference run"
        if newest <= float(prov.get("finished_unix", 0))
        else "results/ holds a smaller scale than the reference run"
    )
    return reference, (
        f"C6-C12 from the committed reference run ({why}): {describe(prov)}; "
        "`make experiments` makes your own"
    )


def _shown(path: Path) -> str:
    """A path as a reader of the committed ledger can follow it: relative to the repository."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT)) + "/"
    except ValueError:
        return str(path)


def describe(prov: dict[str, Any]) -> str:
    """One line: scale, date, commit, machine, wall time (and each group's, when recorded)."""
    wall = prov.get("wall_seconds")
    wall_text = (
        f"wall time {wall / 60:.0f} min" if isinstance(wall, (int, float)) else "wall time unknown"
    )
    groups = prov.get("group_seconds") or {}
    if groups:
        parts = ", ".join(f"{g} {s / 60:.1f}" for g, s in groups.items())
        wall_text += f" (the pipeline's groups, min: {parts})"
    commit = str(prov.get("commit") or "unknown")[:10]
    return (
        f"scale {prov.get('scale')}, {prov.get('finished')}, commit {commit}, "
        f"{prov.get('machine')}, {wall_text}"
    )


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError as exc:
        raise ReferenceError(f"source {path}: not under the results root {root}") from exc


def _group_seconds(results: Path, scale: str | None) -> dict[str, float]:
    """Each group's wall seconds, as the pipeline records them in experiments/<scale>/timing.json
    (empty when there is none)."""
    path = results / "experiments" / (scale or "full") / "timing.json"
    if not path.is_file():
        return {}
    try:
        timing = json.loads(path.read_text())
    except ValueError:
        return {}
    return {g: float(v) for g, v in timing.items() if isinstance(v, (int, float))}


def update_reference(
    results: Path,
    reference: Path = REFERENCE,
    *,
    ledger_path: Path | None = None,
    machine: str | None = None,
    wall_seconds: float | None = None,
) -> dict[str, Any]:
    """Copy the experiment files the ledger read (and the ledger) into `reference`; write
    PROVENANCE.json. Files of an earlier reference that the new ledger does not read are
    removed, so the folder holds exactly what the README is rendered from."""
    ledger_path = ledger_path or results / "verify" / LEDGER
    if not ledger_path.is_file():
        raise ReferenceError(f"--ledger {ledger_path}: no ledger there; run `make verify` first")
    try:
        ledger = json.loads(ledger_path.read_text())
    except ValueError as exc:
        raise ReferenceError(f"--ledger {ledger_path}: not valid JSON ({exc})") from None
    sources = [Path(s) for s in experiment_sources(ledger)]
    rels = []
    for src in sources:
        src = src if src.is_absolute() else REPO_ROOT / src
        if not src.is_file():
            raise ReferenceError(f"source {src}: the ledger read it but it is gone; rerun verify")
        rels.append((src, _relative(src, results)))
    old = read_provenance(reference) or {}
    reference.mkdir(parents=True, exist_ok=True)
    for rel in old.get("files", {}):
        if rel not in {str(r) for _, r in rels} and (reference / rel).is_file():
            (reference / rel).unlink()
    for src, rel in rels:
        (reference / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, reference / rel)
    # The committed ledger names the committed files, relative to the repository root.
    mapping = {str(s): f"reference/{r}" for s, r in zip(sources, (r for _, r in rels), strict=True)}
    text = json.dumps(ledger)
    for old_src, new_src in mapping.items():
        text = text.replace(json.dumps(old_src), json.dumps(new_src))
    committed = json.loads(text)
    # The ledger's note said where verify found C6-C12 when it ran (results/); the committed copy
    # reads them from reference/, which the README renders this note from.
    if sources:
        committed["experiment_results"] = (
            f"C6-C12 from the {len(rels)} experiment files copied into reference/ with this ledger"
        )
    atomic_write_json(reference / LEDGER, committed)
    scales = {scale_of(str(r)) for _, r in rels} - {None}
    scale = max(scales, key=lambda s: SCALE_RANK[s]) if scales else None
    newest = max((s.stat().st_mtime for s, _ in rels), default=ledger_path.stat().st_mtime)
    git = (ledger.get("provenance") or {}).get("git") or {}
    groups = _group_seconds(results, scale)
    wall_sum = float(sum(groups.values())) if groups else None
    files = {str(r): (reference / r).stat().st_size for _, r in rels}
    files[LEDGER] = (reference / LEDGER).stat().st_size
    prov = {
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(newest)),
        "finished_unix": newest,
        "machine": machine
        or f"{(ledger.get('provenance') or {}).get('platform')}, {os.cpu_count()} CPUs",
        "wall_seconds": wall_seconds if wall_seconds is not None else wall_sum,
        "group_seconds": groups,
        "scale": scale,
        "files": files,
        "total_bytes": sum(files.values()),
    }
    atomic_write_json(reference / PROVENANCE, prov)
    return prov


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.ledger.reference", description=__doc__)
    ap.add_argument("command", choices=("update", "show"))
    ap.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    ap.add_argument("--reference", type=Path, default=REFERENCE)
    ap.add_argument("--ledger", type=Path, default=None, help="default RESULTS/verify/ledger.json")
    ap.add_argument("--machine", default=None, help="describe the machine (default: platform)")
    ap.add_argument(
        "--wall-seconds",
        type=float,
        default=None,
        help="the run's measured wall time (default: the sum of timing.json's groups)",
    )
    args = ap.parse_args(argv)
    if args.command == "show":
        prov = read_provenance(args.reference)
        print(describe(prov) if prov else f"{args.reference}: no reference run committed")
        return 0
    try:
        prov = update_reference(
            args.results,
            args.reference,
            ledger_path=args.ledger,
            machine=args.machine,
            wall_seconds=args.wall_seconds,
        )
    except ReferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"reference updated: {describe(prov)}; {len(prov['files'])} files, {prov['total_bytes']} B"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
