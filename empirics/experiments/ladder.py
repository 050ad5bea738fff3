"""The GPT-nano scaling ladder's definitions: model sizes, the ladder, its rungs, the paper's point.

What `empirics.experiments.scale` trains and `empirics.experiments.scale_fit` fits both read
from here (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from empirics.cli import activation_slug

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
        act = activation_slug(self.activation)  # the one slug of an activation in a run name
        return f"{self.size}-{act}{sp}-t{self.tokens}-s{self.seed}"


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
