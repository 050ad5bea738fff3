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

ROOT = Path("results/scale")
# The paper's GPT-nano (appendix G.6): the point the trends are extrapolated to.
PAPER_PARAMS = 124_000_000
PAPER_TOKENS = 7168 * 16 * 2048 * 16  # 3.76e9
PAPER_WARMUP_FRAC = 2000 / 7168
PAPER_WARMDOWN_FRAC = 2028 / 7168
RECIPE: dict[str, Any] = {
    "optimizer": "muon",
    "lr": 5e-4,
    "adam_lr": 5e-3,
    "betas": (0.9, 0.95),
    "weight_decay": 0.0,
    "schedule": "wsd",
    "decay_frac": PAPER_WARMDOWN_FRAC,
}


@dataclass(frozen=True)
class Size:
    """One model size; head size 64 and MLP ratio 4 are the paper's (768/12, 3072/768)."""

    name: str
    n_layer: int
    n_embd: int

    @property
    def n_head(self) -> int:
        return self.n_embd // 64

    def model(self) -> dict[str, int]:
        return {"n_layer": self.n_layer, "n_head": self.n_head, "n_embd": self.n_embd}


SIZES: dict[str, Size] = {
    s.name: s for s in (Size("xs", 2, 64), Size("s", 4, 128), Size("m", 6, 192), Size("l", 6, 256))
}


@dataclass(frozen=True)
class Ladder:
    """Everything that sets what the ladder trains; sample sizes never depend on time.

    `batch_size` x `block_size` tokens per step; a rung of T tokens trains round(T / that)
    steps. Data: `corpus` through a byte-level BPE of `vocab_size` entries (`empirics.data.text`).
    """

    tokens: tuple[int, ...] = (10_000, 30_000, 100_000, 300_000, 1_000_000, 6_300_000)
    seeds: tuple[int, ...] = (0, 1, 2)
    sizes: tuple[str, ...] = tuple(SIZES)
    batch_size: int = 8
    block_size: int = 128
    vocab_size: int = 2048
    corpus: str = "kjv+fortunes"
    val_windows: int = 256
    # C9/C11 at every size; C12's pairs at the two smaller sizes (the largest costs 2.4x the
    # middle one per token); relu2_clip50 and the Top-K levels at the middle size only.
    size_acts: tuple[str, ...] = ("relu", "relu2")
    pair_acts: tuple[str, ...] = ("relu2_clip", "gelu2", "gelu")
    pair_sizes: tuple[str, ...] = ("xs", "s")
    mid_acts: tuple[str, ...] = ("relu2_clip50",)
    mid: str = "s"
    topk_levels: tuple[float, ...] = (0.5, 0.75, 0.9)
    topk_act: str = "gelu"
    # Two budgets: a cliff whose place moves between them is not a property of the model.
    topk_tokens: tuple[int, ...] = (30_000, 100_000)
    # Budget caps, chosen to fit about two hours on a 2-core machine shared with other work while
    # reaching as far as the extrapolation is carried (a verdict needs the runs to span at least
    # as many decades as the paper's point lies beyond them: 6.3e6 tokens spans 2.8 decades from
    # 1e4 and lies 2.8 below 3.76e9; 4.7M block parameters span 1.7 decades from 0.098M and lie
    # 1.3 below 85M). The smallest size carries the tokens to 6.3e6, the middle one to 1e6, the
    # two largest carry the size to 1e5 tokens; the C12 pairs and the Top-K runs stop at 1e5.
    size_max_tokens: tuple[tuple[str, int], ...] = (
        ("s", 1_000_000),
        ("m", 100_000),
        ("l", 100_000),
    )
    pair_max_tokens: int = 100_000
    checkpoint_every: int = 250

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    def steps(self, tokens: int) -> int:
        return max(1, round(tokens / self.tokens_per_step))


@dataclass(frozen=True)
class Rung:
    """One training run of the ladder."""

    piece: str
    size: str
    activation: str
    tokens: int
    seed: int
    sparsity: str = "none"

    @property
    def name(self) -> str:
        sp = "" if self.sparsity == "none" else "-" + self.sparsity.replace(":", "")
        return f"{self.size}-{self.activation}{sp}-t{self.tokens}-s{self.seed}"


# Pieces: each resumable on its own, each at most about two hours on 2 cores (`plan` prints the
# estimate), run in this order by default.
PIECES = ("sizes", "pairs", "topk")


def rungs(ladder: Ladder, pieces: Sequence[str] = PIECES) -> list[Rung]:
    out: list[Rung] = []
    seeds, tokens = ladder.seeds, ladder.tokens
    if "sizes" in pieces:
        caps = dict(ladder.size_max_tokens)
        for size in ladder.sizes:
            ts = [t for t in tokens if t <= caps.get(size, max(tokens))]
            for act in ladder.size_acts:
                out += [Rung("sizes", size, act, t, s) for t in ts for s in seeds]
    if "pairs" in pieces:
        ts = [t for t in tokens if t <= ladder.pair_max_tokens]
        for size in ladder.pair_sizes:
            for act in ladder.pair_acts:
                out += [Rung("pairs", size, act, t, s) for t in ts for s in seeds]
        for act in ladder.mid_acts:
            out += [Rung("pairs", ladder.mid, act, t, s) for t in ts for s in seeds]
    if "topk" in pieces:
        for level in ladder.topk_levels:
            out += [
                Rung("topk", ladder.mid, ladder.topk_act, t, s, f"topk:{level:g}")
                for t in ladder.topk_tokens
                for s in seeds
            ]
        # The dense baseline the Top-K runs are paired with (already in `pairs` for the default
        # ladder: duplicates are dropped below).
        out += [
            Rung("topk", ladder.mid, ladder.topk_act, t, s)
            for t in ladder.topk_tokens
            for s in seeds
        ]
    out = list({r.name: r for r in reversed(out)}.values())[::-1]  # first occurrence wins
    # Longest first: the two workers then finish together instead of one idling on a last run.
    return sorted(out, key=lambda r: -r.tokens / RATE_TOKENS_PER_S[r.size])


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


def block_params(size: Size) -> int:
    """Parameters in the transformer blocks (attention 4 C^2 + MLP 8 C^2 per layer): the N of
    the scaling fits (embedding excluded, as in the scaling-law literature)."""
    return 12 * size.n_layer * size.n_embd**2


# The paper's 124 M counts the tied 50257 x 768 embedding; its blocks hold 12 x 12 x 768^2.
PAPER_BLOCK_PARAMS = 12 * 12 * 768**2


# Single-thread tokens/s measured on a 2-core machine shared with other work (a 40-step run
# each, BPE 2048, block 128; `l` scaled from `m` by its parameter count, not measured); used
# only by `plan` to print an estimate and to start the longest runs first.
RATE_TOKENS_PER_S = {"xs": 20_000, "s": 7_300, "m": 3_000, "l": 1_300}


def estimate_seconds(rs: Sequence[Rung]) -> float:
    return sum(r.tokens / RATE_TOKENS_PER_S[r.size] + 4.0 for r in rs)


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
    from empirics.experiments.sweep import Launch, run_sweep
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
