"""The GPT-nano scaling ladder: C9, C10, C11, C12 as trends over tokens and model size.

`python -m empirics.experiments.scale plan` prints the rungs and their estimated cost; `python -m
empirics.experiments.scale run [--piece NAME ...] [--jobs 2]` trains them (resumable: finished runs
are kept,
a killed run resumes from its checkpoint, changed settings are refused); `python -m
empirics.experiments.scale aggregate` reads the runs and writes `results/scale/aggregate.json` (no
torch).

The recipe is the paper's (appendix G.6): Muon lr 5e-4 on the block matrices, Adam lr 5e-3 with
betas (0.9, 0.95) on the rest, no weight decay, warmup 2000/7168 and warmdown 2028/7168 of the
run. A warmup-stable-decay schedule ties the schedule to the run length, so every token budget is
its own run with its own complete schedule (reading an intermediate point off a longer run would
read a model that has not decayed): a log-spaced ladder costs the sum of its budgets, 1.44x its
top rung for the 10k..1M ladder.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empirics.experiments.ladder import (
    PAPER_WARMUP_FRAC,
    PIECES,
    RECIPE,
    SIZES,
    Ladder,
    Rung,
    estimate_seconds,
    rungs,
)

ROOT = Path("results/scale")


def train_config(rung: Rung, ladder: Ladder, root: Path) -> Any:
    """The rung's TrainConfig: the paper's recipe at this size and token budget."""
    from empirics.train.config import TrainConfig

    size = SIZES[rung.size]
    steps = ladder.steps(rung.tokens)
    return TrainConfig(
        arch="gpt_nano",
        activation=rung.activation,
        data="real",
        preset="small",
        steps=steps,
        batch_size=ladder.batch_size,
        warmup=round(PAPER_WARMUP_FRAC * steps),
        seed=rung.seed,
        run=rung.name,
        out=str(root / rung.piece / "runs" / rung.name),
        progress=False,
        # Only the end state enters the trends: a handful of logged steps, always the first
        # (init) and the last.
        early_steps=0,
        log_every_late=max(1, steps // 4),
        eval_batches=math.ceil(ladder.val_windows / ladder.batch_size),
        checkpoint_every=ladder.checkpoint_every if steps > ladder.checkpoint_every else 0,
        threads=1,
        model={
            **size.model(),
            "block_size": ladder.block_size,
            "vocab_size": ladder.vocab_size,
            "tokenizer": "bpe",
            "corpus": ladder.corpus,
            "val_windows": ladder.val_windows,
            "sparsity": rung.sparsity,
            # The authors' Muon: lr 5e-4 is a step of lr * sqrt(max(rows, cols)) per matrix.
            "muon_scale": "max_dim",
        },
        **RECIPE,
    )


@dataclass
class Outcome:
    pieces: list[str] = field(default_factory=list)
    completed: int = 0
    total: int = 0


def run(
    ladder: Ladder,
    root: Path = ROOT,
    pieces: Sequence[str] = PIECES,
    jobs: int = 2,
    cluster: str = "local",
    echo: Any = print,
) -> Outcome:
    """Train the pieces in order through the sweep runner (submitit; resumable), each in its own
    sweep directory `root/<piece>` (a sweep directory holds one grid: its resume check compares
    every completed run there against the grid's settings)."""
    from empirics.experiments.sweep import run_sweep
    from empirics.launch import Launch
    from empirics.train.loop import plan

    outcome = Outcome()
    for piece in pieces:
        rs = rungs(ladder, [piece])
        configs = [train_config(r, ladder, root) for r in rs]
        for cfg in configs:
            plan(cfg)  # every ConfigError before the first run starts
        launch = Launch(cluster=cluster, parallel=jobs, threads=1, chunk=3)
        index = run_sweep(configs, root / piece, launch, echo=echo)
        names = {r.name for r in rs}
        done = sum(1 for e in index["runs"] if e["run"] in names and e["status"] == "completed")
        outcome.pieces.append(piece)
        outcome.completed += done
        outcome.total += len(rs)
    return outcome


def paper_check(out: Path, steps: int = 2, batch_size: int = 1) -> dict[str, Any]:
    """A few steps of the `paper` preset (124M parameters, block 2048, vocab 50257, Muon + Adam,
    wsd) on synthetic tokens, on whatever device `auto` gives: proof that the paper's
    configuration runs end to end here, with its step time and peak resident memory."""
    import resource
    import time

    from empirics.train.config import TrainConfig
    from empirics.train.loop import train

    cfg = TrainConfig(
        arch="gpt_nano",
        preset="paper",
        data="synthetic",
        steps=steps,
        batch_size=batch_size,
        warmup=0,
        early_steps=0,
        log_every_late=10**6,
        eval_batches=1,
        progress=False,
        out=str(out),
        overwrite=True,
    )
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return {
        "steps": steps,
        "batch_size": batch_size,
        "wall_s": wall,
        "peak_rss_gib": peak_kib / 2**20,
    }


def _parse_pieces(values: Sequence[str] | None) -> list[str]:
    if not values:
        return list(PIECES)
    out = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                raise ValueError(f"--piece: empty item in {value!r}; accepted: {', '.join(PIECES)}")
            if item.strip() not in PIECES:
                raise ValueError(
                    f"--piece: unknown value {item.strip()!r}; accepted: {', '.join(PIECES)}"
                )
            out.append(item.strip())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m empirics.experiments.scale", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("plan", "run"):
        p = sub.add_parser(name)
        p.add_argument("--piece", action="append", help=f"one or more of {', '.join(PIECES)}")
        p.add_argument("--out", default=str(ROOT))
        p.add_argument("--jobs", type=int, default=2)
    a = sub.add_parser("aggregate")
    a.add_argument("--out", default=str(ROOT))
    c = sub.add_parser("paper-check", help="a few steps of the paper preset; peak memory")
    c.add_argument("--steps", type=int, default=2)
    c.add_argument("--out", default=str(ROOT.parent / "paper_check"))
    args = ap.parse_args(argv)
    if args.command == "paper-check":
        if not 1 <= args.steps <= 100:
            print(
                f"python -m empirics.experiments.scale: error: --steps must be in 1..100, got "
                f"{args.steps}",
                file=sys.stderr,
            )
            return 2
        r = paper_check(Path(args.out), steps=args.steps)
        print(
            f"paper preset, {r['steps']} steps at batch {r['batch_size']} x 2048 tokens: "
            f"{r['wall_s']:.0f} s, peak resident memory {r['peak_rss_gib']:.2f} GiB"
        )
        return 0
    ladder = Ladder()
    try:
        pieces = _parse_pieces(getattr(args, "piece", None))
    except ValueError as exc:
        print(f"python -m empirics.experiments.scale: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "plan":
        for piece in pieces:
            rs = rungs(ladder, [piece])
            est = estimate_seconds(rs) / max(1, args.jobs)
            print(f"{piece}: {len(rs)} runs, about {est / 60:.0f} min on {args.jobs} cores")
        return 0
    if args.command == "run":
        if args.jobs < 1:
            print(
                f"python -m empirics.experiments.scale: error: --jobs must be >= 1, got "
                f"{args.jobs}",
                file=sys.stderr,
            )
            return 2
        from empirics.experiments.sweep import SweepInterrupted
        from empirics.train.config import ConfigError

        try:
            outcome = run(ladder, Path(args.out), pieces, args.jobs)
        except ConfigError as exc:
            print(f"python -m empirics.experiments.scale: error: {exc}", file=sys.stderr)
            return 2
        except SweepInterrupted as exc:
            print(
                f"python -m empirics.experiments.scale: interrupted ({exc}); rerun the same "
                f"command to "
                "resume (finished runs are kept, unfinished ones resume from their checkpoint)",
                file=sys.stderr,
            )
            return 130
        print(f"scale: {outcome.completed}/{outcome.total} runs completed")
        return 0 if outcome.completed == outcome.total else 1
    from empirics.experiments.scale_fit import aggregate_main

    return aggregate_main(Path(args.out), ladder)


if __name__ == "__main__":
    raise SystemExit(main())
