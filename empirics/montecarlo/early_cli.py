"""Early training of many random MLPs at once: how long the sign of E[dl/dp | p > 0] and drift hold.

One configuration: `python -m empirics.montecarlo.early_training --activation relu --optimizer sgd
--lr 0.1`;
the grid behind the C6 and Remark A.2 rows (activations x losses x optimizers x lrs x seeds):
`python -m empirics.montecarlo.early_training --sweep --seeds 0,1,2,3,4` (to
results/montecarlo/...).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from empirics.activations import parse_activation
from empirics.cli import (
    SEED_RANGE,
    InputError,
    add_config_flags,
    config_kwargs,
    parse_ints,
    parse_seeds,
    split_list,
)
from empirics.montecarlo.early_config import (
    DATA,
    DEFAULT_OUT,
    LOSSES,
    LR_GRID,
    SWEEP_ACTIVATIONS,
    EarlyConfig,
    check_memory,
    default,
    describe,
)
from empirics.montecarlo.early_grid import grid, report, run_grid
from empirics.train.config import OPTIMIZERS
from theory import registry

PROG = "python -m empirics.montecarlo.early_training"
# The grid's dimensions take several values (repeated flags or a comma list), so their flags are
# written here; every other field's flag comes from EarlyConfig (`add_config_flags`).
GRID_FIELDS = ("activation", "loss", "optimizer", "lr", "data", "seed")
ALIASES = {"decay_fraction": ("--decay-frac",)}


def build_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser and the EarlyConfig fields it has flags for (read back by `config_kwargs`)."""
    ap = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [--sweep] [--seeds S,S] [options]   (--help lists them)",
        description=__doc__,
        argument_default=argparse.SUPPRESS,
    )
    ap.add_argument("--activation", action="append", default=None, help="repeatable; NAME=EXPR ok")
    ap.add_argument("--loss", action="append", default=None, choices=LOSSES)
    ap.add_argument("--optimizer", action="append", default=None, choices=OPTIMIZERS)
    ap.add_argument("--lr", type=float, action="append", default=None)
    ap.add_argument(
        "--sweep", action="store_true", default=False, help="all combinations (lrs from LR_GRID)"
    )
    ap.add_argument("--seeds", default="0", help=f"comma-separated seeds, each {SEED_RANGE}")
    ap.add_argument(
        "--data",
        "--inputs",  # the Monte Carlo CLI's spelling of the input law
        dest="data",
        default=default("data"),
        help=f"comma-separated, each one of {', '.join(DATA)}",
    )
    # A non-integer width reads as the list grammar's own message (item, list, what is accepted).
    names = add_config_flags(
        ap, EarlyConfig, skip=GRID_FIELDS, aliases=ALIASES, parsers={"widths": _widths}
    )
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per job")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-progress", action="store_true", default=False)
    ap.add_argument(
        "--report",
        action="store_true",
        default=False,
        help="re-analyse every finished run under --out, run nothing",
    )
    return ap, names


def _widths(text: str) -> list[int]:
    try:
        return parse_ints(text, "--widths", lo=1)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check(args: argparse.Namespace, names: list[str]) -> list[EarlyConfig]:
    """Every input checked before any compute: the run options, the grid, the memory."""
    if args.jobs < 1:
        raise ValueError(f"--jobs: expected an integer >= 1, got {args.jobs}")
    if args.threads is not None and not 1 <= args.threads <= 4096:
        raise ValueError(f"--threads: expected an integer in [1, 4096], got {args.threads}")
    configs = _configs(args, names)
    if not args.report:
        check_memory(configs, args.jobs)
    elif not (args.out / "runs").is_dir():
        raise ValueError(
            f"--out: {str(args.out)!r} holds no early-training runs (no runs/), so --report "
            "has nothing to re-analyse; run the grid first (without --report)"
        )
    return configs


def main(argv: list[str] | None = None) -> int:
    ap, names = build_parser()
    args = ap.parse_args(argv)
    try:
        configs = _check(args, names)
    except ValidationError as exc:
        ap.error(describe(exc))  # exits with status 2 and the usage line, before any compute
    except (registry.RegistryError, ValueError) as exc:
        ap.error(str(exc))
    if args.report:
        results = report(args.out)
    else:
        results = run_grid(
            configs, args.out, jobs=args.jobs, threads=args.threads, progress=not args.no_progress
        )
    rows = json.loads((args.out / "horizons.json").read_text())["rows"]
    print_horizons(rows, configs[0].alpha)
    print(f"wrote {args.out}/horizons.json, remark_a2.json, runs/*/records.csv")
    return 1 if any(r.get("status") == "diverged" for r in results) else 0


def _fmt(h: int | None, steps: int) -> str:
    return f">{steps}" if h is None else str(h)


def print_horizons(rows: list[dict[str, Any]], alpha: float) -> None:
    """One line per cell, layer and drift quantity: the horizons of every seed."""
    print(f"horizons (bands simultaneous over steps, family-wise {alpha:g}), per seed")
    for r in rows:
        if r["quantity"] not in ("g_pos", "delta_b"):
            continue
        steps = r["steps"]
        name = f"{r['activation']:>6} {r['loss']:>13} {r['data']:>10} {r['optimizer']:>5}"
        name += f" lr={r['lr']:<6g}"
        rev = " ".join(_fmt(h, steps) for h in r["N"]["reversal"])
        rev4 = " ".join(_fmt(h, steps) for h in r["kN"]["reversal"])
        dec = " ".join(_fmt(h, steps) for h in r["kN"]["decay"])
        what = f"{r['layer']} {r['quantity']:>7}"
        print(f"{name} {what}: reversal N [{rev}] kN [{rev4}] decay kN [{dec}]")


def _configs(args: argparse.Namespace, names: list[str]) -> list[EarlyConfig]:
    """The grid the flags ask for: activations parsed once here, every point validated."""
    acts = [parse_activation(a) for a in (args.activation or [])]
    data = split_list(str(args.data), "--data")
    for v in data:
        if v not in DATA:
            raise ValueError(f"--data: unknown value {v!r}; valid: {', '.join(DATA)}")
    base = EarlyConfig(**config_kwargs(args, names), data=data[0])
    optimizers = args.optimizer or (list(OPTIMIZERS) if args.sweep else ["sgd"])
    lrs = (
        {o: tuple(args.lr) for o in optimizers}
        if args.lr
        else {o: LR_GRID[o] if args.sweep else (LR_GRID[o][0],) for o in optimizers}
    )
    return [
        cfg
        for v in data
        for cfg in grid(
            base.replace(data=v),
            activations=acts or (list(SWEEP_ACTIVATIONS) if args.sweep else ["relu"]),
            losses=args.loss or (list(LOSSES) if args.sweep else ["mse"]),
            optimizers=optimizers,
            lrs=lrs,
            seeds=parse_seeds(args.seeds),
        )
    ]
