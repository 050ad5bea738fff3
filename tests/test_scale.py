"""The scaling ladder (empirics/experiments/scale.py), its fits (empirics/experiments/scale_fit.py)
and the verdict rules that read them (empirics/ledger/scale_verdicts.py): synthetic runs with a
known trend, both directions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from empirics.experiments import ladder as rung_defs
from empirics.experiments import scale, scale_fit
from empirics.experiments.ladder import (
    PAPER_BLOCK_PARAMS,
    PAPER_TOKENS,
    SIZES,
    Ladder,
    block_params,
)
from empirics.ledger import scale_verdicts


def test_rungs_are_unique_and_follow_the_paper_recipe() -> None:
    ladder = Ladder()
    rs = rung_defs.rungs(ladder)
    assert len({r.name for r in rs}) == len(rs)
    # every size x activation x budget x seed of the size piece is there; the largest size
    # stops at its cap
    caps = dict(ladder.size_max_tokens)
    per_size = {
        k: sum(t <= caps.get(k, max(ladder.tokens)) for t in ladder.tokens) for k in ladder.sizes
    }
    assert sum(r.piece == "sizes" for r in rs) == sum(per_size.values()) * 2 * 3
    cap = caps["m"]
    assert max(r.tokens for r in rs if r.size == "m") == cap
    r = next(r for r in rs if r.size == "m" and r.tokens == cap)
    cfg = scale.train_config(r, ladder, Path("/tmp/x"))
    assert cfg.optimizer == "muon" and cfg.lr == 5e-4 and cfg.adam_lr == 5e-3
    assert cfg.weight_decay == 0.0 and cfg.schedule == "wsd" and tuple(cfg.betas) == (0.9, 0.95)
    assert cfg.steps == round(cap / ladder.tokens_per_step)
    assert cfg.warmup == round(cfg.steps * 2000 / 7168)
    assert cfg.decay_frac == pytest.approx(2028 / 7168)
    # the paper's head size and MLP ratio at every size
    for size in SIZES.values():
        assert size.n_embd // size.n_head == 64
    assert cfg.model["n_embd"] == 192 and cfg.model["n_layer"] == 6


def test_piece_names_are_checked() -> None:
    assert scale.main(["plan", "--piece", "sizes,,pairs"]) == 2
    assert scale.main(["plan", "--piece", "nope"]) == 2
    assert scale.main(["plan", "--piece", "topk"]) == 0


def _summary(sparsity: float, spike: float, val: float) -> dict:
    layers = {
        f"blocks.{i}.mlp.act": {
            "sparsity": {"first": 0.5, "last": sparsity - 0.01 * i},
            "spike_max": {"first": 1.0, "last": spike / (1 + i)},
        }
        for i in range(2)
    }
    return {"status": "completed", "layers": layers, "val": {"val_loss": val}, "wall_time_s": 1.0}


def _write_ladder(root: Path, ladder: Ladder, fn) -> None:
    for r in rung_defs.rungs(ladder):
        d = root / r.piece / "runs" / r.name
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(fn(r)))


def _truth(r, noise: float, gen: np.random.Generator, b=0.3, c=0.2, a=-2.0) -> float:
    """A plane in log tokens and log block params, plus noise: the logit of sparsity."""
    n = block_params(SIZES[r.size])
    return a + b * math.log10(r.tokens) + c * math.log10(n) + noise * gen.standard_normal()


@pytest.fixture(autouse=True)
def _a_large_size(monkeypatch):
    """A size near the paper's (25M block parameters) so that synthetic ladders can span as many
    decades as they are carried: the verdicts decide nothing further than that."""
    monkeypatch.setitem(SIZES, "xl", rung_defs.Size("xl", 8, 512))
    monkeypatch.setitem(rung_defs.RATE_TOKENS_PER_S, "xl", 100)


# Synthetic ladders (no training: summaries are written by hand). SMALL spans 6 decades of tokens
# up to 1e9 and 2.4 decades of size, so the paper's point (3.76e9 tokens, 85M) is within reach;
# NEAR stops at 1e6 tokens, 3.6 decades short of it.
SMALL = Ladder(
    tokens=(1_000, 100_000, 10_000_000, 1_000_000_000),
    seeds=(0, 1, 2),
    sizes=("xs", "s", "xl"),
    pair_sizes=("xs", "xl"),
    topk_tokens=(100_000,),
    pair_max_tokens=10**9,
    size_max_tokens=(),
)
NEAR = Ladder(
    tokens=(1_000, 10_000, 100_000, 1_000_000),
    seeds=(0, 1, 2),
    sizes=("xs", "s", "xl"),
    topk_tokens=(10_000,),
    size_max_tokens=(),
)


def test_the_fit_recovers_a_known_plane_and_its_extrapolation(tmp_path) -> None:
    gen = np.random.default_rng(0)

    def fn(r):
        z = _truth(r, 0.01, gen)
        return _summary(1 / (1 + math.exp(-z)), 10.0, 3.0)

    _write_ladder(tmp_path, SMALL, fn)
    agg = scale_fit.aggregate(tmp_path, SMALL)
    fit = agg["c9"]["fit"]
    assert fit["ok"] and fit["size_extrapolated"]
    assert fit["coef"][1] == pytest.approx(0.3, abs=0.02)
    assert fit["coef"][2] == pytest.approx(0.2, abs=0.03)
    z0 = -2.0 + 0.3 * math.log10(PAPER_TOKENS) + 0.2 * math.log10(PAPER_BLOCK_PARAMS)
    assert fit["pi"][0] < z0 < fit["pi"][1]
    assert fit["curvature_p"] > 0.001


def test_a_bent_trend_is_flagged_by_the_curvature_test(tmp_path) -> None:
    gen = np.random.default_rng(1)

    def fn(r):
        t = math.log10(r.tokens)
        z = -3 + 2.0 * t - 0.3 * t * t + 0.01 * gen.standard_normal()
        return _summary(1 / (1 + math.exp(-z)), 10.0, 3.0)

    _write_ladder(tmp_path, SMALL, fn)
    fit = scale_fit.aggregate(tmp_path, SMALL)["c9"]["fit"]
    assert fit["curvature_p"] < 1e-3
    verdict, text, _ = scale_verdicts.verdict_scale_sparsity(scale_fit.aggregate(tmp_path, SMALL))
    assert verdict == "not-tested" and "bends" in text


def test_a_token_trend_that_differs_by_size_is_flagged(tmp_path) -> None:
    gen = np.random.default_rng(9)

    def fn(r):  # the token slope grows with size: no single plane
        n = math.log10(block_params(SIZES[r.size]))
        z = -3.0 + 0.1 * (n - 4.0) * math.log10(r.tokens) + 0.005 * gen.standard_normal()
        return _summary(1 / (1 + math.exp(-z)), 10.0, 3.0)

    _write_ladder(tmp_path, SMALL, fn)
    agg = scale_fit.aggregate(tmp_path, SMALL)
    assert agg["c9"]["fit"]["interaction_p"] < 1e-3
    verdict, text, _ = scale_verdicts.verdict_scale_sparsity(agg)
    assert verdict == "not-tested" and "differs by size" in text, text


def _agg_for_sparsity(tmp_path: Path, target: float, noise: float, seed: int) -> dict:
    """A ladder whose relu sparsity extrapolates to `target` at the paper's point."""
    gen = np.random.default_rng(seed)
    z_target = math.log(target / (1 - target))
    b, c = 0.3, 0.2
    a = z_target - b * math.log10(PAPER_TOKENS) - c * math.log10(PAPER_BLOCK_PARAMS)

    def fn(r):
        z = _truth(r, noise, gen, b=b, c=c, a=a)
        return _summary(1 / (1 + math.exp(-z)), 10.0, 3.0)

    _write_ladder(tmp_path, SMALL, fn)
    return scale_fit.aggregate(tmp_path, SMALL)


def test_nothing_is_decided_further_than_the_ladder_reaches(tmp_path) -> None:
    gen = np.random.default_rng(8)

    def fn(r):  # a clear trend that the paper's 0.9 lies far from
        z = -1.0 - 0.3 * math.log10(r.tokens) + 0.002 * gen.standard_normal()
        return _summary(1 / (1 + math.exp(-z)), 10.0, 3.0)

    _write_ladder(tmp_path / "near", NEAR, fn)
    verdict, text, _ = scale_verdicts.verdict_scale_sparsity(
        scale_fit.aggregate(tmp_path / "near", NEAR)
    )
    assert verdict == "not-tested" and "decades of tokens beyond the runs" in text, text
    _write_ladder(tmp_path / "wide", SMALL, fn)
    verdict, text, _ = scale_verdicts.verdict_scale_sparsity(
        scale_fit.aggregate(tmp_path / "wide", SMALL)
    )
    assert verdict == "refuted", text


def test_a_flat_ladder_refutes_nothing(tmp_path) -> None:
    """Sparsity that never leaves 0.51 gives a narrow interval far from 0.9, but no trend: the
    runs stopped before anything happened, which says nothing about 3.76e9 tokens."""
    gen = np.random.default_rng(7)
    _write_ladder(tmp_path, SMALL, lambda r: _summary(0.51 + 0.002 * gen.standard_normal(), 10, 3))
    agg = scale_fit.aggregate(tmp_path, SMALL)
    lo, hi = agg["c9"]["fit"]["pi_metric"]
    assert hi < 0.9
    verdict, text, _ = scale_verdicts.verdict_scale_sparsity(agg)
    assert verdict == "not-tested" and "no trend was measured" in text


@pytest.mark.parametrize(
    ("target", "noise", "expected"),
    [(0.9, 0.002, "confirmed"), (0.6, 0.002, "refuted"), (0.9, 2.0, "not-tested")],
)
def test_sparsity_rule_in_every_direction(tmp_path, target, noise, expected) -> None:
    agg = _agg_for_sparsity(tmp_path, target, noise, seed=3)
    verdict, text, evidence = scale_verdicts.verdict_scale_sparsity(agg)
    assert verdict == expected, text
    assert "95 % PI" in text
    if expected == "not-tested":
        assert "too wide" in text, text


def test_spike_ratio_is_paired_by_seed_and_judged_against_25(tmp_path) -> None:
    gen = np.random.default_rng(4)
    b, c = 0.1, 0.05
    a = math.log10(25.0) - b * math.log10(PAPER_TOKENS) - c * math.log10(PAPER_BLOCK_PARAMS)

    def fn(r):
        n = block_params(SIZES[r.size])
        ratio = 10 ** (a + b * math.log10(r.tokens) + c * math.log10(n))
        base = 5.0 + gen.uniform(0, 1)  # the same per-rung base would cancel; noise per run
        spike = base * ratio if r.activation == "relu2" else base
        return _summary(0.6, spike, 3.0)

    _write_ladder(tmp_path, SMALL, fn)
    agg = scale_fit.aggregate(tmp_path, SMALL)
    # relu and relu2 of one (size, tokens, seed) do not share `base` here, so the ratio is noisy
    verdict, text, ev = scale_verdicts.verdict_scale_spikes(agg)
    assert agg["c11"]["fit"]["ok"]
    lo, hi = ev["pi_ratio"] if ev else (0, 0)
    assert lo < 25 < hi or verdict == "refuted"
    # ReLU² spiking exactly like ReLU at every rung: ratio 1, far from 25, but no trend
    other = tmp_path / "flat"
    _write_ladder(other, SMALL, lambda r: _summary(0.6, 7.0 + 0.01 * gen.uniform(), 3.0))
    verdict, text, _ = scale_verdicts.verdict_scale_spikes(scale_fit.aggregate(other, SMALL))
    assert verdict == "not-tested" and "no trend was measured" in text, text

    # a ratio that measurably falls with tokens, away from 25 -> refuted
    def falling(r):
        ratio = 10 ** (1.0 - 0.2 * math.log10(r.tokens))
        base = 5.0 * (1 + 0.001 * gen.standard_normal())
        return _summary(0.6, base * ratio if r.activation == "relu2" else 5.0, 3.0)

    away = tmp_path / "away"
    _write_ladder(away, SMALL, falling)
    verdict, text, _ = scale_verdicts.verdict_scale_spikes(scale_fit.aggregate(away, SMALL))
    assert verdict == "refuted", text


def test_pair_rule_reads_the_sign_of_the_extrapolated_difference(tmp_path) -> None:
    gen = np.random.default_rng(5)
    # GELU² lower than ReLU by 0.05 nats everywhere (confirmed); clipped ReLU² higher than
    # ReLU² by 0.05 (refuted); GELU equal to GELU² up to noise (not-tested)
    offset = {"relu": 3.05, "relu2": 3.0, "relu2_clip": 3.05, "gelu2": 3.0, "gelu": 3.0}

    def fn(r):
        return _summary(0.6, 10.0, offset.get(r.activation, 3.0) + 0.001 * gen.standard_normal())

    _write_ladder(tmp_path, SMALL, fn)
    rows = {
        k: (v, t)
        for k, v, t, _ in scale_verdicts.verdict_scale_pairs(scale_fit.aggregate(tmp_path, SMALL))
    }
    assert rows["gelu2_vs_relu"][0] == "confirmed", rows["gelu2_vs_relu"][1]
    assert rows["clip_vs_relu2"][0] == "refuted", rows["clip_vs_relu2"][1]
    assert rows["gelu2_vs_gelu"][0] == "not-tested", rows["gelu2_vs_gelu"][1]
    # measured at one size only: never decided at the paper's scale
    assert rows["clip50_vs_relu2"][0] == "not-tested"
    assert "one size" in rows["clip50_vs_relu2"][1]
    assert rows["gelu2_best"][0] == "not-tested"


def test_pairs_that_never_differ_are_named_as_such(tmp_path) -> None:
    _write_ladder(tmp_path, SMALL, lambda r: _summary(0.6, 10.0, 3.0 + 0.01 * math.log10(r.tokens)))
    rows = {
        k: (v, t)
        for k, v, t, _ in scale_verdicts.verdict_scale_pairs(scale_fit.aggregate(tmp_path, SMALL))
    }
    assert rows["clip_vs_relu2"][0] == "not-tested"
    assert "identical val loss at every rung" in rows["clip_vs_relu2"][1]


def test_topk_rule_needs_the_same_answer_at_every_budget(tmp_path) -> None:
    ladder = Ladder(tokens=(1_000,), seeds=(0, 1, 2), topk_tokens=(1_000, 2_000))
    gen = np.random.default_rng(6)

    def make(cost_at):
        def fn(r):
            level = float(r.sparsity.split(":")[1]) if r.sparsity != "none" else 0.0
            val = 3.0 * (1 + cost_at(level, r.tokens)) + 1e-4 * gen.standard_normal()
            return _summary(0.6, 10.0, val)

        return fn

    cliff = tmp_path / "cliff"
    _write_ladder(cliff, ladder, make(lambda lv, t: 0.0 if lv <= 0.5 else 0.2))
    assert scale_verdicts.verdict_scale_topk(scale_fit.aggregate(cliff, ladder))[0] == "confirmed"
    flat = tmp_path / "flat"
    _write_ladder(flat, ladder, make(lambda lv, t: 0.0))
    assert scale_verdicts.verdict_scale_topk(scale_fit.aggregate(flat, ladder))[0] == "refuted"
    moving = tmp_path / "moving"
    _write_ladder(moving, ladder, make(lambda lv, t: 0.2 if lv > 0.5 and t > 1_500 else 0.0))
    verdict, text, _ = scale_verdicts.verdict_scale_topk(scale_fit.aggregate(moving, ladder))
    assert verdict == "not-tested" and "disagree" in text


def test_missing_and_failed_runs_are_listed_not_averaged(tmp_path) -> None:
    ladder = Ladder(tokens=(1_000, 10_000), seeds=(0, 1), sizes=("xs",))
    _write_ladder(tmp_path, ladder, lambda r: _summary(0.6, 10.0, 3.0))
    bad = rung_defs.rungs(ladder)[0]
    (tmp_path / bad.piece / "runs" / bad.name / "summary.json").write_text(
        json.dumps({"status": "diverged"})
    )
    agg = scale_fit.aggregate(tmp_path, ladder)
    assert agg["runs"]["missing"][bad.name] == "diverged"
    assert agg["runs"]["completed"] == len(rung_defs.rungs(ladder)) - 1


@pytest.mark.data
def test_a_tiny_ladder_trains_resumes_and_refuses_changed_settings(tmp_path, monkeypatch) -> None:
    """End to end on the real corpus, in-process: a finished ladder is kept on a rerun, and a
    rerun with another recipe is refused instead of mixing runs of two settings."""
    from empirics.train.config import ConfigError

    tiny = Ladder(
        tokens=(1024, 2048),
        seeds=(0,),
        sizes=("xs",),
        size_acts=("relu",),
        pair_acts=("gelu",),
        pair_sizes=("xs",),
        mid_acts=(),
        mid="xs",
        topk_levels=(0.5,),
        topk_tokens=(2048,),
        val_windows=8,
    )
    lines: list[str] = []
    out = scale.run(tiny, tmp_path, jobs=1, cluster="debug", echo=lines.append)
    assert (
        out.completed
        == out.total
        == len(rung_defs.rungs(tiny, ["sizes"]))
        + len(rung_defs.rungs(tiny, ["pairs"]))
        + len(rung_defs.rungs(tiny, ["topk"]))
    )
    agg = scale_fit.aggregate(tmp_path, tiny)
    assert agg["runs"]["completed"] == len(rung_defs.rungs(tiny)) and not agg["runs"]["missing"]
    lines.clear()
    again = scale.run(tiny, tmp_path, jobs=1, cluster="debug", echo=lines.append)
    assert again.completed == again.total and any("0 to run" in ln for ln in lines)
    monkeypatch.setitem(rung_defs.RECIPE, "lr", 1e-3)
    with pytest.raises(ConfigError, match="other settings"):
        scale.run(tiny, tmp_path, jobs=1, cluster="debug", echo=None)


@pytest.mark.parametrize("shape", [(512, 128), (128, 512), (128, 128)])
def test_muon_step_scales_as_the_authors_muon(shape) -> None:
    """`max_dim` makes Muon's first step on an A x B matrix lr * sqrt(max(A, B)) in spectral norm
    (the authors' modded-nanogpt rule), `torch` lr * max(1, A/B)^0.5; Newton-Schulz leaves the
    singular values within about 0.7..1.2 of 1, and Nesterov's first step doubles none of it."""
    import torch

    from empirics.train.optim import make_optimizers

    lr = 5e-4
    for scale_name, expected in (
        ("max_dim", lr * max(shape) ** 0.5),
        ("torch", lr * max(1.0, shape[0] / shape[1]) ** 0.5),
    ):
        gen = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.zeros(shape))
        w.grad = torch.randn(shape, generator=gen)
        make_optimizers("muon", [w], lr, matrices=[w], rest=[], muon_scale=scale_name)[0].step()
        top = float(torch.linalg.svdvals(w.detach()).max())
        assert 0.8 * expected < top < 1.35 * expected, (scale_name, top, expected)
