"""`python -m empirics.ledger.verdicts [--results results]`: the experiment rows (C5's Remark
A.2, C6-C12) of the ledger from `results/`, and the command that refreshes them and the per-claim
verdicts in `results/verify/ledger.json`, keeping the theory and Monte Carlo rows `make verify`
wrote. The rules live in `row_verdicts` (theory and Monte Carlo rows), `claim_verdicts` (claims),
`experiment_verdicts` (training experiments) and `scale_verdicts` (the scaling ladder).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empirics.ledger.claim_verdicts import claim_rows
from empirics.ledger.experiment_verdicts import (
    EXPERIMENT_CLAIMS,
    experiment_row,
    load_json,
    verdict_cliff,
    verdict_drift_shown,
    verdict_horizons,
    verdict_mp_senet_long,
    verdict_remark_a2,
)
from empirics.ledger.row_verdicts import summarize
from empirics.ledger.scale_verdicts import (
    verdict_scale_pairs,
    verdict_scale_sparsity,
    verdict_scale_spikes,
    verdict_scale_topk,
)

EXPERIMENT_FILES = {
    "C5.remark_a2": ("remark_a2.json", verdict_remark_a2),
    "C6.optimizer_lr": ("c6_persistence.json", verdict_horizons),
    "C7.random_inputs": ("drift.json", lambda b: verdict_drift_shown(b, "synthetic")),
    "C8.architectures": ("drift.json", lambda b: verdict_drift_shown(b, "real")),
    "C8.mp_senet_long": ("mp_senet_long.json", verdict_mp_senet_long),
    "C9.relu_sparsity": ("aggregate.json", verdict_scale_sparsity),
    "C10.sparsity_accuracy": ("c10_cliff.json", verdict_cliff),
    "C10.gpt_topk": ("aggregate.json", verdict_scale_topk),
    "C11.relu2_spikes": ("aggregate.json", verdict_scale_spikes),
    "C12.clipping": ("aggregate.json", verdict_scale_pairs),
}


SCALE_CLAIMS = ("C9.relu_sparsity", "C10.gpt_topk", "C11.relu2_spikes", "C12.clipping")


def experiment_entries(results: Path) -> list[dict[str, Any]]:
    """C6-C12 rows from `results/experiments/<scale>/*.json`: the full scale where its file
    holds the data the rule needs, else the quick scale (the row's text names the scale), else
    not-tested. C7 and C8 give one row per architecture (`C8.architectures.vit`)."""
    rows = []
    for cid, text in EXPERIMENT_CLAIMS.items():
        name, rule = EXPERIMENT_FILES[cid]
        found: Any = None
        candidates = [results / "experiments" / scale / name for scale in ("full", "quick")]
        if cid == "C5.remark_a2":  # the early-training files: the module's own grid, else the
            # pipeline's early group (full, then quick)
            candidates = [
                results / "montecarlo" / "early_training" / name,
                *(results / "experiments" / s / "early_training" / name for s in ("full", "quick")),
            ]
        elif cid in SCALE_CLAIMS:  # the scaling ladder (`make scale`)
            candidates = [results / "scale" / name]
        elif cid == "C6.optimizer_lr":
            grid = results / "montecarlo" / "early_training" / "horizons.json"
            candidates.insert(0, grid)
        for path in candidates:
            block = load_json(path) if path.is_file() else None
            if not block:
                continue
            out = rule(block)
            if out and (isinstance(out, list) or out[1]):
                found = (out, path)
                break
        if found is None:
            rows.append(experiment_row(cid, text, "not-tested", ""))
            continue
        out, path = found
        if isinstance(out, list):
            for suffix, verdict, detail, evidence in out:
                rows.append(
                    experiment_row(
                        f"{cid}.{suffix}",
                        f"{text} ({suffix})",
                        verdict,
                        detail,
                        evidence={**evidence, "source": str(path)},
                    )
                )
            continue
        verdict, detail, evidence = out
        rows.append(
            experiment_row(
                cid, text, verdict, detail, evidence={**(evidence or {}), "source": str(path)}
            )
        )
    return rows


def refresh(ledger_path: Path, results: Path) -> dict[str, Any]:
    """Replace the experiment rows and claim rows of a ledger JSON from `results/`."""
    from empirics.outputs import atomic_write_json  # torch-free module

    ledger = load_json(ledger_path)
    if not isinstance(ledger, dict) or "entries" not in ledger:
        raise SystemExit(f"{ledger_path}: no ledger there; run `make verify` first")

    def from_experiments(entry_id: str) -> bool:  # C8.architectures and C8.architectures.vit
        return any(entry_id == c or entry_id.startswith(c + ".") for c in EXPERIMENT_CLAIMS)

    keep = [e for e in ledger["entries"] if not from_experiments(e["id"])]
    entries = keep + experiment_entries(results)
    ledger["entries"] = entries
    ledger["summary"] = {**ledger.get("summary", {}), **summarize(entries)}
    ledger["claims"] = claim_rows(entries)
    atomic_write_json(ledger_path, ledger)
    return ledger


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.ledger.verdicts", description=__doc__)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--ledger", type=Path, default=None, help="default RESULTS/verify/ledger.json")
    args = ap.parse_args(argv)
    path = args.ledger or args.results / "verify" / "ledger.json"
    ledger = refresh(path, args.results)
    for row in ledger["claims"]:
        print(f"{row['id']:4s} {row['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
