"""`make verify`: the claims ledger (theory, Monte Carlo and experiment rows) as a table and JSON.

Run: `python -m empirics.ledger.verify [--activation SPEC]... [--only a,b] [--seed N] [--alpha A]
[--json PATH] [--no-montecarlo]`; exits 1 on any `fail`, 2 on bad input. Sample sizes are fixed
per row (`empirics.montecarlo.ledger.LEDGER_SAMPLES`), so one seed gives one ledger.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from empirics.cli import InputError, evidence_scale, fail, split_list
from empirics.ledger.claim_verdicts import claim_rows
from empirics.ledger.reference import REFERENCE, choose_results
from empirics.ledger.row_verdicts import summarize, summary_line
from empirics.ledger.rows import (
    LEDGER_ALPHA,
    MAX_SEED,
    LedgerEntry,
    attach_montecarlo,
    format_table,
    row_seed,
    theory_entries,
)
from empirics.ledger.verdicts import experiment_entries
from empirics.outputs import REPO_ROOT, atomic_write_json, provenance
from theory.effective import C1_REFERENCE, EffectiveConfig
from theory.registry import (
    BUILTIN_ACTIVATIONS,
    BUILTIN_LOSSES,
    Activation,
    RegistryError,
    as_activation,
    get_activation,
    loss_names,
)

DEFAULT_JSON = REPO_ROOT / "results" / "verify" / "ledger.json"
DEFAULT_RESULTS = REPO_ROOT / "results"


class VerifyInputError(ValueError):
    """Bad command-line input; the message says which flag and why."""


PROG = "python -m empirics.ledger.verify"


def _overflowed(mc: dict[str, Any] | None) -> bool:
    """A Monte Carlo column whose mean or standard error is not finite: a float overflow."""
    if not mc:
        return False
    values = (mc.get("mean"), mc.get("stderr"))
    return any(isinstance(v, float) and not math.isfinite(v) for v in values)


def scale_tag(claim_id: str, entries: Sequence[dict[str, Any]]) -> str:
    """` [quick scale]` when any experiment row behind a claim was read from results of a
    scale other than full (smoke-sized runs: their verdicts check the pipeline, not the
    paper), else ''. Printed on every verdict line, so a quick ledger never reads as a result."""
    scales = set()
    for e in entries:
        if e["id"] == claim_id or e["id"].startswith(claim_id + "."):
            scale = evidence_scale(e)
            if scale is not None and scale not in ("full", "paper"):
                scales.add(scale)
    return f" [{'/'.join(sorted(scales))} scale]" if scales else ""


def _resolve_activations(
    activations: Sequence[str], only: Sequence[str] | None, montecarlo: bool = False
) -> list[Activation]:
    """Parse the specs (NAME=EXPR, family:key=value, or a name) once, here, then pick the
    activations to verify (all builtins + added, or `only`)."""
    added = []
    for spec in activations:
        try:
            added.append(as_activation(spec))
        except RegistryError as exc:
            raise VerifyInputError(f"--activation {spec!r}: {exc}") from None
    chosen = [get_activation(name) for name in BUILTIN_ACTIVATIONS]
    chosen += [a for a in added if a.name not in BUILTIN_ACTIVATIONS]
    if montecarlo:  # torch only here: the theory-only ledger does not import it
        from empirics.activations import ActivationOverflow, check_finite_range

        for act in added:
            try:  # the ledger's Monte Carlo runs in float32
                check_finite_range(act)
            except ActivationOverflow as exc:
                raise VerifyInputError(f"--activation {act.name!r}: {exc}") from None
    if only:
        chosen = []
        for name in only:
            try:
                chosen.append(get_activation(name))
            except RegistryError as exc:
                raise VerifyInputError(f"--only {name!r}: {exc}") from None
    return chosen


def _c1_config_from(config: dict[str, Any] | None) -> EffectiveConfig:
    """The EffectiveConfig matching the Monte Carlo's C1 network (variance w_gain / fan_in)."""
    if not config:
        return C1_REFERENCE
    fan_ins = (int(config["d_in"]), *(int(w) for w in config["widths"]))
    gain = float(config["w_gain"])
    return EffectiveConfig(
        widths=fan_ins,
        outputs=int(config["n_out"]),
        weight_var=tuple(gain / n for n in fan_ins),
        layer=int(config.get("layer", 1)),
    )


def _runs_montecarlo(e: LedgerEntry) -> bool:
    # The Monte Carlo implements the built-in losses (sampler.LOSS_NAMES is BUILTIN_LOSSES).
    return e.symbolic is not None and (e.loss is None or e.loss in BUILTIN_LOSSES)


def _check_settings(seed: int, alpha: float, threads: int) -> None:
    if not 0 < alpha < 1:
        raise VerifyInputError(f"--alpha must be in (0, 1), got {alpha}")
    if not 0 <= seed <= MAX_SEED:
        raise VerifyInputError(f"--seed must be an integer in [0, 2^63 - 1], got {seed}")
    if not 1 <= threads <= 256:
        raise VerifyInputError(f"--threads must be an integer in [1, 256], got {threads}")


@dataclass
class LedgerPlan:
    """The rows of one ledger before any Monte Carlo: theory rows (and the issue-9 rows when
    `depth` is their module), which of them the Monte Carlo estimates, and its per-row alpha."""

    entries: list[LedgerEntry]
    runnable: list[LedgerEntry]
    alpha: float
    alpha_row: float
    mc_mod: Any = None  # empirics.montecarlo.ledger, None when the Monte Carlo is off
    depth: Any = None  # empirics.ledger.depth, None when its rows are left out

    def in_depth(self, e: LedgerEntry) -> bool:
        return self.depth is not None and self.depth.is_depth_entry(e)

    def estimable(self, e: LedgerEntry) -> bool:
        return self.depth.runs_montecarlo(e) if self.in_depth(e) else _runs_montecarlo(e)


def plan_ledger(
    activations: Sequence[str],
    only: Sequence[str] | None,
    montecarlo: bool,
    *,
    alpha: float,
    extensions: bool | None = None,
    progress: bool = False,
) -> LedgerPlan:
    """Resolve the activations and build the theory rows (raises VerifyInputError for bad
    input). The issue-9 rows (depth, init laws, optimizers) are fixed networks of their own:
    part of the full ledger, left out when the caller picks activations with `only`."""
    chosen = _resolve_activations(activations, only, montecarlo)
    extensions = (only is None) if extensions is None else extensions
    mc_mod = None
    c1_cfg = C1_REFERENCE
    if montecarlo:
        import empirics.montecarlo.ledger as mc_mod

        c1_cfg = _c1_config_from(mc_mod.montecarlo_config_for_entry("C1.diag"))
    bar = tqdm(chosen, desc="theory", disable=not progress, leave=False, file=sys.stderr)
    entries: list[LedgerEntry] = theory_entries(
        chosen, loss_names(), c1_config=c1_cfg, progress=lambda name: bar.set_postfix_str(name)
    )
    bar.close()
    depth = None
    if extensions:
        import empirics.ledger.depth as depth

        entries += depth.depth_entries()
    plan = LedgerPlan(entries, [], alpha, alpha, mc_mod, depth)
    if mc_mod is not None:
        plan.runnable = [e for e in entries if plan.estimable(e)]
    plan.alpha_row = alpha / max(len(plan.runnable), 1)
    return plan


def _overflow_error(e: LedgerEntry, mc: dict[str, Any]) -> VerifyInputError:
    return VerifyInputError(
        f"--activation {e.activation!r}: the Monte Carlo of {e.id} overflowed "
        f"float32 (mean {mc.get('mean')}, stderr {mc.get('stderr')}): a "
        "floating-point overflow, not a result; scale the activation down (e.g. "
        "divide its expression by a constant), or estimate it alone with "
        "`python -m empirics.montecarlo ... --dtype float64`"
    )


def _montecarlo_row(plan: LedgerPlan, e: LedgerEntry, seed: int) -> LedgerEntry:
    """One row with its Monte Carlo column, drawn from the row's own stream (`row_seed`)."""
    import torch

    in_depth = plan.in_depth(e)
    network = (
        e.network
        if in_depth
        else plan.mc_mod.montecarlo_config_for_entry(e.id, e.activation, e.loss)
    )
    mc, error = None, None
    if plan.estimable(e):
        gen = torch.Generator().manual_seed(row_seed(seed, e))
        try:
            if in_depth:
                mc = plan.depth.depth_montecarlo(e, generator=gen, alpha=plan.alpha_row)
            else:
                mc = plan.mc_mod.montecarlo_for_entry(
                    e.id, e.activation, e.loss, generator=gen, alpha=plan.alpha_row
                )
        except (ValueError, RegistryError, RuntimeError) as exc:
            # One estimate that cannot run leaves its column empty, not the ledger.
            error = f"montecarlo error: {exc}"
    if _overflowed(mc):  # never judged: an overflow is not evidence against theory
        raise _overflow_error(e, mc)  # type: ignore[arg-type]
    entry = replace(attach_montecarlo(e, mc), network=network)
    return replace(entry, notes=entry.notes + [error]) if error else entry


def run_montecarlo(
    plan: LedgerPlan, seed: int, threads: int, progress: bool = False
) -> list[LedgerEntry]:
    """Every row with its Monte Carlo column, on `threads` torch threads (pinned, restored)."""
    import torch

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [
            _montecarlo_row(plan, e, seed)
            for e in tqdm(plan.entries, desc="monte carlo", disable=not progress, file=sys.stderr)
        ]
    finally:
        torch.set_num_threads(saved_threads)


def _montecarlo_note(plan: LedgerPlan, seed: int, threads: int) -> str:
    if plan.mc_mod is None:
        return "montecarlo disabled"
    n = len(plan.runnable)
    return (
        f"Monte Carlo: {n} rows, one-look Student-t sign test at alpha = "
        f"{plan.alpha:g} / {n} = {plan.alpha_row:.3g} each (Bonferroni): P(any spurious "
        f"fail) <= {plan.alpha:g}; seed {seed}, {threads} torch thread(s)"
    )


def _experiment_records(
    results: str | Path | None, reference: str | Path | None
) -> tuple[list[dict[str, Any]], str]:
    if results is None:
        return [], "experiment rows not read"
    # reference/ (the committed run) stands in when results/ has nothing newer of its scale.
    root, note = (
        choose_results(Path(results), Path(reference))
        if reference is not None
        else (Path(results), f"C6-C12 from {results}")
    )
    return experiment_entries(root), note


def report(ledger: dict[str, Any], entries: Sequence[LedgerEntry]) -> None:
    """The table, the claim verdicts (marked when read from smoke-sized results) and the notes."""
    records = ledger["entries"]
    print(format_table(entries))
    print()
    small = sorted({scale_tag(row["id"], records) for row in ledger["claims"]} - {""})
    if small:
        print(
            f"note: rows marked{', '.join(small)} were read from smoke-sized results; their "
            "verdicts check the pipeline, not the paper (make experiments for full scale)"
        )
    for row in ledger["claims"]:
        tag = scale_tag(row["id"], records)
        print(f"{row['id']:4s} {row['verdict'] + tag:34s} {row['paper_says']}")
    print()
    print(summary_line(ledger["summary"]))
    print(ledger["montecarlo"])
    print(ledger["experiment_results"])
    timing = ledger["timing_seconds"]
    print(
        f"time: theory {timing['theory']:.1f} s, Monte Carlo {timing['montecarlo']:.1f} s",
        file=sys.stderr,
    )


def run_verify(
    activations: Sequence[str] = (),
    only: Sequence[str] | None = None,
    json_path: str | Path | None = DEFAULT_JSON,
    montecarlo: bool = True,
    *,
    seed: int = 0,
    alpha: float = LEDGER_ALPHA,
    results: str | Path | None = DEFAULT_RESULTS,
    reference: str | Path | None = None,
    threads: int = 1,
    extensions: bool | None = None,
    verbose: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Build the ledger; write it (atomically, with provenance) unless json_path is None.

    Every Monte Carlo row is a one-look sign test at alpha / m (m the number of rows estimated),
    so the probability that a correct theory gets any spurious `fail` is at most `alpha`.
    The Monte Carlo runs on `threads` torch threads (pinned, then restored): the summation order
    of a matmul depends on the thread count, so pinning it makes the ledger bit-identical across
    machines and loads. Raises VerifyInputError for bad input before any computation."""
    _check_settings(seed, alpha, threads)
    start = time.perf_counter()
    plan = plan_ledger(
        activations, only, montecarlo, alpha=alpha, extensions=extensions, progress=progress
    )
    theory_s = time.perf_counter() - start
    entries = plan.entries
    if plan.mc_mod is not None:
        entries = run_montecarlo(plan, seed, threads, progress)
    mc_s = time.perf_counter() - start - theory_s
    records = [e.to_json() for e in entries]
    experiments, experiments_note = _experiment_records(results, reference)
    records += experiments
    estimated = plan.mc_mod is not None
    summary = summarize(records) | {
        "alpha_ledger": alpha if estimated else None,
        "alpha_row": plan.alpha_row if estimated else None,
        "montecarlo_rows": len(plan.runnable),
    }
    ledger = {
        "provenance": provenance("cpu"),
        "seed": seed,
        "threads": threads,
        "montecarlo": _montecarlo_note(plan, seed, threads),
        "experiment_results": experiments_note,
        "timing_seconds": {"theory": round(theory_s, 2), "montecarlo": round(mc_s, 2)},
        "summary": summary,
        "claims": claim_rows(records),
        "entries": records,
    }
    if json_path is not None:
        atomic_write_json(json_path, ledger)
    if verbose:
        report(ledger, entries)
    return ledger


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m empirics.ledger.verify", description=__doc__)
    p.add_argument(
        "--activation",
        action="append",
        default=[],
        metavar="SPEC",
        help="add an activation: NAME=EXPR (EXPR in x), family:key=value, or a name; repeatable",
    )
    p.add_argument("--only", default=None, help="comma-separated activation names to verify")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the ledger JSON")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="experiment results (C6-C12)")
    p.add_argument(
        "--reference",
        default=str(REFERENCE),
        help="committed reference run, read when --results has nothing newer ('' = never)",
    )
    p.add_argument("--no-montecarlo", action="store_true", help="theory columns only")
    p.add_argument("--seed", type=int, default=0, help="Monte Carlo seed")
    p.add_argument("--alpha", type=float, default=LEDGER_ALPHA, help="ledger-wide false-fail rate")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the Monte Carlo")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        only = split_list(args.only, "--only") if args.only is not None else None
    except InputError as exc:
        return fail(PROG, str(exc))
    json_path = Path(args.json)
    if json_path.exists() and json_path.is_dir():
        return fail(PROG, f"--json {args.json!r} is a directory; give a file path")
    # A parent that is a file, or not writable, is bad input: said before any compute, and
    # nothing is created for it (the ledger's directory is made when the ledger is written).
    probe = json_path.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return fail(PROG, f"--json {args.json!r}: {str(probe)!r} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        return fail(PROG, f"--json {args.json!r}: {str(probe)!r} is not writable")
    try:
        ledger = run_verify(
            args.activation,
            only,
            json_path,
            not args.no_montecarlo,
            seed=args.seed,
            alpha=args.alpha,
            results=args.results,
            reference=args.reference or None,
            threads=args.threads,
            verbose=True,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except VerifyInputError as exc:
        return fail(PROG, str(exc))
    print(f"ledger written to {args.json}")
    fails = [
        f"{r['id']} [{r['activation']}/{r['loss']}]"
        for r in ledger["entries"]
        if r["verdict"] == "fail"
    ]
    if fails:
        print("FAIL: " + ", ".join(fails), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
