"""`make verify`: the claims ledger (theory, plus Monte Carlo columns when available) as a table
and as JSON. Run: `python -m empirics.verify [--activation NAME=EXPR]... [--only a,b]
[--json PATH] [--no-montecarlo] [--mc-budget SECONDS]`; exits 1 on any `fail`, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from empirics.outputs import REPO_ROOT, atomic_write_json, provenance
from empirics.ledger import (
    LedgerEntry,
    attach_montecarlo,
    format_table,
    summarize,
    theory_entries,
)
from theory.effective import C1_REFERENCE, EffectiveConfig
from theory.registry import (
    BUILTIN_ACTIVATIONS,
    RegistryError,
    get_activation,
    loss_names,
    parse_activation_spec,
)

DEFAULT_JSON = REPO_ROOT / "results" / "verify" / "ledger.json"
MC_LOSSES = ("mse", "cross_entropy")  # the losses the Monte Carlo estimator implements


class VerifyInputError(ValueError):
    """Bad command-line input; the message says which flag and why."""


def _resolve_activations(activations: Sequence[str], only: Sequence[str] | None) -> list[str]:
    """Register NAME=EXPR specs, then the names to verify (all builtins + added, or `only`)."""
    added = []
    for spec in activations:
        if "=" not in spec:
            raise VerifyInputError(
                f"--activation {spec!r}: expected NAME=EXPR (a sympy expression in x) or a "
                "parametrised spec like leaky_relu:slope=0.2"
            )
        try:
            added.append(parse_activation_spec(spec).name)
        except RegistryError as exc:
            raise VerifyInputError(f"--activation {spec!r}: {exc}") from None
    names = list(BUILTIN_ACTIVATIONS) + [a for a in added if a not in BUILTIN_ACTIVATIONS]
    if only:
        chosen = []
        for name in only:
            try:
                chosen.append(get_activation(name).name)
            except RegistryError as exc:
                raise VerifyInputError(f"--only {name!r}: {exc}") from None
        names = chosen
    return names


def _montecarlo_hook() -> tuple[Any, Any] | None:
    """(montecarlo_for_entry, montecarlo_config_for_entry) if empirics.montecarlo provides them."""
    try:
        import empirics.montecarlo as mc
    except ImportError:
        return None
    fn = getattr(mc, "montecarlo_for_entry", None)
    return None if fn is None else (fn, getattr(mc, "montecarlo_config_for_entry", None))


def _c1_config_from(config: dict[str, Any] | None) -> EffectiveConfig:
    """The EffectiveConfig matching the Monte Carlo's C1 network (variance w_gain / fan_in)."""
    if not config:
        return C1_REFERENCE
    try:
        fan_ins = (int(config["d_in"]), *(int(w) for w in config["widths"]))
        gain = float(config["w_gain"])
        return EffectiveConfig(
            widths=fan_ins,
            outputs=int(config["n_out"]),
            weight_var=tuple(gain / n for n in fan_ins),
            layer=int(config.get("layer", 1)),
        )
    except (KeyError, TypeError, ValueError):
        return C1_REFERENCE


def run_verify(
    activations: Sequence[str] = (),
    only: Sequence[str] | None = None,
    json_path: str | Path | None = DEFAULT_JSON,
    montecarlo: bool = True,
    *,
    mc_budget_s: float = 0.15,
    seed: int = 0,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """Build the ledger and write it (atomically, with provenance) unless json_path is None.

    Raises VerifyInputError for bad activation specs or names before any computation."""
    if mc_budget_s <= 0:
        raise VerifyInputError(f"--mc-budget must be > 0 seconds, got {mc_budget_s}")
    names = _resolve_activations(activations, only)
    hook = _montecarlo_hook() if montecarlo else None
    c1_cfg = C1_REFERENCE
    if hook is not None and hook[1] is not None:
        c1_cfg = _c1_config_from(hook[1]("C1.diag", None, None))
    start = time.perf_counter()

    def progress(name: str) -> None:
        if verbose:
            print(f"  theory: {name} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)

    entries: list[LedgerEntry] = theory_entries(
        names, loss_names(), c1_config=c1_cfg, progress=progress
    )
    theory_s = time.perf_counter() - start
    mc_note = "montecarlo disabled" if not montecarlo else "empirics.montecarlo not available"
    if hook is not None:
        import torch

        generator = torch.Generator().manual_seed(seed)
        filled = []
        for e in entries:
            mc, error = None, None
            runnable = e.symbolic is not None and (e.loss is None or e.loss in MC_LOSSES)
            if runnable:
                try:
                    mc = hook[0](
                        e.id, e.activation, e.loss, budget_s=mc_budget_s, generator=generator
                    )
                except (ValueError, RegistryError, RuntimeError) as exc:
                    # One estimate that cannot run leaves its column empty, not the ledger.
                    error = f"montecarlo error: {exc}"
            entry = attach_montecarlo(e, mc)
            filled.append(replace(entry, notes=entry.notes + [error]) if error else entry)
        entries = filled
        mc_note = f"montecarlo budget {mc_budget_s:g} s per entry, seed {seed}"
    records = [e.to_json() for e in entries]
    if json_path is not None:
        atomic_write_json(
            json_path,
            {
                "provenance": provenance("cpu"),
                "montecarlo": mc_note,
                "theory_seconds": round(theory_s, 2),
                "total_seconds": round(time.perf_counter() - start, 2),
                "summary": summarize(entries),
                "entries": records,
            },
        )
    if verbose:
        print(format_table(entries))
        counts = summarize(entries)
        print(
            f"\n{len(entries)} entries: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; theory {theory_s:.1f} s, total {time.perf_counter() - start:.1f} s; {mc_note}"
        )
    return records


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m empirics.verify", description=__doc__)
    p.add_argument(
        "--activation",
        action="append",
        default=[],
        metavar="NAME=EXPR",
        help="add an activation (sympy expression in x); repeatable",
    )
    p.add_argument("--only", default=None, help="comma-separated activation names to verify")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the ledger JSON")
    p.add_argument("--no-montecarlo", action="store_true", help="theory columns only")
    p.add_argument("--mc-budget", type=float, default=0.15, help="Monte Carlo seconds per entry")
    p.add_argument("--seed", type=int, default=0, help="Monte Carlo seed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    if args.only is not None and not only:
        print("error: --only needs at least one activation name", file=sys.stderr)
        return 2
    try:
        records = run_verify(
            args.activation,
            only,
            args.json,
            not args.no_montecarlo,
            mc_budget_s=args.mc_budget,
            seed=args.seed,
            verbose=True,
        )
    except VerifyInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ledger written to {args.json}")
    fails = [
        r["id"] + f" [{r['activation']}/{r['loss']}]" for r in records if r["verdict"] == "fail"
    ]
    if fails:
        print("FAIL: " + ", ".join(fails), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
